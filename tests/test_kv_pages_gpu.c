/* test_kv_pages_gpu.c: the CUDA backend's paged KV cache (kernels.h, vl_kv_pages) against its
 * CPU twin and its contiguous ops. Pools of shuffled blocks (block_tokens 4, 16 and 32;
 * block-major and head-major layouts, vltest_pages.h; lengths that are not multiples of the
 * block size), bf16 and int8.
 *   - kv_gather: one sequence into a contiguous buffer = the CPU twin's, bit for bit (bf16
 *     copied; int8 as bf16(code * scale): the fp32 product rounded once); the gaps between the
 *     destination's heads stay untouched;
 *   - rope_kv_append through the pages (a prefill chunk per sequence through its table row, then
 *     one batched step of all sequences at their own positions) = the contiguous op into one
 *     cache per sequence: q and k rotated to the same bits, the pool rows (bf16, or codes and
 *     scales) equal to the cache rows bit for bit, rows no sequence owns untouched.
 * The paged decode attention: test_attention_pages_gpu.c. Without a device it reports one skip
 * (exit 77). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#ifdef VL_HAVE_CUDA
#include "kernels/cuda_internal.h"
#include "vltest_pages.h" /* gpu, dev_copy */

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

/* ---- rope_kv_append through pages ------------------------------------------------------------ */

#define NSEQ 3

typedef struct {
    int H, G, D, int8;
    int64_t row, cap; /* activation row (q, k, v, padding), contiguous cache rows */
} append_shape;

/* One rope_kv_append of s rows of act (device) with positions pos (device), into the pool
 * (pages set) or a contiguous cache. */
static void append(const append_shape *a, uint16_t *act, int64_t s, const int32_t *pos, void *kc,
                   void *vc, float *ks, float *vs, int64_t head_stride, int64_t scale_head_stride,
                   const vl_kv_pages *pages, int64_t pos0, const int32_t *pos0_dev, int batch) {
    vl_rope_kv_params r = {0};
    r.q = act;
    r.k = act + (int64_t)a->H * a->D;
    r.v = act + (int64_t)(a->H + a->G) * a->D;
    r.q_stride = r.kv_stride = a->row;
    r.s = s;
    r.n_heads = a->H;
    r.n_kv_heads = a->G;
    r.head_dim = a->D;
    r.pos = pos;
    r.sections[0] = a->D / 8, r.sections[1] = 3 * a->D / 16, r.sections[2] = 3 * a->D / 16;
    r.theta = 1000000.0f;
    r.k_cache = kc, r.v_cache = vc;
    r.head_stride = head_stride;
    r.pos0 = pos0;
    r.pos0_dev = pos0_dev;
    if (a->int8) r.k_scale = ks, r.v_scale = vs, r.scale_head_stride = scale_head_stride;
    if (pages) r.pages = *pages;
    r.batch = batch;
    gpu->rope_kv_append(gpu, &r);
}

/* the device buffers of one side of the comparison: caches (and scales), activations */
typedef struct {
    void *k, *v;
    float *ks, *vs;
    int64_t elems;
} dev_cache;

static dev_cache cache_filled(int64_t elems, int int8) {
    dev_cache c = {.elems = elems};
    const size_t esz = int8 ? 1 : 2;
    unsigned char *fill = malloc((size_t)elems * esz);
    memset(fill, 0x55, (size_t)elems * esz);
    c.k = dev_copy(fill, (size_t)elems * esz);
    c.v = dev_copy(fill, (size_t)elems * esz);
    free(fill);
    if (int8) {
        const int64_t n = elems; /* more than enough scales: elems / D are used */
        float *f = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) f[i] = -3.0f;
        c.ks = dev_copy(f, (size_t)n * 4);
        c.vs = dev_copy(f, (size_t)n * 4);
        free(f);
    }
    return c;
}

static void *download(const void *d, size_t bytes) {
    void *h = malloc(bytes ? bytes : 1);
    gpu->download(gpu, h, d, bytes);
    return h;
}

static void cache_free(dev_cache *c) {
    gpu->mem_free(gpu, c->k), gpu->mem_free(gpu, c->v);
    if (c->ks) gpu->mem_free(gpu, c->ks), gpu->mem_free(gpu, c->vs);
}

/* Pool row t of head g of sequence s (host table) against row t of its contiguous cache: bytes
 * of k and v equal (and scales); marks the pool row as owned. */
