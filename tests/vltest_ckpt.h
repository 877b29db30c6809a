/* vltest_ckpt.h: helpers of the checkpoint loader tests (test_safetensors.c,
 * test_safetensors_folder.c): hand-written safetensors files, whole-file reads, "this must fail
 * with that message" and the invariants every opened checkpoint keeps.
 * Leaves out: temporary-directory handling (vltest_fs.h). */
#ifndef VL_TEST_CKPT_H
#define VL_TEST_CKPT_H

#include "loader/loader.h"
#include "vltest.h"
#include "vltest_fs.h"

#include <stdarg.h>
#include <stdint.h>

/* A safetensors file from a hand-written header and data_len bytes of data (i & 0xff). */
static inline void write_raw(const char *path, const char *header, size_t data_len) {
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + data_len;
    unsigned char *b = malloc(total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)i;
    vt_write_bytes(path, b, total);
    free(b);
}

static inline unsigned char *read_all(const char *path, size_t *n) {
    char *buf = NULL;
    if (vl_read_file(path, (size_t)1 << 30, &buf, n) != 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, vl_error_get());
        exit(2);
    }
    return (unsigned char *)buf;
}

/* Opening `path` must fail, leave ck empty, and the message must contain each needle. */
#define EXPECT_OPEN_FAIL(path, ...) expect_open_fail(__LINE__, path, __VA_ARGS__, (char *)NULL)
static inline void expect_open_fail(int line, const char *path, ...) {
    vl_checkpoint ck;
    vl_error_clear();
    int rc = vl_checkpoint_open(&ck, path);
    const char *msg = vl_error_get();
    VT_CHECKF(rc != 0, "line %d: %s opened but should not", line, path);
    VT_CHECKF(ck.tensors == NULL && ck.files == NULL && ck.n_tensors == 0 && ck.n_files == 0,
              "line %d: checkpoint not emptied after failure", line);
    va_list ap;
    va_start(ap, path);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        VT_CHECKF(strstr(msg, needle) != NULL, "line %d: error \"%s\" lacks \"%s\"", line, msg,
                  needle);
    va_end(ap);
    if (rc == 0) vl_checkpoint_close(&ck);
}

/* Everything a successfully opened checkpoint promises. */
static inline void check_invariants(const vl_checkpoint *ck) {
    for (int i = 0; i < ck->n_tensors; i++) {
        const vl_tensor *t = &ck->tensors[i];
        VT_CHECK(t->file >= 0 && t->file < ck->n_files);
        if (t->file < 0 || t->file >= ck->n_files) continue;
        const vl_mapped_file *f = &ck->files[t->file];
        const unsigned char *p = t->data, *m = f->map;
        VT_CHECK(p >= m + 8 && p + t->nbytes <= m + f->size);
        VT_CHECK(t->nbytes == (size_t)t->numel * vl_dtype_size(t->dtype));
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
        VT_CHECK(n == t->numel);
        if (i > 0) VT_CHECK(strcmp(ck->tensors[i - 1].name, t->name) < 0);
    }
    /* each file's tensors fill its data area exactly (they tile it) */
    for (int fi = 0; fi < ck->n_files; fi++) {
        const unsigned char *m = ck->files[fi].map;
        uint64_t hlen = 0, sum = 0;
        for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | m[k];
        for (int i = 0; i < ck->n_tensors; i++)
            if (ck->tensors[i].file == fi) sum += ck->tensors[i].nbytes;
        VT_CHECKF(sum == ck->files[fi].size - 8 - hlen, "%s: tensors hold %llu of %llu bytes",
                  ck->files[fi].path, (unsigned long long)sum,
                  (unsigned long long)(ck->files[fi].size - 8 - hlen));
    }
}

#endif
