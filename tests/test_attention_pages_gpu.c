/* test_attention_pages_gpu.c: the CUDA decode attention over a paged KV cache (kernels.h,
 * vl_kv_pages, pages and batch of vl_attn_params), bf16 and int8, against the CPU twin and the
 * contiguous cache. NB sequences of different lengths (1 .. 3000 keys, so from one split to
 * many) in a pool of shuffled blocks (vltest_pages.h):
 *   - one batched call (query i: sequence i at n_past_dev[i], table row i) = a paged
 *     single-sequence call per sequence = the call over that sequence's contiguous cache, bit
 *     for bit (a sequence is split as a single call of its length would be, whatever the batch);
 *   - the batched call on a backend with attn_decode_tail=0 (every plan combined by the second
 *     kernel) = the default one (plans of a few splits combined by the first kernel's last CTA),
 *     bit for bit;
 *   - the batched call against the CPU twin within test_attention_gpu's tolerance per output row
 *     (2^-7 of its largest |value| + 1e-3);
 *   - every row no sequence owns and every row past a contiguous cache's length holds NaN (bf16)
 *     or code 127 with a NaN scale (int8): a kernel reading one, or another sequence's block,
 *     poisons its output.
 * Without a device it reports one skip (exit 77). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#ifdef VL_HAVE_CUDA
#include "kernels/cuda_internal.h"
#include "vltest_pages.h" /* gpu, dev_copy */

/* ---- decode attention through pages, batched --------------------------------------------------
 */

#define NB 4 /* sequences of a batched decode */

/* Host pool and caches of NB sequences: row t < len of each sequence random (k with a biased
 * channel, as Qwen2), every other row poison: NaN (bf16) or code 127 with a NaN scale. */
typedef struct {
    pool_layout l;
    int int8;
    int64_t len[NB], max_blocks, cap;
    int32_t *tbl;
    uint16_t *pb[2]; /* bf16 pool, k and v */
    float *pf[2];    /* the same as floats (the CPU twin's pool) */
    int8_t *pq[2];   /* int8 pool */
    float *ps[2];    /* its scales */
} host_pool;

static void fill_row(host_pool *h, int kv, int64_t at, int64_t sat, int D, int live) {
    float row[128];
    for (int d = 0; d < D; d++)
        row[d] = live ? (float)vt_rng_normal() + (kv == 0 && d == 3 ? 6.0f : 0.0f) : NAN;
    if (h->int8) {
        if (live)
            h->ps[kv][sat] = vl_kv_quantize_row(row, D, h->pq[kv] + at);
        else
            memset(h->pq[kv] + at, 127, (size_t)D), h->ps[kv][sat] = NAN;
        return;
    }
    for (int d = 0; d < D; d++) {
        h->pb[kv][at + d] = live ? vl_f32_to_bf16(row[d]) : 0x7fc0u;
        h->pf[kv][at + d] = vl_bf16_to_f32(h->pb[kv][at + d]);
    }
}

static host_pool make_host_pool(int bt, int head_major, int int8, int G, int D,
                                const int64_t len[NB]) {
    host_pool h = {.int8 = int8};
    int64_t blocks = 0;
    for (int s = 0; s < NB; s++) {
        h.len[s] = len[s];
        const int64_t b = (len[s] + bt - 1) / bt;
        blocks += b;
        h.max_blocks = b > h.max_blocks ? b : h.max_blocks;
        h.cap = len[s] > h.cap ? len[s] : h.cap;
    }
    h.l = layout(bt, G, D, blocks + 2, head_major);
    h.tbl = shuffled_tables(len, NB, bt, h.max_blocks, h.l.n_blocks);
    for (int kv = 0; kv < 2; kv++) {
        h.pb[kv] = malloc((size_t)h.l.elems * 2);
        h.pf[kv] = malloc((size_t)h.l.elems * sizeof(float));
        h.pq[kv] = malloc((size_t)h.l.elems);
        h.ps[kv] = malloc((size_t)(h.l.elems / D) * sizeof(float));
    }
    uint8_t *live = calloc((size_t)(h.l.elems / D), 1);
    for (int s = 0; s < NB; s++)
        for (int64_t t = 0; t < len[s]; t++)
            for (int g = 0; g < G; g++) {
                const int64_t blk = h.tbl[s * h.max_blocks + t / bt];
                live[(blk * h.l.pages.block_stride + g * h.l.head_stride + t % bt * D) / D] = 1;
            }
    for (int64_t r = 0; r < h.l.elems / D; r++) {
        /* row r's scale: the same block, head and row in the scale layout */
        const int64_t at = r * D, blk = head_major ? (r % (h.l.n_blocks * bt)) / bt : r / (G * bt);
        const int g = (int)(head_major ? r / (h.l.n_blocks * bt) : (r / bt) % G);
        const int64_t sat = blk * h.l.pages.scale_block_stride + g * h.l.scale_head_stride + r % bt;
        for (int kv = 0; kv < 2; kv++) fill_row(&h, kv, at, sat, D, live[r]);
    }
    free(live);
    return h;
}

