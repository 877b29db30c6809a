/* cpu_norm.c: the CPU twins of RMSNorm and LayerNorm over the last dimension.
 *
 * Statistics in float32 with the lane-interleaved sums of cpu_internal.h (PyTorch also keeps
 * them in float32 for a float32 tensor):
 *   rmsnorm:   ms = sum(x^2) / n;  y = (x * (1 / sqrt(ms + eps))) * w
 *   layernorm: mean = sum(x) / n;  var = sum((x - mean)^2) / n (biased, two passes);
 *              y = (x - mean) * (1 / sqrt(var + eps)) * w + b
 * An absent weight (data == NULL) counts as all ones, an absent bias as zeros.
 * Leaves out: the bf16 rounding between the steps that a bf16 model does (the CUDA backend's
 * business; here activations are float32 throughout).
 */
#include "kernels/cpu_internal.h"

#include <math.h>

void vl_cpu_rmsnorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                    float eps) {
    VL_CPU_REQUIRE(n > 0 && (!w || !w->data || w->n == n), "rmsnorm over %lld", (long long)n);
    float *w_f32 = vl_cpu_scratch(n);
    for (int64_t j = 0; j < n; j++) w_f32[j] = vl_cpu_vec_at(w, j, 1.0f);
    for (int64_t i = 0; i < m; i++) {
        const float *xi = (const float *)x + i * n;
        float *yi = (float *)y + i * n;
        float mean_sq = vl_cpu_dot(xi, xi, n) / (float)n;
        float inv_rms = 1.0f / sqrtf(mean_sq + eps);
        for (int64_t j = 0; j < n; j++) yi[j] = (xi[j] * inv_rms) * w_f32[j];
    }
    free(w_f32);
}

void vl_cpu_add_rmsnorm(vl_backend *b, void *y, void *x, const void *a, int64_t m, int64_t n,
                        const vl_vec *w, float eps) {
    vl_cpu_add(b, x, a, m * n);
    vl_cpu_rmsnorm(b, y, x, m, n, w, eps);
}

/* sum_j (x[j] - mean)^2 with the same lane layout as vl_cpu_sum. */
static float sum_sq_dev(const float *x, int64_t n, float mean) {
    float acc[VL_CPU_LANES] = {0};
    for (int64_t j = 0; j < n; j++) {
        float d = x[j] - mean;
        acc[j % VL_CPU_LANES] += d * d;
    }
    return vl_cpu_lanes_total(acc);
}

void vl_cpu_layernorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                      const vl_vec *bias, float eps) {
    VL_CPU_REQUIRE(n > 0 && (!w || !w->data || w->n == n) && (!bias || !bias->data || bias->n == n),
                   "layernorm over %lld", (long long)n);
    float *w_f32 = vl_cpu_scratch(2 * n), *b_f32 = w_f32 + n;
    for (int64_t j = 0; j < n; j++) {
        w_f32[j] = vl_cpu_vec_at(w, j, 1.0f);
        b_f32[j] = vl_cpu_vec_at(bias, j, 0.0f);
    }
    for (int64_t i = 0; i < m; i++) {
        const float *xi = (const float *)x + i * n;
        float *yi = (float *)y + i * n;
        float mean = vl_cpu_sum(xi, n) / (float)n;
        float var = sum_sq_dev(xi, n, mean) / (float)n;
        float inv_std = 1.0f / sqrtf(var + eps);
        for (int64_t j = 0; j < n; j++) yi[j] = (xi[j] - mean) * inv_std * w_f32[j] + b_f32[j];
    }
    free(w_f32);
}
