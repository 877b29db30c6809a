/* test_attention_gpu.c: GPU attention (flash prefill, split-KV decode, the naive baseline) against
 * the CPU twin, on the shapes the engine uses and on odd ones.
 *
 * q, k, v are random N(0,1) (fixed seeds) rounded to bf16; the CPU backend computes the reference
 * in fp32 from exactly those values. The GPU sees them in the engine's layouts: views into one
 * fused qkv buffer, or a query buffer plus head-major K/V caches with spare positions. Every byte
 * the kernels must not touch (cache rows past n_kv, gaps between strided rows, the tail after o)
 * holds bf16 NaN: reading a spare cache row poisons the result, writing a gap is caught, and an
 * output the kernels forgot stays NaN.
 * Tolerance per output row (query i, head h): |gpu - ref| <= 2^-7 max_d |ref[i, h, d]| + 1e-3.
 * The GPU rounds o to bf16 (2^-9 relative) and rounds P to bf16 before P.V (2^-9 per weight);
 * 2^-7 leaves a factor 2 over both together, while a wrong mask, a lost rescale or a wrong head
 * mapping moves outputs by 1e-1 and more. Each case prints its worst error and err/tol ratio.
 * Cases run the flash kernels, the backend's attention_naive op, or both on the same inputs.
 * Head dims: the model's 128 and 80, 64 and 96, and every kind of small one (multiples of 8 with
 * and without zero padding), and head dims that are not multiples of 8 (the element path:
 * tiny-odd's vision 20, 4, 12, 36, 100, and the text dims 6 and 10, not multiples of 4), also
 * with rows that are not 16-byte aligned at a multiple of 8 ("skewed": every base pointer one
 * element off and odd row strides). Runtime cache length (n_past_dev): the call with the bound
 * in n_kv must return exactly the bits of the call with the length written in; and one decode
 * step captured into a CUDA graph must, replayed after the length changed, match the eager call.
 * Attention over an int8 cache (--kv int8): decode (the Q8 variant of the split-KV kernel) and
 * prefill chunks (both prefill kernels read the codes) against the CPU attention over the same
 * codes and scales, on both paths, with the same tolerance and the same runtime-length check;
 * cache rows past the length hold code 127 and NaN scales. A chunk must also have exactly the
 * bits of the call over a bf16 cache of bf16(code * scale) (what the kernels make of the codes).
 * Without a device (or a CUDA build) it prints why and reports one skip (exit 77).
 * Leaves out: timing (vlbench attention).
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#include <stdint.h>

#ifdef VL_HAVE_CUDA
#include "kernels/cuda_internal.h"

#define BF16_NAN 0x7fc0u

/* n values ~N(0,1), already rounded to bf16 */
static float *random_bf16_values(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        double r = vt_rng_normal();
        p[i] = vl_round_bf16((float)r);
    }
    return p;
}

