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
 * Cases run the flash kernels, the backend's attention_naive op, or both on the same inputs.
 * Head dims: the model's 128 and 80, 64 and 96, and every kind of small one (multiples of 8 with
 * and without zero padding). Runtime cache length (n_past_dev): the call with the bound in n_kv
 * must return exactly the bits of the call with the length written in; and one decode step
 * captured into a CUDA graph must, replayed after the length changed, match the eager call.
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
    p.o = dev_put(dl, o_host, (size_t)o_elems * 2);
    if (!p.o) return 0;
    if (path == FLASH) {
        VT_CHECKF(vl_cuda_attention_supported(&p), "%s: not supported", c->name);
        if (!vl_cuda_attention_supported(&p)) return 0;
        size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
        if (c->ws_limit >= 0) ws_bytes = (size_t)c->ws_limit;
        void *ws = ws_bytes ? dev_put(dl, NULL, ws_bytes) : NULL;
        if (ws_bytes && !ws) return 0;
        gpu->sync(gpu);
        vl_cuda_attention(&p, ws, ws_bytes, 0);
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
        /* 37 spare positions past n_kv (or past the bound), poisoned like the rest */
        const int64_t q_row = (int64_t)H * D + 16, cap = (c->bound > n_kv ? c->bound : n_kv) + 37;
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
        const char *path_name = path == FLASH ? "flash" : "naive";
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

/* One decode step captured into a CUDA graph with the cache length in device memory, replayed
 * after cudaMemcpyAsync changed the length: every replay must have the bits of the eager call
 * with that length written in the params. Runs first, so the kernels' one-time setup
 * (cudaFuncSetAttribute, the SM count) happens inside the capture, as in an engine whose first
 * decode step is recorded. */
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
    vl_cuda_attention(&p, ws, ws_bytes, stream);
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
        vl_cuda_attention(&e, ws, ws_bytes, stream);
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
    static const int dims_ok[] = {8, 16, 24, 40, 72, 120};
    for (int i = 0; i < 6; i++) {
        b = p, b.head_dim = dims_ok[i], b.kv_tok_stride = dims_ok[i];
        VT_CHECKF(vl_cuda_attention_supported(&b) == 1, "head_dim %d", dims_ok[i]);
    }
    static const int dims_bad[] = {0, 4, 12, 100, 136, 256};
    for (int i = 0; i < 6; i++) {
        b = p, b.head_dim = dims_bad[i];
        VT_CHECKF(vl_cuda_attention_supported(&b) == 0, "head_dim %d", dims_bad[i]);
    }
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
    /* runtime length: causal only, no segments, a bound of at least n_q; q_pos0 is ignored */
    static int32_t n_past_dummy;
    b = p, b.n_past_dev = &n_past_dummy, b.n_kv = 38000, b.q_pos0 = -5;
    VT_CHECK(vl_cuda_attention_supported(&b) == 1);
    b = p, b.n_past_dev = &n_past_dummy, b.causal = 0;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
    b = p, b.n_past_dev = &n_past_dummy, b.n_kv = 9;
    VT_CHECK(vl_cuda_attention_supported(&b) == 0);
}

