/* cuda_dqg_common.cuh: what the two Hopper dequant GEMMs share (cuda_dequant_gemm_wgmma.cu,
 * W dequantized in shared memory; cuda_dequant_gemm_rs.cu, W converted by the consumers): the
 * kernel parameters, filled from the call, the TMA maps of x and of W's codes, and the scale of
 * a row of W at a k step. */
#pragma once

#include "kernels/cuda_hopper.cuh"
#include "kernels/cuda_mma.cuh"
#include "kernels/cuda_ops.h"

#include <string.h>

namespace vl_dqg_common {

struct Params {
    const float *absmax;        /* NF4: block scales or nested ones; Q8ROW: row absmax */
    const uint8_t *absmax_code; /* NF4 double quantization (else NULL) */
    const float *absmax_map;
    float absmax_offset;
    float nf4_table[16];
    const vl_bf16 *bias; /* NULL: none */
    vl_bf16 *y;          /* [m, n] */
    int m, n, k;
    int tiles_n, tiles; /* tiles along n (W's rows), and in all */
};

/* The parameters of y = x . W^T (+ bias) over tiles of tile_m rows of x by tile_n rows of W. */
static inline Params params_of(vl_bf16 *y, int64_t m, const vl_weight *w, const vl_bf16 *bias,
                               int tile_m, int tile_n) {
    Params p;
    p.absmax = w->absmax;
    p.absmax_code = w->absmax_code;
    p.absmax_map = w->absmax_map;
    p.absmax_offset = w->absmax_offset;
    memcpy(p.nf4_table, vl_nf4_table, sizeof p.nf4_table);
    p.bias = bias;
    p.y = y;
    p.m = (int)m;
    p.n = (int)w->rows;
    p.k = (int)w->cols;
    p.tiles_n = (int)((w->rows + tile_n - 1) / tile_n);
    p.tiles = p.tiles_n * (int)((m + tile_m - 1) / tile_m);
    return p;
}

/* TMA maps: x's tiles of tile_m rows x 64 bf16 in the 128-byte swizzle, W's codes in plain
 * tiles of tile_n rows x the bytes of 64 codes (32 NF4, 64 Q8ROW). */
static inline void tensor_maps(vl_cuda_ctx *c, const vl_bf16 *x, int64_t m, const vl_weight *w,
                               int tile_m, int tile_n, CUtensorMap *tm_x, CUtensorMap *tm_w) {
    const uint64_t x_dims[2] = {(uint64_t)w->cols, (uint64_t)m};
    const uint64_t x_strides[1] = {(uint64_t)w->cols * 2};
    const uint32_t x_box[2] = {64, (uint32_t)tile_m};
    vl_cuda_tensor_map(c, tm_x, 2, 2, x, x_dims, x_strides, x_box, 1);
    const int nf4 = w->dtype == VL_DTYPE_NF4;
    const uint64_t row_bytes = nf4 ? (uint64_t)w->cols / 2 : (uint64_t)w->cols;
    const uint64_t w_dims[2] = {row_bytes, (uint64_t)w->rows};
    const uint64_t w_strides[1] = {row_bytes};
    const uint32_t w_box[2] = {nf4 ? 32u : 64u, (uint32_t)tile_n};
    vl_cuda_tensor_map(c, tm_w, 1, 2, w->data, w_dims, w_strides, w_box, 0);
}

#ifdef VL_HOPPER_DEVICE
/* Row `row` of W's scale for k step kt: NF4's block scale (double quantization: multiply, then
 * add, in fp32, as the CPU twin), Q8ROW's absmax; 0 past the last row (a zero row). */
template <bool NF4> __device__ __forceinline__ float scale_of(const Params &p, int row, int kt) {
    if (row >= p.n) return 0.f;
    if (!NF4) return __ldg(p.absmax + row);
    const int64_t b = (int64_t)row * (p.k / 64) + kt;
    return p.absmax_code == NULL ? vl_nf4_block_scale<false>(p.absmax, NULL, NULL, 0.f, b)
                                 : vl_nf4_block_scale<true>(p.absmax, p.absmax_code, p.absmax_map,
                                                            p.absmax_offset, b);
}
#endif

} // namespace vl_dqg_common
