/* fuzz_checkpoint_check.h: what an opened vl_checkpoint promises, checked by the safetensors and
 * sharded-index harnesses: names sorted and unique, sizes consistent with dtype and shape, every
 * tensor's bytes inside its file's mapping and after the header, find/get agreeing.
 * Leaves out: overlap between tensors (the loader's own check; re-deriving it here would copy
 * its code). */
#ifndef VL_FUZZ_CHECKPOINT_CHECK_H
#define VL_FUZZ_CHECKPOINT_CHECK_H

#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <string.h>

static inline void fuzz_check_tensor(const vl_checkpoint *ck, const vl_tensor *t) {
    FUZZ_CHECK(t->name != NULL, "tensor without a name");
    FUZZ_CHECK(t->file >= 0 && t->file < ck->n_files, "%s: file %d of %d", t->name, t->file,
               ck->n_files);
    FUZZ_CHECK(t->ndim >= 0 && t->ndim <= VL_MAX_DIMS, "%s: ndim %d", t->name, t->ndim);
    FUZZ_CHECK((int)t->dtype >= 0 && t->dtype < VL_DTYPE_COUNT, "%s: dtype %d", t->name,
               (int)t->dtype);
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        FUZZ_CHECK(t->shape[d] >= 0, "%s: shape[%d] = %lld", t->name, d, (long long)t->shape[d]);
        numel *= t->shape[d]; /* the loader has refused products over 64 bits */
    }
    FUZZ_CHECK(numel == t->numel, "%s: numel %lld, shape product %lld", t->name,
               (long long)t->numel, (long long)numel);
    FUZZ_CHECK((uint64_t)t->nbytes == (uint64_t)t->numel * vl_dtype_size(t->dtype),
               "%s: %zu bytes for %lld elements of %s", t->name, t->nbytes, (long long)t->numel,
               vl_dtype_name(t->dtype));
    const vl_mapped_file *f = &ck->files[t->file];
    const uint8_t *base = f->map, *p = t->data;
    FUZZ_CHECK(f->size >= 8 && p >= base + 8 && p <= base + f->size &&
                   t->nbytes <= (size_t)(base + f->size - p),
               "%s: bytes [%td, +%zu) outside %s (%zu bytes)", t->name, p - base, t->nbytes,
               f->path, f->size);
    unsigned sum = 0; /* touch every byte: a mapping too short would fault here */
    for (size_t i = 0; i < t->nbytes; i++) sum += p[i];
    (void)sum;
}

static inline void fuzz_check_checkpoint(const vl_checkpoint *ck) {
    FUZZ_CHECK(ck->n_files >= 1 && ck->n_tensors >= 0, "%d files, %d tensors", ck->n_files,
               ck->n_tensors);
    for (int i = 0; i < ck->n_tensors; i++) {
        const vl_tensor *t = &ck->tensors[i];
        fuzz_check_tensor(ck, t);
        if (i > 0)
            FUZZ_CHECK(strcmp(ck->tensors[i - 1].name, t->name) < 0, "names %s, %s not sorted",
                       ck->tensors[i - 1].name, t->name);
        FUZZ_CHECK(vl_checkpoint_find(ck, t->name) == t, "find(%s) misses it", t->name);
        FUZZ_CHECK(vl_checkpoint_get(ck, t->name) == t, "get(%s) misses it", t->name);
    }
}

#endif
