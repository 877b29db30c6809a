/* vltest_pages.h: what the paged KV cache's GPU tests share (test_kv_pages_gpu.c,
 * test_attention_pages_gpu.c): their CUDA backend and device copies, a pool's layout (kernels.h,
 * vl_kv_pages) in two orders, block tables over a shuffled order of its blocks, and random bf16
 * rows. */
#ifndef VL_TEST_PAGES_H
#define VL_TEST_PAGES_H
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

static vl_backend *gpu; /* the test's CUDA backend (vt_gpu_or_skip) */

/* bytes of host (NULL: uninitialized) in new device memory */
static void *dev_copy(const void *host, size_t bytes) {
    void *d = vt_dev_alloc(gpu, bytes ? bytes : 16);
    if (host && bytes) gpu->upload(gpu, d, host, bytes);
    return d;
}

/* A pool of n_blocks blocks of bt rows for G kv heads of D, and its layout (kernels.h). */
typedef struct {
    int bt, G, D, head_major;
    int64_t n_blocks, head_stride, scale_head_stride, elems;
    vl_kv_pages pages; /* table: host memory here; callers point it at a device copy */
} pool_layout;

static pool_layout layout(int bt, int G, int D, int64_t n_blocks, int head_major) {
    pool_layout l = {.bt = bt, .G = G, .D = D, .head_major = head_major, .n_blocks = n_blocks};
    l.elems = n_blocks * G * bt * D;
    l.pages.block_tokens = bt;
    if (head_major) { /* [G, n_blocks, bt, D] */
        l.head_stride = n_blocks * bt * D;
        l.pages.block_stride = (int64_t)bt * D;
        l.scale_head_stride = n_blocks * bt;
        l.pages.scale_block_stride = bt;
    } else { /* [n_blocks, G, bt, D] */
        l.head_stride = (int64_t)bt * D;
        l.pages.block_stride = (int64_t)G * bt * D;
        l.scale_head_stride = bt;
        l.pages.scale_block_stride = (int64_t)G * bt;
    }
    return l;
}

/* n_seq tables of max_blocks entries: the blocks of sequences of lengths len[] in a shuffled
 * order of 0 .. n_blocks - 1 (unused entries -1). */
static int32_t *shuffled_tables(const int64_t *len, int n_seq, int bt, int64_t max_blocks,
                                int64_t n_blocks) {
    int32_t *perm = malloc((size_t)n_blocks * sizeof(int32_t));
    for (int64_t i = 0; i < n_blocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = n_blocks - 1; i > 0; i--) {
        const int64_t j = (int64_t)(vt_rng_next() % (uint64_t)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *tbl = malloc((size_t)(n_seq * max_blocks) * sizeof(int32_t));
    int64_t next = 0;
    for (int s = 0; s < n_seq; s++)
        for (int64_t b = 0; b < max_blocks; b++)
            tbl[s * max_blocks + b] = b * bt < len[s] ? perm[next++] : -1;
    free(perm);
    return tbl;
}

/* n bf16 values ~N(0, spread) as raw bits, and the same values as floats (as_float: optional) */
static uint16_t *bf16_rows(int64_t n, double spread, float **as_float) {
    uint16_t *b = malloc((size_t)n * 2);
    if (as_float) *as_float = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        b[i] = vl_f32_to_bf16((float)(vt_rng_normal() * spread));
        if (as_float) (*as_float)[i] = vl_bf16_to_f32(b[i]);
    }
    return b;
}

#endif
