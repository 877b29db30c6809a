/* cuda_gather_rows.cu: gather_rows on the GPU (CPU twin: cpu_gather_rows.c): dst[i, :] =
 * src[idx[i], :] on bf16 rows, Qwen2.5-VL's window reorder of the patches (rows of 4 x 1280 at
 * 7B) and its inverse (rows of the decoder width). A pure copy, so the result is the CPU twin's
 * bit for bit.
 *
 * One warp per output row, rows grid-strided so any n_rows fits a capped grid; the warp copies
 * the row in the widest unit the row bytes and both pointers allow: 16 bytes (row_elems % 8 ==
 * 0), 4 bytes (even row_elems) or one bf16 (odd row_elems). The index is read once per row by
 * every lane (one broadcast load). An index outside [0, n_rows) writes a row of NaN instead of
 * reading out of bounds (the engine never passes one; the CPU twin aborts). Graph-safe: no host
 * sync, no allocation.
 */
#include "kernels/cuda_ops.h"

#define GATHER_THREADS 256
#define GATHER_WARPS   (GATHER_THREADS / 32)

/* A unit (uint4, uint32_t or uint16_t) whose every bf16 is a quiet NaN (0x7fc0). */
template <typename U> __device__ __forceinline__ U nan_unit() {
    if constexpr (sizeof(U) == 16)
        return make_uint4(0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u);
    else if constexpr (sizeof(U) == 4)
        return 0x7fc07fc0u;
    else
        return (U)0x7fc0u;
}

/* Rows of row_units units of type U: dst[i, :] = src[idx[i], :]. */
template <typename U>
static __global__ void __launch_bounds__(GATHER_THREADS)
    gather_rows_kernel(U *__restrict__ dst, const U *__restrict__ src,
                       const int32_t *__restrict__ idx, int64_t n_rows, int64_t row_units) {
    const int lane = threadIdx.x % 32;
    const int64_t first = (int64_t)blockIdx.x * GATHER_WARPS + threadIdx.x / 32;
    for (int64_t i = first; i < n_rows; i += (int64_t)gridDim.x * GATHER_WARPS) {
        const int32_t from = idx[i];
        U *out = dst + i * row_units;
        if (from < 0 || from >= n_rows) {
            for (int64_t j = lane; j < row_units; j += 32) out[j] = nan_unit<U>();
            continue;
        }
        const U *in = src + (int64_t)from * row_units;
#pragma unroll 4
        for (int64_t j = lane; j < row_units; j += 32) out[j] = in[j];
    }
}

template <typename U>
static void launch(void *dst, const void *src, const int32_t *idx, int64_t n_rows,
                   int64_t row_elems, cudaStream_t stream) {
    const int64_t row_units = row_elems * (int64_t)sizeof(vl_bf16) / (int64_t)sizeof(U);
    const unsigned grid = vl_cuda_grid(n_rows, GATHER_WARPS);
    gather_rows_kernel<U>
        <<<grid, GATHER_THREADS, 0, stream>>>((U *)dst, (const U *)src, idx, n_rows, row_units);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_gather_rows(vl_bf16 *dst, const vl_bf16 *src, const int32_t *idx,
                                int64_t n_rows, int64_t row_elems, cudaStream_t stream) {
    if (n_rows <= 0 || row_elems <= 0) return;
    const uintptr_t both = (uintptr_t)dst | (uintptr_t)src;
    if (row_elems % 8 == 0 && both % 16 == 0)
        launch<uint4>(dst, src, idx, n_rows, row_elems, stream);
    else if (row_elems % 2 == 0 && both % 4 == 0)
        launch<uint32_t>(dst, src, idx, n_rows, row_elems, stream);
    else
        launch<uint16_t>(dst, src, idx, n_rows, row_elems, stream);
}

void vl_cuda_gather_rows(vl_backend *b, void *dst, const void *src, const int32_t *idx,
                         int64_t n_rows, int64_t row_elems) {
    VL_CUDA_REQUIRE(n_rows >= 0 && row_elems >= 0, "gather_rows of %lld rows of %lld elements",
                    (long long)n_rows, (long long)row_elems);
    const uintptr_t bytes = (uintptr_t)(n_rows * row_elems) * sizeof(vl_bf16);
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    VL_CUDA_REQUIRE(bytes == 0 || d + bytes <= s || s + bytes <= d,
                    "gather_rows: dst and src (%lld rows of %lld) overlap", (long long)n_rows,
                    (long long)row_elems);
    vl_cuda_launch_gather_rows((vl_bf16 *)dst, (const vl_bf16 *)src, idx, n_rows, row_elems,
                               vl_cuda_ctx_of(b)->stream);
}
