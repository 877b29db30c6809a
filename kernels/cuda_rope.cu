/* cuda_rope.cu: the rotary position embeddings of the CUDA backend, text M-RoPE and vision 2-D,
 * as one kernel driven by a per-pair table.
 *
 * Both rotaries turn pair (k, k + D/2) of every head of token i by an angle
 *   angle = (float)pos[axis[k] * s + i] * inv_freq[k],
 * and differ only in (axis, inv_freq) per pair, which the host fills with the expressions of
 * cpu_rope.c (so the GPU angles are bit-identical to the CPU ones):
 *   text:   inv_freq[k] = 1 / powf(theta, 2k / D); axis 0 for k < sec0, 1 below sec0 + sec1,
 *           else 2
 *   vision: q = D/4; pair k < q turns with row 0 (h) and frequency k, pair k >= q with row 1
 *           (w) and frequency k - q; frequency j = 1 / powf(theta, 2j / (D/2))
 * cos and sin are computed in fp32 (sincosf, accurate, not the fast intrinsics: angles reach
 * thousands of radians), the rotation in fp32, one rounding to bf16 per element. (transformers'
 * text path rounds cos/sin to bf16 and each product; this stays closer to the exact value.)
 * The table travels as a __grid_constant__ kernel parameter: no device buffer to keep in sync
 * and no copy per call.
 * rope_kv_append fuses a decoder layer's rotary of q and k with the KV cache append of k and v:
 * one thread per (token, head of q | k | v, pair), the same angle and rotation expressions as
 * rope_kernel, so the same bits as rope_text(q), rope_text(k), kv_append(k), kv_append(v) in
 * one launch instead of four (at decode these are four latency-bound launches; the heads loop
 * of rope_kernel alone took ~9 us there).
 * With an int8 cache (--kv int8) a variant runs one warp per (token, head): the same rotation,
 * then each k and v row is quantized with its absmax (vl_kv_quantize_row's expressions).
 * A paged pool (p.pages, vlrun serve) changes only where a row is stored (append_at): through the
 * block table, and with batch row i at sequence i's own position and table row.
 * Leaves out: rope scaling variants and fusing rope into the QKV GEMM epilogue.
 */
#include "kernels/cuda_ops.h"

#include <math.h>

#define ROPE_THREADS 128

/* The rotation of one pair, rounded to bf16: every kernel here uses this one expression, so
 * that their bits agree (a contraction into an FMA is then made the same way everywhere). */
static __device__ __forceinline__ void rotate_bf16(float x0, float x1, float c, float sn,
                                                   vl_bf16 *r0, vl_bf16 *r1) {
    *r0 = __float2bfloat16_rn(x0 * c - x1 * sn);
    *r1 = __float2bfloat16_rn(x1 * c + x0 * sn);
}

/* One thread per (token i, pair k), looping over heads: the angle and its sincos are computed
 * once per token and pair. Consecutive threads take consecutive k, so each head's loads and
 * stores are contiguous runs. */
static __global__ void rope_kernel(vl_bf16 *x, int64_t stride, int64_t s, int heads, int head_dim,
                                   const int32_t *pos,
                                   const __grid_constant__ vl_cuda_rope_table t) {
    const int half = head_dim / 2;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < s * half;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int k = (int)(item % half);
        const int64_t i = item / half;
        const float angle = (float)pos[t.axis[k] * s + i] * t.inv_freq[k];
        float sn, c;
        sincosf(angle, &sn, &c);
        vl_bf16 *row = x + i * stride + k;
        for (int h = 0; h < heads; h++) {
            vl_bf16 *p = row + (int64_t)h * head_dim;
            rotate_bf16(__bfloat162float(p[0]), __bfloat162float(p[half]), c, sn, &p[0], &p[half]);
        }
    }
}

