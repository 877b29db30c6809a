/* test_kv_cache_gpu.c: the CUDA backend's int8 KV cache (--kv int8) against its CPU twin.
 *
 *   - rope_kv_append with scales: q and k get exactly the bits of the bf16 op, and each appended
 *     k / v row is vl_kv_quantize_row of the bf16 row the bf16 op appends (codes and scales
 *     identical); cache slots outside the appended rows stay untouched;
 *   - kv_gather of a contiguous int8 cache (no block table) = bf16(code * scale) of the CPU
 *     twin, bit for bit, rows past n_tok untouched (the paged form: test_kv_pages_gpu.c);
 *   - decode attention over the int8 cache (the Q8 variant of the split-KV kernel) against the
 *     CPU attention over the same codes and scales, with test_attention_gpu's tolerance per output
 * row (2^-7 of its largest |value| + 1e-3); cache rows past the length hold code 127 and NaN
 *     scales, so reading one poisons the result; the runtime-length form (n_past_dev, bound)
 *     must give exactly the bits of the explicit call.
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

/* n bf16 values ~N(0, spread) as raw bits, and the same values as floats */
static uint16_t *bf16_rows(int64_t n, double spread, float **as_float) {
    uint16_t *b = malloc((size_t)n * 2);
    if (as_float) *as_float = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        b[i] = vl_f32_to_bf16((float)(vt_rng_normal() * spread));
        if (as_float) (*as_float)[i] = vl_bf16_to_f32(b[i]);
    }
    return b;
}

/* ---- rope_kv_append ------------------------------------------------------------------------ */

static void check_rope_append(int64_t s, int H, int G, int D, int64_t cap, int64_t pos0,
                              int pos_on_device) {
    char what[128];
    snprintf(what, sizeof what, "int8 rope_kv_append s=%lld heads %d/%d D=%d pos0=%lld%s",
             (long long)s, H, G, D, (long long)pos0, pos_on_device ? " (device)" : "");
    const int64_t row = (int64_t)(H + 2 * G) * D + 8, n_act = s * row, n_cache = G * cap * D;
    vt_rng_state = 101 + (uint64_t)(s * D);
    uint16_t *act = bf16_rows(n_act, 3.0, NULL);
    for (int64_t i = 0; i < s; i++) act[i * row + (int64_t)H * D + 5] = vl_f32_to_bf16(40.0f);
    int32_t *pos = malloc((size_t)(3 * s) * sizeof(int32_t)), p0 = (int32_t)pos0;
    for (int64_t i = 0; i < 3 * s; i++) pos[i] = (int32_t)(vt_rng_next() % 40000);
    uint16_t *d1 = dev_copy(act, (size_t)n_act * 2), *d2 = dev_copy(act, (size_t)n_act * 2);
    int8_t *fill8 = malloc((size_t)n_cache);
    memset(fill8, 0x55, (size_t)n_cache);
    float *fills = malloc((size_t)(G * cap) * sizeof(float));
    for (int64_t i = 0; i < G * cap; i++) fills[i] = -3.0f;
    int8_t *kq = dev_copy(fill8, (size_t)n_cache), *vq = dev_copy(fill8, (size_t)n_cache);
    float *ks = dev_copy(fills, (size_t)(G * cap) * 4),
          *vs = dev_copy(fills, (size_t)(G * cap) * 4);
    uint16_t *kc = dev_copy(NULL, (size_t)n_cache * 2), *vc = dev_copy(NULL, (size_t)n_cache * 2);
    int32_t *dp = dev_copy(pos, (size_t)(3 * s) * 4), *dp0 = dev_copy(&p0, 4);

    vl_rope_kv_params r = {0};
    r.q = d1;
    r.k = d1 + (int64_t)H * D;
    r.v = d1 + (int64_t)(H + G) * D;
    r.q_stride = r.kv_stride = row;
    r.s = s;
    r.n_heads = H;
    r.n_kv_heads = G;
    r.head_dim = D;
    r.pos = dp;
    r.sections[0] = D / 8, r.sections[1] = 3 * D / 16, r.sections[2] = 3 * D / 16;
    r.theta = 1000000.0f;
    r.k_cache = kc;
    r.v_cache = vc;
    r.head_stride = cap * D;
    r.pos0 = pos0;
    vl_rope_kv_params r8 = r;
    r8.q = d2;
    r8.k = d2 + (int64_t)H * D;
    r8.v = d2 + (int64_t)(H + G) * D;
    r8.k_cache = kq;
    r8.v_cache = vq;
    r8.k_scale = ks;
    r8.v_scale = vs;
    r8.scale_head_stride = cap;
    if (pos_on_device) r8.pos0 = 0, r8.pos0_dev = dp0;
    gpu->rope_kv_append(gpu, &r);
    gpu->rope_kv_append(gpu, &r8);

    uint16_t *a1 = malloc((size_t)n_act * 2), *a2 = malloc((size_t)n_act * 2);
    uint16_t *hk = malloc((size_t)n_cache * 2), *hv = malloc((size_t)n_cache * 2);
    int8_t *hkq = malloc((size_t)n_cache), *hvq = malloc((size_t)n_cache);
    float *hks = malloc((size_t)(G * cap) * 4), *hvs = malloc((size_t)(G * cap) * 4);
    gpu->download(gpu, a1, d1, (size_t)n_act * 2);
    gpu->download(gpu, a2, d2, (size_t)n_act * 2);
    gpu->download(gpu, hk, kc, (size_t)n_cache * 2);
    gpu->download(gpu, hv, vc, (size_t)n_cache * 2);
    gpu->download(gpu, hkq, kq, (size_t)n_cache);
    gpu->download(gpu, hvq, vq, (size_t)n_cache);
    gpu->download(gpu, hks, ks, (size_t)(G * cap) * 4);
    gpu->download(gpu, hvs, vs, (size_t)(G * cap) * 4);
    VT_CHECKF(memcmp(a1, a2, (size_t)n_act * 2) == 0, "%s: q/k rotation differs from the bf16 op",
              what);
    int64_t bad = 0, outside = 0, near = 0;
    float x[512];
    int8_t want[512];
    for (int g = 0; g < G; g++)
        for (int64_t t = 0; t < cap; t++) {
            const int64_t at = (g * cap + t) * D, sat = g * cap + t;
            if (t < pos0 || t >= pos0 + s) {
                for (int d = 0; d < D; d++) outside += hkq[at + d] != 0x55 || hvq[at + d] != 0x55;
                outside += hks[sat] != -3.0f || hvs[sat] != -3.0f;
                continue;
            }
            for (int kv = 0; kv < 2; kv++) {
                const uint16_t *src = kv ? hv : hk;
                for (int d = 0; d < D; d++) x[d] = vl_bf16_to_f32(src[at + d]);
                const float sc = vl_kv_quantize_row(x, D, want);
                const int8_t *got = kv ? hvq : hkq;
                bad += sc != (kv ? hvs : hks)[sat];
                for (int d = 0; d < D; d++) {
                    bad += got[at + d] != want[d];
                    near += abs(got[at + d] - want[d]) <= 1;
                }
            }
        }
    printf("  %-60s %lld rows, %lld codes or scales differ\n", what, (long long)(s * G * 2),
           (long long)bad);
    VT_CHECKF(bad == 0 && outside == 0, "%s: %lld differ (%lld within one), %lld outside writes",
              what, (long long)bad, (long long)near, (long long)outside);
    void *bufs[] = {d1, d2, kq, vq, ks, vs, kc, vc, dp, dp0};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) gpu->mem_free(gpu, bufs[i]);
    free(act), free(pos), free(fill8), free(fills), free(a1), free(a2), free(hk), free(hv);
    free(hkq), free(hvq), free(hks), free(hvs);
}

