/* cuda_attention_mma.cuh: what the attention kernels (cuda_attention_prefill.cu,
 * cuda_attention_decode.cu, cuda_attention_dispatch.cu) share: warp-level primitives written as
 * inline PTX for sm_80+ (ldmatrix, cp.async; the mma wrapper is cuda_mma.cuh's), the key range a
 * query row may see, and the internal launchers.
 *
 * Fragment layouts of mma.m16n8k16 (bf16 in, fp32 accumulate), lane = 4 * gid + tig:
 *   A (16 x 16, row-major), 4 regs of 2 bf16: {row gid, cols 2tig..+1}, {row gid+8, same},
 *     {row gid, cols 2tig+8..+9}, {row gid+8, same}
 *   B (16 x 8, k x n), 2 regs: {k 2tig..+1, n gid}, {k 2tig+8..+9, n gid}
 *   C (16 x 8, fp32), 4 floats: {row gid, cols 2tig, 2tig+1}, {row gid+8, same}
 * ldmatrix.x4 hands out four 8 x 8 matrices, matrix i from the row addresses of lanes 8i..8i+7;
 * without .trans lane l receives row l/4, elements 2(l%4)..+1, with .trans the transpose.
 * Shared tiles keep rows of DP + 8 elements (DP: the head dim padded to a multiple of 16): a row
 * is then an odd multiple of 16 bytes, so the 8 row addresses of one ldmatrix matrix hit 8
 * different 16-byte bank groups modulo 128 (conflict-free) without an XOR swizzle.
 * Leaves out: Hopper wgmma/TMA (cuda_hopper.cuh; mma.sync runs on every target from sm_80 up).
 */
#ifndef VL_ATTN_MMA_CUH
#define VL_ATTN_MMA_CUH

#include "kernels/cuda_ops.h"   /* vl_cuda_ctx */
#include "kernels/cuda_mma.cuh" /* vl_mma_bf16, vl_pack_bf16x2, vl_int8x4_to_bf16x4 */

#include <math.h>
#include <stdint.h>

namespace vl_attn {

typedef __nv_bfloat16 bf16;

/* Threads of every attention CTA: 4 warps. */
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

/* Decode: most key ranges a single query is split into; bounds the workspace. */
constexpr int kMaxSplits = 256;

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global -> shared copy that bypasses L1; valid == false writes 16 zero bytes instead
 * (src-size 0 reads nothing, so src only has to be some mapped address). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
/* The same for 8 or 4 bytes (the int8 cache's rows of head dims not a multiple of 16, and its
 * per-row scales); these sizes go through L1 (.ca: .cg takes 16 bytes only). */
template <int N>
__device__ __forceinline__ void cp_async_small(uint32_t dst, const void *src, bool valid) {
    static_assert(N == 4 || N == 8, "cp.async.ca copies 4, 8 or 16 bytes");
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(src), "n"(N),
                 "r"(valid ? N : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr)
                 : "memory");
}

/* The 8 x 8 bf16 matrix whose row lane / 4, columns 2 (lane % 4) and + 1 this lane holds (an
 * accumulator's layout), transposed: this lane then holds row lane / 4 of the transpose. */
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

