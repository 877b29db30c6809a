/* cuda_gemv_bf16.cu: the m = 1 decode GEMV for bf16 weights, y[N] = W[N, K] . x[K] (+ bias),
 * written to stream the weights at the copy bandwidth on every decoder shape (o 3584 x 3584, fused
 * q/k/v 4608 x 3584, fused gate/up 37888 x 3584, down 3584 x 18944, LM head 152064 x 3584).
 *
 * Why another kernel: cuda_gemv.cu's tensor-core kernel gives a CTA 16 rows over the whole K, so a
 * launch is a few waves of large CTAs and its last wave leaves most SMs idle (18944 x 3584: 2.24
 * waves, 2174 GB/s), and cuBLAS's GEMV read 2.70 TB/s in the decode step on the big shapes. Here
 * the unit of work is one row (or a K segment of one) per warp: thousands of small warps, so the
 * hardware's CTA scheduler balances the tail. Measured on an H100 in the x28 decode step (ncu):
 * gate/up 3.08 TB/s (cuBLAS 2.70), down 2.77 (2.68 with its split-K reduce), LM head 3.19
 * (cuda_gemv.cu 2.93); o and q/k/v 2.12 (cuBLAS 1.94, 2.04): at 26-33 MB these are bound by the
 * launch and the first DRAM round trips, not by the stream. Splits 4 and 8 measured slower on
 * every decoder shape; the rule below picks 1 (gate/up, LM head) or 2 (o, q/k/v, down).
 *
 * Layout: a CTA is 8 warps; `splits` warps (1, 2, 4 or 8) share one row, each a contiguous range
 * of its 16-byte chunks (8 weights). Lane l reads chunks c0 + l, c0 + 32 + l, ...: every load
 * instruction reads 512 contiguous bytes of the row, GB_UNROLL of them in flight per lane before
 * any math. Weights go through ld.global.nc.L1::no_allocate (read once); x through __ldg (the
 * whole CTA, and the CTAs beside it, read the same x). The products are fp32 FMAs on the CUDA
 * cores: bf16 -> fp32 is a shift or a mask, and 2 instructions per weight are far below the issue
 * rate at 3 TB/s (m = 1 has no reuse for tensor cores to exploit).
 * Numerics: the CPU twin's (cpu_linear.c): exact bf16 x bf16 products summed in fp32, then
 * y = bf16(sum + bias) rounded once. Only the order of the sum differs. Deterministic: each lane
 * sums its chunks in order over four accumulators (one per word of a chunk, to shorten the FMA
 * chains), then a fixed xor butterfly over the warp (every lane gets the same bits), then the
 * row's splits in warp order in shared memory. No atomics, no scratch.
 * Requires K % 8 == 0, W data and x 16-byte aligned, N < 2^31; vl_cuda_gemv_bf16 returns 0 (and
 * launches nothing) otherwise.
 * Knobs: GB_UNROLL (bytes in flight per lane), GB_CTAS_PER_SM (the register bound), and the
 * backend's gemv_bf16_splits (vl_cuda_config: 1, 2, 4, 8 force the split, for tuning).
 * Leaves out: m > 1 (cuda_gemv.cu), other weight formats (cuda_gemv.cu, cuda_gemv_quant_m1.cu).
 */
#include "kernels/cuda_gemv_common.cuh"
#include "kernels/cuda_pdl.cuh"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define GB_WARPS       8
#define GB_THREADS     (GB_WARPS * 32)
#define GB_UNROLL      8 /* 16-byte chunks per lane whose loads are issued together */
#define GB_CTAS_PER_SM 2 /* launch bound: <= 128 registers per thread */
#define GB_MAX_SPLITS  8
#define GB_WAVES       2  /* the split grows until the grid holds this many waves of warps */
#define GB_MIN_CHUNKS  64 /* ... without leaving a warp fewer chunks than this (2 per lane) */

struct GbParams {
    vl_bf16 *y;          /* [n] */
    const vl_bf16 *x;    /* [k] */
    const vl_bf16 *bias; /* [n] or NULL */
    const vl_bf16 *w;    /* [n, k] */
    int n;
    int chunks; /* 16-byte chunks per row: k / 8 */
    int splits; /* warps per row */
    int pdl;    /* launched as a programmatic dependent: its first weights go to L2 first */
};

/* acc[j] += the products of word j (two weights) of a chunk of W and the same word of x. The
 * low half of a word is the earlier element; bf16 -> fp32 is the 16 bits moved up. */