/* ---- kv_gather of a contiguous int8 cache ---------------------------------------------------- */

static void check_gather_contiguous(int G, int D, int64_t cap, int64_t n_tok) {
    const int64_t n = G * cap * D;
    int8_t *q = malloc((size_t)n);
    float *sc = malloc((size_t)(G * cap) * sizeof(float)), *ref = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)((int)(vt_rng_next() % 255) - 127);
    for (int64_t i = 0; i < G * cap; i++) sc[i] = (float)(vt_rng_uniform() * 0.3);
    vl_backend *cpu = vl_backend_cpu();
    for (int64_t i = 0; i < n; i++) ref[i] = NAN;
    cpu->kv_gather(cpu, ref, cap * D, q, sc, NULL, cap * D, cap, G, n_tok, D);
    uint16_t *poison = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) poison[i] = 0x7fc0u;
    void *dq = dev_copy(q, (size_t)n), *ds = dev_copy(sc, (size_t)(G * cap) * 4),
         *dd = dev_copy(poison, (size_t)n * 2);
    gpu->kv_gather(gpu, dd, cap * D, dq, ds, NULL, cap * D, cap, G, n_tok, D);
    gpu->download(gpu, got, dd, (size_t)n * 2);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = (i / D) % cap;
        bad += t < n_tok ? got[i] != vl_f32_to_bf16(ref[i]) : got[i] != 0x7fc0u;
    }
    printf("  kv_gather %d heads D=%d %lld of %lld tokens: %lld differ\n", G, D, (long long)n_tok,
           (long long)cap, (long long)bad);
    VT_CHECKF(bad == 0, "kv_gather %d heads D=%d: %lld elements differ", G, D, (long long)bad);
    gpu->mem_free(gpu, dq), gpu->mem_free(gpu, ds), gpu->mem_free(gpu, dd);
    free(q), free(sc), free(ref), free(poison), free(got);
}

