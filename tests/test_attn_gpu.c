/* test_attn_gpu.c: GPU attention (flash prefill, split-KV decode, the naive baseline) against the
 * CPU twin, on the shapes the engine uses and on odd ones.
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
 * Without a device (or a CUDA build) it prints why and reports one skip (exit 77).
 * Leaves out: timing (tests/bench_attn.c).
 */
#include "kernels/kernels.h"
#include "vltest.h"

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
enum { PATH_FLASH, PATH_NAIVE };

typedef struct {
    const char *name;
    int n_heads, n_kv_heads, head_dim;
    int64_t n_q, n_kv, q_pos0;
    int causal;
    const int32_t *seg;
    int n_seg;
    int layout;       /* LAYOUT_FUSED needs n_q == n_kv */
    int path;         /* PATH_FLASH: vl_cuda_attention; PATH_NAIVE: vl_cuda_attention_naive */
    float scale_mul;  /* scale = scale_mul / sqrt(D); 0 means 1 */
    int64_t ws_limit; /* flash: workspace bytes to offer; -1: what workspace_bytes asks */
} attn_case;

typedef struct {
    vl_backend *gpu;
    void *bufs[8];
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
static double compare(const attn_case *c, const uint16_t *o, int64_t o_stride, const float *ref) {
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
              "%s: %lld outputs out of tolerance, first at query %lld head %d dim %d: "
              "got %g, want %g",
              c->name, (long long)bad, (long long)first_i, first_h, first_d, (double)first_got,
              (double)first_want);
    /* gaps between rows and the tail stay untouched */
    int64_t touched = 0;
    for (int64_t i = 0; i < c->n_q; i++)
        for (int64_t e = (int64_t)H * D; e < o_stride; e++)
            touched += o[i * o_stride + e] != BF16_NAN;
    for (int64_t e = 0; e < 64; e++) touched += o[c->n_q * o_stride + e] != BF16_NAN;
    VT_CHECKF(touched == 0, "%s: %lld elements outside o written", c->name, (long long)touched);
    printf("  %-58s max|err| %.3e  err/tol %.3f\n", c->name, worst_err, worst);
    return worst;
}

