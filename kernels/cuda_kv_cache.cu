/* cuda_kv_cache.cu: the KV cache's ops on the GPU (CPU twins: cpu_kv_cache.c): kv_append
 * (bf16 rows into a head-major cache, at a position given or read from device memory) and
 * kv_gather (one sequence of a paged pool into a contiguous buffer, dequantized if int8). The
 * fused rotary + append of a decoder layer (rope_kv_append, with the int8 row quantizer) lives
 * with the rotary kernels it shares (cuda_rope.cu).
 */
#include "kernels/cuda_ops.h"

#define KV_THREADS 256

/* ---- kv_append ----------------------------------------------------------------------------- */

/* cache[g, pos0 + i, :] = src[i, g, :]; items are (i, g, d/VEC) with d fastest, so a warp
 * reads and writes contiguous runs of one head row. */
template <int VEC>
static __global__ void kv_append_kernel(vl_bf16 *cache, int64_t head_stride, const vl_bf16 *src,
                                        int64_t src_stride, int64_t s, int kv_heads, int head_dim,
                                        int64_t pos0, const int32_t *pos0_dev) {
    if (pos0_dev) pos0 = pos0_dev[0]; /* a replayed decode step: the position lives on the GPU */
    const int row_vecs = head_dim / VEC;
    const int64_t total = s * kv_heads * row_vecs;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < total;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(item % row_vecs) * VEC;
        const int64_t ig = item / row_vecs;
        const int g = (int)(ig % kv_heads);
        const int64_t i = ig / kv_heads;
        const vl_bf16 *from = src + i * src_stride + (int64_t)g * head_dim + d;
        vl_bf16 *to = cache + g * head_stride + (pos0 + i) * head_dim + d;
        if constexpr (VEC == 8)
            *reinterpret_cast<uint4 *>(to) = *reinterpret_cast<const uint4 *>(from);
        else
            *to = *from;
    }
}

void vl_cuda_launch_kv_append(vl_bf16 *cache, int64_t head_stride, const vl_bf16 *src,
                              int64_t src_stride, int64_t s, int kv_heads, int head_dim,
                              int64_t pos0, const int32_t *pos0_dev, cudaStream_t stream) {
    if (s <= 0) return;
    int vec = head_dim % 8 == 0 && head_stride % 8 == 0 && src_stride % 8 == 0 &&
              vl_cuda_aligned16(cache) && vl_cuda_aligned16(src);
    int64_t items = s * kv_heads * (vec ? head_dim / 8 : head_dim);
    unsigned grid = vl_cuda_grid(items, KV_THREADS);
    if (vec)
        kv_append_kernel<8><<<grid, KV_THREADS, 0, stream>>>(cache, head_stride, src, src_stride, s,
                                                             kv_heads, head_dim, pos0, pos0_dev);
    else
        kv_append_kernel<1><<<grid, KV_THREADS, 0, stream>>>(cache, head_stride, src, src_stride, s,
                                                             kv_heads, head_dim, pos0, pos0_dev);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_kv_append(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                       int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                       const int32_t *pos0_dev) {
    /* the same contract as the CPU twin: heads must not overlap */
    VL_CUDA_REQUIRE(
        kv_heads > 0 && head_dim > 0 && s >= 0 && src_stride >= (int64_t)kv_heads * head_dim,
        "kv_append of %d heads of %d from rows of %lld", kv_heads, head_dim, (long long)src_stride);
    VL_CUDA_REQUIRE(pos0 >= 0 && (kv_heads == 1 || (pos0 + s) * head_dim <= head_stride),
                    "kv_append of %lld tokens at %lld overflows a head of %lld elements",
                    (long long)s, (long long)pos0, (long long)head_stride);
    vl_cuda_launch_kv_append((vl_bf16 *)cache, head_stride, (const vl_bf16 *)src, src_stride, s,
                             kv_heads, head_dim, pos0, pos0_dev, vl_cuda_ctx_of(b)->stream);
}

/* ---- kv_gather (a paged pool's sequence, or an int8 slot's layer) ---------------------------- */

/* 8 int8 codes at from (8-byte aligned) -> bf16(code * sc) at to (16-byte aligned) */
static __device__ __forceinline__ void dequant8(vl_bf16 *to, const int8_t *from, float sc) {
    const uint2 w = *reinterpret_cast<const uint2 *>(from);
    const int8_t *c = reinterpret_cast<const int8_t *>(&w);
    __align__(16) vl_bf16 out[8];
#pragma unroll
    for (int e = 0; e < 8; e++) out[e] = __float2bfloat16_rn((float)c[e] * sc);
    *reinterpret_cast<uint4 *>(to) = *reinterpret_cast<const uint4 *>(out);
}

/* dst[g, t, :] = row t of kv head g of the sequence with block table tbl (kernels.h,
 * vl_kv_pages): copied (bf16) or bf16(code * scale) (int8: the product in fp32, rounded once
 * to the nearest bf16, ties to even); items are (g, t, d/VEC) with d fastest. VEC 8: 16-byte
 * bf16 moves, or 8 codes read at once. */
template <int VEC, bool Q8>
static __global__ void kv_gather_kernel(vl_bf16 *dst, int64_t dst_head_stride, const void *src,
                                        const float *scale, const vl_kv_pages pg,
                                        int64_t head_stride, int64_t scale_head_stride,
                                        int kv_heads, int64_t n_tok, int head_dim) {
    const int row_vecs = head_dim / VEC, shift = 31 - __clz(pg.block_tokens);
    const int64_t total = (int64_t)kv_heads * n_tok * row_vecs;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < total;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(item % row_vecs) * VEC;
        const int64_t gt = item / row_vecs, t = gt % n_tok;
        const int g = (int)(gt / n_tok);
        const int64_t blk = pg.table ? pg.table[t >> shift] : 0, r = t & (pg.block_tokens - 1);
        const int64_t at = blk * pg.block_stride + g * head_stride + r * head_dim + d;
        vl_bf16 *to = dst + g * dst_head_stride + t * head_dim + d;
        if constexpr (!Q8) {
            const vl_bf16 *from = (const vl_bf16 *)src + at;
            if constexpr (VEC == 8)
                *reinterpret_cast<uint4 *>(to) = *reinterpret_cast<const uint4 *>(from);
            else
                *to = *from;
            continue;
        }
        const float sc = scale[blk * pg.scale_block_stride + g * scale_head_stride + r];
        const int8_t *from = (const int8_t *)src + at;
        if constexpr (VEC == 8) {
            dequant8(to, from, sc);
        } else {
            *to = __float2bfloat16_rn((float)*from * sc);
        }
    }
}