__device__ __forceinline__ void gb_dot_chunk(float acc[4], const uint4 &w, const uint4 &x) {
    const uint32_t wv[4] = {w.x, w.y, w.z, w.w}, xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float w0 = __uint_as_float(wv[j] << 16), w1 = __uint_as_float(wv[j] & 0xFFFF0000u);
        const float x0 = __uint_as_float(xv[j] << 16), x1 = __uint_as_float(xv[j] & 0xFFFF0000u);
        acc[j] = __fmaf_rn(w0, x0, acc[j]);
        acc[j] = __fmaf_rn(w1, x1, acc[j]);
    }
}

static __global__ void __launch_bounds__(GB_THREADS, GB_CTAS_PER_SM)
    gemv_bf16_kernel(const __grid_constant__ GbParams p) {
    __shared__ float s_part[GB_WARPS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int rows_per_cta = GB_WARPS / p.splits, seg = warp % p.splits;
    const int r = blockIdx.x * rows_per_cta + warp / p.splits;
    const bool row_ok = r < p.n;
    const uint4 *w_row =
        reinterpret_cast<const uint4 *>(p.w) + (int64_t)(row_ok ? r : 0) * p.chunks;
    const uint4 *x4 = reinterpret_cast<const uint4 *>(p.x);
    const int c_begin = (int)((int64_t)seg * p.chunks / p.splits);
    const int c_end = row_ok ? (int)((int64_t)(seg + 1) * p.chunks / p.splits) : c_begin;

    if (p.pdl) { /* the first loads' weights into L2 while the kernel before (x's) finishes */
#pragma unroll
        for (int u = 0; u < GB_UNROLL; u++) {
            const int c = c_begin + 32 * u + lane;
            if (c < c_end) vl_prefetch_l2(w_row + c);
        }
        vl_pdl_wait();
    }
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int c0 = c_begin; c0 < c_end; c0 += 32 * GB_UNROLL) {
        uint4 wv[GB_UNROLL], xv[GB_UNROLL];
#pragma unroll
        for (int u = 0; u < GB_UNROLL; u++) {
            const int c = c0 + 32 * u + lane;
            wv[u] = c < c_end ? vl_ld_stream16(w_row + c) : zero;
        }
#pragma unroll
        for (int u = 0; u < GB_UNROLL; u++) {
            const int c = c0 + 32 * u + lane;
            xv[u] = c < c_end ? __ldg(x4 + c) : zero;
        }
#pragma unroll
        for (int u = 0; u < GB_UNROLL; u++) gb_dot_chunk(acc, wv[u], xv[u]);
    }
    float v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (p.splits > 1) {
        if (lane == 0) s_part[warp] = v;
        __syncthreads();
        if (seg != 0) return;
        v = s_part[warp];
        for (int s = 1; s < p.splits; s++) v += s_part[warp + s];
    }
    if (lane == 0 && row_ok) {
        if (p.bias) v += __bfloat162float(p.bias[r]);
        p.y[r] = __float2bfloat16_rn(v);
    }
}

/* ---- launcher -------------------------------------------------------------------------------- */

int vl_cuda_gemv_bf16(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, const vl_weight *w,
                      const vl_bf16 *bias) {
    if (w->dtype != VL_DTYPE_BF16 || !w->data || w->rows < 1 || w->cols < 8 ||
        w->rows > INT_MAX - GB_WARPS || w->cols > INT_MAX || w->cols % 8 != 0 ||
        !vl_cuda_aligned16(w->data) || !vl_cuda_aligned16(x))
        return 0;
    const int ctas_per_sm = vl_cuda_ctas_per_sm(c, (const void *)gemv_bf16_kernel, GB_THREADS, 0);
    GbParams p = {};
    p.y = y;
    p.x = x;
    p.bias = bias;
    p.w = (const vl_bf16 *)w->data;
    p.n = (int)w->rows;
    p.chunks = (int)(w->cols / 8);
    /* more warps per row while the grid is short of GB_WAVES waves of resident warps and each
     * warp keeps enough chunks to be worth its launch */
    const int64_t want_warps = (int64_t)GB_WAVES * c->sm_count * ctas_per_sm * GB_WARPS;
    int splits = c->cfg.gemv_bf16_splits; /* 0: chosen here */
    if (!splits) {
        splits = 1;
        while (splits < GB_MAX_SPLITS && (int64_t)p.n * splits < want_warps &&
               p.chunks / (2 * splits) >= GB_MIN_CHUNKS)
            splits *= 2;
    }
    p.splits = splits;
    p.pdl = vl_cuda_pdl_on(c);
    const int rows_per_cta = GB_WARPS / splits;
    const int64_t ctas = ((int64_t)p.n + rows_per_cta - 1) / rows_per_cta;
    vl_cuda_launch_pdl(c, gemv_bf16_kernel, dim3((unsigned)ctas), dim3(GB_THREADS), 0, c->stream,
                       p);
    return 1;
}
