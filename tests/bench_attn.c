/* bench_attn.c: times GPU attention on the model's shapes (not a ctest test: correctness is
 * test_attention_gpu's job).
 *   prefill  causal, D=128, 28 query heads over 4 kv heads, n = 1k, 4k, 16k, and a 2k chunk
 *            after a 14k cache: TFLOP/s = 4 D H (visible query-key pairs) / time
 *   vision   non-causal, D=80, 16 heads: one 5456-token block and 4 blocks of 1364
 *   decode   one query, D=128, 28/4 heads, caches of 1364, 4096, 16384, 38192 keys:
 *            GB/s = K and V bytes read (2 n_kv G D 2) / time; and the CUDA-graph form (cache
 *            length read from device memory, n_kv = a 38192 bound) at 1364 and 38192 keys
 * Flash kernels always; the naive (eager) path too while its scores fit in 4 GB. Each timing
 * is the median of --iters runs, each after a 256 MB write that evicts L2. Output: one line
 * per shape, "shape: flash <ms> ms <rate> | naive <ms> ms <rate>".
 * Tuning knobs read by the kernels (set them before running): VL_ATTN_PREFILL_ROWS=64|128,
 * VL_ATTN_DECODE_SPLITS=N.
 * Leaves out: comparisons with other libraries (run PyTorch's SDPA separately).
 */
#include "kernels/cuda_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_attn: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                    cudaGetErrorString(e_));                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int iters = 10;
static void *flush_buf;
static const size_t flush_bytes = (size_t)256 << 20;

/* Device buffer of n bf16 values, uniform in [-2, 2) (a fixed LCG; values do not matter for
 * speed, only that they are finite and varied). */
