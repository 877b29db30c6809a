/* file.c: opening input files safely, and whole-file reads.
 *
 * Every input a user names (a shard, config, tokenizer, image) is opened here first:
 *   - O_NONBLOCK, so that a FIFO or a device with no writer cannot block open() forever; the
 *     flag is cleared again once fstat has shown a regular file;
 *   - anything that is not a regular file (FIFO, socket, device, directory) is refused;
 *   - O_CLOEXEC, so that a server's children never inherit model files.
 * Whether a path may be a symlink is the caller's business (safetensors.c keeps shards inside
 * the checkpoint folder); here a link is followed like any other path.
 * Outputs are written to a file created afresh (vl_create_fresh), normally NAME.tmp renamed over
 * NAME once complete: a FIFO there cannot block the open, a symlink cannot redirect the write. */
#include "loader/loader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *file_kind(mode_t mode) {
    return S_ISDIR(mode)                    ? "a directory"
           : S_ISFIFO(mode)                 ? "a FIFO (named pipe)"
           : S_ISSOCK(mode)                 ? "a socket"
           : S_ISLNK(mode)                  ? "a symbolic link"
           : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
                                            : "not a file";
}

int vl_output_target_check(const char *path, const char *what) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        return vl_error_set("%s %s: cannot check the path (%s)", what, path, strerror(errno));
    }
    if (S_ISREG(st.st_mode)) return 0;
    return vl_error_set("%s %s is %s: vlrun replaces only regular files with its outputs; remove "
                        "it or give another path",
                        what, path, file_kind(st.st_mode));
}

int vl_open_regular(const char *path, const char *what, int *fd_out, int64_t *size_out) {
    *fd_out = -1;
    if (size_out) *size_out = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return vl_error_set("cannot open %s %s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vl_error_set("cannot stat %s %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vl_error_set("%s %s is %s, not a regular file; pass the path of the file itself",
                            what, path, file_kind(st.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return vl_error_set("cannot set up reading %s %s: %s", what, path, strerror(e));
    }
    *fd_out = fd;
    if (size_out) *size_out = (int64_t)st.st_size;
    return 0;
}

int vl_read_fd(int fd, const char *path, void *buf, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, (char *)buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return vl_error_set("cannot read %s: %s", path,
                                r < 0 ? strerror(errno) : "the file shrank while being read");
        got += (size_t)r;
    }
    return 0;
}

int vl_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    int fd;
    int64_t size64;
    if (vl_open_regular(path, "file", &fd, &size64)) return -1;
    if (size64 < 0 || (uint64_t)size64 > (uint64_t)max_bytes) {
        close(fd);
        return vl_error_set("%s is %lld bytes, more than the %zu bytes expected of this kind of "
                            "file; is it the right file?",
                            path, (long long)size64, max_bytes);
    }
    size_t size = (size_t)size64;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return vl_error_set("out of memory reading %s (%zu bytes)", path, size);
    }
    int rc = vl_read_fd(fd, path, buf, size);
    close(fd);
    if (rc) {
        free(buf);
        return -1;
    }
    buf[size] = '\0';
    *out = buf;
    if (out_len) *out_len = size;
    return 0;
}

FILE *vl_create_fresh(const char *path, const char *what) {
    if (unlink(path) != 0 && errno != ENOENT) {
        vl_error_set("%s: cannot replace %s (%s)", what, path, strerror(errno));
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        vl_error_set("%s: cannot create %s (%s)", what, path, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        remove(path);
        vl_error_set("%s: cannot create %s (%s)", what, path, strerror(e));
    }
    return f;
}

int vl_write_whole_file(const char *path, const char *what, const void *data, size_t n) {
    if (vl_output_target_check(path, what)) return -1;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return vl_error_set("%s %s: out of host memory", what, path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = vl_create_fresh(tmp, what); /* its error names the file and the reason */
    if (!f) {
        free(tmp);
        return -1;
    }
    int bad = n && fwrite(data, 1, n, f) != n;
    if (fclose(f) != 0) bad = 1; /* closed whatever the write did */
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        free(tmp);
        return vl_error_set("%s %s: write failed (disk full?)", what, path);
    }
    free(tmp);
    return 0;
}