void vl_cuda_launch_rope(vl_bf16 *x, int64_t stride, int64_t s, int heads, int head_dim,
                         const int32_t *pos, const vl_cuda_rope_table *table, cudaStream_t stream) {
    if (s <= 0) return;
    int64_t items = s * (head_dim / 2);
    rope_kernel<<<vl_cuda_grid(items, ROPE_THREADS), ROPE_THREADS, 0, stream>>>(
        x, stride, s, heads, head_dim, pos, *table);
    VL_CUDA_LAUNCH_CHECK();
}

/* The cache slot of appended row i, kv head g (kernels.h): its element offset, and its scale's in
 * *scale_at. Contiguous: position pos0 + i. Paged: through table row 0 at pos0 + i, or with batch
 * through table row i at pos0_dev[i] (row i is sequence i's next token). */
static __device__ __forceinline__ int64_t append_at(const vl_rope_kv_params &p, int64_t pos0,
                                                    int64_t i, int g, int64_t *scale_at) {
    if (!p.pages.table) {
        const int64_t t = pos0 + i;
        *scale_at = g * p.scale_head_stride + t;
        return g * p.head_stride + t * p.head_dim;
    }
    const int64_t t = p.batch ? (int64_t)p.pos0_dev[i] : pos0 + i;
    const int32_t *tbl = p.pages.table + (p.batch ? i * p.pages.table_stride : 0);
    const int shift = 31 - __clz(p.pages.block_tokens);
    const int64_t blk = tbl[t >> shift], r = t & (p.pages.block_tokens - 1);
    *scale_at = blk * p.pages.scale_block_stride + g * p.scale_head_stride + r;
    return blk * p.pages.block_stride + g * p.head_stride + r * p.head_dim;
}

static __global__ void rope_kv_append_kernel(const __grid_constant__ vl_rope_kv_params p,
                                             const __grid_constant__ vl_cuda_rope_table t) {
    const int64_t pos0 = p.pos0_dev ? (int64_t)p.pos0_dev[0] : p.pos0;
    const int half = p.head_dim / 2, heads = p.n_heads + 2 * p.n_kv_heads;
    const int64_t total = p.s * heads * half;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < total;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int k = (int)(item % half);
        const int64_t ih = item / half;
        const int h = (int)(ih % heads);
        const int64_t i = ih / heads;
        if (h >= p.n_heads + p.n_kv_heads) { /* v: copied into the cache */
            const int g = h - p.n_heads - p.n_kv_heads;
            const vl_bf16 *from = (const vl_bf16 *)p.v + i * p.kv_stride + (int64_t)g * p.head_dim;
            int64_t sat;
            vl_bf16 *to = (vl_bf16 *)p.v_cache + append_at(p, pos0, i, g, &sat);
            to[k] = from[k];
            to[k + half] = from[k + half];
            continue;
        }
        const int is_k = h >= p.n_heads, g = is_k ? h - p.n_heads : h;
        vl_bf16 *x = is_k ? (vl_bf16 *)p.k + i * p.kv_stride + (int64_t)g * p.head_dim
                          : (vl_bf16 *)p.q + i * p.q_stride + (int64_t)g * p.head_dim;
        const float angle = (float)p.pos[t.axis[k] * p.s + i] * t.inv_freq[k];
        float sn, c;
        sincosf(angle, &sn, &c);
        vl_bf16 r0, r1;
        rotate_bf16(__bfloat162float(x[k]), __bfloat162float(x[k + half]), c, sn, &r0, &r1);
        x[k] = r0;
        x[k + half] = r1;
        if (is_k) {
            int64_t sat;
            vl_bf16 *to = (vl_bf16 *)p.k_cache + append_at(p, pos0, i, g, &sat);
            to[k] = r0;
            to[k + half] = r1;
        }
    }
}

/* --kv int8: one warp per (token, head of q | k | v). The lanes rotate the head's pairs exactly
 * as rope_kv_append_kernel does (q and k written back in place), then a k or v row is quantized
 * as vl_kv_quantize_row does it, with the row's absmax from a warp reduction. */