/* Sequence s's rows as a contiguous cache [G, cap + 37, D] (poison past len), uploaded. */
static void *contiguous_copy(const host_pool *h, int s, int kv, int G, int D, int64_t cap,
                             float **dev_scale) {
    const size_t esz = h->int8 ? 1 : 2;
    unsigned char *c = malloc((size_t)(G * cap * D) * esz);
    float *sc = malloc((size_t)(G * cap) * sizeof(float));
    for (int64_t e = 0; e < G * cap * D; e++)
        h->int8 ? (void)(c[e] = 127) : (void)(((uint16_t *)c)[e] = 0x7fc0u);
    for (int64_t i = 0; i < G * cap; i++) sc[i] = NAN;
    for (int g = 0; g < G; g++)
        for (int64_t t = 0; t < h->len[s]; t++) {
            const int64_t blk = h->tbl[s * h->max_blocks + t / h->l.bt], r = t % h->l.bt;
            const int64_t at = blk * h->l.pages.block_stride + g * h->l.head_stride + r * D;
            const void *from =
                h->int8 ? (const void *)(h->pq[kv] + at) : (const void *)(h->pb[kv] + at);
            memcpy(c + (g * cap + t) * D * esz, from, (size_t)D * esz);
            sc[g * cap + t] =
                h->ps[kv][blk * h->l.pages.scale_block_stride + g * h->l.scale_head_stride + r];
        }
    void *d = dev_copy(c, (size_t)(G * cap * D) * esz);
    *dev_scale = h->int8 ? dev_copy(sc, (size_t)(G * cap) * 4) : NULL;
    free(c), free(sc);
    return d;
}

static void free_host_pool(host_pool *h) {
    for (int kv = 0; kv < 2; kv++)
        free(h->pb[kv]), free(h->pf[kv]), free(h->pq[kv]), free(h->ps[kv]);
    free(h->tbl);
}

/* o (bf16, H * D per sequence) against the CPU twin's ref, per output row */
static int64_t out_of_tolerance(const uint16_t *o, const float *ref, int64_t rows, int D,
                                double *worst) {
    int64_t bad = 0;
    for (int64_t h = 0; h < rows; h++) {
        double mx = 0;
        for (int d = 0; d < D; d++) mx = fmax(mx, fabs(ref[h * D + d]));
        const double tol = ldexp(mx, -7) + 1e-3;
        for (int d = 0; d < D; d++) {
            const double err = fabs(vl_bf16_to_f32(o[h * D + d]) - ref[h * D + d]);
            bad += !(err <= tol);
            *worst = fmax(*worst, err / tol);
        }
    }
    return bad;
}

static vl_backend *gpu_notail; /* a second backend on the device: attn_decode_tail=0 */

/* The call on backend be (the device buffers are shared: one device, one process). */
static uint16_t *run_gpu_on(vl_backend *be, vl_attn_params p, void *ws, size_t ws_bytes,
                            int64_t n_out) {
    uint16_t *poison = malloc((size_t)n_out * 2);
    for (int64_t e = 0; e < n_out; e++) poison[e] = 0x7fc0u;
    p.o = dev_copy(poison, (size_t)n_out * 2);
    VT_CHECKF(vl_cuda_attention_supported(&p), "paged attention call not supported");
    vl_cuda_attention(be, &p, ws, ws_bytes, 0);
    VT_CHECKF(cudaDeviceSynchronize() == cudaSuccess, "paged attention kernel failed");
    gpu->download(gpu, poison, p.o, (size_t)n_out * 2);
    gpu->mem_free(gpu, p.o);
    return poison;
}

