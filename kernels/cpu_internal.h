/* cpu_internal.h: what the cpu_*.c files of the CPU backend share (private to kernels/).
 *
 * The CPU backend is the oracle every other backend is tested against, so its arithmetic is
 * spelled out here once:
 *   - activations are float32 (b->act == VL_DTYPE_F32);
 *   - parameters (F32, F16, BF16) are converted element by element, exactly, to float32;
 *   - every reduction (dot product, sum) accumulates in float32 over VL_CPU_LANES interleaved
 *     partial sums, element i going to lane i % VL_CPU_LANES, and the lanes are then added as a
 *     balanced binary tree. For n terms the rounding error is at most about
 *     (n / VL_CPU_LANES + log2(VL_CPU_LANES) + 1) * 2^-24 * sum |term| instead of n * 2^-24 for
 *     one running sum, while staying float32 like PyTorch's own CPU reductions (no double).
 *     The order is fixed, so a result never depends on thread count or on the batch size m.
 * Leaves out: SIMD intrinsics (the lane loops are written so the compiler can vectorize them
 * without reassociating anything) and any quantized weight format.
 */
#ifndef VL_CPU_INTERNAL_H
#define VL_CPU_INTERNAL_H

#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>

/* A broken invariant of the caller (never user input: the loader and engine validate that):
 * print the condition with file and line, then abort. */
#define VL_CPU_REQUIRE(cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "vlrun: cpu backend: %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define VL_CPU_LANES 16

/* Largest head_dim the rotary ops accept (their frequency table lives on the stack). */
#define VL_CPU_MAX_HEAD_DIM 1024

/* Sum of the lanes as a balanced tree: ((l0+l8)+(l4+l12))+... ; destroys acc. */
static inline float vl_cpu_lanes_total(float acc[VL_CPU_LANES]) {
    for (int width = VL_CPU_LANES / 2; width >= 1; width /= 2)
        for (int l = 0; l < width; l++) acc[l] += acc[l + width];
    return acc[0];
}

/* sum_i a[i] * b[i], float32, lane-interleaved (see the top of this file). */
static inline float vl_cpu_dot(const float *a, const float *b, int64_t n) {
    float acc[VL_CPU_LANES] = {0};
    int64_t i = 0;
    for (; i + VL_CPU_LANES <= n; i += VL_CPU_LANES)
        for (int l = 0; l < VL_CPU_LANES; l++) acc[l] += a[i + l] * b[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
    return vl_cpu_lanes_total(acc);
}

/* sum_i a[i], float32, lane-interleaved. */
static inline float vl_cpu_sum(const float *a, int64_t n) {
    float acc[VL_CPU_LANES] = {0};
    int64_t i = 0;
    for (; i + VL_CPU_LANES <= n; i += VL_CPU_LANES)
        for (int l = 0; l < VL_CPU_LANES; l++) acc[l] += a[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += a[i + l];
    return vl_cpu_lanes_total(acc);
}

/* Where row t of kv head g of one sequence lives in a KV cache (kernels.h, vl_kv_pages): its
 * element offset, and its int8 scale's offset in *scale_at. tbl is the sequence's block table
 * row (NULL: the contiguous cache, where the offsets are the unpaged ones). */
static inline int64_t vl_cpu_kv_at(const vl_kv_pages *pg, const int32_t *tbl, int g, int64_t t,
                                   int64_t head_stride, int64_t tok_stride,
                                   int64_t scale_head_stride, int64_t *scale_at) {
    int64_t block_at = 0, scale_block_at = 0;
    if (tbl) {
        const int64_t blk = tbl[t / pg->block_tokens];
        block_at = blk * pg->block_stride;
        scale_block_at = blk * pg->scale_block_stride;
        t %= pg->block_tokens;
    }
    *scale_at = scale_block_at + g * scale_head_stride + t;
    return block_at + g * head_stride + t * tok_stride;
}

/* Aborts unless the first n_tok rows of the sequence with block table row tbl have blocks:
 * block_tokens a power of two, enough entries (table_stride, when batched or set) and no
 * negative block id among them. */
void vl_cpu_check_pages(const vl_kv_pages *pg, const int32_t *tbl, int64_t n_tok, int batch);

/* dst[0..n) = float32 of parameter elements [offset, offset + n) of `data` (dtype t).
 * Reads through memcpy, so a tensor at any byte offset of an mmapped file is fine. */
void vl_cpu_param_to_f32(float *dst, const void *data, vl_dtype t, int64_t offset, int64_t n);

/* Element i of a vector parameter as float32; `absent` when v is NULL or v->data is NULL. */
float vl_cpu_vec_at(const vl_vec *v, int64_t i, float absent);

/* Run fn(ctx, begin, end) over contiguous slices covering [0, n_items). `work` estimates the
 * multiply-adds of the whole call: below VL_CPU_PARALLEL_MIN_WORK everything runs on the
 * calling thread, above it up to VL_CPU_MAX_THREADS threads take one slice each. fn must
 * compute every item the same way whatever slice it is in (then results are deterministic). */
#define VL_CPU_PARALLEL_MIN_WORK 1e7
#define VL_CPU_MAX_THREADS       4
void vl_cpu_parallel(int64_t n_items, double work, void (*fn)(void *ctx, int64_t, int64_t),
                     void *ctx);

/* scratch for float32 rows; aborts when out of memory (ops have no error return). */
float *vl_cpu_scratch(int64_t n_floats);

/* ---- the ops, as stored in the table (cpu_<file>.c) --------------------------------------- */

void vl_cpu_linear(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                   const vl_vec *bias);
void vl_cpu_embed(vl_backend *b, void *y, const vl_weight *table, const int32_t *ids, int64_t n);
void vl_cpu_rmsnorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                    float eps);
void vl_cpu_layernorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                      const vl_vec *bias, float eps);
void vl_cpu_add(vl_backend *b, void *y, const void *a, int64_t n);
void vl_cpu_add_rmsnorm(vl_backend *b, void *y, void *x, const void *a, int64_t m, int64_t n,
                        const vl_vec *w, float eps);