static uint16_t *bf16_poisoned(int64_t n) {
    uint16_t *p = malloc((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++) p[i] = BF16_NAN;
    return p;
}

enum { LAYOUT_FUSED, LAYOUT_CACHE };
/* paths run on the same inputs, each compared with the CPU */
enum { FLASH = 1, NAIVE = 2, BOTH = FLASH | NAIVE };

typedef struct {
    const char *name;
    int n_heads, n_kv_heads, head_dim;
    int64_t n_q, n_kv, q_pos0;
    int causal;
    const int32_t *seg;
    int n_seg;
    int layout;       /* LAYOUT_FUSED needs n_q == n_kv */
    int paths;        /* FLASH: vl_cuda_attention; NAIVE: the backend's attention_naive op */
    float scale_mul;  /* scale = scale_mul / sqrt(D); 0 means 1 */
    int64_t ws_limit; /* flash: workspace bytes to offer; -1: what workspace_bytes asks */
    /* > 0: the cache length is read at run time (n_past_dev = q_pos0, n_kv field = bound,
     * q_pos0 field = garbage); the result must also have exactly the bits of the explicit call.
     * Needs LAYOUT_CACHE, causal, n_q + q_pos0 == n_kv <= bound. */
    int64_t bound;
    /* 1: every base pointer one element past a 16-byte boundary and odd row strides (the
     * element path at any head dim) */
    int skew;
} attn_case;

typedef struct {
    vl_backend *gpu;
    void *bufs[16];
    int n;
} dev_list;

static void *dev_put(dev_list *l, const void *host, size_t bytes) {
    void *d = l->gpu->mem_alloc(l->gpu, bytes ? bytes : 16);
    VT_CHECKF(d != NULL, "device allocation of %zu bytes failed", bytes);
    if (!d) return NULL;
    if (host && bytes) l->gpu->upload(l->gpu, d, host, bytes);
    l->bufs[l->n++] = d;
    return d;
}

static void dev_free_all(dev_list *l) {
    for (int i = 0; i < l->n; i++) l->gpu->mem_free(l->gpu, l->bufs[i]);
    l->n = 0;
}

/* Compares o (bf16, row stride o_stride) with ref [n_q, H*D]; returns the worst err/tol. */
static double compare(const attn_case *c, const char *path, const uint16_t *o, int64_t o_stride,
                      const float *ref) {
    const int H = c->n_heads, D = c->head_dim;
    double worst = 0, worst_err = 0;
    int64_t bad = 0, first_i = -1;
    int first_h = 0, first_d = 0;
    float first_got = 0, first_want = 0;
    for (int64_t i = 0; i < c->n_q; i++)
        for (int h = 0; h < H; h++) {
            const float *r = ref + (i * H + h) * D;
            double mx = 0;
            for (int d = 0; d < D; d++) mx = fmax(mx, fabs(r[d]));
            const double tol = ldexp(mx, -7) + 1e-3;
            for (int d = 0; d < D; d++) {
                float got = vl_bf16_to_f32(o[i * o_stride + (int64_t)h * D + d]);
                double err = fabs((double)got - r[d]);
                if (!(err <= tol)) { /* NaN lands here too */
                    if (bad++ == 0)
                        first_i = i, first_h = h, first_d = d, first_got = got, first_want = r[d];
                    err = isnan(err) ? INFINITY : err;
                }
                worst_err = fmax(worst_err, err);
                worst = fmax(worst, err / tol);
            }
        }
    VT_CHECKF(bad == 0,
              "%s (%s): %lld outputs out of tolerance, first at query %lld head %d dim %d: "
              "got %g, want %g",
              c->name, path, (long long)bad, (long long)first_i, first_h, first_d,
              (double)first_got, (double)first_want);
    /* gaps between rows and the tail stay untouched */
    int64_t touched = 0;
    for (int64_t i = 0; i < c->n_q; i++)
        for (int64_t e = (int64_t)H * D; e < o_stride; e++)
            touched += o[i * o_stride + e] != BF16_NAN;
    for (int64_t e = 0; e < 64; e++) touched += o[c->n_q * o_stride + e] != BF16_NAN;
    VT_CHECKF(touched == 0, "%s (%s): %lld elements outside o written", c->name, path,
              (long long)touched);
    printf("  %-56s %-5s max|err| %.3e  err/tol %.3f\n", c->name, path, worst_err, worst);
    return worst;
}

/* One call of `path` on p into a fresh poisoned o (device), downloaded into o_host (o_elems).
 * Returns 0 when the call could not be made. */
static int run_path(vl_backend *gpu, dev_list *dl, const attn_case *c, int path,
                    const vl_attn_params *p_in, uint16_t *o_host, int64_t o_elems) {
    vl_attn_params p = *p_in;
    for (int64_t e = 0; e < o_elems; e++) o_host[e] = BF16_NAN;
    uint16_t *od = dev_put(dl, NULL, (size_t)(o_elems + c->skew) * 2); /* skewed: one late */
    if (!od) return 0;
    p.o = od + c->skew;
    gpu->upload(gpu, p.o, o_host, (size_t)o_elems * 2);
    if (path == FLASH) {
        VT_CHECKF(vl_cuda_attention_supported(&p), "%s: not supported", c->name);
        if (!vl_cuda_attention_supported(&p)) return 0;
        size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
        if (c->ws_limit >= 0) ws_bytes = (size_t)c->ws_limit;
        void *ws = ws_bytes ? dev_put(dl, NULL, ws_bytes) : NULL;
        if (ws_bytes && !ws) return 0;
        gpu->sync(gpu);
        vl_cuda_attention(gpu, &p, ws, ws_bytes, 0);
    } else {
        /* the score rows are as long as the n_kv field (the bound with n_past_dev) */
        float *scores = dev_put(dl, NULL, (size_t)(p.n_heads * p.n_q * p.n_kv) * sizeof(float));
        if (!scores) return 0;
        gpu->attention_naive(gpu, &p, scores); /* on the backend stream */
    }
    cudaError_t err = cudaDeviceSynchronize();
    VT_CHECKF(err == cudaSuccess, "%s: %s", c->name, cudaGetErrorString(err));
    if (err != cudaSuccess) return 0;
    gpu->download(gpu, o_host, p.o, (size_t)o_elems * 2);
    return 1;
}

/* cases run on the Hopper prefill kernel (cuda_attention_wgmma.cu) by the last run_all */
static int wgmma_cases;

static double check_case(vl_backend *gpu, const attn_case *c, uint64_t seed) {
    const int H = c->n_heads, G = c->n_kv_heads, D = c->head_dim;
    const int64_t n_q = c->n_q, n_kv = c->n_kv;
    VT_CHECKF(c->bound == 0 || (c->layout == LAYOUT_CACHE && c->causal && c->n_seg == 0 &&
                                c->q_pos0 + n_q == n_kv && n_kv <= c->bound),
              "%s: a runtime-length case needs a causal cache layout within its bound", c->name);
    vt_rng_state = seed;
    float *q = random_bf16_values(n_q * H * D);
    float *k = random_bf16_values(n_kv * G * D), *v = random_bf16_values(n_kv * G * D);
    const float scale = (c->scale_mul > 0 ? c->scale_mul : 1.0f) / sqrtf((float)D);

    /* reference: plain layouts on the CPU */
    float *ref = malloc((size_t)(n_q * H * D) * sizeof(float));
    vl_attn_params rp = {.q = q,
                         .q_stride = (int64_t)H * D,
                         .k = k,
                         .v = v,
                         .kv_tok_stride = (int64_t)G * D,
                         .kv_head_stride = D,
                         .o = ref,
                         .o_stride = (int64_t)H * D,
                         .n_q = n_q,
                         .n_kv = n_kv,
                         .n_heads = H,
                         .n_kv_heads = G,
                         .head_dim = D,
                         .scale = scale,
                         .causal = c->causal,
                         .q_pos0 = c->q_pos0,
                         .seg_starts = c->seg,
                         .n_seg = c->n_seg};
    vl_backend *cpu = vl_backend_cpu();
    cpu->attention(cpu, &rp);

    /* device layouts */
    dev_list dl = {.gpu = gpu};
    vl_attn_params p = rp;
    if (c->layout == LAYOUT_FUSED) {
        /* 8 spare elements per row (skewed: 3, and the buffer starts one element late) */
        const int64_t row = (int64_t)(H + 2 * G) * D + (c->skew ? 3 : 8), at0 = c->skew;
        uint16_t *qkv = bf16_poisoned(n_q * row + at0);
        for (int64_t t = 0; t < n_q; t++) {
            uint16_t *r = qkv + at0 + t * row;
            for (int64_t e = 0; e < (int64_t)H * D; e++) r[e] = vl_f32_to_bf16(q[t * H * D + e]);
            for (int64_t e = 0; e < (int64_t)G * D; e++) {
                r[(int64_t)H * D + e] = vl_f32_to_bf16(k[t * G * D + e]);
                r[(int64_t)(H + G) * D + e] = vl_f32_to_bf16(v[t * G * D + e]);
            }
        }
        uint16_t *d = dev_put(&dl, qkv, (size_t)(n_q * row + at0) * 2);
        free(qkv);
        if (d) d += at0;
        p.q = d, p.k = d + (int64_t)H * D, p.v = d + (int64_t)(H + G) * D;
        p.q_stride = p.kv_tok_stride = row;
        p.kv_head_stride = D;
    } else {
        /* 37 spare positions past n_kv (or past the bound), poisoned like the rest; skewed: odd
         * query rows and every buffer one element late */
        const int64_t q_row = (int64_t)H * D + (c->skew ? 5 : 16), at0 = c->skew;
        const int64_t cap = (c->bound > n_kv ? c->bound : n_kv) + 37;
        uint16_t *qh = bf16_poisoned(n_q * q_row + at0);
        uint16_t *kc = bf16_poisoned(G * cap * D + at0), *vc = bf16_poisoned(G * cap * D + at0);
        for (int64_t i = 0; i < n_q; i++)
            for (int64_t e = 0; e < (int64_t)H * D; e++)
                qh[at0 + i * q_row + e] = vl_f32_to_bf16(q[i * H * D + e]);
        for (int g = 0; g < G; g++)
            for (int64_t t = 0; t < n_kv; t++)
                for (int d = 0; d < D; d++) {
                    kc[at0 + (g * cap + t) * D + d] = vl_f32_to_bf16(k[(t * G + g) * D + d]);
                    vc[at0 + (g * cap + t) * D + d] = vl_f32_to_bf16(v[(t * G + g) * D + d]);
                }
        uint16_t *dq = dev_put(&dl, qh, (size_t)(n_q * q_row + at0) * 2);
        uint16_t *dk = dev_put(&dl, kc, (size_t)(G * cap * D + at0) * 2);
        uint16_t *dv = dev_put(&dl, vc, (size_t)(G * cap * D + at0) * 2);
        p.q = dq ? dq + at0 : NULL;
        p.k = dk ? dk + at0 : NULL;
        p.v = dv ? dv + at0 : NULL;
        p.q_stride = q_row;
        p.kv_tok_stride = D;
        p.kv_head_stride = cap * D;
        free(qh), free(kc), free(vc);
    }
    const int64_t o_stride = (int64_t)H * D + (c->skew ? 3 : 8), o_elems = n_q * o_stride + 64;
    p.o_stride = o_stride;
    if (c->n_seg > 0) p.seg_starts = dev_put(&dl, c->seg, (size_t)(c->n_seg + 1) * sizeof(int32_t));
    vl_attn_params prt = p; /* the runtime-length form of the same call */
    if (c->bound > 0) {
        const int32_t n_past = (int32_t)c->q_pos0;
        prt.n_past_dev = dev_put(&dl, &n_past, sizeof n_past);
        prt.n_kv = c->bound;
        prt.q_pos0 = 987654321; /* ignored with n_past_dev */
    }

    double worst = 0;
    uint16_t *o = malloc((size_t)o_elems * 2), *o_rt = malloc((size_t)o_elems * 2);
    int ok =
        p.q && p.k && p.v && (c->n_seg == 0 || p.seg_starts) && (c->bound == 0 || prt.n_past_dev);
    VT_CHECKF(!(c->paths & NAIVE) || gpu->attention_naive, "the backend has no attention_naive");
    for (int path = FLASH; ok && path <= NAIVE; path *= 2) {
        if (!(c->paths & path) || (path == NAIVE && !gpu->attention_naive)) continue;
        const int hopper = path == FLASH && vl_cuda_attention_uses_wgmma(gpu, &p);
        const char *path_name = path == NAIVE ? "naive" : hopper ? "wgmma" : "flash";
        wgmma_cases += hopper;
        if (!run_path(gpu, &dl, c, path, &p, o, o_elems)) continue;
        worst = fmax(worst, compare(c, path_name, o, o_stride, ref));
        if (c->bound > 0 && run_path(gpu, &dl, c, path, &prt, o_rt, o_elems)) {
            int64_t differ = 0;
            for (int64_t e = 0; e < o_elems; e++) differ += o[e] != o_rt[e];
            VT_CHECKF(differ == 0,
                      "%s (%s): runtime length (bound %lld): %lld elements differ "
                      "from the explicit call",
                      c->name, path_name, (long long)c->bound, (long long)differ);
        }
    }
    dev_free_all(&dl);
    free(q), free(k), free(v), free(ref), free(o), free(o_rt);
    return worst;
}

/* Attention over an int8 cache against the CPU attention over the same codes and scales
 * (vl_kv_quantize_row of random rows; one large element per K row so that the scales differ):
 * decode (n_q 1, the Q8 variant of the split-KV kernel, exact codes and fp32 scales) or a
 * prefill chunk (the n_q queries at the end of the cache: the prefill kernels, which turn codes
 * into bf16(code * scale) tiles, against the CPU over those bf16 values: rounding K and V moved
 * outputs by up to 1.7x the tolerance against fp32 code * scale on the H100). The
 * cache has spare positions past n_kv (or the bound) holding code 127 and NaN scales: reading
 * one poisons the result. bound > 0: the runtime-length form must give exactly the bits of the
 * explicit call. skew: cache and query one element past a 16-byte boundary (the element path at
 * any head dim). A prefill chunk must also give exactly the bits of the same call over a bf16
 * cache holding bf16(code * scale) (the engine's dequantized copy before the kernels read int8).
 * Returns the worst err/tol. */
/* A bf16 cache of bf16(code * scale) (NaN where the scale is) on the device, its rows placed as
 * the int8 cache's (G heads of cap rows of D, at0 elements in). */
static uint16_t *dequantized_copy(dev_list *dl, int G, int64_t cap, int D, int64_t at0,
                                  const int8_t *codes, const float *scales) {
    const int64_t n = G * cap * D;
    uint16_t *h = malloc((size_t)(n + at0) * 2);
    for (int64_t e = 0; e < at0; e++) h[e] = 0;
    for (int64_t e = 0; e < n; e++)
        h[at0 + e] = vl_f32_to_bf16((float)codes[at0 + e] * scales[e / D]);
    uint16_t *d = dev_put(dl, h, (size_t)(n + at0) * 2);
    free(h);
    return d;
}

static double check_int8(vl_backend *gpu, const char *name, int H, int G, int D, int64_t n_q,
                         int64_t n_kv, int64_t bound, int64_t ws_limit, int skew, uint64_t seed) {
    attn_case c = {.name = name, .n_heads = H, .n_kv_heads = G, .head_dim = D, .n_q = n_q};
    const int64_t cap = (bound > n_kv ? bound : n_kv) + 37, at0 = skew;
    vt_rng_state = seed;
    float *q = random_bf16_values(n_q * H * D), *row = malloc((size_t)D * sizeof(float));
    int8_t *kq = malloc((size_t)(G * cap * D + at0)), *vq = malloc((size_t)(G * cap * D + at0));
    float *ks = malloc((size_t)(G * cap) * sizeof(float)), *vs = malloc((size_t)(G * cap) * 4);
    for (int g = 0; g < G; g++)
        for (int64_t t = 0; t < cap; t++) {
            const int64_t at = at0 + (g * cap + t) * D;
            if (t >= n_kv) {
                memset(kq + at, 127, (size_t)D), memset(vq + at, 127, (size_t)D);
                ks[g * cap + t] = vs[g * cap + t] = NAN;
                continue;
            }
            for (int d = 0; d < D; d++) row[d] = (float)vt_rng_normal() + (d == t % D ? 5.0f : 0);
            ks[g * cap + t] = vl_kv_quantize_row(row, D, kq + at);
            for (int d = 0; d < D; d++) row[d] = (float)(vt_rng_normal() * (1.0 + (t % 5)));
            vs[g * cap + t] = vl_kv_quantize_row(row, D, vq + at);
        }
    vl_attn_params p = {.q_stride = (int64_t)H * D,
                        .kv_tok_stride = D,
                        .kv_head_stride = cap * D,
                        .kv_scale_head_stride = cap,
                        .o_stride = (int64_t)H * D + 8,
                        .n_q = n_q,
                        .n_kv = n_kv,
                        .n_heads = H,
                        .n_kv_heads = G,
                        .head_dim = D,
                        .scale = 1.0f / sqrtf((float)D),
                        .causal = 1,
                        .q_pos0 = n_kv - n_q};
    /* the reference: decode keeps the codes exact and the scales fp32 (the CPU reads the
     * int8 cache as code * scale in fp32); a prefill chunk attends over bf16(code * scale) */
    float *ref = malloc((size_t)(n_q * H * D) * sizeof(float)), *kf = NULL, *vf = NULL;
    vl_attn_params rp = p;
    rp.q = q, rp.k = kq + at0, rp.v = vq + at0, rp.k_scale = ks, rp.v_scale = vs, rp.o = ref;
    rp.o_stride = (int64_t)H * D;
    if (n_q > 1) {
        kf = malloc((size_t)(G * cap * D) * sizeof(float));
        vf = malloc((size_t)(G * cap * D) * sizeof(float));
        for (int64_t e = 0; e < G * cap * D; e++) {
            kf[e] = vl_round_bf16((float)kq[at0 + e] * ks[e / D]);
            vf[e] = vl_round_bf16((float)vq[at0 + e] * vs[e / D]);
        }
        rp.k = kf, rp.v = vf, rp.k_scale = rp.v_scale = NULL, rp.kv_scale_head_stride = 0;
    }
    vl_backend *cpu = vl_backend_cpu();
    cpu->attention(cpu, &rp);

    dev_list dl = {.gpu = gpu};
    const int64_t q_elems = n_q * H * D;
    uint16_t *qb = malloc((size_t)(q_elems + at0) * 2);
    for (int64_t e = 0; e < q_elems; e++) qb[at0 + e] = vl_f32_to_bf16(q[e]);
    uint16_t *dq = dev_put(&dl, qb, (size_t)(q_elems + at0) * 2);
    int8_t *dk = dev_put(&dl, kq, (size_t)(G * cap * D + at0));
    int8_t *dv = dev_put(&dl, vq, (size_t)(G * cap * D + at0));
    p.k_scale = dev_put(&dl, ks, (size_t)(G * cap) * 4);
    p.v_scale = dev_put(&dl, vs, (size_t)(G * cap) * 4);
    const int32_t n_past = (int32_t)(n_kv - n_q);
    int32_t *dn = dev_put(&dl, &n_past, sizeof n_past);
    size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
    if (ws_limit >= 0) ws_bytes = (size_t)ws_limit;
    void *ws = ws_bytes ? dev_put(&dl, NULL, ws_bytes) : NULL;
    uint16_t *dk16 = n_q > 1 ? dequantized_copy(&dl, G, cap, D, at0, kq, ks) : NULL;
    uint16_t *dv16 = n_q > 1 ? dequantized_copy(&dl, G, cap, D, at0, vq, vs) : NULL;
    double worst = 0;
    const int64_t o_elems = n_q * p.o_stride + 64;
    /* forms: 0 the explicit length, 1 the runtime length, 2 the bf16 copy */
    uint16_t *o[3] = {malloc((size_t)o_elems * 2), malloc((size_t)o_elems * 2),
                      malloc((size_t)o_elems * 2)};
    const int ok = dq && dk && dv && p.k_scale && p.v_scale && dn && (ws || !ws_bytes) &&
                   (n_q == 1 || (dk16 && dv16));
    for (int form = 0; ok && form < 3; form++) {
        if ((form == 1 && bound == 0) || (form == 2 && n_q == 1)) continue;
        vl_attn_params pf = p;
        pf.q = dq + at0, pf.k = dk + at0, pf.v = dv + at0;
        if (form == 1) { /* the runtime-length form: the bound in n_kv, the length on the GPU */
            pf.n_past_dev = dn, pf.n_kv = bound, pf.q_pos0 = 123456;
        } else if (form == 2) {
            pf.k = dk16 + at0, pf.v = dv16 + at0, pf.k_scale = pf.v_scale = NULL;
            pf.kv_scale_head_stride = 0;
            /* the same kernel only: D 80 takes the Hopper kernel in bf16, not in int8 */
            vl_attn_params p8 = pf;
            p8.k = dk + at0, p8.v = dv + at0, p8.k_scale = p.k_scale, p8.v_scale = p.v_scale;
            p8.kv_scale_head_stride = p.kv_scale_head_stride;
            if (vl_cuda_attention_uses_wgmma(gpu, &pf) != vl_cuda_attention_uses_wgmma(gpu, &p8))
                continue;
        }
        for (int64_t e = 0; e < o_elems; e++) o[form][e] = BF16_NAN;
        uint16_t *od = dev_put(&dl, NULL, (size_t)(o_elems + at0) * 2);
        if (!od) break;
        pf.o = od + at0;
        gpu->upload(gpu, pf.o, o[form], (size_t)o_elems * 2);
        VT_CHECKF(vl_cuda_attention_supported(&pf), "%s: not supported", name);
        if (!vl_cuda_attention_supported(&pf)) break;
        if (form == 0) wgmma_cases += vl_cuda_attention_uses_wgmma(gpu, &pf);
        vl_cuda_attention(gpu, &pf, ws, ws_bytes, 0);
        cudaError_t err = cudaDeviceSynchronize();
        VT_CHECKF(err == cudaSuccess, "%s: %s", name, cudaGetErrorString(err));
        if (err != cudaSuccess) break;
        gpu->download(gpu, o[form], pf.o, (size_t)o_elems * 2);
        if (form == 0) {
            const int hopper = n_q > 1 && vl_cuda_attention_uses_wgmma(gpu, &pf);
            worst = compare(&c,
                            n_q == 1 ? "int8"
                            : hopper ? "wgmma"
                                     : "flash",
                            o[0], p.o_stride, ref);
        } else {
            int64_t differ = 0;
            for (int64_t e = 0; e < o_elems; e++) differ += o[0][e] != o[form][e];
            VT_CHECKF(differ == 0, "%s: %lld elements differ from the %s", name, (long long)differ,
                      form == 1 ? "runtime-length call" : "call over the dequantized bf16 copy");
        }
    }
    dev_free_all(&dl);
    free(q), free(row), free(kq), free(vq), free(ks), free(vs), free(ref), free(qb);
    free(kf), free(vf), free(o[0]), free(o[1]), free(o[2]);
    return worst;
}

/* One decode step captured into a CUDA graph with the cache length in device memory, replayed
 * after cudaMemcpyAsync changed the length: every replay must have the bits of the eager call
 * with that length written in the params. Runs first, so the backend's first-launch queries of
 * the kernel (cudaFuncSetAttribute, its occupancy) happen inside the capture, as in an engine
 * whose first decode step is recorded. */
static void test_graph_decode(vl_backend *gpu) {
    const int H = 28, G = 4, D = 128;
    const int64_t cap = 4096, q_elems = (int64_t)H * D, kv_elems = G * cap * D;
    vt_rng_state = 4242;
    uint16_t *h = malloc((size_t)(q_elems + 2 * kv_elems) * 2);
    for (int64_t e = 0; e < q_elems + 2 * kv_elems; e++)
        h[e] = vl_f32_to_bf16((float)vt_rng_normal());
    dev_list dl = {.gpu = gpu};
    uint16_t *d = dev_put(&dl, h, (size_t)(q_elems + 2 * kv_elems) * 2);
    uint16_t *o_graph = dev_put(&dl, NULL, (size_t)q_elems * 2);
    uint16_t *o_eager = dev_put(&dl, NULL, (size_t)q_elems * 2);
    const int32_t first = 100;
    int32_t *n_past_dev = dev_put(&dl, &first, sizeof first);
    vl_attn_params p = {.q = d,
                        .q_stride = q_elems,
                        .k = d + q_elems,
                        .v = d + q_elems + kv_elems,
                        .kv_tok_stride = D,
                        .kv_head_stride = cap * D,
                        .o = o_graph,
                        .o_stride = q_elems,
                        .n_q = 1,
                        .n_kv = cap,
                        .n_heads = H,
                        .n_kv_heads = G,
                        .head_dim = D,
                        .scale = 1.0f / sqrtf((float)D),
                        .causal = 1,
                        .n_past_dev = n_past_dev};
    const size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
    void *ws = dev_put(&dl, NULL, ws_bytes);
    if (!d || !o_graph || !o_eager || !n_past_dev || !ws) {
        dev_free_all(&dl);
        free(h);
        return;
    }
    cudaStream_t stream;
    VL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    VL_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    vl_cuda_attention(gpu, &p, ws, ws_bytes, stream);
    VL_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    VL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

    /* 2999 keys: several splits, fewer than launched; 0: one split (o written directly, the
     * combine step returns at once); 4095: the whole bound */
    static const int32_t lengths[3] = {2999, 0, 4095};
    uint16_t *got = malloc((size_t)q_elems * 2), *want = malloc((size_t)q_elems * 2);
    uint16_t *prev = calloc((size_t)q_elems, 2);
    for (int r = 0; r < 3; r++) {
        const int32_t n_past = lengths[r];
        VL_CUDA_CHECK(
            cudaMemcpyAsync(n_past_dev, &n_past, sizeof n_past, cudaMemcpyHostToDevice, stream));
        VL_CUDA_CHECK(cudaGraphLaunch(exec, stream));
        vl_attn_params e = p;
        e.n_past_dev = NULL, e.n_kv = n_past + 1, e.q_pos0 = n_past, e.o = o_eager;
        vl_cuda_attention(gpu, &e, ws, ws_bytes, stream);
        VL_CUDA_CHECK(cudaStreamSynchronize(stream));
        VL_CUDA_CHECK(cudaMemcpy(got, o_graph, (size_t)q_elems * 2, cudaMemcpyDeviceToHost));
        VL_CUDA_CHECK(cudaMemcpy(want, o_eager, (size_t)q_elems * 2, cudaMemcpyDeviceToHost));
        int64_t differ = 0, nan = 0, same_as_prev = 0;
        for (int64_t e2 = 0; e2 < q_elems; e2++) {
            differ += got[e2] != want[e2];
            nan += isnan(vl_bf16_to_f32(got[e2]));
            same_as_prev += got[e2] == prev[e2];
        }
        VT_CHECKF(differ == 0 && nan == 0,
                  "graph replay with n_past %d: %lld elements differ from the eager call, %lld NaN",
                  n_past, (long long)differ, (long long)nan);
        VT_CHECKF(same_as_prev < q_elems / 2,
                  "graph replay with n_past %d: %lld of %lld outputs unchanged from the previous "
                  "length (the replay did not pick up the new length?)",
                  n_past, (long long)same_as_prev, (long long)q_elems);
        memcpy(prev, got, (size_t)q_elems * 2);
    }
    printf("  graph decode D128 28/4 heads, bound 4096: 3 replays, lengths 3000, 1, 4096\n");
    VL_CUDA_CHECK(cudaGraphExecDestroy(exec));
    VL_CUDA_CHECK(cudaGraphDestroy(graph));
    VL_CUDA_CHECK(cudaStreamDestroy(stream));
    free(got), free(want), free(prev), free(h);
    dev_free_all(&dl);
}

/* The parameters the kernels refuse, so the backend can report them instead of crashing. */
static void test_supported(void) {
    static _Alignas(16) uint16_t buf[64];
    vl_attn_params p = {.q = buf,
                        .q_stride = 3 * 3584,
                        .k = buf,
                        .v = buf,
                        .kv_tok_stride = 128,
                        .kv_head_stride = 128 * 1024,
                        .o = buf,
                        .o_stride = 3584,
                        .n_q = 10,
                        .n_kv = 10,
                        .n_heads = 28,
                        .n_kv_heads = 4,
                        .head_dim = 128,
                        .scale = 0.088f,
                        .causal = 1};
    VT_CHECK(vl_cuda_attention_supported(&p) == 1);
    VT_CHECK_INT(vl_cuda_attention_workspace_bytes(&p), 256 * 28 * 129 * 4);
    vl_attn_params b = p;
    /* every head dim up to 128: multiples of 8 (fast path) and any other (element path) */
    static const int dims_ok[] = {8, 16, 24, 40, 72, 120, 1, 4, 6, 12, 20, 36, 100, 127};
    for (int i = 0; i < (int)(sizeof dims_ok / sizeof dims_ok[0]); i++) {
        b = p, b.head_dim = dims_ok[i], b.kv_tok_stride = dims_ok[i];
        VT_CHECKF(vl_cuda_attention_supported(&b) == 1, "head_dim %d", dims_ok[i]);
    }
    static const int dims_bad[] = {0, -8, 129, 136, 256};
    for (int i = 0; i < (int)(sizeof dims_bad / sizeof dims_bad[0]); i++) {
        b = p, b.head_dim = dims_bad[i];
        VT_CHECKF(vl_cuda_attention_supported(&b) == 0, "head_dim %d", dims_bad[i]);
    }
    b = p, b.n_kv_heads = 5;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.n_heads = b.n_kv_heads = 65536;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    /* rows that are not 16-byte aligned take the element path; bf16 elements must be aligned */
    b = p, b.q_stride = 3 * 3584 + 4;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
    b = p, b.k = buf + 1;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
    b = p, b.o = (void *)((char *)buf + 1);
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    /* the decode partials: rows of head_dim rounded up to 4 floats */
    b = p, b.head_dim = 6;
    VT_CHECK_INT(vl_cuda_attention_workspace_bytes(&b), 256 * 28 * 9 * 4);
    b = p, b.head_dim = 20;
    VT_CHECK_INT(vl_cuda_attention_workspace_bytes(&b), 256 * 28 * 21 * 4);
    b = p, b.causal = 0, b.n_seg = 2, b.seg_starts = (const int32_t *)buf, b.n_kv = 11;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.head_dim = 80, b.n_heads = 16, b.n_kv_heads = 16, b.causal = 0;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
    /* runtime length: causal only, no segments, a bound of at least n_q; q_pos0 is ignored */
    static int32_t n_past_dummy;
    b = p, b.n_past_dev = &n_past_dummy, b.n_kv = 38000, b.q_pos0 = -5;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
    b = p, b.n_past_dev = &n_past_dummy, b.causal = 0;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.n_past_dev = &n_past_dummy, b.n_kv = 9;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
}

/* The cases of run_all (file scope: a table, not code). F / K: the fused and the cache layouts;
 * WS2: the decode workspace for 2 splits of 28 heads at D 128. */
#define F   LAYOUT_FUSED
#define K   LAYOUT_CACHE
#define WS2 (2 * 28 * 129 * 4)
static const int32_t seg_vision[4] = {0, 37, 38, 300};    /* incl. a 1-token segment */
static const int32_t seg_empty[5] = {0, 37, 38, 38, 300}; /* incl. an empty segment */
static const int32_t seg_one[2] = {0, 700};
static const int32_t seg_one64[2] = {0, 64};
/* rows 100..127 share a CTA with rows of segment 0 but see nothing of its first key tile */
static const int32_t seg_late[4] = {0, 100, 120, 300};
static const int32_t seg_page[2] = {0, 1364}; /* one page.png */
static const attn_case cases[] = {
    /* name, H, G, D, n_q, n_kv, q_pos0, causal, seg, n_seg, layout, paths, scale_mul, ws,
     * bound */
    {"prefill causal D128 GQA7 n=1 (decode path)", 28, 4, 128, 1, 1, 0, 1, NULL, 0, K, FLASH, 0, -1,
     0, 0},
    {"prefill causal D128 GQA7 n=17 fused", 28, 4, 128, 17, 17, 0, 1, NULL, 0, F, FLASH, 0, -1, 0,
     0},
    {"prefill causal D128 GQA7 n=64", 28, 4, 128, 64, 64, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"prefill causal D128 GQA7 n=100 fused", 28, 4, 128, 100, 100, 0, 1, NULL, 0, F, FLASH, 0, -1,
     0, 0},
    {"prefill causal D128 GQA7 n=257", 28, 4, 128, 257, 257, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"prefill causal D128 GQA7 n=1000", 28, 4, 128, 1000, 1000, 0, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"chunk n_q=100 after 300 cached", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"chunk n_q=64 after 64 cached", 28, 4, 128, 64, 128, 64, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"chunk n_q=2 after 50 cached", 28, 4, 128, 2, 52, 50, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"chunk n_q=130 after 1111 cached", 14, 2, 128, 130, 1241, 1111, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"causal GQA ratio 1, n=130 fused", 4, 4, 128, 130, 130, 0, 1, NULL, 0, F, FLASH, 0, -1, 0, 0},
    {"causal GQA ratio 32, n=77", 32, 1, 128, 77, 77, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal sharp softmax (3x scale), n=300", 8, 2, 128, 300, 300, 0, 1, NULL, 0, K, FLASH, 3, -1,
     0, 0},
    /* several key tiles of 128 through the Hopper kernel's 2-stage ring, an offset off its
     * tile grid, and a runtime length whose last tile reaches into poisoned rows */
    {"causal D128 GQA7 n=1500", 7, 1, 128, 1500, 1500, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"chunk n_q=300 after 1000 cached", 7, 1, 128, 300, 1300, 1000, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"runtime chunk n_q=300 after 1000, bound 1500", 7, 1, 128, 300, 1300, 1000, 1, NULL, 0, K,
     FLASH, 0, -1, 1500, 0},
    {"vision D80 one segment of 1364, 4 heads fused", 4, 4, 80, 1364, 1364, 0, 0, seg_page, 1, F,
     FLASH, 0, -1, 0, 0},
    {"non-causal full, n_q=50 over n_kv=300", 8, 2, 128, 50, 300, 0, 0, NULL, 0, K, BOTH, 0, -1, 0,
     0},
    {"vision D80 segments [0,37,38,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_vision, 3, F, BOTH,
     0, -1, 0, 0},
    {"vision D80 segments with an empty one", 16, 16, 80, 300, 300, 0, 0, seg_empty, 4, F, FLASH, 0,
     -1, 0, 0},
    {"vision D80 segments [0,100,120,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_late, 3, F, FLASH,
     0, -1, 0, 0},
    {"vision D80 one segment of 700 fused", 16, 16, 80, 700, 700, 0, 0, seg_one, 1, F, FLASH, 0, -1,
     0, 0},
    {"vision D80 no segments, n=300", 16, 16, 80, 300, 300, 0, 0, NULL, 0, F, FLASH, 0, -1, 0, 0},
    {"causal D64, n=150", 4, 2, 64, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D96, n=150", 4, 2, 96, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode D128 GQA7 n_kv=5", 28, 4, 128, 1, 5, 4, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode D128 GQA7 n_kv=1000", 28, 4, 128, 1, 1000, 999, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode D128 GQA7 n_kv=38000", 28, 4, 128, 1, 38000, 37999, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode n_kv=1000 sees 501 (q_pos0=500)", 28, 4, 128, 1, 1000, 500, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 0},
    {"decode non-causal n_kv=3000", 28, 4, 128, 1, 3000, 0, 0, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode n_kv=3000, no workspace (1 split)", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0,
     0, 0, 0},
    {"decode n_kv=3000, workspace for 2 splits", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0,
     WS2, 0, 0},
    {"decode GQA ratio 32 (2 head chunks), n_kv=700", 32, 1, 128, 1, 700, 699, 1, NULL, 0, K, FLASH,
     0, -1, 0, 0},
    {"decode D80 ratio 1, n_kv=333", 16, 16, 80, 1, 333, 332, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode n_kv=77", 28, 4, 128, 1, 77, 76, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},

    /* head dims of the tiny test models (16, 24, 32 text; 16, 40 vision) and other multiples
     * of 8: odd numbers of 16-byte chunks per row (24, 40, 56, 72, 120) and zero padding
     * (8, 24, 40, 56, 72, 120) */
    {"causal D16 GQA2, n=150", 4, 2, 16, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D24 GQA2, n=200 fused", 4, 2, 24, 200, 200, 0, 1, NULL, 0, F, BOTH, 0, -1, 0, 0},
    {"causal D32 GQA2, n=130", 4, 2, 32, 130, 130, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D40, n=129", 4, 2, 40, 129, 129, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"chunk D24 n_q=70 after 500 cached", 6, 2, 24, 70, 570, 500, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"chunk D32 n_q=2 after 90 cached", 4, 2, 32, 2, 92, 90, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"vision D16 segments [0,37,38,300] fused", 4, 4, 16, 300, 300, 0, 0, seg_vision, 3, F, FLASH,
     0, -1, 0, 0},
    {"vision D40 segments [0,100,120,300] fused", 16, 16, 40, 300, 300, 0, 0, seg_late, 3, F, BOTH,
     0, -1, 0, 0},
    {"vision D40 segments with an empty one", 16, 16, 40, 300, 300, 0, 0, seg_empty, 4, F, FLASH, 0,
     -1, 0, 0},
    {"vision D40 one segment of 700 fused", 16, 16, 40, 700, 700, 0, 0, seg_one, 1, F, FLASH, 0, -1,
     0, 0},
    {"causal D8, n=100", 2, 1, 8, 100, 100, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D56, n=100", 4, 2, 56, 100, 100, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D72, n=200", 4, 2, 72, 200, 200, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D120, n=200", 4, 2, 120, 200, 200, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode D16 GQA2 n_kv=5000 (splits)", 4, 2, 16, 1, 5000, 4999, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"decode D24 GQA3 n_kv=40", 6, 2, 24, 1, 40, 39, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"decode D24 GQA3 n_kv=3000 (splits)", 6, 2, 24, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"decode D32 GQA2 n_kv=2000 (splits)", 4, 2, 32, 1, 2000, 1999, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"decode D40 ratio 1, n_kv=1500 (splits)", 16, 16, 40, 1, 1500, 1499, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 0},
    {"decode D8 n_kv=600", 2, 1, 8, 1, 600, 599, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    /* > 200 splits: the combine's split lanes (21 at D 24) walk more than one batch of 8 */
    {"decode D24 GQA3 n_kv=30000 (many splits)", 6, 2, 24, 1, 30000, 29999, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 0},
    {"decode D120 n_kv=900", 4, 2, 120, 1, 900, 899, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},

    /* runtime cache length (n_past_dev): the bits of the explicit call, bound >> length and
     * bound == length */
    {"runtime decode D128 GQA7 len 1000, bound 38000", 28, 4, 128, 1, 1000, 999, 1, NULL, 0, K,
     BOTH, 0, -1, 38000, 0},
    {"runtime decode D128 GQA7 len 38000 = bound", 28, 4, 128, 1, 38000, 37999, 1, NULL, 0, K,
     FLASH, 0, -1, 38000, 0},
    {"runtime decode first token, bound 4096", 28, 4, 128, 1, 1, 0, 1, NULL, 0, K, BOTH, 0, -1,
     4096, 0},
    {"runtime decode len 3000, bound 38000, no workspace", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K,
     FLASH, 0, 0, 38000, 0},
    {"runtime decode len 3000, bound 38000, 2 splits", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K,
     FLASH, 0, WS2, 38000, 0},
    {"runtime decode D24 GQA3 len 700, bound 5000", 6, 2, 24, 1, 700, 699, 1, NULL, 0, K, BOTH, 0,
     -1, 5000, 0},
    {"runtime chunk n_q=100 after 300, bound 2000", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, BOTH,
     0, -1, 2000, 0},
    {"runtime chunk n_q=100 after 300, bound 400", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, FLASH,
     0, -1, 400, 0},
    {"runtime prefill n=257 from 0, bound 3000", 28, 4, 128, 257, 257, 0, 1, NULL, 0, K, FLASH, 0,
     -1, 3000, 0},
    {"runtime chunk D40 n_q=70 after 30, bound 1000", 4, 2, 40, 70, 100, 30, 1, NULL, 0, K, BOTH, 0,
     -1, 1000, 0},

    /* the element path: head dims that are not multiples of 8 (tiny-odd's vision 20 and
     * decoder 16 first), each in 16-, 32-, 64- or 128-column tiles with zeros past D */
    {"tiny-odd vision D20 2 heads, segments [0,37,38,300] fused", 2, 2, 20, 300, 300, 0, 0,
     seg_vision, 3, F, BOTH, 0, -1, 0, 0},
    {"tiny-odd vision D20 2 heads, one segment of 64", 2, 2, 20, 64, 64, 0, 0, seg_one64, 1, F,
     FLASH, 0, -1, 0, 0},
    {"tiny-odd text D16 GQA3, n=48", 3, 1, 16, 48, 48, 0, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"vision D20 16 heads, segments with an empty one", 16, 16, 20, 300, 300, 0, 0, seg_empty, 4, F,
     FLASH, 0, -1, 0, 0},
    {"causal D20 GQA2, n=200", 4, 2, 20, 200, 200, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"chunk D20 n_q=70 after 500 cached", 6, 2, 20, 70, 570, 500, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"vision D4 segments [0,100,120,300] fused", 8, 8, 4, 300, 300, 0, 0, seg_late, 3, F, BOTH, 0,
     -1, 0, 0},
    {"vision D12 one segment of 700 fused", 4, 4, 12, 700, 700, 0, 0, seg_one, 1, F, FLASH, 0, -1,
     0, 0},
    {"vision D36 segments [0,37,38,300] fused", 4, 4, 36, 300, 300, 0, 0, seg_vision, 3, F, BOTH, 0,
     -1, 0, 0},
    {"causal D6 GQA5, n=130 fused", 5, 1, 6, 130, 130, 0, 1, NULL, 0, F, BOTH, 0, -1, 0, 0},
    {"causal D10 GQA2, n=150", 4, 2, 10, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"causal D100 GQA2, n=200", 4, 2, 100, 200, 200, 0, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"causal sharp softmax (3x scale) D36, n=300", 4, 2, 36, 300, 300, 0, 1, NULL, 0, K, FLASH, 3,
     -1, 0, 0},
    {"decode D20 GQA3 n_kv=40", 6, 2, 20, 1, 40, 39, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"decode D20 GQA3 n_kv=5000 (splits)", 6, 2, 20, 1, 5000, 4999, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"decode D4 GQA2 n_kv=3000 (splits)", 4, 2, 4, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0, -1, 0,
     0},
    {"decode D12 ratio 1, n_kv=1500 (splits)", 8, 8, 12, 1, 1500, 1499, 1, NULL, 0, K, FLASH, 0, -1,
     0, 0},
    {"decode D36 GQA17 (2 head chunks), n_kv=700", 34, 2, 36, 1, 700, 699, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 0},
    {"decode D6 GQA5 n_kv=30000 (many splits)", 5, 1, 6, 1, 30000, 29999, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 0},
    {"decode D10 n_kv=77", 4, 2, 10, 1, 77, 76, 1, NULL, 0, K, BOTH, 0, -1, 0, 0},
    {"decode D100 n_kv=900", 4, 2, 100, 1, 900, 899, 1, NULL, 0, K, FLASH, 0, -1, 0, 0},
    {"decode D6 n_kv=3000, no workspace (1 split)", 5, 1, 6, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0,
     0, 0, 0},
    {"runtime decode D20 GQA3 len 700, bound 5000", 6, 2, 20, 1, 700, 699, 1, NULL, 0, K, BOTH, 0,
     -1, 5000, 0},
    {"runtime decode D6 GQA5 len 3000, bound 38000", 5, 1, 6, 1, 3000, 2999, 1, NULL, 0, K, FLASH,
     0, -1, 38000, 0},
    {"runtime chunk D12 n_q=70 after 30, bound 1000", 4, 2, 12, 70, 100, 30, 1, NULL, 0, K, BOTH, 0,
     -1, 1000, 0},

    /* the element path at multiples of 8: rows not 16-byte aligned (skewed layouts) */
    {"skewed causal D16 GQA2, n=150", 4, 2, 16, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0, 1},
    {"skewed vision D80 segments [0,37,38,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_vision, 3, F,
     BOTH, 0, -1, 0, 1},
    {"skewed chunk D128 GQA7 n_q=100 after 300", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, FLASH, 0,
     -1, 0, 1},
    {"skewed decode D128 GQA7 n_kv=3000 (splits)", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K, FLASH,
     0, -1, 0, 1},
    {"skewed decode D20 GQA3 n_kv=700", 6, 2, 20, 1, 700, 699, 1, NULL, 0, K, FLASH, 0, -1, 0, 1},
    {"skewed runtime decode D24 len 700, bound 5000", 6, 2, 24, 1, 700, 699, 1, NULL, 0, K, FLASH,
     0, -1, 5000, 1},
};

/* attention over an int8 cache: name, H, G, D, n_q, n_kv, bound, ws limit, skew (n_q 1: decode;
 * more: a prefill chunk at the end of the cache, on the Hopper kernel at D 128 on sm_90) */
static const struct {
    const char *name;
    int H, G, D;
    int64_t n_q, n_kv, bound, ws_limit;
    int skew;
} q8[] = {
    {"int8 decode D128 GQA7 n_kv=3000 (splits)", 28, 4, 128, 1, 3000, 0, -1, 0},
    {"int8 decode D24 GQA3 n_kv=700 (8-byte rows)", 6, 2, 24, 1, 700, 0, -1, 0},
    {"int8 decode tiny-odd D16 GQA3 n_kv=60", 3, 1, 16, 1, 60, 0, -1, 0},
    {"int8 decode D20 GQA3 n_kv=40", 6, 2, 20, 1, 40, 0, -1, 0},
    {"int8 decode D20 GQA3 n_kv=5000 (splits)", 6, 2, 20, 1, 5000, 0, -1, 0},
    {"int8 decode D4 n_kv=3000 (splits)", 4, 2, 4, 1, 3000, 0, -1, 0},
    {"int8 decode D12 ratio 1, n_kv=1500", 8, 8, 12, 1, 1500, 0, -1, 0},
    {"int8 decode D36 GQA17 (2 head chunks), n_kv=700", 34, 2, 36, 1, 700, 0, -1, 0},
    {"int8 decode D6 GQA5 n_kv=30000 (many splits)", 5, 1, 6, 1, 30000, 0, -1, 0},
    {"int8 decode D6 n_kv=3000, no workspace (1 split)", 5, 1, 6, 1, 3000, 0, 0, 0},
    {"int8 decode D100 n_kv=900", 4, 2, 100, 1, 900, 0, -1, 0},
    {"int8 runtime decode D20 len 700, bound 5000", 6, 2, 20, 1, 700, 5000, -1, 0},
    {"int8 runtime decode D6 len 3000, bound 38000", 5, 1, 6, 1, 3000, 38000, -1, 0},
    {"int8 skewed decode D128 GQA7 n_kv=3000", 28, 4, 128, 1, 3000, 0, -1, 1},
    {"int8 skewed runtime decode D16 len 700, bound 5000", 4, 2, 16, 1, 700, 5000, -1, 1},
    {"int8 chunk D128 GQA7 300 queries, n_kv=3000", 28, 4, 128, 300, 3000, 0, -1, 0},
    {"int8 chunk D128 GQA7 2 queries, n_kv=130", 28, 4, 128, 2, 130, 0, -1, 0},
    {"int8 chunk D128 GQA7 the whole prompt, 1000", 28, 4, 128, 1000, 1000, 0, -1, 0},
    {"int8 chunk D128 GQA1 129 queries, n_kv=257", 2, 2, 128, 129, 257, 0, -1, 0},
    {"int8 chunk D128 GQA32 65 queries, n_kv=4000", 32, 1, 128, 65, 4000, 0, -1, 0},
    {"int8 runtime chunk D128 GQA7 200 of 1500, bound 5000", 28, 4, 128, 200, 1500, 5000, -1, 0},
    {"int8 runtime chunk D128 64 of 70, bound 300", 4, 2, 128, 64, 70, 300, -1, 0},
    {"int8 chunk D80 GQA2 100 queries, n_kv=700", 4, 2, 80, 100, 700, 0, -1, 0},
    {"int8 chunk D24 GQA3 90 queries, n_kv=700 (8-byte rows)", 6, 2, 24, 90, 700, 0, -1, 0},
    {"int8 chunk D40 GQA3 2 queries, n_kv=2", 6, 2, 40, 2, 2, 0, -1, 0},
    {"int8 chunk D64 GQA3 the whole prompt, 333", 6, 2, 64, 333, 333, 0, -1, 0},
    {"int8 chunk D20 GQA3 70 queries, n_kv=300 (element path)", 6, 2, 20, 70, 300, 0, -1, 0},
    {"int8 runtime chunk D16 40 of 500, bound 900", 4, 2, 16, 40, 500, 900, -1, 0},
    {"int8 skewed chunk D128 GQA7 100 of 600 (element path)", 28, 4, 128, 100, 600, 0, -1, 1},
    {"int8 skewed runtime chunk D24 30 of 90, bound 400", 6, 2, 24, 30, 90, 400, -1, 1},
};

#undef F
#undef K
#undef WS2

static void run_all(vl_backend *gpu);

/* On a compute capability 9.0 device the default backend must have run the prefill cases of
 * head dim 80 and 128 on the Hopper kernel (3: pingpong with the softmax beside the consumer's
 * own P.V, causal calls; 2 the others); backends with attn_prefill_wgmma=2 (pingpong for every
 * call), 1 (the Hopper kernel without turns) and 0 (the mma.sync kernel of sm_80/86/89) then run
 * every case again. Elsewhere no case may have run on it. */
static void test_both_prefill_kernels(vl_backend *gpu) {
    int major, minor;
    if (!vt_device_sm90(&major, &minor)) {
        VT_CHECKF(wgmma_cases == 0, "%d cases on the Hopper kernel off sm_90", wgmma_cases);
        return;
    }
    VT_CHECKF(wgmma_cases >= 20,
              "only %d cases ran on the Hopper prefill kernel on this sm_90 device (built "
              "without 90 in VL_CUDA_ARCHITECTURES?)",
              wgmma_cases);
    const char *settings[] = {"attn_prefill_wgmma=2", "attn_prefill_wgmma=1",
                              "attn_prefill_wgmma=0"};
    for (int i = 0; i < 3; i++) {
        vl_cuda_config cfg;
        vl_cuda_config_init(&cfg);
        char why[256] = "";
        VT_CHECK(vl_cuda_config_set(&cfg, settings[i], why, sizeof why) == 0);
        vl_backend *other = vl_backend_cuda(&cfg, why, sizeof why);
        VT_CHECKF(other != NULL, "a backend with %s: %s", settings[i], why);
        if (other == NULL) return;
        printf("again with %s:\n", settings[i]);
        run_all(other);
        VT_CHECKF(i < 2 ? wgmma_cases >= 20 : wgmma_cases == 0, "%s: %d cases on the Hopper kernel",
                  settings[i], wgmma_cases);
        vl_backend_free(other);
    }
}

static void run_all(vl_backend *gpu) {
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    double worst = 0;
    wgmma_cases = 0;
    for (int i = 0; i < n_cases; i++)
        worst = fmax(worst, check_case(gpu, &cases[i], 1000 + (uint64_t)i));
    printf("attention: %d cases (%d on the Hopper prefill kernel), worst err/tol %.3f\n", n_cases,
           wgmma_cases, worst);

    const int n_q8 = (int)(sizeof q8 / sizeof q8[0]), wgmma_before = wgmma_cases;
    worst = 0;
    for (int i = 0; i < n_q8; i++)
        worst = fmax(worst,
                     check_int8(gpu, q8[i].name, q8[i].H, q8[i].G, q8[i].D, q8[i].n_q, q8[i].n_kv,
                                q8[i].bound, q8[i].ws_limit, q8[i].skew, 5000 + (uint64_t)i));
    printf("int8 cache: %d cases (%d on the Hopper prefill kernel), worst err/tol %.3f\n", n_q8,
           wgmma_cases - wgmma_before, worst);
}
#endif

int main(void) {
    char why[256] = "";
    vl_backend *gpu = vl_backend_cuda(NULL, why, sizeof why);
    if (gpu == NULL) {
        printf("no CUDA device: %s\n", why);
        VT_SKIP("GPU attention tests need a CUDA device");
        return vt_finish();
    }
#ifdef VL_HAVE_CUDA
    test_supported();
    test_graph_decode(gpu); /* first: the first-launch queries run inside the capture */
    run_all(gpu);
    test_both_prefill_kernels(gpu);
#endif
    vl_backend_free(gpu);
    return vt_finish();
}
