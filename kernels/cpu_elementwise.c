/* cpu_elementwise.c: the CPU twins of the element-wise ops (add, silu_mul, silu_mul_rows,
 * quick_gelu, gelu),
 * on float32 activations with float32 libm functions (the KV cache's ops: cpu_kv_cache.c).
 *   silu(x)       = x / (1 + exp(-x))                      (torch.nn.functional.silu)
 *   quick_gelu(x) = x * sigmoid(1.702 x), sigmoid(z) = 1 / (1 + exp(-z))
 *   gelu(x)       = 0.5 x (1 + erf(x / sqrt 2))            (exact, nn.GELU())
 * Leaves out: the tanh approximation of GELU (Qwen2-VL never uses it).
 */
#include "kernels/cpu_internal.h"

#include <math.h>
#include <string.h>

#define SQRT_HALF 0.70710678118654752440f

void vl_cpu_add(vl_backend *b, void *y, const void *a, int64_t n) {
    float *out = y;
    const float *in = a;
    for (int64_t i = 0; i < n; i++) out[i] += in[i];
}

void vl_cpu_silu_mul(vl_backend *b, void *y, const void *gate, const void *up, int64_t n) {
    float *out = y;
    const float *g = gate, *u = up;
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* silu_mul of each row's halves: the same expression per element as vl_cpu_silu_mul */
void vl_cpu_silu_mul_rows(vl_backend *b, void *y, const void *gu, int64_t rows, int64_t n) {
    float *out = y;
    const float *in = gu;
    for (int64_t r = 0; r < rows; r++)
        vl_cpu_silu_mul(b, out + r * n, in + r * 2 * n, in + r * 2 * n + n, n);
}

void vl_cpu_quick_gelu(vl_backend *b, void *x, int64_t n) {
    float *v = x;
    for (int64_t i = 0; i < n; i++) v[i] = v[i] * (1.0f / (1.0f + expf(-1.702f * v[i])));
}

void vl_cpu_gelu(vl_backend *b, void *x, int64_t n) {
    float *v = x;
    for (int64_t i = 0; i < n; i++) v[i] = 0.5f * v[i] * (1.0f + erff(v[i] * SQRT_HALF));
}
