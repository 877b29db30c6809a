/* cpu_penalty.c: the CPU twins of the repetition penalty's two ops (kernels.h): mark_seen keeps
 * the set of token ids in the sequence so far as a byte per vocabulary entry, and
 * repetition_penalty writes the float32 logits the sampler then reads, with every seen id's
 * logit penalized by vl_penalize_logit (sample_score.h, shared with the CUDA kernel).
 * A set rather than a list of ids gives transformers' semantics for free: its processor
 * gathers the original score of each id and scatters the penalized one back, so an id that
 * occurs many times is penalized once. */
#include "kernels/cpu_internal.h"
#include "kernels/sample_score.h"

void vl_cpu_mark_seen(vl_backend *b, uint8_t *seen, int64_t vocab, const int32_t *ids,
                      int64_t n_ids) {
    (void)b;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] >= 0 && ids[i] < vocab) seen[ids[i]] = 1;
}

void vl_cpu_repetition_penalty(vl_backend *b, float *dst, const void *logits, const uint8_t *seen,
                               int64_t n, float penalty) {
    (void)b;
    const float *x = logits;
    for (int64_t i = 0; i < n; i++) dst[i] = seen[i] ? vl_penalize_logit(x[i], penalty) : x[i];
}