static void *random_bf16(int64_t n) {
    uint16_t *h = malloc((size_t)n * 2);
    uint32_t s = 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = vl_f32_to_bf16(((float)(s >> 8) / 16777216.0f) * 4.0f - 2.0f);
    }
    void *d;
    CHECK(cudaMalloc(&d, (size_t)n * 2));
    CHECK(cudaMemcpy(d, h, (size_t)n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median milliseconds of the flash (naive == 0) or naive path. */
static float time_ms(const vl_attn_params *p, int naive, void *ws, size_t ws_bytes, float *scores) {
    float *ms = malloc((size_t)iters * sizeof(float));
    cudaEvent_t t0, t1;
    CHECK(cudaEventCreate(&t0));
    CHECK(cudaEventCreate(&t1));
    for (int it = -2; it < iters; it++) { /* two warm-up runs */
        CHECK(cudaMemsetAsync(flush_buf, it & 0xff, flush_bytes, 0));
        CHECK(cudaEventRecord(t0, 0));
        if (naive)
            vl_cuda_attention_naive(p, scores, 0);
        else
            vl_cuda_attention(p, ws, ws_bytes, 0);
        CHECK(cudaEventRecord(t1, 0));
        CHECK(cudaEventSynchronize(t1));
        if (it >= 0) CHECK(cudaEventElapsedTime(&ms[it], t0, t1));
    }
    CHECK(cudaGetLastError());
    qsort(ms, (size_t)iters, sizeof(float), cmp_float);
    float med = ms[iters / 2];
    free(ms);
    CHECK(cudaEventDestroy(t0));
    CHECK(cudaEventDestroy(t1));
    return med;
}

/* Query-key pairs the mask lets through (what the FLOP count is based on). */
static double visible_pairs(const vl_attn_params *p, const int32_t *seg_host) {
    double pairs = 0;
    for (int64_t i = 0; i < p->n_q; i++) {
        int64_t lo = 0, hi = p->n_kv;
        if (p->n_seg > 0) {
            int s = 0;
            while (s + 1 < p->n_seg && seg_host[s + 1] <= i) s++;
            lo = seg_host[s], hi = seg_host[s + 1];
        }
        if (p->causal && p->q_pos0 + i + 1 < hi) hi = p->q_pos0 + i + 1;
        pairs += (double)(hi - lo);
    }
    return pairs;
}

/* One shape: q [n_q, H*D] dense, K/V head-major caches of cap positions, o dense.
 * bound > 0: the cache length is passed as n_past_dev (= q_pos0) with n_kv = bound. */
static void bench(const char *name, int H, int G, int D, int64_t n_q, int64_t n_kv, int64_t q_pos0,
                  int causal, const int32_t *seg_host, int n_seg, int64_t bound) {
    const int64_t cap = bound > n_kv ? bound : n_kv;
    vl_attn_params p = {.q_stride = (int64_t)H * D,
                        .kv_tok_stride = D,
                        .kv_head_stride = cap * D,
                        .o_stride = (int64_t)H * D,
                        .n_q = n_q,
                        .n_kv = n_kv,
                        .n_heads = H,
                        .n_kv_heads = G,
                        .head_dim = D,
                        .scale = 1.0f / sqrtf((float)D),
                        .causal = causal,
                        .q_pos0 = q_pos0,
                        .n_seg = n_seg};
    p.q = random_bf16(n_q * H * D);
    p.k = random_bf16(G * cap * D);
    p.v = random_bf16(G * cap * D);
    CHECK(cudaMalloc(&p.o, (size_t)(n_q * H * D) * 2));
    int32_t *seg_dev = NULL, *n_past_dev = NULL;
    if (bound > 0) {
        const int32_t n_past = (int32_t)q_pos0;
        CHECK(cudaMalloc((void **)&n_past_dev, sizeof n_past));
        CHECK(cudaMemcpy(n_past_dev, &n_past, sizeof n_past, cudaMemcpyHostToDevice));
        p.n_past_dev = n_past_dev, p.n_kv = bound;
    }
    if (n_seg > 0) {
        CHECK(cudaMalloc((void **)&seg_dev, (size_t)(n_seg + 1) * 4));
        CHECK(cudaMemcpy(seg_dev, seg_host, (size_t)(n_seg + 1) * 4, cudaMemcpyHostToDevice));
        p.seg_starts = seg_dev;
    }
    if (!vl_cuda_attention_supported(&p)) {
        printf("%s: not supported\n", name);
        exit(1);
    }
    size_t ws_bytes = vl_cuda_attention_workspace_bytes(&p);
    void *ws;
    CHECK(cudaMalloc(&ws, ws_bytes));

    const float flash = time_ms(&p, 0, ws, ws_bytes, NULL);
    vl_attn_params explicit_len = p; /* what the FLOP count is based on */
    explicit_len.n_kv = n_kv, explicit_len.n_past_dev = NULL;
    const double flops = 4.0 * D * H * visible_pairs(&explicit_len, seg_host);
    const double kv_bytes = 2.0 * (double)n_kv * G * D * 2;
    const int decode = n_q == 1;
#define RATE(ms) (decode ? kv_bytes / ((ms)*1e-3) / 1e9 : flops / ((ms)*1e-3) / 1e12)
    const char *unit = decode ? "GB/s" : "TFLOP/s";
    printf("%-44s flash %9.3f ms %7.1f %s", name, flash, RATE(flash), unit);

    const double score_bytes = 4.0 * H * (double)n_q * (double)p.n_kv; /* the bound, if any */
    float *scores = NULL;
    if (score_bytes <= 4e9 && cudaMalloc((void **)&scores, (size_t)score_bytes) == cudaSuccess) {
        const float naive = time_ms(&p, 1, NULL, 0, scores);
        printf(" | naive %9.3f ms %7.1f %s (flash %.1fx)", naive, RATE(naive), unit, naive / flash);
        CHECK(cudaFree(scores));
    } else {
        (void)cudaGetLastError(); /* a failed cudaMalloc leaves its error behind */
        printf(" | naive skipped (%.1f GB of scores)", score_bytes / 1e9);
    }
    printf("\n");
#undef RATE
    CHECK(cudaFree((void *)p.q));
    CHECK(cudaFree((void *)p.k));
    CHECK(cudaFree((void *)p.v));
    CHECK(cudaFree(p.o));
    CHECK(cudaFree(ws));
    if (seg_dev) CHECK(cudaFree(seg_dev));
    if (n_past_dev) CHECK(cudaFree(n_past_dev));
}

int main(int argc, char **argv) {
    const char *what = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (argv[i][0] != '-')
            what = argv[i];
        else {
            fprintf(stderr, "usage: bench_attn [prefill|vision|decode|all] [--iters N]\n");
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    int dev = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        fprintf(stderr, "bench_attn: no CUDA device\n");
        return 1;
    }
    printf("device: %s, %d SMs; median of %d runs, L2 flushed before each\n", prop.name,
           prop.multiProcessorCount, iters);
    CHECK(cudaMalloc(&flush_buf, flush_bytes));
    const int all = strcmp(what, "all") == 0;
    if (all || strcmp(what, "prefill") == 0) {
        bench("prefill causal D128 28/4 heads n=1024", 28, 4, 128, 1024, 1024, 0, 1, NULL, 0, 0);
        bench("prefill causal D128 28/4 heads n=4096", 28, 4, 128, 4096, 4096, 0, 1, NULL, 0, 0);
        bench("prefill causal D128 28/4 heads n=16384", 28, 4, 128, 16384, 16384, 0, 1, NULL, 0, 0);
        bench("chunk 2048 after 14336 cached", 28, 4, 128, 2048, 16384, 14336, 1, NULL, 0, 0);
    }
    if (all || strcmp(what, "vision") == 0) {
        static const int32_t one[2] = {0, 5456}, four[5] = {0, 1364, 2728, 4092, 5456};
        bench("vision D80 16 heads, 1 block of 5456", 16, 16, 80, 5456, 5456, 0, 0, one, 1, 0);
        bench("vision D80 16 heads, 4 blocks of 1364", 16, 16, 80, 5456, 5456, 0, 0, four, 4, 0);
    }
    if (all || strcmp(what, "decode") == 0) {
        /* 1364: a short prompt (one 1364-token image); 38192: the long cache */
        static const int64_t lens[4] = {1364, 4096, 16384, 38192};
        for (int i = 0; i < 4; i++) {
            char name[64];
            snprintf(name, sizeof name, "decode D128 28/4 heads n_kv=%lld", (long long)lens[i]);
            bench(name, 28, 4, 128, 1, lens[i], lens[i] - 1, 1, NULL, 0, 0);
        }
        bench("decode graph form n_kv=1364, bound 38192", 28, 4, 128, 1, 1364, 1363, 1, NULL, 0,
              38192);
        bench("decode graph form n_kv=38192 = bound", 28, 4, 128, 1, 38192, 38191, 1, NULL, 0,
              38192);
    }
    CHECK(cudaFree(flush_buf));
    return 0;
}