static int64_t compare_row(const append_shape *a, const pool_layout *l, const int32_t *tbl,
                           const unsigned char *hp[2], const float *hps[2],
                           const unsigned char *hc[2], const float *hcs[2], int g, int64_t t,
                           uint8_t *owned) {
    const size_t esz = a->int8 ? 1 : 2;
    const int64_t blk = tbl[t / l->bt], r = t % l->bt;
    const int64_t at = blk * l->pages.block_stride + g * l->head_stride + r * a->D;
    const int64_t sat = blk * l->pages.scale_block_stride + g * l->scale_head_stride + r;
    const int64_t ct = (g * a->cap + t) * a->D;
    int64_t bad = 0;
    for (int kv = 0; kv < 2; kv++) {
        bad += memcmp(hp[kv] + at * esz, hc[kv] + ct * esz, (size_t)a->D * esz) != 0;
        if (a->int8) bad += hps[kv][sat] != hcs[kv][g * a->cap + t];
    }
    owned[at / a->D] = 1;
    return bad;
}

static void check_append(int bt, int head_major, int int8, int H, int G, int D,
                         const int64_t len[NSEQ]) {
    char what[160];
    snprintf(what, sizeof what,
             "rope_kv_append %s bt=%d %s %d/%d heads D=%d lengths %lld %lld %lld",
             int8 ? "int8" : "bf16", bt, head_major ? "head-major" : "block-major", H, G, D,
             (long long)len[0], (long long)len[1], (long long)len[2]);
    vt_rng_state = 900 + (uint64_t)(bt + D + int8);
    append_shape a = {.H = H, .G = G, .D = D, .int8 = int8, .row = (int64_t)(H + 2 * G) * D + 8};
    int64_t max_blocks = 0, blocks = 0;
    for (int s = 0; s < NSEQ; s++) {
        const int64_t b = (len[s] + bt - 1) / bt;
        blocks += b;
        max_blocks = b > max_blocks ? b : max_blocks;
        a.cap = len[s] > a.cap ? len[s] : a.cap;
    }
    pool_layout l = layout(bt, G, D, blocks + 2, head_major);
    int32_t *tbl = shuffled_tables(len, NSEQ, bt, max_blocks, l.n_blocks);
    int32_t *dtbl = dev_copy(tbl, (size_t)(NSEQ * max_blocks) * 4);
    l.pages.table = dtbl;
    l.pages.table_stride = max_blocks;
    dev_cache pool = cache_filled(l.elems, int8), flat[NSEQ];
    int64_t diff = 0;
    for (int s = 0; s < NSEQ; s++) { /* the prefill chunk: rows 0 .. len - 2 */
        flat[s] = cache_filled(G * a.cap * D, int8);
        const int64_t n = len[s] - 1, n_act = (n > 0 ? n : 1) * a.row;
        uint16_t *act = bf16_rows(n_act, 3.0, NULL);
        int32_t *pos = malloc((size_t)(3 * n + 1) * sizeof(int32_t));
        for (int64_t i = 0; i < 3 * n; i++) pos[i] = (int32_t)(i % n + 11 * (i / n) + 2);
        uint16_t *d1 = dev_copy(act, (size_t)n_act * 2), *d2 = dev_copy(act, (size_t)n_act * 2);
        int32_t *dpos = dev_copy(pos, (size_t)(3 * n + 1) * 4);
        vl_kv_pages one = l.pages;
        one.table = dtbl + s * max_blocks;
        append(&a, d1, n, dpos, pool.k, pool.v, pool.ks, pool.vs, l.head_stride,
               l.scale_head_stride, &one, 0, NULL, 0);
        append(&a, d2, n, dpos, flat[s].k, flat[s].v, flat[s].ks, flat[s].vs, a.cap * D, a.cap,
               NULL, 0, NULL, 0);
        uint16_t *h1 = download(d1, (size_t)n_act * 2), *h2 = download(d2, (size_t)n_act * 2);
        diff += memcmp(h1, h2, (size_t)n_act * 2) != 0;
        gpu->mem_free(gpu, d1), gpu->mem_free(gpu, d2), gpu->mem_free(gpu, dpos);
        free(act), free(pos), free(h1), free(h2);
    }
    /* the batched step: row s is sequence s's token len - 1 */
    uint16_t *act = bf16_rows(NSEQ * a.row, 3.0, NULL);
    int32_t at[NSEQ], pos[3 * NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        at[s] = (int32_t)(len[s] - 1);
        for (int ax = 0; ax < 3; ax++) pos[ax * NSEQ + s] = at[s] + 11 * ax + 2;
    }
    uint16_t *d1 = dev_copy(act, (size_t)(NSEQ * a.row) * 2);
    int32_t *dat = dev_copy(at, sizeof at), *dpos = dev_copy(pos, sizeof pos);
    append(&a, d1, NSEQ, dpos, pool.k, pool.v, pool.ks, pool.vs, l.head_stride, l.scale_head_stride,
           &l.pages, 0, dat, 1);
    uint16_t *h1 = download(d1, (size_t)(NSEQ * a.row) * 2);
    for (int s = 0; s < NSEQ; s++) {
        int32_t one_pos[3] = {pos[s], pos[NSEQ + s], pos[2 * NSEQ + s]};
        uint16_t *d2 = dev_copy(act + s * a.row, (size_t)a.row * 2);
        int32_t *dp = dev_copy(one_pos, sizeof one_pos);
        append(&a, d2, 1, dp, flat[s].k, flat[s].v, flat[s].ks, flat[s].vs, a.cap * D, a.cap, NULL,
               at[s], NULL, 0);
        uint16_t *h2 = download(d2, (size_t)a.row * 2);
        diff += memcmp(h1 + s * a.row, h2, (size_t)a.row * 2) != 0;
        gpu->mem_free(gpu, d2), gpu->mem_free(gpu, dp);
        free(h2);
    }
    /* the pool against the caches, and the rows no sequence owns */
    const size_t esz = int8 ? 1 : 2;
    const unsigned char *hp[2] = {download(pool.k, (size_t)l.elems * esz),
                                  download(pool.v, (size_t)l.elems * esz)};
    const float *hps[2] = {int8 ? download(pool.ks, (size_t)l.elems * 4) : NULL,
                           int8 ? download(pool.vs, (size_t)l.elems * 4) : NULL};
    uint8_t *owned = calloc((size_t)(l.elems / D), 1);
    int64_t bad = 0, outside = 0;
    for (int s = 0; s < NSEQ; s++) {
        const int64_t ce = G * a.cap * D;
        const unsigned char *hc[2] = {download(flat[s].k, (size_t)ce * esz),
                                      download(flat[s].v, (size_t)ce * esz)};
        const float *hcs[2] = {int8 ? download(flat[s].ks, (size_t)ce * 4) : NULL,
                               int8 ? download(flat[s].vs, (size_t)ce * 4) : NULL};
        for (int g = 0; g < G; g++)
            for (int64_t t = 0; t < len[s]; t++)
                bad += compare_row(&a, &l, tbl + s * max_blocks, hp, hps, hc, hcs, g, t, owned);
        free((void *)hc[0]), free((void *)hc[1]), free((void *)hcs[0]), free((void *)hcs[1]);
    }
    for (int64_t r = 0; r < l.elems / D; r++)
        for (int64_t e = r * D * (int64_t)esz; !owned[r] && e < (r + 1) * D * (int64_t)esz; e++)
            outside += hp[0][e] != 0x55 || hp[1][e] != 0x55;
    printf("  %-60s %lld rows differ, %lld outside writes\n", what, (long long)bad,
           (long long)outside);
    VT_CHECKF(diff == 0, "%s: %lld calls rotated q/k differently", what, (long long)diff);
    VT_CHECKF(bad == 0 && outside == 0, "%s: %lld rows differ, %lld outside writes", what,
              (long long)bad, (long long)outside);
    cache_free(&pool);
    for (int s = 0; s < NSEQ; s++) cache_free(&flat[s]);
    gpu->mem_free(gpu, dtbl), gpu->mem_free(gpu, d1), gpu->mem_free(gpu, dat);
    gpu->mem_free(gpu, dpos);
    free(tbl), free(act), free(h1), free((void *)hp[0]), free((void *)hp[1]);
    free((void *)hps[0]), free((void *)hps[1]), free(owned);
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
    printf("rope_kv_append through pages\n");
    const int64_t lens_a[NSEQ] = {13, 1, 30}, lens_b[NSEQ] = {77, 40, 129};
    for (int int8 = 0; int8 < 2; int8++) {
        check_append(4, 0, int8, 3, 1, 32, lens_a);    /* tiny-a */
        check_append(16, 1, int8, 3, 3, 24, lens_a);   /* tiny-b */
        check_append(16, 0, int8, 28, 4, 128, lens_b); /* Qwen2-VL-7B */
    }
    return vt_finish();
}

#else
int main(void) {
    VT_SKIP("built without CUDA");
    return vt_finish();
}
#endif
