/* fuzz_common.c: the temporary directory, the error-record check and the trap shared by the
 * harnesses (fuzz_common.h).
 * Leaves out: cleaning up after a crash (libFuzzer exits without atexit handlers; fuzz.sh
 * removes the parent directory it made). */
#include "tests/fuzz/fuzz_common.h"
#include "loader/loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX_NAMES 16

static char tmp_dir[512];
static char *names[FUZZ_MAX_NAMES];
static int n_names;

_Noreturn void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "\nfuzz check failed at %s:%d: %s\n  ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  vl_error: \"%s\"\n", vl_error_get());
    abort();
}

static void remove_tmp(void) {
    for (int i = 0; i < n_names; i++) {
        unlink(names[i]);
        rmdir(names[i]); /* harnesses that make a directory there */
        free(names[i]);
    }
    if (tmp_dir[0]) rmdir(tmp_dir);
}

static int is_dir(const char *p) {
    struct stat st;
    return p && p[0] && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *fuzz_tmpdir(void) {
    if (tmp_dir[0]) return tmp_dir;
    const char *parent = getenv("VL_FUZZ_TMPDIR");
    if (!is_dir(parent)) parent = is_dir("/dev/shm") ? "/dev/shm" : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/vlrun-fuzz-XXXXXX", parent);
    if (!mkdtemp(tmp_dir)) {
        fprintf(stderr, "fuzz: cannot make a temporary directory under %s\n", parent);
        exit(2);
    }
    atexit(remove_tmp);
    return tmp_dir;
}

const char *fuzz_path(const char *name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", fuzz_tmpdir(), name);
    for (int i = 0; i < n_names; i++)
        if (strcmp(names[i], buf) == 0) return names[i];
    if (n_names == FUZZ_MAX_NAMES || !(names[n_names] = strdup(buf))) {
        fprintf(stderr, "fuzz: too many temporary names\n");
        exit(2);
    }
    return names[n_names++];
}

const char *fuzz_write(const char *name, const void *data, size_t size) {
    const char *path = fuzz_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        exit(2);
    }
    return path;
}

void fuzz_check_error(int rc, const char *what) {
    const char *msg = vl_error_get();
    if (rc != 0)
        FUZZ_CHECK(msg[0] != '\0', "%s failed (rc %d) without an error message", what, rc);
    else
        FUZZ_CHECK(msg[0] == '\0', "%s succeeded but left an error message", what);
}

char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}
