/* vltest_fs.h: a temporary directory for tests that build files (loader tests): create it,
 * name paths in it, write files, make FIFOs and links, remove it all at the end.
 * A watchdog (vt_watchdog) turns a hang (a FIFO opened by mistake) into a failing test at
 * once instead of a ctest timeout much later.
 * Leaves out: anything about file contents beyond raw bytes and text. */
#ifndef VL_TEST_FS_H
#define VL_TEST_FS_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char vt_tmp_root[512];

/* mkdtemp under $TMPDIR (or /tmp) named PREFIX_XXXXXX; exits 2 if that fails. */
static inline void vt_tmp_init(const char *prefix) {
    const char *base = getenv("TMPDIR");
    snprintf(vt_tmp_root, sizeof vt_tmp_root, "%s/%s_XXXXXX", base && base[0] ? base : "/tmp",
             prefix);
    if (!mkdtemp(vt_tmp_root)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* vt_tmp_root/rel, from a small ring of buffers so several can be alive at once. */
static inline const char *vt_tpath(const char *rel) {
    static char buf[16][1024];
    static int slot;
    char *out = buf[slot++ & 15];
    snprintf(out, 1024, "%s/%s", vt_tmp_root, rel);
    return out;
}

static inline void vt_make_dir(const char *rel) {
    mkdir(vt_tpath(rel), 0755);
}

/* A new file each time: unlinking first spares ext4 the flush that truncating a just-written
 * file triggers (the fuzz loops rewrite one file thousands of times). */
static inline void vt_write_bytes(const char *path, const void *data, size_t n) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    if (n && fwrite(data, 1, n, f) != n) exit(2);
    fclose(f);
}

static inline void vt_write_text(const char *path, const char *text) {
    vt_write_bytes(path, text, strlen(text));
}

static inline int vt_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A FIFO or a symbolic link at path (an existing entry is replaced); exits 2 on failure. */
static inline void vt_mkfifo(const char *path) {
    unlink(path);
    if (mkfifo(path, 0644) != 0) {
        perror("mkfifo");
        exit(2);
    }
}

static inline void vt_symlink(const char *target, const char *path) {
    unlink(path);
    if (symlink(target, path) != 0) {
        perror("symlink");
        exit(2);
    }
}

static inline void vt_rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *sub = malloc(n);
            if (!sub) break;
            snprintf(sub, n, "%s/%s", path, e->d_name);
            vt_rm_tree(sub);
            free(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void vt_watchdog_fired(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: watchdog: the test hung (a blocking open?)\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
    _exit(1);
}

/* Fail the whole program if it is still running `seconds` from now (0 disarms). */
static inline void vt_watchdog(unsigned seconds) {
    signal(SIGALRM, vt_watchdog_fired);
    alarm(seconds);
}

#endif