/* ---- decode attention ------------------------------------------------------------------------ */

static void check_decode(const char *name, int H, int G, int D, int64_t n_kv, int64_t bound,
                         int64_t ws_limit) {
    const int64_t cap = (bound > n_kv ? bound : n_kv) + 37; /* spare rows, poisoned */
    vt_rng_state = 7 + (uint64_t)n_kv * 3 + (uint64_t)D;
    float *qf;
    uint16_t *qb = bf16_rows((int64_t)H * D, 1.0, &qf);
    int8_t *kq = malloc((size_t)(G * cap * D)), *vq = malloc((size_t)(G * cap * D));
    float *ks = malloc((size_t)(G * cap) * 4), *vs = malloc((size_t)(G * cap) * 4);
    float row[128];
    for (int g = 0; g < G; g++)
        for (int64_t t = 0; t < cap; t++) {
            const int64_t at = (g * cap + t) * D;
            if (t >= n_kv) {
                memset(kq + at, 127, (size_t)D), memset(vq + at, 127, (size_t)D);
                ks[g * cap + t] = vs[g * cap + t] = NAN;
                continue;
            }
            for (int d = 0; d < D; d++) row[d] = (float)vt_rng_normal() + (d == 3 ? 6.0f : 0.0f);
            ks[g * cap + t] = vl_kv_quantize_row(row, D, kq + at);
            for (int d = 0; d < D; d++) row[d] = (float)(vt_rng_normal() * (1.0 + (t % 5)));
            vs[g * cap + t] = vl_kv_quantize_row(row, D, vq + at);
        }
    vl_attn_params p = {0};
    p.q_stride = (int64_t)H * D;
    p.kv_tok_stride = D;
    p.kv_head_stride = cap * D;
    p.kv_scale_head_stride = cap;
    p.o_stride = (int64_t)H * D;
    p.n_q = 1;
    p.n_kv = n_kv;
    p.n_heads = H;
    p.n_kv_heads = G;
    p.head_dim = D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 1;
    p.q_pos0 = n_kv - 1;
    float *ref = malloc((size_t)(H * D) * sizeof(float));
    vl_attn_params rp = p;
    rp.q = qf, rp.k = kq, rp.v = vq, rp.k_scale = ks, rp.v_scale = vs, rp.o = ref;
    vl_backend *cpu = vl_backend_cpu();
    cpu->attention(cpu, &rp);

    p.q = dev_copy(qb, (size_t)(H * D) * 2);
    p.k = dev_copy(kq, (size_t)(G * cap * D));
    p.v = dev_copy(vq, (size_t)(G * cap * D));
    p.k_scale = dev_copy(ks, (size_t)(G * cap) * 4);
    p.v_scale = dev_copy(vs, (size_t)(G * cap) * 4);
    const int32_t n_past = (int32_t)(n_kv - 1);
    int32_t *dn = dev_copy(&n_past, 4);
    size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
    if (ws_limit >= 0) ws_bytes = (size_t)ws_limit;
    void *ws = ws_bytes ? dev_copy(NULL, ws_bytes) : NULL;
    uint16_t *o[2];
    for (int form = 0; form < 2; form++) {
        vl_attn_params pf = p;
        if (form == 1) { /* the runtime-length form: the bound in n_kv, the length on the GPU */
            pf.n_past_dev = dn;
            pf.n_kv = bound > 0 ? bound : n_kv;
            pf.q_pos0 = 123456;
        }
        o[form] = malloc((size_t)(H * D) * 2);
        for (int64_t e = 0; e < (int64_t)H * D; e++) o[form][e] = 0x7fc0u;
        pf.o = dev_copy(o[form], (size_t)(H * D) * 2);
        VT_CHECKF(vl_cuda_attention_supported(&pf), "%s: not supported", name);
        vl_cuda_attention(gpu, &pf, ws, ws_bytes, 0);
        VT_CHECKF(cudaDeviceSynchronize() == cudaSuccess, "%s: kernel failed", name);
        gpu->download(gpu, o[form], pf.o, (size_t)(H * D) * 2);
        gpu->mem_free(gpu, pf.o);
    }
    double worst = 0;
    int64_t bad = 0;
    for (int h = 0; h < H; h++) {
        double mx = 0;
        for (int d = 0; d < D; d++) mx = fmax(mx, fabs(ref[h * D + d]));
        const double tol = ldexp(mx, -7) + 1e-3;
        for (int d = 0; d < D; d++) {
            const double err = fabs(vl_bf16_to_f32(o[0][h * D + d]) - ref[h * D + d]);
            bad += !(err <= tol);
            worst = fmax(worst, err / tol);
        }
    }
    int64_t differ = 0;
    for (int64_t e = 0; e < (int64_t)H * D; e++) differ += o[0][e] != o[1][e];
    printf("  %-60s err/tol %.3f, runtime form: %lld differ\n", name, worst, (long long)differ);
    VT_CHECKF(bad == 0, "%s: %lld outputs out of tolerance (worst err/tol %.2f)", name,
              (long long)bad, worst);
    VT_CHECKF(differ == 0, "%s: the runtime-length form differs at %lld outputs", name,
              (long long)differ);
    void *bufs[] = {(void *)p.q,       (void *)p.k, (void *)p.v, (void *)p.k_scale,
                    (void *)p.v_scale, dn,          ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) gpu->mem_free(gpu, bufs[i]);
    free(qb), free(qf), free(kq), free(vq), free(ks), free(vs), free(ref), free(o[0]), free(o[1]);
}