static void run_all(vl_backend *gpu) {
    static const int32_t seg_vision[4] = {0, 37, 38, 300};    /* incl. a 1-token segment */
    static const int32_t seg_empty[5] = {0, 37, 38, 38, 300}; /* incl. an empty segment */
    static const int32_t seg_one[2] = {0, 700};
    /* rows 100..127 share a CTA with rows of segment 0 but see nothing of its first key tile */
    static const int32_t seg_late[4] = {0, 100, 120, 300};
    const int F = LAYOUT_FUSED, K = LAYOUT_CACHE;
    const int64_t ws2 = 2 * 28 * 129 * 4; /* decode workspace for 2 splits of 28 heads, D 128 */
    const attn_case cases[] = {
        /* name, H, G, D, n_q, n_kv, q_pos0, causal, seg, n_seg, layout, paths, scale_mul, ws,
         * bound */
        {"prefill causal D128 GQA7 n=1 (decode path)", 28, 4, 128, 1, 1, 0, 1, NULL, 0, K, FLASH, 0,
         -1, 0},
        {"prefill causal D128 GQA7 n=17 fused", 28, 4, 128, 17, 17, 0, 1, NULL, 0, F, FLASH, 0, -1,
         0},
        {"prefill causal D128 GQA7 n=64", 28, 4, 128, 64, 64, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"prefill causal D128 GQA7 n=100 fused", 28, 4, 128, 100, 100, 0, 1, NULL, 0, F, FLASH, 0,
         -1, 0},
        {"prefill causal D128 GQA7 n=257", 28, 4, 128, 257, 257, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"prefill causal D128 GQA7 n=1000", 28, 4, 128, 1000, 1000, 0, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"chunk n_q=100 after 300 cached", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K, BOTH, 0, -1,
         0},
        {"chunk n_q=64 after 64 cached", 28, 4, 128, 64, 128, 64, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"chunk n_q=2 after 50 cached", 28, 4, 128, 2, 52, 50, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"chunk n_q=130 after 1111 cached", 14, 2, 128, 130, 1241, 1111, 1, NULL, 0, K, FLASH, 0,
         -1, 0},
        {"causal GQA ratio 1, n=130 fused", 4, 4, 128, 130, 130, 0, 1, NULL, 0, F, FLASH, 0, -1, 0},
        {"causal GQA ratio 32, n=77", 32, 1, 128, 77, 77, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal sharp softmax (3x scale), n=300", 8, 2, 128, 300, 300, 0, 1, NULL, 0, K, FLASH, 3,
         -1, 0},
        {"non-causal full, n_q=50 over n_kv=300", 8, 2, 128, 50, 300, 0, 0, NULL, 0, K, BOTH, 0, -1,
         0},
        {"vision D80 segments [0,37,38,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_vision, 3, F,
         BOTH, 0, -1, 0},
        {"vision D80 segments with an empty one", 16, 16, 80, 300, 300, 0, 0, seg_empty, 4, F,
         FLASH, 0, -1, 0},
        {"vision D80 segments [0,100,120,300] fused", 16, 16, 80, 300, 300, 0, 0, seg_late, 3, F,
         FLASH, 0, -1, 0},
        {"vision D80 one segment of 700 fused", 16, 16, 80, 700, 700, 0, 0, seg_one, 1, F, FLASH, 0,
         -1, 0},
        {"vision D80 no segments, n=300", 16, 16, 80, 300, 300, 0, 0, NULL, 0, F, FLASH, 0, -1, 0},
        {"causal D64, n=150", 4, 2, 64, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D96, n=150", 4, 2, 96, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode D128 GQA7 n_kv=5", 28, 4, 128, 1, 5, 4, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode D128 GQA7 n_kv=1000", 28, 4, 128, 1, 1000, 999, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode D128 GQA7 n_kv=38000", 28, 4, 128, 1, 38000, 37999, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"decode n_kv=1000 sees 501 (q_pos0=500)", 28, 4, 128, 1, 1000, 500, 1, NULL, 0, K, FLASH,
         0, -1, 0},
        {"decode non-causal n_kv=3000", 28, 4, 128, 1, 3000, 0, 0, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode n_kv=3000, no workspace (1 split)", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K,
         FLASH, 0, 0, 0},
        {"decode n_kv=3000, workspace for 2 splits", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K,
         FLASH, 0, ws2, 0},
        {"decode GQA ratio 32 (2 head chunks), n_kv=700", 32, 1, 128, 1, 700, 699, 1, NULL, 0, K,
         FLASH, 0, -1, 0},
        {"decode D80 ratio 1, n_kv=333", 16, 16, 80, 1, 333, 332, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode n_kv=77", 28, 4, 128, 1, 77, 76, 1, NULL, 0, K, BOTH, 0, -1, 0},

        /* head dims of the tiny test models (16, 24, 32 text; 16, 40 vision) and other multiples
         * of 8: odd numbers of 16-byte chunks per row (24, 40, 56, 72, 120) and zero padding
         * (8, 24, 40, 56, 72, 120) */
        {"causal D16 GQA2, n=150", 4, 2, 16, 150, 150, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D24 GQA2, n=200 fused", 4, 2, 24, 200, 200, 0, 1, NULL, 0, F, BOTH, 0, -1, 0},
        {"causal D32 GQA2, n=130", 4, 2, 32, 130, 130, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D40, n=129", 4, 2, 40, 129, 129, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"chunk D24 n_q=70 after 500 cached", 6, 2, 24, 70, 570, 500, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"chunk D32 n_q=2 after 90 cached", 4, 2, 32, 2, 92, 90, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"vision D16 segments [0,37,38,300] fused", 4, 4, 16, 300, 300, 0, 0, seg_vision, 3, F,
         FLASH, 0, -1, 0},
        {"vision D40 segments [0,100,120,300] fused", 16, 16, 40, 300, 300, 0, 0, seg_late, 3, F,
         BOTH, 0, -1, 0},
        {"vision D40 segments with an empty one", 16, 16, 40, 300, 300, 0, 0, seg_empty, 4, F,
         FLASH, 0, -1, 0},
        {"vision D40 one segment of 700 fused", 16, 16, 40, 700, 700, 0, 0, seg_one, 1, F, FLASH, 0,
         -1, 0},
        {"causal D8, n=100", 2, 1, 8, 100, 100, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D56, n=100", 4, 2, 56, 100, 100, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D72, n=200", 4, 2, 72, 200, 200, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"causal D120, n=200", 4, 2, 120, 200, 200, 0, 1, NULL, 0, K, FLASH, 0, -1, 0},
        {"decode D16 GQA2 n_kv=5000 (splits)", 4, 2, 16, 1, 5000, 4999, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"decode D24 GQA3 n_kv=40", 6, 2, 24, 1, 40, 39, 1, NULL, 0, K, BOTH, 0, -1, 0},
        {"decode D24 GQA3 n_kv=3000 (splits)", 6, 2, 24, 1, 3000, 2999, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"decode D32 GQA2 n_kv=2000 (splits)", 4, 2, 32, 1, 2000, 1999, 1, NULL, 0, K, FLASH, 0, -1,
         0},
        {"decode D40 ratio 1, n_kv=1500 (splits)", 16, 16, 40, 1, 1500, 1499, 1, NULL, 0, K, FLASH,
         0, -1, 0},
        {"decode D8 n_kv=600", 2, 1, 8, 1, 600, 599, 1, NULL, 0, K, FLASH, 0, -1, 0},
        /* > 200 splits: the combine's split lanes (21 at D 24) walk more than one batch of 8 */
        {"decode D24 GQA3 n_kv=30000 (many splits)", 6, 2, 24, 1, 30000, 29999, 1, NULL, 0, K,
         FLASH, 0, -1, 0},
        {"decode D120 n_kv=900", 4, 2, 120, 1, 900, 899, 1, NULL, 0, K, FLASH, 0, -1, 0},

        /* runtime cache length (n_past_dev): the bits of the explicit call, bound >> length and
         * bound == length */
        {"runtime decode D128 GQA7 len 1000, bound 38000", 28, 4, 128, 1, 1000, 999, 1, NULL, 0, K,
         BOTH, 0, -1, 38000},
        {"runtime decode D128 GQA7 len 38000 = bound", 28, 4, 128, 1, 38000, 37999, 1, NULL, 0, K,
         FLASH, 0, -1, 38000},
        {"runtime decode first token, bound 4096", 28, 4, 128, 1, 1, 0, 1, NULL, 0, K, BOTH, 0, -1,
         4096},
        {"runtime decode len 3000, bound 38000, no workspace", 28, 4, 128, 1, 3000, 2999, 1, NULL,
         0, K, FLASH, 0, 0, 38000},
        {"runtime decode len 3000, bound 38000, 2 splits", 28, 4, 128, 1, 3000, 2999, 1, NULL, 0, K,
         FLASH, 0, ws2, 38000},
        {"runtime decode D24 GQA3 len 700, bound 5000", 6, 2, 24, 1, 700, 699, 1, NULL, 0, K, BOTH,
         0, -1, 5000},
        {"runtime chunk n_q=100 after 300, bound 2000", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K,
         BOTH, 0, -1, 2000},
        {"runtime chunk n_q=100 after 300, bound 400", 28, 4, 128, 100, 400, 300, 1, NULL, 0, K,
         FLASH, 0, -1, 400},
        {"runtime prefill n=257 from 0, bound 3000", 28, 4, 128, 257, 257, 0, 1, NULL, 0, K, FLASH,
         0, -1, 3000},
        {"runtime chunk D40 n_q=70 after 30, bound 1000", 4, 2, 40, 70, 100, 30, 1, NULL, 0, K,
         BOTH, 0, -1, 1000},
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
    test_graph_decode(gpu); /* first: the kernels' one-time setup runs inside the capture */
    run_all(gpu);
#endif
    return vt_finish();
}