static uint16_t *run_gpu(vl_attn_params p, void *ws, size_t ws_bytes, int64_t n_out) {
    return run_gpu_on(gpu, p, ws, ws_bytes, n_out);
}

static void check_decode_batch(int bt, int head_major, int int8, int H, int G, int D,
                               const int64_t len[NB]) {
    char what[160];
    snprintf(what, sizeof what, "%s bt=%d %s %d/%d D=%d lengths %lld %lld %lld %lld",
             int8 ? "int8" : "bf16", bt, head_major ? "head-major" : "block-major", H, G, D,
             (long long)len[0], (long long)len[1], (long long)len[2], (long long)len[3]);
    vt_rng_state = 77 + (uint64_t)(bt * 3 + D + int8 + len[0]);
    host_pool h = make_host_pool(bt, head_major, int8, G, D, len);
    /* bound: the launch's, past every length (the kernels must read n_past_dev), within the
     * tables' reach (vl_cuda_attention_supported asks the tables to cover it) */
    const int64_t HD = (int64_t)H * D, bound = h.max_blocks * bt, cap = h.cap + 37;
    float *qf;
    uint16_t *qb = bf16_rows(NB * HD, 1.0, &qf);
    int32_t past[NB];
    for (int s = 0; s < NB; s++) past[s] = (int32_t)(len[s] - 1);
    vl_attn_params p = {0};
    p.q_stride = p.o_stride = HD;
    p.kv_tok_stride = D;
    p.kv_head_stride = h.l.head_stride;
    p.kv_scale_head_stride = h.l.scale_head_stride;
    p.n_q = NB, p.n_kv = bound;
    p.n_heads = H, p.n_kv_heads = G, p.head_dim = D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 1;
    p.pages = h.l.pages;
    p.pages.table_stride = h.max_blocks;
    p.batch = 1;
    /* the CPU twin over the host pool */
    vl_attn_params c = p;
    float *ref = malloc((size_t)(NB * HD) * sizeof(float));
    c.q = qf, c.o = ref, c.n_past_dev = past, c.pages.table = h.tbl;
    c.k = int8 ? (const void *)h.pq[0] : (const void *)h.pf[0];
    c.v = int8 ? (const void *)h.pq[1] : (const void *)h.pf[1];
    c.k_scale = int8 ? h.ps[0] : NULL, c.v_scale = int8 ? h.ps[1] : NULL;
    vl_backend *cpu = vl_backend_cpu();
    cpu->attention(cpu, &c);
    /* the GPU: one batched call */
    const size_t n_sc = (size_t)(h.l.elems / D) * 4;
    void *dk =
        int8 ? dev_copy(h.pq[0], (size_t)h.l.elems) : dev_copy(h.pb[0], (size_t)h.l.elems * 2);
    void *dv =
        int8 ? dev_copy(h.pq[1], (size_t)h.l.elems) : dev_copy(h.pb[1], (size_t)h.l.elems * 2);
    float *dks = int8 ? dev_copy(h.ps[0], n_sc) : NULL,
          *dvs = int8 ? dev_copy(h.ps[1], n_sc) : NULL;
    int32_t *dtbl = dev_copy(h.tbl, (size_t)(NB * h.max_blocks) * 4),
            *dpast = dev_copy(past, sizeof past);
    uint16_t *dq = dev_copy(qb, (size_t)(NB * HD) * 2);
    p.q = dq, p.k = dk, p.v = dv, p.k_scale = dks, p.v_scale = dvs;
    p.pages.table = dtbl, p.n_past_dev = dpast;
    const size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
    void *ws = dev_copy(NULL, ws_bytes);
    uint16_t *ob = run_gpu(p, ws, ws_bytes, NB * HD);
    uint16_t *ob_notail = run_gpu_on(gpu_notail, p, ws, ws_bytes, NB * HD);
    const int differ_tail = memcmp(ob, ob_notail, (size_t)(NB * HD) * 2) != 0;
    double worst = 0;
    const int64_t bad = out_of_tolerance(ob, ref, NB * H, D, &worst);
    int64_t differ_paged = 0, differ_flat = 0;
    for (int s = 0; s < NB; s++) {
        vl_attn_params one = p; /* sequence s alone, through its table row */
        one.q = dq + s * HD, one.n_q = 1, one.batch = 0;
        one.pages.table = dtbl + s * h.max_blocks, one.n_past_dev = dpast + s;
        uint16_t *o1 = run_gpu(one, ws, ws_bytes, HD);
        vl_attn_params flat = one; /* and over its contiguous cache, explicit length */
        flat.pages = (vl_kv_pages){0};
        flat.n_past_dev = NULL, flat.n_kv = len[s], flat.q_pos0 = len[s] - 1;
        flat.kv_head_stride = cap * D, flat.kv_scale_head_stride = cap;
        float *fks, *fvs;
        flat.k = contiguous_copy(&h, s, 0, G, D, cap, &fks);
        flat.v = contiguous_copy(&h, s, 1, G, D, cap, &fvs);
        flat.k_scale = fks, flat.v_scale = fvs;
        uint16_t *o2 = run_gpu(flat, ws, ws_bytes, HD);
        differ_paged += memcmp(o1, ob + s * HD, (size_t)HD * 2) != 0;
        differ_flat += memcmp(o1, o2, (size_t)HD * 2) != 0;
        gpu->mem_free(gpu, (void *)flat.k), gpu->mem_free(gpu, (void *)flat.v);
        if (fks) gpu->mem_free(gpu, fks), gpu->mem_free(gpu, fvs);
        free(o1), free(o2);
    }
    printf("  %-60s err/tol %.3f; batch vs single %lld, paged vs contiguous %lld, tail %d differ\n",
           what, worst, (long long)differ_paged, (long long)differ_flat, differ_tail);
    VT_CHECKF(bad == 0, "%s: %lld outputs out of tolerance (worst %.2f)", what, (long long)bad,
              worst);
    VT_CHECKF(differ_paged == 0, "%s: %lld sequences differ between batch and single calls", what,
              (long long)differ_paged);
    VT_CHECKF(differ_flat == 0, "%s: %lld sequences differ between pages and a contiguous cache",
              what, (long long)differ_flat);
    VT_CHECKF(!differ_tail, "%s: the batch differs with attn_decode_tail=0", what);
    void *bufs[] = {dk, dv, dks, dvs, dtbl, dpast, dq, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) gpu->mem_free(gpu, bufs[i]);
    free(qb), free(qf), free(ref), free(ob), free(ob_notail);
    free_host_pool(&h);
}

