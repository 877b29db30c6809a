/* sample_score.h: the score sample_token maximizes, shared by the CPU twin and the CUDA kernel
 * so both evaluate the same expression (kernels.h, sample_token).
 *
 * Greedy (temperature <= 0): the logit itself. Sampling: logit / T + g with Gumbel noise
 * g = -log(-log(u)); the argmax of that is an exact draw from softmax(logit / T) with no sort
 * and no normalization, one pass over the vocabulary. The noise is evaluated in double: both
 * libm and CUDA's double log are within one ulp, far below the gaps between distinct scores, so
 * the CPU and GPU pick the same token. NaN logits never win (comparisons with NaN are false).
 * Ties go to the lowest index, as torch.argmax does. */
#ifndef VL_SAMPLE_SCORE_H
#define VL_SAMPLE_SCORE_H

#include "kernels/kernels.h"

#include <math.h>

static inline VL_HOST_DEVICE double vl_sample_score(float logit, int64_t i, float temperature,
                                                    uint64_t key) {
    if (!(temperature > 0.0f)) return (double)logit;
    double u = vl_random_unit(key + (uint64_t)i);
    return (double)logit / (double)temperature - log(-log(u));
}

/* Is (score a, index ia) a better pick than (b, ib)? */
static inline VL_HOST_DEVICE int vl_sample_better(double a, int64_t ia, double b, int64_t ib) {
    return a > b || (a == b && ia < ib);
}

/* The repetition penalty of one seen token's logit, as transformers' processor on float32
 * scores: torch.where(x < 0, x * penalty, x / penalty) (0 and NaN take the division). */
static inline VL_HOST_DEVICE float vl_penalize_logit(float x, float penalty) {
    return x < 0.0f ? x * penalty : x / penalty;
}

/* The pick of one row on the host: the first best index by the rules above, 0 when every logit
 * is NaN. The CPU backend's sample_token / sample_rows and the batch's host sampler share it. */
static inline int32_t vl_sample_best_host(const float *x, int64_t n, float temperature,
                                          uint64_t key) {
    double best = -INFINITY;
    int64_t best_i = 0;
    int found = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = vl_sample_score(x[i], i, temperature, key);
        if (v == v && (!found || vl_sample_better(v, i, best, best_i))) {
            best = v;
            best_i = i;
            found = 1;
        }
    }
    return (int32_t)best_i;
}

#endif