static double check_case(vl_backend *gpu, const attn_case *c, uint64_t seed) {
    const int H = c->n_heads, G = c->n_kv_heads, D = c->head_dim;
    const int64_t n_q = c->n_q, n_kv = c->n_kv;
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
        const int64_t row = (int64_t)(H + 2 * G) * D + 8; /* 8 spare elements per row */
        uint16_t *qkv = bf16_poisoned(n_q * row);
        for (int64_t t = 0; t < n_q; t++) {
            for (int64_t e = 0; e < (int64_t)H * D; e++)
                qkv[t * row + e] = vl_f32_to_bf16(q[t * H * D + e]);
            for (int64_t e = 0; e < (int64_t)G * D; e++) {
                qkv[t * row + (int64_t)H * D + e] = vl_f32_to_bf16(k[t * G * D + e]);
                qkv[t * row + (int64_t)(H + G) * D + e] = vl_f32_to_bf16(v[t * G * D + e]);
            }
        }
        uint16_t *d = dev_put(&dl, qkv, (size_t)(n_q * row) * 2);
        free(qkv);
        p.q = d, p.k = d + (int64_t)H * D, p.v = d + (int64_t)(H + G) * D;
        p.q_stride = p.kv_tok_stride = row;
        p.kv_head_stride = D;
    } else {
        const int64_t q_row = (int64_t)H * D + 16, cap = n_kv + 37; /* 37 spare positions */
        uint16_t *qh = bf16_poisoned(n_q * q_row);
        uint16_t *kc = bf16_poisoned(G * cap * D), *vc = bf16_poisoned(G * cap * D);
        for (int64_t i = 0; i < n_q; i++)
            for (int64_t e = 0; e < (int64_t)H * D; e++)
                qh[i * q_row + e] = vl_f32_to_bf16(q[i * H * D + e]);
        for (int g = 0; g < G; g++)
            for (int64_t t = 0; t < n_kv; t++)
                for (int d = 0; d < D; d++) {
                    kc[(g * cap + t) * D + d] = vl_f32_to_bf16(k[(t * G + g) * D + d]);
                    vc[(g * cap + t) * D + d] = vl_f32_to_bf16(v[(t * G + g) * D + d]);
                }
        p.q = dev_put(&dl, qh, (size_t)(n_q * q_row) * 2);
        p.k = dev_put(&dl, kc, (size_t)(G * cap * D) * 2);
        p.v = dev_put(&dl, vc, (size_t)(G * cap * D) * 2);
        p.q_stride = q_row;
        p.kv_tok_stride = D;
        p.kv_head_stride = cap * D;
        free(qh), free(kc), free(vc);
    }
    const int64_t o_stride = (int64_t)H * D + 8, o_elems = n_q * o_stride + 64;
    uint16_t *o = bf16_poisoned(o_elems);
    p.o = dev_put(&dl, o, (size_t)o_elems * 2);
    p.o_stride = o_stride;
    if (c->n_seg > 0) p.seg_starts = dev_put(&dl, c->seg, (size_t)(c->n_seg + 1) * sizeof(int32_t));

    double worst = 0;
    int ok = p.q && p.k && p.v && p.o && (c->n_seg == 0 || p.seg_starts);
    if (ok && c->path == PATH_FLASH) {
        VT_CHECKF(vl_cuda_attention_supported(&p), "%s: not supported", c->name);
        size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
        if (c->ws_limit >= 0) ws_bytes = (size_t)c->ws_limit;
        void *ws = ws_bytes ? dev_put(&dl, NULL, ws_bytes) : NULL;
        gpu->sync(gpu);
        if (vl_cuda_attention_supported(&p)) vl_cuda_attention(&p, ws, ws_bytes, 0);
    } else if (ok) {
        float *scores = dev_put(&dl, NULL, (size_t)(H * n_q * n_kv) * sizeof(float));
        gpu->sync(gpu);
        if (scores) vl_cuda_attention_naive(&p, scores, 0);
    }
    cudaError_t err = cudaDeviceSynchronize();
    VT_CHECKF(err == cudaSuccess, "%s: %s", c->name, cudaGetErrorString(err));
    if (ok && err == cudaSuccess) {
        gpu->download(gpu, o, p.o, (size_t)o_elems * 2);
        gpu->sync(gpu);
        worst = compare(c, o, o_stride, ref);
    }
    dev_free_all(&dl);
    free(q), free(k), free(v), free(ref), free(o);
    return worst;
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
    b.head_dim = 72;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.n_kv_heads = 5;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.q_stride = 3 * 3584 + 4;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.k = buf + 1;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.causal = 0, b.n_seg = 2, b.seg_starts = (const int32_t *)buf, b.n_kv = 11;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.head_dim = 80, b.n_heads = 16, b.n_kv_heads = 16, b.causal = 0;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
}