/* 2^x on the special-function unit (2 ulp); 2^-inf = +0, which the masked keys rely on. */
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Segment s with seg[s] <= i < seg[s + 1] (empty segments skipped), as the CPU twin finds it. */
__device__ __forceinline__ int segment_of(const int32_t *seg, int n_seg, int i) {
    int lo = 0, hi = n_seg;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (seg[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* The key extent of a call: n_kv keys, query i at position q_pos0 + i. Taken from the params,
 * or, when n_past_dev is set (CUDA-graph decode), read from device memory at run time:
 * q_pos0 = n_past_dev[0], n_kv = q_pos0 + n_q, and the n_kv field only bounds it. A value out of
 * the contract is clamped into [0, n_kv - n_q] so that no kernel reads past the cache capacity
 * (memory safety, not a feature: the results are then wrong). */
struct KvExtent {
    int n_kv;
    long long q_pos0;
};
__device__ __forceinline__ KvExtent kv_extent(const vl_attn_params &p) {
    if (p.n_past_dev == nullptr) return {(int)p.n_kv, p.q_pos0};
    long long past = *p.n_past_dev;
    const long long most = p.n_kv - p.n_q; /* >= 0: vl_cuda_attention_supported */
    past = past < 0 ? 0 : past > most ? most : past;
    return {(int)(past + p.n_q), past};
}

/* Keys [*lo, *hi) that query row i sees: its segment when there are segments, cut at
 * q_pos0 + i when causal. Never empty for a valid row (kernels.h). */
__device__ __forceinline__ void row_key_range(const vl_attn_params &p, const KvExtent &ext, int i,
                                              int *lo, int *hi) {
    int a = 0, b = ext.n_kv;
    if (p.n_seg > 0) {
        int s = segment_of(p.seg_starts, p.n_seg, i);
        a = p.seg_starts[s];
        b = p.seg_starts[s + 1];
    }
    if (p.causal) {
        long long last = ext.q_pos0 + i + 1;
        if (last < b) b = (int)last;
    }
    *lo = a;
    *hi = b;
}

/* Head dims of the flash kernels: every one up to 128, on two paths.
 *   Fast path (VL_ATTN_HEAD_DIMS): a multiple of 8 whose rows are 16-byte aligned (pointers and
 *   strides; every layout of the engine when the head dim is a multiple of 8): rows move with
 *   16-byte cp.async copies. The MMAs run over padded_dim(D) (the next multiple of 16); the
 *   padding columns are zeros in shared memory and never stored. Multiples of 16 (the model's
 *   128 and 80 among them) need no padding.
 *   Element path (VL_ATTN_ELEMENT_DIMS): any other head dim (20, 36, 6, ...) or row alignment.
 *   Rows move one element at a time into tiles of element_dim(D) columns, the columns past D
 *   written as zeros on every load: zero columns add nothing to q.k or to P.V, and the softmax
 *   scale is the caller's (1/sqrt of the real head dim). Only the D real columns are stored.
 * backend_caps.c's VL_CUDA_ATTN_MAX_HEAD_DIM (kernels.h) is this limit for the engine. */
constexpr int kMaxHeadDim = 128;
static_assert(kMaxHeadDim == VL_CUDA_ATTN_MAX_HEAD_DIM, "kernels.h states the limit");
__host__ __device__ constexpr int padded_dim(int d) {
    return (d + 15) / 16 * 16;
}
__host__ __device__ constexpr int element_dim(int d) {
    return d <= 16 ? 16 : d <= 32 ? 32 : d <= 64 ? 64 : 128;
}
#define VL_ATTN_HEAD_DIMS(X)                                                                       \
    X(8)                                                                                           \
    X(16) X(24) X(32) X(40) X(48) X(56) X(64) X(72) X(80) X(88) X(96) X(104) X(112) X(120) X(128)
#define VL_ATTN_ELEMENT_DIMS(X) X(16) X(32) X(64) X(128)

/* Rows of a K/V cache or a matrix: element offset of row t (and of its int8 scale). The plain
 * layout is rows `stride` apart; the decode kernel also reads rows through a block table
 * (cuda_attention_decode.cu's PagedRows, kernels.h's vl_kv_pages). */
struct StridedRows {
    int64_t stride;
    __device__ __forceinline__ int64_t row(int t) const { return (int64_t)t * stride; }
    __device__ __forceinline__ int64_t scale(int t) const { return t; }
};

/* Element loads of `rows` rows of a bf16 matrix (rows from row0 on, placed by at.row) into a
 * shared tile of DS columns and row stride LD: element (r, c) = g[at.row(row0 + r) + c] for
 * c < d and row0 + r < row_end, else 0 (bit pattern 0 is +0.0 in bf16 and in int8). T is the
 * element type (uint16_t for bf16, int8_t for the int8 cache); threads t = first, first + step,
 * ... take part. */
template <typename T, int DS, int LD, typename Rows>
__device__ __forceinline__ void load_rows_at(T *s, const T *g, const Rows &at, int row0, int rows,
                                             int row_end, int d, int first, int step) {
    for (int e = first; e < rows * DS; e += step) {
        const int r = e / DS, c = e % DS;
        T x = 0;
        if (c < d && row0 + r < row_end) x = g[at.row(row0 + r) + c];
        s[r * LD + c] = x;
    }
}

/* The same with rows `stride` apart. */
template <typename T, int DS, int LD>
__device__ __forceinline__ void load_rows_elems(T *s, const T *g, int64_t stride, int row0,
                                                int rows, int row_end, int d, int first, int step) {
    load_rows_at<T, DS, LD>(s, g, StridedRows{stride}, row0, rows, row_end, d, first, step);
}

/* Block-wide max (is_max) or sum of x over WARPS full warps; red: WARPS floats of shared memory.
 * Fixed order (butterfly in each warp, then warps 0..WARPS-1): the same bits every run. Every
 * thread returns the result; red may be reused after it. */
template <int WARPS>
__device__ __forceinline__ float block_reduce(float x, bool is_max, float *red) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
        float y = __shfl_xor_sync(0xffffffffu, x, off);
        x = is_max ? fmaxf(x, y) : x + y;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    x = red[0];
#pragma unroll
    for (int w = 1; w < WARPS; w++) x = is_max ? fmaxf(x, red[w]) : x + red[w];
    __syncthreads();
    return x;
}

} // namespace vl_attn

/* Internal launchers (the checked entry points are in cuda_attention_dispatch.cu). */
/* 1 when p takes the fast path (see the head dims above), 0 for the element path. */
int vl_attn_fast_rows(const vl_attn_params *p);
/* c: the backend whose device facts (occupancy, the shared-memory opt-in) and tuning knobs
 * size the launch. */
void vl_attn_prefill_launch(vl_cuda_ctx *c, const vl_attn_params *p, int rows_per_cta,
                            cudaStream_t stream);
/* The Hopper prefill kernel (cuda_attention_wgmma.cu): 1 if it takes p on this backend;
 * vl_attn_prefill_wgmma launches it then (and returns 1), else returns 0. */
int vl_attn_wgmma_takes(const vl_cuda_ctx *c, const vl_attn_params *p);
int vl_attn_prefill_wgmma(vl_cuda_ctx *c, const vl_attn_params *p, cudaStream_t stream);
/* Decode (n_q == 1); splits the keys over as many CTAs as the workspace allows. */
void vl_attn_decode_launch(vl_cuda_ctx *c, const vl_attn_params *p, void *workspace,
                           size_t workspace_bytes, cudaStream_t stream);
/* Floats per (split, head) row of decode partials: the head dim rounded up to 4 (float4 reads
 * in the combine step). */
__host__ __device__ constexpr int decode_ws_row(int d) {
    return (d + 3) / 4 * 4;
}

#endif
