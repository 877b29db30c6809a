/* cuda_sample.cu: sample_token on the GPU: the next token from the logits and the decode state
 * advanced in device memory, so that a recorded decode step (CUDA graph) feeds itself and the
 * host only reads the tokens when it wants to print them.
 *
 * Two steps: up to two CTAs per SM each score a contiguous range of the vocabulary (152k) and
 * keep their best (score, index) by the CPU twin's rules (sample_score.h) in the attention
 * workspace; then one CTA picks the best of those and advances the state. (Version 1, one CTA
 * of 1024 threads over the whole vocabulary, took 46 us per token on an H100: 0.7% of a step.)
 * The logits are the bf16 activations, or the float32 scores of the repetition penalty
 * (sample_token_f32). sample_rows: the same two steps for many rows at once (grid y: the row),
 * each with its own temperature and key, no decode state (vlrun serve's batched decode).
 * Leaves out: top-k / top-p (host path in engine/sample.c). */
#include "kernels/cuda_ops.h"
#include "kernels/sample_score.h"

#define SAMPLE_THREADS  512
#define SAMPLE_MAX_CTAS 512

/* (score, index) pairs of one CTA's candidates: the best over the block, to thread 0, with the
 * rules of vl_sample_better (a total order: the result does not depend on the tree's shape). */
static __device__ void block_best(double *best, int64_t *best_i, double *s_score,
                                  int64_t *s_index) {
    const int t = (int)threadIdx.x;
    s_score[t] = *best;
    s_index[t] = *best_i;
    __syncthreads();
    for (int half = SAMPLE_THREADS / 2; half > 0; half /= 2) {
        if (t < half) {
            const int64_t oi = s_index[t + half];
            if (oi >= 0 && (s_index[t] < 0 ||
                            vl_sample_better(s_score[t + half], oi, s_score[t], s_index[t]))) {
                s_score[t] = s_score[t + half];
                s_index[t] = oi;
            }
        }
        __syncthreads();
    }
    *best = s_score[0];
    *best_i = s_index[0];
}

/* A logit as float32: bf16 activations, or the float32 output of the repetition penalty. */
static __device__ __forceinline__ float logit_f32(const vl_bf16 *x, int64_t i) {
    return __bfloat162float(x[i]);
}
static __device__ __forceinline__ float logit_f32(const float *x, int64_t i) {
    return x[i];
}

/* The best (score, index) of logits[lo, hi) over the CTA, to every thread (index -1: nothing
 * seen, or only NaN). */
template <typename T>
static __device__ void best_of_range(const T *logits, int64_t lo, int64_t hi, float temperature,
                                     uint64_t key, double *best, int64_t *best_i, double *s_score,
                                     int64_t *s_index) {
    *best = 0.0;
    *best_i = -1;
    for (int64_t i = lo + threadIdx.x; i < hi; i += SAMPLE_THREADS) {
        const double v = vl_sample_score(logit_f32(logits, i), i, temperature, key);
        if (v == v && (*best_i < 0 || vl_sample_better(v, i, *best, *best_i))) {
            *best = v;
            *best_i = i;
        }
    }
    block_best(best, best_i, s_score, s_index);
}

/* The best of n_parts partial results over the CTA, to thread 0 (index -1 when none). */
static __device__ void best_of_parts(int n_parts, const double *ws_score, const int64_t *ws_index,
                                     double *best, int64_t *best_i, double *s_score,
                                     int64_t *s_index) {
    *best = 0.0;
    *best_i = -1;
    for (int c = (int)threadIdx.x; c < n_parts; c += SAMPLE_THREADS) {
        const int64_t i = ws_index[c];
        if (i >= 0 && (*best_i < 0 || vl_sample_better(ws_score[c], i, *best, *best_i))) {
            *best = ws_score[c];
            *best_i = i;
        }
    }
    block_best(best, best_i, s_score, s_index);
}

/* Stage 1: CTA c scores a contiguous range of the vocabulary (of row blockIdx.y: sample_rows)
 * and writes its best pair to the workspace. A decode state gives the key of sample_token;
 * without one, row r's temperature and key are temperature[r], keys[r]. */
template <typename T>
static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_partial_kernel(const vl_decode_state *st, const T *logits, int64_t n, float temperature,
                          uint64_t seed, const float *row_temperature, const uint64_t *row_keys,
                          double *ws_score, int64_t *ws_index) {
    __shared__ double s_score[SAMPLE_THREADS];
    __shared__ int64_t s_index[SAMPLE_THREADS];
    const int64_t r = blockIdx.y;
    const uint64_t key = st ? vl_sample_key(seed, st->step) : row_keys[r];
    if (!st) temperature = row_temperature[r];
    const int64_t per_cta = (n + gridDim.x - 1) / gridDim.x;
    const int64_t lo = blockIdx.x * per_cta, hi = lo + per_cta < n ? lo + per_cta : n;
    double best;
    int64_t best_i;
    best_of_range(logits + r * n, lo, hi, temperature, key, &best, &best_i, s_score, s_index);
    if (threadIdx.x == 0) {
        ws_score[r * gridDim.x + blockIdx.x] = best;
        ws_index[r * gridDim.x + blockIdx.x] = best_i;
    }
}

