/* cpu_rope.c: the CPU twins of the rotary position embeddings, text M-RoPE and vision 2-D.
 *
 * Both compute like transformers in float32 (D = head_dim):
 *   inv_freq[k] = 1 / powf(theta, (float)(2k) / (float)dim)      exponent and pow in float32
 *   angle       = (float)pos * inv_freq[k]                         one float32 product
 *   c, s        = cosf(angle), sinf(angle)
 * and rotate_half with pairs (k, k + D/2):
 *   x'[k] = x[k] c - x[k + D/2] s,   x'[k + D/2] = x[k + D/2] c + x[k] s.
 * Text (dim = D): pair k < D/2 takes its position from row 0 (t) for k < sec[0], row 1 (h)
 * for k < sec[0] + sec[1], else row 2 (w).
 * Vision (dim = D/2, D/4 frequencies): pair k < D/4 turns with the patch row h and frequency
 * k, pair k >= D/4 with the patch column w and frequency k - D/4.
 * Leaves out: rope scaling variants (Qwen2-VL uses none) and the bf16 rounding of cos/sin
 * that the bf16 text path of transformers does.
 */
#include "kernels/cpu_internal.h"

#include <math.h>

static void check_shape(int64_t stride, int heads, int head_dim, int quarter_needed) {
    int multiple = quarter_needed ? 4 : 2;
    VL_CPU_REQUIRE(head_dim > 0 && head_dim % multiple == 0 && head_dim <= VL_CPU_MAX_HEAD_DIM,
                   "rope head_dim %d (must be a positive multiple of %d, at most %d)", head_dim,
                   multiple, VL_CPU_MAX_HEAD_DIM);
    VL_CPU_REQUIRE(heads > 0 && stride >= (int64_t)heads * head_dim,
                   "rope row stride %lld for %d heads of %d", (long long)stride, heads, head_dim);
}

/* inv_freq[k] for k < n_freq, as transformers' rotary init: 1 / theta^(2k/dim) in float32. */
static void inverse_frequencies(float *inv_freq, int n_freq, int dim, float theta) {
    for (int k = 0; k < n_freq; k++) inv_freq[k] = 1.0f / powf(theta, (float)(2 * k) / (float)dim);
}

/* Rotate pair k of every head of one token row by angle: x[h, k] with x[h, k + D/2]. */
static void rotate_pair(float *row, int heads, int head_dim, int k, float angle) {
    float c = cosf(angle), s = sinf(angle);
    int half = head_dim / 2;
    for (int h = 0; h < heads; h++) {
        float *xh = row + (int64_t)h * head_dim;
        float x0 = xh[k], x1 = xh[k + half];
        xh[k] = x0 * c - x1 * s;
        xh[k + half] = x1 * c + x0 * s;
    }
}

void vl_cpu_rope_text(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                      const int32_t *pos, const int sections[3], float theta) {
    check_shape(stride, heads, head_dim, 0);
    VL_CPU_REQUIRE(sections[0] >= 0 && sections[1] >= 0 && sections[2] >= 0,
                   "mrope sections %d %d %d", sections[0], sections[1], sections[2]);
    int half = head_dim / 2;
    float inv_freq[VL_CPU_MAX_HEAD_DIM / 2];
    inverse_frequencies(inv_freq, half, head_dim, theta);
    for (int64_t i = 0; i < s; i++) {
        float *row = (float *)x + i * stride;
        for (int k = 0; k < half; k++) {
            int axis = k < sections[0] ? 0 : k < sections[0] + sections[1] ? 1 : 2;
            float angle = (float)pos[axis * s + i] * inv_freq[k];
            rotate_pair(row, heads, head_dim, k, angle);
        }
    }
}

void vl_cpu_rope_vision(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                        const int32_t *pos, float theta) {
    check_shape(stride, heads, head_dim, 1);
    int quarter = head_dim / 4;
    float inv_freq[VL_CPU_MAX_HEAD_DIM / 4];
    inverse_frequencies(inv_freq, quarter, head_dim / 2, theta);
    for (int64_t i = 0; i < s; i++) {
        float *row = (float *)x + i * stride;
        float h = (float)pos[i], w = (float)pos[s + i];
        for (int k = 0; k < quarter; k++) {
            rotate_pair(row, heads, head_dim, k, h * inv_freq[k]);
            rotate_pair(row, heads, head_dim, quarter + k, w * inv_freq[k]);
        }
    }
}

void vl_cpu_rope_kv_append(vl_backend *b, const vl_rope_kv_params *p) {
    vl_cpu_rope_text(b, p->q, p->q_stride, p->s, p->n_heads, p->head_dim, p->pos, p->sections,
                     p->theta);
    vl_cpu_rope_text(b, p->k, p->kv_stride, p->s, p->n_kv_heads, p->head_dim, p->pos, p->sections,
                     p->theta);
    if (p->pages.table || p->batch) {
        vl_cpu_kv_append_pages(p);
        return;
    }
    if (p->k_scale) {
        const int64_t pos0 = p->pos0_dev ? p->pos0_dev[0] : p->pos0;
        vl_cpu_kv_append_int8(p->k_cache, p->k_scale, p->head_stride, p->scale_head_stride, p->k,
                              p->kv_stride, p->s, p->n_kv_heads, p->head_dim, pos0);
        vl_cpu_kv_append_int8(p->v_cache, p->v_scale, p->head_stride, p->scale_head_stride, p->v,
                              p->kv_stride, p->s, p->n_kv_heads, p->head_dim, pos0);
        return;
    }
    vl_cpu_kv_append(b, p->k_cache, p->head_stride, p->k, p->kv_stride, p->s, p->n_kv_heads,
                     p->head_dim, p->pos0, p->pos0_dev);
    vl_cpu_kv_append(b, p->v_cache, p->head_stride, p->v, p->kv_stride, p->s, p->n_kv_heads,
                     p->head_dim, p->pos0, p->pos0_dev);
}