void vl_cpu_rope_kv_append(vl_backend *b, const vl_rope_kv_params *p);
void vl_cpu_silu_mul(vl_backend *b, void *y, const void *gate, const void *up, int64_t n);
void vl_cpu_silu_mul_rows(vl_backend *b, void *y, const void *gu, int64_t rows, int64_t n);
void vl_cpu_quick_gelu(vl_backend *b, void *x, int64_t n);
void vl_cpu_gelu(vl_backend *b, void *x, int64_t n);
void vl_cpu_gather_rows(vl_backend *b, void *dst, const void *src, const int32_t *idx,
                        int64_t n_rows, int64_t row_elems); /* cpu_gather_rows.c */
void vl_cpu_rope_text(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                      const int32_t *pos, const int sections[3], float theta);
void vl_cpu_rope_vision(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                        const int32_t *pos, float theta);
void vl_cpu_attention(vl_backend *b, const vl_attn_params *p);
void vl_cpu_attention_naive(vl_backend *b, const vl_attn_params *p, float *scores);
void vl_cpu_kv_append(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                      int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                      const int32_t *pos0_dev);
/* --kv int8 (cpu_kv_cache.c): quantized append of rows src[i, g, :] at pos0 + i */
void vl_cpu_kv_append_int8(int8_t *cache, float *scale, int64_t head_stride,
                           int64_t scale_head_stride, const float *src, int64_t src_stride,
                           int64_t s, int kv_heads, int head_dim, int64_t pos0);
/* the paged or batched append of rope_kv_append (after its rotary), fp32 or int8 */
void vl_cpu_kv_append_pages(const vl_rope_kv_params *p);
void vl_cpu_kv_gather(vl_backend *b, void *dst, int64_t dst_head_stride, const void *src,
                      const float *scale, const vl_kv_pages *pages, int64_t head_stride,
                      int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim);

void vl_cpu_sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens, const void *logits,
                         int64_t n, float temperature, uint64_t seed, int advance);
void vl_cpu_sample_token_f32(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                             const float *logits, int64_t n, float temperature, uint64_t seed,
                             int advance);
void vl_cpu_sample_rows(vl_backend *b, int32_t *tokens, const void *logits, int64_t n_rows,
                        int64_t n, const float *temperature, const uint64_t *keys);
/* the repetition penalty (cpu_penalty.c) */
void vl_cpu_mark_seen(vl_backend *b, uint8_t *seen, int64_t vocab, const int32_t *ids,
                      int64_t n_ids);
void vl_cpu_repetition_penalty(vl_backend *b, float *dst, const void *logits, const uint8_t *seen,
                               int64_t n, float penalty);

/* quantized weights (cpu_quant.c): the table's quantize / dequantize entries */
void vl_cpu_quantize(vl_backend *b, vl_weight *dst, const void *src_bf16, int double_quant);
void vl_cpu_dequantize(vl_backend *b, void *dst, const vl_weight *w);
void vl_cpu_fill_random_bf16(vl_backend *b, void *dst, int64_t n, uint64_t key, float center,
                             float half); /* cpu_random.c */

#endif