/* Stage 2: one CTA picks the best of the partials and advances the decode state. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_pick_kernel(vl_decode_state *st, int32_t *tokens, int n_parts, const double *ws_score,
                       const int64_t *ws_index, int advance) {
    __shared__ double s_score[SAMPLE_THREADS];
    __shared__ int64_t s_index[SAMPLE_THREADS];
    double best;
    int64_t best_i;
    best_of_parts(n_parts, ws_score, ws_index, &best, &best_i, s_score, s_index);
    if (threadIdx.x == 0) {
        const int32_t tok = best_i < 0 ? 0 : (int32_t)best_i;
        st->token = tok;
        tokens[st->step] = tok;
        st->step += 1;
        if (advance) {
            st->n_past += 1;
            for (int r = 0; r < 3; r++) st->pos[r] = st->n_past + st->rope_delta;
        }
    }
}

/* sample_rows' stage 2: CTA r picks row r's token. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows_pick_kernel(int32_t *tokens, int n_parts, const double *ws_score,
                            const int64_t *ws_index) {
    __shared__ double s_score[SAMPLE_THREADS];
    __shared__ int64_t s_index[SAMPLE_THREADS];
    const int64_t r = blockIdx.x;
    double best;
    int64_t best_i;
    best_of_parts(n_parts, ws_score + r * n_parts, ws_index + r * n_parts, &best, &best_i, s_score,
                  s_index);
    if (threadIdx.x == 0) tokens[r] = best_i < 0 ? 0 : (int32_t)best_i;
}

/* CTAs per row: one per ~1k logits, two per SM at most (the range is read once by many SMs). */
static int64_t parts_of(const vl_cuda_ctx *c, int64_t n) {
    int64_t parts = (n + 1023) / 1024;
    if (parts > 2 * (int64_t)c->sm_count) parts = 2 * (int64_t)c->sm_count;
    return parts > SAMPLE_MAX_CTAS ? SAMPLE_MAX_CTAS : parts;
}

/* Both stages over logits of type T (bf16 or float32). */
template <typename T>
static void sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens, const T *logits,
                         int64_t n, float temperature, uint64_t seed, int advance) {
    VL_CUDA_REQUIRE(n > 0 && n <= INT32_MAX, "sample_token over %lld logits", (long long)n);
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    const int64_t parts = parts_of(c, n);
    /* the attention workspace is idle here (same stream; attention is done with it) */
    VL_CUDA_REQUIRE(c->attn_ws_bytes >= (size_t)parts * 16, "sample_token workspace");
    double *ws_score = (double *)c->attn_ws;
    int64_t *ws_index = (int64_t *)(ws_score + parts);
    sample_partial_kernel<T><<<(unsigned)parts, SAMPLE_THREADS, 0, c->stream>>>(
        st, logits, n, temperature, seed, NULL, NULL, ws_score, ws_index);
    VL_CUDA_LAUNCH_CHECK();
    sample_pick_kernel<<<1, SAMPLE_THREADS, 0, c->stream>>>(st, tokens, (int)parts, ws_score,
                                                            ws_index, advance);
    VL_CUDA_LAUNCH_CHECK();
}

extern "C" void vl_cuda_sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                                     const void *logits, int64_t n, float temperature,
                                     uint64_t seed, int advance) {
    sample_token(b, st, tokens, (const vl_bf16 *)logits, n, temperature, seed, advance);
}

extern "C" void vl_cuda_sample_token_f32(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                                         const float *logits, int64_t n, float temperature,
                                         uint64_t seed, int advance) {
    sample_token(b, st, tokens, logits, n, temperature, seed, advance);
}

extern "C" void vl_cuda_sample_rows(vl_backend *b, int32_t *tokens, const void *logits,
                                    int64_t n_rows, int64_t n, const float *temperature,
                                    const uint64_t *keys) {
    VL_CUDA_REQUIRE(n > 0 && n <= INT32_MAX && n_rows >= 0 && n_rows <= 65535,
                    "sample_rows over %lld rows of %lld logits", (long long)n_rows, (long long)n);
    if (n_rows == 0) return;
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    const int64_t parts = parts_of(c, n);
    VL_CUDA_REQUIRE(c->attn_ws_bytes >= (size_t)(parts * n_rows) * 16, "sample_rows workspace");
    double *ws_score = (double *)c->attn_ws;
    int64_t *ws_index = (int64_t *)(ws_score + parts * n_rows);
    const dim3 grid((unsigned)parts, (unsigned)n_rows);
    sample_partial_kernel<vl_bf16><<<grid, SAMPLE_THREADS, 0, c->stream>>>(
        NULL, (const vl_bf16 *)logits, n, 0.0f, 0, temperature, keys, ws_score, ws_index);
    VL_CUDA_LAUNCH_CHECK();
    sample_rows_pick_kernel<<<(unsigned)n_rows, SAMPLE_THREADS, 0, c->stream>>>(tokens, (int)parts,
                                                                                ws_score, ws_index);
    VL_CUDA_LAUNCH_CHECK();
}