template <bool Q8>
static void launch_kv_gather(int vec, vl_bf16 *dst, int64_t dst_head_stride, const void *src,
                             const float *scale, const vl_kv_pages &pg, int64_t head_stride,
                             int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim,
                             cudaStream_t stream) {
    const int64_t items = (int64_t)kv_heads * n_tok * (vec ? head_dim / 8 : head_dim);
    const unsigned grid = vl_cuda_grid(items, KV_THREADS);
    if (vec)
        kv_gather_kernel<8, Q8><<<grid, KV_THREADS, 0, stream>>>(dst, dst_head_stride, src, scale,
                                                                 pg, head_stride, scale_head_stride,
                                                                 kv_heads, n_tok, head_dim);
    else
        kv_gather_kernel<1, Q8><<<grid, KV_THREADS, 0, stream>>>(dst, dst_head_stride, src, scale,
                                                                 pg, head_stride, scale_head_stride,
                                                                 kv_heads, n_tok, head_dim);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_kv_gather(vl_backend *b, void *dst, int64_t dst_head_stride, const void *src,
                       const float *scale, const vl_kv_pages *pages, int64_t head_stride,
                       int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim) {
    vl_kv_pages pg = pages ? *pages : vl_kv_pages{};
    if (pg.table == NULL) { /* the contiguous cache: one block holding every row */
        VL_CUDA_REQUIRE(n_tok <= ((int64_t)1 << 30), "kv_gather of %lld rows", (long long)n_tok);
        pg.block_tokens = 1 << 30;
    }
    VL_CUDA_REQUIRE(kv_heads > 0 && head_dim > 0 && n_tok >= 0 && pg.block_tokens > 0 &&
                        (pg.block_tokens & (pg.block_tokens - 1)) == 0 &&
                        (kv_heads == 1 || n_tok * head_dim <= dst_head_stride),
                    "kv_gather of %lld rows of %d heads of %d (block_tokens %d, heads %lld apart)",
                    (long long)n_tok, kv_heads, head_dim, pg.block_tokens,
                    (long long)dst_head_stride);
    if (n_tok == 0) return;
    const int64_t esz = scale ? 1 : 2; /* bytes per pool element */
    const int vec = head_dim % 8 == 0 && dst_head_stride % 8 == 0 && vl_cuda_aligned16(dst) &&
                    (uintptr_t)src % (8 * esz) == 0 && (head_stride * esz) % (8 * esz) == 0 &&
                    (pg.block_stride * esz) % (8 * esz) == 0;
    cudaStream_t stream = vl_cuda_ctx_of(b)->stream;
    if (scale)
        launch_kv_gather<true>(vec, (vl_bf16 *)dst, dst_head_stride, src, scale, pg, head_stride,
                               scale_head_stride, kv_heads, n_tok, head_dim, stream);
    else
        launch_kv_gather<false>(vec, (vl_bf16 *)dst, dst_head_stride, src, scale, pg, head_stride,
                                scale_head_stride, kv_heads, n_tok, head_dim, stream);
}