static void run_all(vl_backend *gpu) {
    static const int32_t seg_vision[4] = {0, 37, 38, 300};    /* incl. a 1-token segment */
    static const int32_t seg_empty[5] = {0, 37, 38, 38, 300}; /* incl. an empty segment */
    static const int32_t seg_one[2] = {0, 700};
    /* rows 100..127 share a CTA with rows of segment 0 but see nothing of its first key tile */
    static const int32_t seg_late[4] = {0, 100, 120, 300};
    const int F = LAYOUT_FUSED, K = LAYOUT_CACHE, FL = PATH_FLASH, NV = PATH_NAIVE;
    const attn_case cases[] = {
        /* name, H, G, D, n_q, n_kv, q_pos0, causal, seg, n_seg, layout, path, scale_mul, ws */
        {"prefill causal D128 GQA7 n=1 (decode path)", 28, 4, 128, 1, 1, 0, 1, NULL, 0, K, FL, 0,
         -1},
        {"prefill causal D128 GQA7 n=17 fused", 28, 4, 128, 17, 17, 0, 1, NULL, 0, F, FL, 0, -1},
        {"prefill causal D128 GQA7 n=64", 28, 4, 128, 64, 64, 0, 1, NULL, 0, K, FL, 0, -1},
        {"prefill causal D128 GQA7 n=100 fused", 28, 4, 128, 100, 100, 0, 1, NULL, 0, F, FL, 0, -1},
        {"prefill causal D128 GQA7 n=257", 28, 4, 128, 257, 257, 0, 1, NULL, 0, K, FL, 0, -1},
        {"prefill causal D128 GQA7 n=1000", 28, 4, 128, 1000, 1000, 0, 1, NULL, 0, K, FL, 0, -1},
        {"chunk n_q=100 after 300 cached", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, FL, 0, -1},
        {"chunk n_q=64 after 64 cached", 28, 4, 128, 64, 128, 64, 1, NULL, 0, K, FL, 0, -1},
        {"chunk n_q=2 after 50 cached", 28, 4, 128, 2, 52, 50, 1, NULL, 0, K, FL, 0, -1},
        {"chunk n_q=130 after 1111 cached", 14, 2, 128, 130, 1241, 1111, 1, NULL, 0, K, FL, 0, -1},
        {"causal GQA ratio 1, n=130 fused", 4, 4, 128, 130, 130, 0, 1, NULL, 0, F, FL, 0, -1},
        {"causal GQA ratio 32, n=77", 32, 1, 128, 77, 77, 0, 1, NULL, 0, K, FL, 0, -1},
        {"causal sharp softmax (3x scale), n=300", 8, 2, 128, 300, 300, 0, 1, NULL, 0, K, FL, 3,
         -1},
        {"non-causal full, n_q=50 over n_kv=300", 8, 2, 128, 50, 300, 0, 0, NULL, 0, K, FL, 0, -1},
        {"vision D80 segments [0,37,38,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_vision, 3, F,
         FL, 0, -1},
        {"vision D80 segments with an empty one", 16, 16, 80, 300, 300, 0, 0, seg_empty, 4, F, FL,
         0, -1},
        {"vision D80 segments [0,100,120,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_late, 3, F,
         FL, 0, -1},
        {"vision D80 one segment of 700 fused", 16, 16, 80, 700, 700, 0, 0, seg_one, 1, F, FL, 0,
         -1},
        {"vision D80 no segments, n=300", 16, 16, 80, 300, 300, 0, 0, NULL, 0, F, FL, 0, -1},
        {"causal D64, n=150", 4, 2, 64, 150, 150, 0, 1, NULL, 0, K, FL, 0, -1},
        {"causal D96, n=150", 4, 2, 96, 150, 150, 0, 1, NULL, 0, K, FL, 0, -1},
        {"decode D128 GQA7 n_kv=5", 28, 4, 128, 1, 5, 4, 1, NULL, 0, K, FL, 0, -1},
        {"decode D128 GQA7 n_kv=1000", 28, 4, 128, 1, 1000, 999, 1, NULL, 0, K, FL, 0, -1},
        {"decode D128 GQA7 n_kv=38000", 28, 4, 128, 1, 38000, 37999, 1, NULL, 0, K, FL, 0, -1},
        {"decode n_kv=1000 sees 501 (q_pos0=500)", 28, 4, 128, 1, 1000, 500, 1, NULL, 0, K, FL, 0,
         -1},
        {"decode non-causal n_kv=3000", 28, 4, 128, 1, 3000, 0, 0, NULL, 0, K, FL, 0, -1},
        {"decode n_kv=3000, no workspace (1 split)", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K, FL,
         0, 0},
        {"decode n_kv=3000, workspace for 2 splits", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K, FL,
         0, 2 * 28 * 129 * 4},
        {"decode GQA ratio 32 (2 head chunks), n_kv=700", 32, 1, 128, 1, 700, 699, 1, NULL, 0, K,
         FL, 0, -1},
        {"decode D80 ratio 1, n_kv=333", 16, 16, 80, 1, 333, 332, 1, NULL, 0, K, FL, 0, -1},
        {"naive chunk n_q=100 after 300 cached", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, NV, 0,
         -1},
        {"naive vision D80 segments", 16, 16, 80, 300, 300, 0, 0, seg_vision, 3, F, NV, 0, -1},
        {"naive decode n_kv=77", 28, 4, 128, 1, 77, 76, 1, NULL, 0, K, NV, 0, -1},
    };
    const int n_cases = (int)(sizeof cases / sizeof cases[0]);
    double worst = 0;
    for (int i = 0; i < n_cases; i++)
        worst = fmax(worst, check_case(gpu, &cases[i], 1000 + (uint64_t)i));
    printf("attention: %d cases, worst err/tol %.3f\n", n_cases, worst);
}
#endif

int main(void) {
    char why[256] = "";
    vl_backend *gpu = vl_backend_cuda(why, sizeof why);
    if (gpu == NULL) {
        printf("no CUDA device: %s\n", why);
        VT_SKIP("GPU attention tests need a CUDA device");
        return vt_finish();
    }
#ifdef VL_HAVE_CUDA
    test_supported();
    run_all(gpu);
#endif
    return vt_finish();
}