int main(void) {
    gpu = vt_gpu_or_skip();
    if (!gpu) return vt_finish();
    VT_CHECK(gpu->caps->paged_kv);
    vl_cuda_config notail;
    vl_cuda_config_init(&notail);
    notail.attn_decode_tail = 0;
    char why[256] = "";
    gpu_notail = vl_backend_cuda(&notail, why, sizeof why);
    VT_CHECKF(gpu_notail != NULL, "a second CUDA backend: %s", why);
    if (!gpu_notail) return vt_finish();
    printf("decode attention through pages, batched\n");
    for (int int8 = 0; int8 < 2; int8++) {
        check_decode_batch(16, 0, int8, 28, 4, 128, (const int64_t[]){3000, 1, 77, 1364});
        check_decode_batch(32, 1, int8, 28, 4, 128, (const int64_t[]){700, 65, 2, 129});
        check_decode_batch(4, 1, int8, 3, 1, 32, (const int64_t[]){13, 300, 1, 64});  /* tiny-a */
        check_decode_batch(16, 0, int8, 3, 3, 24, (const int64_t[]){31, 5, 450, 17}); /* tiny-b */
        check_decode_batch(8, 0, int8, 6, 2, 20,
                           (const int64_t[]){90, 7, 33, 1}); /* element path */
    }
    vl_backend_free(gpu_notail);
    return vt_finish();
}

#else
int main(void) {
    VT_SKIP("built without CUDA");
    return vt_finish();
}
#endif
