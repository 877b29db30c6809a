/* error.c: the one-line error record of the loader and engine, and whole-file reads.
 *
 * A failure caused by user input is recorded once (the first record wins until
 * vl_error_clear) and returned up to main, which prints it. The deepest caller knows the most
 * precise reason, so later, vaguer records from callers further up never overwrite it.
 * Leaves out: thread-local storage (the loaders run on one thread) and error codes (the
 * message is what the user acts on). */
#include "loader/loader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char vl_error_text[1024];

int vl_error_set(const char *fmt, ...) {
    if (vl_error_text[0]) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vl_error_text, sizeof vl_error_text, fmt, ap);
    va_end(ap);
    if (!vl_error_text[0]) snprintf(vl_error_text, sizeof vl_error_text, "unknown error");
    return -1;
}

const char *vl_error_get(void) {
    return vl_error_text;
}

void vl_error_clear(void) {
    vl_error_text[0] = '\0';
}

int vl_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vl_error_set("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vl_error_set("cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vl_error_set("%s is not a regular file (expected a file, got a directory or "
                            "device); pass the path of the file itself",
                            path);
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > (unsigned long long)max_bytes) {
        close(fd);
        return vl_error_set("%s is %lld bytes, more than the %zu bytes expected of this kind of "
                            "file; is it the right file?",
                            path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return vl_error_set("out of memory reading %s (%zu bytes)", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            free(buf);
            close(fd);
            return vl_error_set("cannot read %s: %s", path,
                                e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    if (out_len) *out_len = size;
    return 0;
}
