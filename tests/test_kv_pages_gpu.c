/* test_kv_pages_gpu.c: the CUDA backend's paged KV cache (kernels.h, vl_kv_pages) against its
 * CPU twin. Pools of shuffled blocks (block_tokens 4, 16 and 32; block-major and head-major
 * layouts; lengths that are not multiples of the block size), bf16 and int8.
 *   - kv_gather: one sequence into a contiguous buffer = the CPU twin's, bit for bit (bf16
 *     copied; int8 as bf16(code * scale), kv_dequant's rounding); the gaps between the
 *     destination's heads stay untouched.
 * Without a device it reports one skip (exit 77). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#ifdef VL_HAVE_CUDA
#include "kernels/cuda_internal.h"

static vl_backend *gpu;

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

/* ---- kv_gather ------------------------------------------------------------------------------- */

static void check_gather(int bt, int head_major, int int8, int G, int D, int64_t n_tok) {
    char what[128];
    snprintf(what, sizeof what, "kv_gather %s bt=%d %s G=%d D=%d n_tok=%lld",
             int8 ? "int8" : "bf16", bt, head_major ? "head-major" : "block-major", G, D,
             (long long)n_tok);
    vt_rng_state = 500 + (uint64_t)(bt * 7 + D + int8);
    const int64_t blocks = (n_tok + bt - 1) / bt, len[1] = {n_tok};
    pool_layout l = layout(bt, G, D, blocks + 3, head_major);
    int32_t *tbl = shuffled_tables(len, 1, bt, blocks, l.n_blocks);
    /* the pool as the GPU holds it (bf16 bits or codes) and as the CPU twin reads it */
    float *pf = malloc((size_t)l.elems * sizeof(float));
    uint16_t *pb = malloc((size_t)l.elems * 2);
    int8_t *pq = malloc((size_t)l.elems);
    const int64_t n_scales = l.elems / D;
    float *sc = malloc((size_t)n_scales * sizeof(float));
    for (int64_t e = 0; e < l.elems; e++) {
        pb[e] = vl_f32_to_bf16((float)vt_rng_normal());
        pq[e] = (int8_t)((int)(vt_rng_next() % 255) - 127);
        pf[e] = int8 ? (float)pq[e] : vl_bf16_to_f32(pb[e]);
    }
    for (int64_t i = 0; i < n_scales; i++) sc[i] = (float)(vt_rng_uniform() * 0.05);
    const int64_t dst_hs = n_tok * D + 8, n_dst = G * dst_hs; /* gaps between heads */
    float *ref = malloc((size_t)n_dst * sizeof(float));
    for (int64_t e = 0; e < n_dst; e++) ref[e] = NAN;
    vl_backend *cpu = vl_backend_cpu();
    vl_kv_pages pg = l.pages;
    pg.table = tbl;
    pg.table_stride = blocks;
    cpu->kv_gather(cpu, ref, dst_hs, int8 ? (const void *)pq : (const void *)pf, int8 ? sc : NULL,
                   &pg, l.head_stride, l.scale_head_stride, G, n_tok, D);

    uint16_t *poison = malloc((size_t)n_dst * 2), *got = malloc((size_t)n_dst * 2);
    for (int64_t e = 0; e < n_dst; e++) poison[e] = 0x7fc0u;
    void *dpool = int8 ? dev_copy(pq, (size_t)l.elems) : dev_copy(pb, (size_t)l.elems * 2);
    float *dsc = int8 ? dev_copy(sc, (size_t)n_scales * 4) : NULL;
    int32_t *dtbl = dev_copy(tbl, (size_t)blocks * 4);
    void *ddst = dev_copy(poison, (size_t)n_dst * 2);
    pg.table = dtbl;
    gpu->kv_gather(gpu, ddst, dst_hs, dpool, dsc, &pg, l.head_stride, l.scale_head_stride, G, n_tok,
                   D);
    gpu->download(gpu, got, ddst, (size_t)n_dst * 2);
    int64_t bad = 0;
    for (int64_t e = 0; e < n_dst; e++) {
        const int gap = e % dst_hs >= n_tok * D;
        bad += gap ? got[e] != 0x7fc0u : got[e] != vl_f32_to_bf16(ref[e]);
    }
    printf("  %-60s %lld differ\n", what, (long long)bad);
    VT_CHECKF(bad == 0, "%s: %lld elements differ from the CPU twin", what, (long long)bad);
    gpu->mem_free(gpu, dpool), gpu->mem_free(gpu, dtbl), gpu->mem_free(gpu, ddst);
    if (dsc) gpu->mem_free(gpu, dsc);
    free(tbl), free(pf), free(pb), free(pq), free(sc), free(ref), free(poison), free(got);
}

int main(void) {
    gpu = vt_gpu_or_skip();
    if (!gpu) return vt_finish();
    VT_CHECK(gpu->caps->paged_kv);
    printf("kv_gather\n");
    for (int int8 = 0; int8 < 2; int8++) {
        check_gather(16, 0, int8, 4, 128, 1000); /* Qwen2-VL-7B's kv heads */
        check_gather(32, 1, int8, 4, 128, 77);
        check_gather(4, 0, int8, 1, 32, 13);  /* tiny-a */
        check_gather(4, 1, int8, 3, 24, 30);  /* tiny-b: rows of 48 bytes */
        check_gather(16, 0, int8, 2, 20, 41); /* not a multiple of 8: the scalar path */
    }
    return vt_finish();
}

#else
int main(void) {
    VT_SKIP("built without CUDA");
    return vt_finish();
}
#endif