static __global__ void rope_kv_append_int8_kernel(const __grid_constant__ vl_rope_kv_params p,
                                                  const __grid_constant__ vl_cuda_rope_table t) {
    constexpr int kPairs = VL_CUDA_ROPE_MAX_PAIRS / 32; /* pairs per lane, at most */
    const int64_t pos0 = p.pos0_dev ? (int64_t)p.pos0_dev[0] : p.pos0;
    const int half = p.head_dim / 2, heads = p.n_heads + 2 * p.n_kv_heads;
    const int lane = (int)threadIdx.x % 32;
    const int64_t rows = p.s * heads, warps = (int64_t)gridDim.x * blockDim.x / 32;
    for (int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32; row < rows;
         row += warps) {
        const int h = (int)(row % heads);
        const int64_t i = row / heads;
        const int is_v = h >= p.n_heads + p.n_kv_heads, is_k = !is_v && h >= p.n_heads;
        const int g = is_v ? h - p.n_heads - p.n_kv_heads : is_k ? h - p.n_heads : h;
        vl_bf16 *x = is_v   ? (vl_bf16 *)p.v + i * p.kv_stride + (int64_t)g * p.head_dim
                     : is_k ? (vl_bf16 *)p.k + i * p.kv_stride + (int64_t)g * p.head_dim
                            : (vl_bf16 *)p.q + i * p.q_stride + (int64_t)g * p.head_dim;
        float r0[kPairs], r1[kPairs], amax = 0.0f;
#pragma unroll
        for (int j = 0; j < kPairs; j++) {
            const int k = lane + 32 * j;
            r0[j] = r1[j] = 0.0f;
            if (k >= half) continue;
            vl_bf16 b0 = x[k], b1 = x[k + half];
            if (!is_v) {
                const float angle = (float)p.pos[t.axis[k] * p.s + i] * t.inv_freq[k];
                float sn, c;
                sincosf(angle, &sn, &c);
                rotate_bf16(__bfloat162float(b0), __bfloat162float(b1), c, sn, &b0, &b1);
                x[k] = b0;
                x[k + half] = b1;
            }
            r0[j] = __bfloat162float(b0);
            r1[j] = __bfloat162float(b1);
            amax = fmaxf(amax, fmaxf(fabsf(r0[j]), fabsf(r1[j])));
        }
        if (!is_k && !is_v) continue; /* the whole warp: q is rotated only */
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f; /* IEEE division, as the CPU */
        int64_t sat;
        int8_t *to = (int8_t *)(is_k ? p.k_cache : p.v_cache) + append_at(p, pos0, i, g, &sat);
#pragma unroll
        for (int j = 0; j < kPairs; j++) {
            const int k = lane + 32 * j;
            if (k >= half) continue;
            to[k] = (int8_t)max(-127, min(127, __float2int_rn(r0[j] * inv)));
            to[k + half] = (int8_t)max(-127, min(127, __float2int_rn(r1[j] * inv)));
        }
        if (lane == 0) (is_k ? p.k_scale : p.v_scale)[sat] = amax / 127.0f;
    }
}

static void check_shape(const char *what, int64_t stride, int64_t s, int heads, int head_dim,
                        int multiple) {
    VL_CUDA_REQUIRE(head_dim > 0 && head_dim % multiple == 0 &&
                        head_dim / 2 <= VL_CUDA_ROPE_MAX_PAIRS,
                    "%s head_dim %d (must be a positive multiple of %d, at most %d)", what,
                    head_dim, multiple, 2 * VL_CUDA_ROPE_MAX_PAIRS);
    VL_CUDA_REQUIRE(heads > 0 && s >= 0 && stride >= (int64_t)heads * head_dim,
                    "%s row stride %lld for %d heads of %d", what, (long long)stride, heads,
                    head_dim);
}

/* The text M-RoPE table (pairs past head_dim/2 are never read). */
static vl_cuda_rope_table text_table(int head_dim, const int sections[3], float theta) {
    VL_CUDA_REQUIRE(sections[0] >= 0 && sections[1] >= 0 && sections[2] >= 0,
                    "mrope sections %d %d %d", sections[0], sections[1], sections[2]);
    vl_cuda_rope_table t = {};
    for (int k = 0; k < head_dim / 2; k++) {
        t.inv_freq[k] = 1.0f / powf(theta, (float)(2 * k) / (float)head_dim);
        t.axis[k] = k < sections[0] ? 0 : k < sections[0] + sections[1] ? 1 : 2;
    }
    return t;
}

