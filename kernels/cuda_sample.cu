/* cuda_sample.cu: sample_token on the GPU: the next token from the logits and the decode state
 * advanced in device memory, so that a recorded decode step (CUDA graph) feeds itself and the
 * host only reads the tokens when it wants to print them.
 *
 * One CTA of 1024 threads: the vocabulary (152k) is read once, coalesced; each thread keeps its
 * best (score, index), then a shared-memory tree picks the winner with the CPU twin's rules
 * (sample_score.h). A multi-CTA version would save a few microseconds of a ~6 ms step.
 * Leaves out: top-k / top-p (host path in engine/sample.c). */
#include "kernels/cuda_ops.h"
#include "kernels/sample_score.h"

#define SAMPLE_THREADS 1024

static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_token_kernel(vl_decode_state *st, int32_t *tokens, const vl_bf16 *logits, int64_t n,
                        float temperature, uint64_t seed, int advance) {
    __shared__ double s_score[SAMPLE_THREADS];
    __shared__ int64_t s_index[SAMPLE_THREADS];
    const int t = (int)threadIdx.x;
    const uint64_t key = vl_sample_key(seed, st->step);
    double best = 0.0;
    int64_t best_i = -1; /* -1: nothing seen (or only NaN) */
    for (int64_t i = t; i < n; i += SAMPLE_THREADS) {
        double v = vl_sample_score(__bfloat162float(logits[i]), i, temperature, key);
        if (v == v && (best_i < 0 || vl_sample_better(v, i, best, best_i))) {
            best = v;
            best_i = i;
        }
    }
    s_score[t] = best;
    s_index[t] = best_i;
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
    if (t == 0) {
        const int32_t tok = s_index[0] < 0 ? 0 : (int32_t)s_index[0];
        st->token = tok;
        tokens[st->step] = tok;
        st->step += 1;
        if (advance) {
            st->n_past += 1;
            for (int r = 0; r < 3; r++) st->pos[r] = st->n_past + st->rope_delta;
        }
    }
}

extern "C" void vl_cuda_sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                                     const void *logits, int64_t n, float temperature,
                                     uint64_t seed, int advance) {
    VL_CUDA_REQUIRE(n > 0 && n <= INT32_MAX, "sample_token over %lld logits", (long long)n);
    sample_token_kernel<<<1, SAMPLE_THREADS, 0, vl_cuda_ctx_of(b)->stream>>>(
        st, tokens, (const vl_bf16 *)logits, n, temperature, seed, advance);
    VL_CUDA_LAUNCH_CHECK();
}
