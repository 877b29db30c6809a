/* cuda_penalty.cu: the repetition penalty on the GPU (kernels.h: mark_seen, repetition_penalty),
 * so that a recorded decode step (CUDA graph) keeps the seen-token set in device memory and
 * penalizes the logits with no host round trip.
 *
 * mark_seen: one thread per id writes a 1 into the byte mask (several threads writing 1 to the
 * same byte is benign). repetition_penalty: one pass over the vocabulary, bf16 logits in,
 * float32 scores out, the seen ids through vl_penalize_logit (sample_score.h, the CPU twin's
 * expression): the scores stay float32 as in transformers, where rounding a penalized logit
 * back to bf16 could tie it with an unpenalized one and change the argmax. */
#include "kernels/cuda_ops.h"
#include "kernels/sample_score.h"

#define PENALTY_THREADS 256

static __global__ void mark_seen_kernel(uint8_t *seen, int64_t vocab, const int32_t *ids,
                                        int64_t n_ids) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_ids) return;
    const int32_t id = ids[i];
    if (id >= 0 && id < vocab) seen[id] = 1;
}

static __global__ void penalty_kernel(float *dst, const vl_bf16 *logits, const uint8_t *seen,
                                      int64_t n, float penalty) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float x = __bfloat162float(logits[i]);
        dst[i] = seen[i] ? vl_penalize_logit(x, penalty) : x;
    }
}

extern "C" void vl_cuda_mark_seen(vl_backend *b, uint8_t *seen, int64_t vocab, const int32_t *ids,
                                  int64_t n_ids) {
    VL_CUDA_REQUIRE(vocab > 0 && n_ids >= 0, "mark_seen of %lld ids over %lld entries",
                    (long long)n_ids, (long long)vocab);
    if (n_ids == 0) return;
    const int64_t blocks = (n_ids + PENALTY_THREADS - 1) / PENALTY_THREADS;
    mark_seen_kernel<<<(unsigned)blocks, PENALTY_THREADS, 0, vl_cuda_ctx_of(b)->stream>>>(
        seen, vocab, ids, n_ids);
    VL_CUDA_LAUNCH_CHECK();
}

extern "C" void vl_cuda_repetition_penalty(vl_backend *b, float *dst, const void *logits,
                                           const uint8_t *seen, int64_t n, float penalty) {
    VL_CUDA_REQUIRE(n > 0 && n <= INT32_MAX, "repetition_penalty over %lld logits", (long long)n);
    /* a few CTAs per SM cover the 152k vocabulary in one wave */
    int64_t blocks = (n + PENALTY_THREADS - 1) / PENALTY_THREADS;
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    const int64_t cap = 4 * (int64_t)c->sm_count;
    if (blocks > cap) blocks = cap;
    penalty_kernel<<<(unsigned)blocks, PENALTY_THREADS, 0, c->stream>>>(
        dst, (const vl_bf16 *)logits, seen, n, penalty);
    VL_CUDA_LAUNCH_CHECK();
}