void vl_cuda_rope_text(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                       const int32_t *pos, const int sections[3], float theta) {
    check_shape("rope_text", stride, s, heads, head_dim, 2);
    const vl_cuda_rope_table t = text_table(head_dim, sections, theta);
    vl_cuda_launch_rope((vl_bf16 *)x, stride, s, heads, head_dim, pos, &t,
                        vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_rope_kv_append(vl_backend *b, const vl_rope_kv_params *p) {
    check_shape("rope_kv_append q", p->q_stride, p->s, p->n_heads, p->head_dim, 2);
    check_shape("rope_kv_append k/v", p->kv_stride, p->s, p->n_kv_heads, p->head_dim, 2);
    const vl_kv_pages *pg = &p->pages;
    const int paged = pg->table != NULL || p->batch;
    VL_CUDA_REQUIRE(!paged || (pg->table && pg->block_tokens > 0 &&
                               (pg->block_tokens & (pg->block_tokens - 1)) == 0 &&
                               (!p->batch || p->pos0_dev)),
                    "rope_kv_append on pages needs a table, block_tokens a power of two (%d) and, "
                    "batched, pos0_dev",
                    pg->block_tokens);
    /* the contract of kv_append: heads must not overlap (a paged pool: the caller's layout) */
    VL_CUDA_REQUIRE(paged || (p->pos0 >= 0 && (p->n_kv_heads == 1 ||
                                               (p->pos0 + p->s) * p->head_dim <= p->head_stride)),
                    "rope_kv_append of %lld tokens at %lld overflows a head of %lld elements",
                    (long long)p->s, (long long)p->pos0, (long long)p->head_stride);
    if (p->k_scale) {
        VL_CUDA_REQUIRE(p->v_scale &&
                            (paged || p->n_kv_heads == 1 || p->pos0 + p->s <= p->scale_head_stride),
                        "rope_kv_append (int8) of %lld tokens at %lld overflows %lld scales per "
                        "head",
                        (long long)p->s, (long long)p->pos0, (long long)p->scale_head_stride);
    }
    if (p->s == 0) return;
    const vl_cuda_rope_table t = text_table(p->head_dim, p->sections, p->theta);
    if (p->k_scale) {
        const int64_t threads = p->s * (p->n_heads + 2 * p->n_kv_heads) * 32;
        rope_kv_append_int8_kernel<<<vl_cuda_grid(threads, ROPE_THREADS), ROPE_THREADS, 0,
                                     vl_cuda_ctx_of(b)->stream>>>(*p, t);
        VL_CUDA_LAUNCH_CHECK();
        return;
    }
    const int64_t items = p->s * (p->n_heads + 2 * p->n_kv_heads) * (p->head_dim / 2);
    rope_kv_append_kernel<<<vl_cuda_grid(items, ROPE_THREADS), ROPE_THREADS, 0,
                            vl_cuda_ctx_of(b)->stream>>>(*p, t);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_rope_vision(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                         const int32_t *pos, float theta) {
    check_shape("rope_vision", stride, s, heads, head_dim, 4);
    vl_cuda_rope_table t = {}; /* pairs past head_dim/2 are never read */
    const int quarter = head_dim / 4;
    for (int j = 0; j < quarter; j++) {
        const float inv_freq = 1.0f / powf(theta, (float)(2 * j) / (float)(head_dim / 2));
        t.inv_freq[j] = t.inv_freq[quarter + j] = inv_freq;
        t.axis[j] = 0;
        t.axis[quarter + j] = 1;
    }
    vl_cuda_launch_rope((vl_bf16 *)x, stride, s, heads, head_dim, pos, &t,
                        vl_cuda_ctx_of(b)->stream);
}
