/* cpu_kv_cache.c: the CPU twins of the KV cache's ops (cuda_kv_cache.cu): kv_append, and the
 * int8 cache (--kv int8): the row quantizer vl_kv_quantize_row, the int8 append that
 * rope_kv_append uses (cpu_rope.c). Float32 activations; caches head-major. Attention reads the
 * int8 cache itself (cpu_attention.c).
 */
#include "kernels/cpu_internal.h"

#include <math.h>
#include <string.h>

void vl_cpu_kv_append(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                      int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                      const int32_t *pos0_dev) {
    if (pos0_dev) pos0 = pos0_dev[0]; /* backend memory is host memory here */
    /* heads must not overlap (with one head, head_stride is never used) */
    VL_CPU_REQUIRE(pos0 >= 0 && (kv_heads == 1 || (pos0 + s) * head_dim <= head_stride),
                   "kv_append of %lld tokens at %lld overflows a head of %lld elements",
                   (long long)s, (long long)pos0, (long long)head_stride);
    float *dst = cache;
    const float *in = src;
    for (int64_t i = 0; i < s; i++)
        for (int g = 0; g < kv_heads; g++)
            memcpy(dst + g * head_stride + (pos0 + i) * head_dim,
                   in + i * src_stride + (int64_t)g * head_dim, (size_t)head_dim * sizeof(float));
}

/* ---- the int8 KV cache (--kv int8) ----------------------------------------------------------
 * One scale per (token, kv head) row: the rows of a head differ by orders of magnitude (Qwen2's
 * k bias makes a few channels large in every row, and rows at different positions differ), so
 * a per-row absmax keeps each row's own range; 4 bytes over 128 one-byte codes. */

float vl_kv_quantize_row(const float *x, int n, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (amax == 0.0f) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const float inv = 127.0f / amax; /* the GPU computes the same two roundings */
    for (int i = 0; i < n; i++) {
        float r = nearbyintf(x[i] * inv); /* ties to even in the default rounding mode */
        q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
    return amax / 127.0f;
}

/* rows src[i, g, :] (row stride src_stride) -> the int8 cache at pos0 + i */
void vl_cpu_kv_append_int8(int8_t *cache, float *scale, int64_t head_stride,
                           int64_t scale_head_stride, const float *src, int64_t src_stride,
                           int64_t s, int kv_heads, int head_dim, int64_t pos0) {
    VL_CPU_REQUIRE(pos0 >= 0 && (kv_heads == 1 || ((pos0 + s) * head_dim <= head_stride &&
                                                   pos0 + s <= scale_head_stride)),
                   "int8 kv_append of %lld tokens at %lld overflows a head of %lld elements",
                   (long long)s, (long long)pos0, (long long)head_stride);
    for (int64_t i = 0; i < s; i++)
        for (int g = 0; g < kv_heads; g++)
            scale[g * scale_head_stride + pos0 + i] =
                vl_kv_quantize_row(src + i * src_stride + (int64_t)g * head_dim, head_dim,
                                   cache + g * head_stride + (pos0 + i) * head_dim);
}