/* What the int8 kernels refuse (a prefill chunk over a paged pool: the engine gathers it
 * first), what they take (a prefill chunk in plain rows), and a row alignment they take. */
static void test_supported(void) {
    static int8_t dummy[64] __attribute__((aligned(16)));
    static float sc[4];
    static uint16_t qo[64] __attribute__((aligned(16)));
    vl_attn_params p = {0};
    p.q = qo, p.o = qo, p.k = dummy, p.v = dummy, p.k_scale = sc, p.v_scale = sc;
    p.q_stride = p.o_stride = 32, p.kv_tok_stride = 16, p.kv_head_stride = 64;
    p.kv_scale_head_stride = 4, p.n_q = 1, p.n_kv = 4, p.n_heads = 2, p.n_kv_heads = 1;
    p.head_dim = 16, p.scale = 0.25f, p.causal = 1, p.q_pos0 = 3;
    VT_CHECK(vl_cuda_attention_supported(&p));
    vl_attn_params a = p;
    a.n_q = 2; /* a prefill chunk: the prefill kernels read the codes */
    VT_CHECK(vl_cuda_attention_supported(&a));
    static int32_t table[4];
    a.pages.table = table, a.pages.block_tokens = 4; /* ... but not through a block table */
    VT_CHECK(!vl_cuda_attention_supported(&a));
    a.n_q = 1; /* decode does */
    VT_CHECK(vl_cuda_attention_supported(&a));
    a = p;
    a.v_scale = NULL;
    VT_CHECK(!vl_cuda_attention_supported(&a));
    a = p;
    a.kv_tok_stride = 24; /* rows not 16-byte aligned at head_dim 16: the element path */
    VT_CHECK(vl_cuda_attention_supported(&a));
}

int main(void) {
    gpu = vt_gpu_or_skip();
    if (!gpu) return vt_finish();
    printf("rope_kv_append with an int8 cache\n");
    check_rope_append(1, 28, 4, 128, 64, 63, 1); /* a decode step of Qwen2-VL-7B */
    check_rope_append(37, 28, 4, 128, 64, 5, 0); /* a prefill chunk */
    check_rope_append(9, 3, 1, 32, 20, 4, 0);    /* tiny-a */
    check_rope_append(5, 3, 3, 24, 8, 3, 1);     /* tiny-b */
    printf("kv_gather of a contiguous int8 cache\n");
    check_gather_contiguous(4, 128, 50, 41);
    check_gather_contiguous(3, 24, 9, 9);
    check_gather_contiguous(2, 20, 7, 5); /* not a multiple of 8: the scalar path */
    printf("decode attention over an int8 cache\n");
    check_decode("D128 GQA7 n_kv=1", 28, 4, 128, 1, 4096, -1);
    check_decode("D128 GQA7 n_kv=77", 28, 4, 128, 77, 0, -1);
    check_decode("D128 GQA7 n_kv=1000, bound 38000", 28, 4, 128, 1000, 38000, -1);
    check_decode("D128 GQA7 n_kv=38000", 28, 4, 128, 38000, 38000, -1);
    check_decode("D128 GQA7 n_kv=3000, no workspace (1 split)", 28, 4, 128, 3000, 0, 0);
    check_decode("D64 ratio 1 n_kv=2500", 8, 8, 64, 2500, 0, -1);
    check_decode("D32 GQA3 n_kv=700 (tiny-a)", 3, 1, 32, 700, 900, -1);
    check_decode("D24 ratio 1 n_kv=450 (tiny-b: 8-byte copies)", 3, 3, 24, 450, 0, -1);
    check_decode("D24 GQA3 n_kv=30000 (many splits)", 6, 2, 24, 30000, 0, -1);
    test_supported();
    return vt_finish();
}

#else
int main(void) {
    VT_SKIP("built without CUDA");
    return vt_finish();
}
#endif
