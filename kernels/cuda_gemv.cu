/* cuda_gemv.cu: y[m, N] = x[m, K] . W[N, K]^T (+ bias) for the few rows of decode (m <= 16), with W
 * in bf16, NF4 (fp32 or double-quantized block scales) or Q8ROW: memory-bound kernels that
 * read each weight byte once, at the device's copy bandwidth if they can.
 *
 * Numerics (the CPU twin's, cpu_linear.c + vl_weight_rows_f32): each weight is first the bf16
 * value w = bf16(table[code] * a_b) or bf16(q * absmax[r] * (1/127)), products x_k * w_k are
 * exact in fp32 (bf16 x bf16), the sum is fp32, y = bf16(sum + bias) rounded once. Only the
 * summation order differs from the twin; results are identical from run to run (no atomics on
 * data: split sums are added in a fixed order).
 *
 * Up to 8 rows of NF4 / Q8ROW W with K a multiple of 256 / 128 go to cuda_gemv_lean.cu's kernel
 * (the same tile and numerics in fewer instructions per weight) unless the backend's gemv_lean
 * is 0; the kernels below take the rest.
 *
 * Fast kernel (gemv_mma_kernel, "v1"): tensor cores do the multiply-adds, so the CUDA cores only
 * dequantize. One warp owns 16 rows of W, the A operand of mma.m16n8k16; x is the B operand
 * (column j = x row j, m <= 8 columns, so every m up to 8 costs the same as m = 1). The k order
 * inside an mma is free as long as A and B agree: lane (g, q) (g = lane / 4, q = lane % 4)
 * loads 16 bytes of rows g and g + 8 at K offset q * VEC of the current step (VEC = weights per
 * 16 bytes: 8 bf16, 16 int8, 32 NF4), and at mma step s uses its weights 4s..4s+3 as its A
 * slots {2q, 2q+1, 2q+8, 2q+9}, with x[g][same positions] as its B slots. A warp step covers
 * 16 rows x 4 VEC columns; each load instruction reads 16 rows x 64 contiguous bytes.
 *   - 9 to 16 rows of x (a batched decode step, vlrun serve), NF4 and Q8ROW: two B tiles
 *     (NT = 2), the A registers made once and used by two mmas, so W is still read once;
 *     twice the x registers and accumulators (half the CTAs per SM in the launch bound), two
 *     outputs per thread in the epilogue and the split-K slots. The NT = 1 instantiation is
 *     the m <= 8 kernel. Measured (H100, vlbench gemm, S12): NF4 3584 -> 18944 at 16 rows
 *     49.4 us against 35.2 at one row and 2 x 41.8 in two 8-row passes; bf16 W is not taken
 *     (86.9 us against cuBLAS's 53.0; why is not profiled), nor is it above 8 rows.
 *   - RT = 2 row tiles per warp (the backend's gemv_row_tiles, for 9 to 16 rows): a warp owns
 *     32 rows of W, each x register feeds the mmas of both tiles, BATCH is halved so that the
 *     weight registers stay as many. Why (Nsight Compute, H100, S16, NF4 18944 x 3584 at 16
 *     rows): with RT = 1 the L1 is the limit (82% of its throughput, stalls on MIO throttle
 *     and short scoreboard): per warp step x brings 4 KB through L1 against 1 KB of weights.
 *     RT = 2: L1 69%, 44.3 us against 51.6.
 *   - Weights stream through ld.global.nc.L1::no_allocate (read once, they must not evict x);
 *     BATCH steps of loads are issued before the previous batch is used (register double
 *     buffer), so each lane keeps 2 x BATCH x 32 bytes in flight.
 *   - x is read through L1 (__ldg): a CTA's K slice of x is reused by every warp on the SM.
 *   - NF4: the 16-entry table lives in shared memory (16 words in 16 banks: conflict-free);
 *     codes become byte offsets with two masks per 32-bit word and one byte_perm per byte;
 *     table * scale in fp32, then cvt to bf16x2 packs two weights into one A register.
 *   - Q8ROW: int8 -> fp32 by the 2^23 magic number (byte_perm + one subtraction, no I2F).
 *   - Each warp step's mma chain starts from zero and is added to fp32 accumulators, so the
 *     tensor core's internal accumulation only ever covers 4 VEC products.
 * A CTA is 4 warps on the same 16 rows, splitting K; they are added in shared memory in warp
 * order. When the row tiles do not fill the GPU (N = 512, 3584, 4608: fewer tiles than CTAs the
 * SMs hold at once), K is also split over gridDim.y CTAs, as many as keep the whole grid in one
 * wave: each writes its fp32 partial sums to a scratch slot, and the last CTA of the row tile
 * (a counter per tile, reset by that CTA) adds the slots in split order and writes y.
 * Requires: K % VEC == 0, W data and x 16-byte aligned (all Qwen2-VL shapes).
 *
 * Simple kernel (gemv_simple_kernel): any shape and alignment (tiny test models, odd K, views):
 * one warp per output row, scalar loads, warp-shuffle sum. Correct, not fast.
 *
 * Expected (H100 SXM, HBM3 3.35 TB/s peak, ~2.9-3.0 TB/s copy): bf16 and int8 bound by memory
 * (no CUDA-core math for bf16; ~5 instructions per weight for int8 at half the NF4 weight rate);
 * NF4 needs ~4.5 CUDA-core instructions per weight (byte_perm, address add, LDS, FMUL, half a
 * cvt), about 65% of the SMs' issue rate at 2.4 TB/s: close, so NF4 is the one to measure first.
 * Small N (512) is bound by launch latency and the split reduction, not bandwidth.
 * Knobs: BATCH per format (registers vs bytes in flight), GEMV_CTAS_PER_SM (the launch bound:
 * registers per thread), GEMV_MAX_GRID_SPLITS. Measured: bench/RESULTS.md (vlbench gemv).
 * Leaves out: m > 16 (cuBLAS / dequant GEMM, cuda_linear.cu), fp16/fp32 weights, strided x/y.
 */
#include "kernels/cuda_gemv_tile.cuh"

#include <limits.h>

#define GEMV_SIMPLE_WARPS 4

__device__ __forceinline__ float round_bf16(float v) {
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* NT: B tiles of 8 x rows (1: m <= 8; 2: m <= 16, W still read once). Twice the accumulators
 * and x registers for NT = 2: half the CTAs per SM in the launch bound. RT: row tiles of 16 W
 * rows per warp (1, or 2: each x register serves twice the weights; BATCH halved so that the
 * weight registers stay the same). MINB: the launch bound's CTAs per SM (RT = 2 takes 167
 * registers at the default bound, 3 CTAs; under a bound of 4 it fits 128 without spilling for
 * NF4: gemv_row_tiles = 3, the default; batch_decode measured both the same, S16). */
template <int FMT, int NT, int RT, int MINB = GEMV_CTAS_PER_SM / NT>
static __global__ void __launch_bounds__(GEMV_THREADS, MINB)
    gemv_mma_kernel(const __grid_constant__ GemvParams p) {
    constexpr int VEC = GemvFmt<FMT>::VEC, STEP_K = 4 * VEC;
    constexpr int BATCH = GemvFmt<FMT>::BATCH / RT > 0 ? GemvFmt<FMT>::BATCH / RT : 1;
    constexpr int TILE = GEMV_TILE_ROWS * RT;
    constexpr bool NF4 = FMT == FMT_NF4 || FMT == FMT_NF4_DQ;
    __shared__ float s_table[16];
    __shared__ float s_map[FMT == FMT_NF4_DQ ? 256 : 1];
    __shared__ float s_red[GEMV_WARPS][TILE][NT * GEMV_TILE_COLS];
    __shared__ int s_last;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
    const int r0 = blockIdx.x * TILE;
    bool ra_ok[RT], rb_ok[RT];
    int64_t row_a[RT], row_b[RT];
    float row_sa[RT], row_sb[RT];
#pragma unroll
    for (int r = 0; r < RT; r++) {
        const int ra = r0 + GEMV_TILE_ROWS * r + g, rb = ra + 8;
        ra_ok[r] = ra < p.n, rb_ok[r] = rb < p.n;
        row_a[r] = (int64_t)(ra_ok[r] ? ra : 0) * p.k,
        row_b[r] = (int64_t)(rb_ok[r] ? rb : 0) * p.k;
        row_sa[r] = row_sb[r] = 0.0f;
        if constexpr (FMT == FMT_Q8ROW) {
            row_sa[r] = ra_ok[r] ? __ldg(p.absmax + ra) : 0.0f;
            row_sb[r] = rb_ok[r] ? __ldg(p.absmax + rb) : 0.0f;
        }
    }
    const vl_bf16 *x_lane[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        x_lane[t] = 8 * t + g < p.m ? p.x + (int64_t)(8 * t + g) * p.k : nullptr;

    /* this warp's contiguous share of the K steps */
    const int splits = gridDim.y * GEMV_WARPS, split = blockIdx.y * GEMV_WARPS + warp;
    const int it_begin = (int)((int64_t)split * p.iters / splits);
    const int it_end = (int)((int64_t)(split + 1) * p.iters / splits);

    auto load_batch = [&](GemvChunk(&chunks)[BATCH][RT], int it0) {
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            if (it0 + u >= it_end) break;
            const int kc = (it0 + u) * STEP_K + q * VEC;
            const bool k_ok = kc < p.k;
#pragma unroll
            for (int r = 0; r < RT; r++)
                gemv_load<FMT>(chunks[u][r], p, row_a[r] + kc, row_b[r] + kc, ra_ok[r] && k_ok,
                               rb_ok[r] && k_ok);
        }
    };

    float acc[RT][NT][4] = {};
    GemvChunk cur[BATCH][RT] = {}, next[BATCH][RT] = {};
    load_batch(cur, it_begin); /* in flight while the tables are filled */
    if constexpr (NF4)
        if (tid < 16) s_table[tid] = p.nf4_table[tid];
    if constexpr (FMT == FMT_NF4_DQ)
        for (int i = tid; i < 256; i += GEMV_THREADS) s_map[i] = __ldg(p.absmax_map + i);
    __syncthreads();
    for (int it = it_begin; it < it_end; it += BATCH) {
        if (it + BATCH < it_end) load_batch(next, it + BATCH);
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            if (it + u >= it_end) break;
            gemv_step<FMT, NT, RT>(acc, cur[u], p, x_lane, (it + u) * STEP_K + q * VEC, s_table,
                                   s_map, row_sa, row_sb);
        }
#pragma unroll
        for (int u = 0; u < BATCH; u++)
#pragma unroll
            for (int r = 0; r < RT; r++) cur[u][r] = next[u][r];
    }

    gemv_tile_finish<NT, RT>(p, acc, &s_red[0][0][0], &s_last, r0);
}

/* ---- simple kernel --------------------------------------------------------------------------- */

/* W[r, k] as the bf16-rounded float a bf16 GEMM sees. */
template <int FMT>
__device__ __forceinline__ float weight_at(const GemvParams &p, const float *s_table,
                                           const float *s_map, int64_t r, int64_t k) {
    const int64_t e = r * p.k + k;
    if constexpr (FMT == FMT_BF16) {
        return __bfloat162float(reinterpret_cast<const vl_bf16 *>(p.w)[e]);
    } else if constexpr (FMT == FMT_Q8ROW) {
        float q = (float)(int8_t)p.w[e];
        return round_bf16(__fmul_rn(__fmul_rn(q, __ldg(p.absmax + r)), 1.0f / 127.0f));
    } else {
        const uint32_t byte = p.w[e / 2], code = e % 2 ? byte & 15u : byte >> 4;
        const int64_t b = e / VL_NF4_BLOCK;
        float scale;
        if constexpr (FMT == FMT_NF4_DQ)
            scale = nf4_scale<FMT>(s_map, p.absmax_code[b], p.absmax[b / VL_NF4_DQ_BLOCK],
                                   p.absmax_offset);
        else
            scale = p.absmax[b];
        return round_bf16(__fmul_rn(s_table[code], scale));
    }
}

/* One warp per output row r: lanes stride over K, then a butterfly sum (fixed order). MAX_M: the
 * accumulators (8, or 16 for 9 to 16 rows, so that the m <= 8 kernel stays as it was). */
template <int FMT, int MAX_M>
static __global__ void __launch_bounds__(GEMV_SIMPLE_WARPS * 32)
    gemv_simple_kernel(const __grid_constant__ GemvParams p) {
    __shared__ float s_table[16];
    __shared__ float s_map[FMT == FMT_NF4_DQ ? 256 : 1];
    const int tid = threadIdx.x, lane = tid % 32;
    if constexpr (FMT == FMT_NF4 || FMT == FMT_NF4_DQ)
        if (tid < 16) s_table[tid] = p.nf4_table[tid];
    if constexpr (FMT == FMT_NF4_DQ)
        for (int i = tid; i < 256; i += GEMV_SIMPLE_WARPS * 32) s_map[i] = p.absmax_map[i];
    __syncthreads();
    const int64_t r = (int64_t)blockIdx.x * GEMV_SIMPLE_WARPS + tid / 32;
    if (r >= p.n) return;
    float acc[MAX_M] = {};
    for (int64_t k = lane; k < p.k; k += 32) {
        const float w = weight_at<FMT>(p, s_table, s_map, r, k);
#pragma unroll
        for (int i = 0; i < MAX_M; i++)
            if (i < p.m) acc[i] += __bfloat162float(p.x[(int64_t)i * p.k + k]) * w;
    }
#pragma unroll
    for (int i = 0; i < MAX_M; i++)
        for (int off = 16; off > 0; off /= 2) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
    if (lane < p.m) {
        float v = acc[0];
#pragma unroll
        for (int i = 1; i < MAX_M; i++)
            if (lane == i) v = acc[i];
        if (p.bias) v += __bfloat162float(p.bias[r]);
        p.y[(int64_t)lane * p.n + r] = __float2bfloat16_rn(v);
    }
}

/* ---- launcher -------------------------------------------------------------------------------- */

static int gemv_format(const vl_weight *w) {
    switch (w->dtype) {
    case VL_DTYPE_BF16:
        return FMT_BF16;
    case VL_DTYPE_Q8ROW:
        return FMT_Q8ROW;
    case VL_DTYPE_NF4:
        return w->absmax_code ? FMT_NF4_DQ : FMT_NF4;
    default:
        return -1;
    }
}

static int gemv_vec(int fmt) {
    switch (fmt) {
    case FMT_BF16:
        return GemvFmt<FMT_BF16>::VEC;
    case FMT_Q8ROW:
        return GemvFmt<FMT_Q8ROW>::VEC;
    default:
        return GemvFmt<FMT_NF4>::VEC;
    }
}

int vl_cuda_gemv_supported(const vl_weight *w, int64_t m) {
    if (m < 1 || m > VL_CUDA_GEMV_WIDE_M || w->rows < 1 || w->cols < 1 || w->rows > INT_MAX ||
        w->cols > INT_MAX || !w->data)
        return 0;
    switch (gemv_format(w)) {
    case FMT_BF16:
        return m <= (kGemvWide<FMT_BF16> ? VL_CUDA_GEMV_WIDE_M : VL_CUDA_GEMV_MAX_M);
    case FMT_Q8ROW:
    case FMT_NF4:
        return w->absmax != NULL;
    case FMT_NF4_DQ:
        return w->absmax != NULL && w->absmax_map != NULL;
    default:
        return 0;
    }
}

template <int FMT, int NT, int RT, int MINB = GEMV_CTAS_PER_SM / NT>
static void launch_fast(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                        cudaStream_t stream) {
    /* CTAs one SM holds at once (registers bound it), asked once per backend and kernel */
    const int ctas_per_sm =
        vl_cuda_ctas_per_sm(c, (const void *)gemv_mma_kernel<FMT, NT, RT, MINB>, GEMV_THREADS, 0);
    constexpr int STEP_K = 4 * GemvFmt<FMT>::VEC, TILE = GEMV_TILE_ROWS * RT;
    p.iters = (p.k + STEP_K - 1) / STEP_K;
    const int64_t tiles = (p.n + TILE - 1) / TILE;
    const int splits = gemv_grid_splits(tiles, p.iters, (int64_t)c->sm_count * ctas_per_sm,
                                        RT * NT * GEMV_THREADS, scratch);
    if (splits > 1) {
        p.partials = scratch->partials;
        p.tile_counters = scratch->tile_counters;
    }
    gemv_mma_kernel<FMT, NT, RT, MINB>
        <<<dim3((unsigned)tiles, (unsigned)splits), GEMV_THREADS, 0, stream>>>(p);
    VL_CUDA_LAUNCH_CHECK();
}

/* One B tile for m <= 8, two for m <= 16 (with two row tiles per warp when the backend's
 * gemv_row_tiles asks for them). */
template <int FMT>
static void launch_fast_m(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                          cudaStream_t stream) {
    if constexpr (kGemvWide<FMT>)
        if (p.m > GEMV_TILE_COLS) {
            if (c->cfg.gemv_row_tiles == 1) return launch_fast<FMT, 2, 1>(c, p, scratch, stream);
            /* 3: under the 4-CTA bound, but for int8, which spills 40 bytes there */
            if constexpr (FMT != FMT_Q8ROW)
                if (c->cfg.gemv_row_tiles == 3)
                    return launch_fast<FMT, 2, 2, 4>(c, p, scratch, stream);
            return launch_fast<FMT, 2, 2>(c, p, scratch, stream);
        }
    if constexpr (FMT != FMT_BF16)
        if (c->cfg.gemv_lean && vl_gemv_lean_launch(c, FMT, p, scratch, stream)) return;
    launch_fast<FMT, 1, 1>(c, p, scratch, stream);
}

template <int FMT> static void launch_simple(const GemvParams &p, cudaStream_t stream) {
    unsigned blocks = (unsigned)((p.n + GEMV_SIMPLE_WARPS - 1) / GEMV_SIMPLE_WARPS);
    if constexpr (kGemvWide<FMT>)
        if (p.m > VL_CUDA_GEMV_MAX_M) {
            gemv_simple_kernel<FMT, VL_CUDA_GEMV_WIDE_M>
                <<<blocks, GEMV_SIMPLE_WARPS * 32, 0, stream>>>(p);
            VL_CUDA_LAUNCH_CHECK();
            return;
        }
    gemv_simple_kernel<FMT, VL_CUDA_GEMV_MAX_M><<<blocks, GEMV_SIMPLE_WARPS * 32, 0, stream>>>(p);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_gemv(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                         const vl_weight *w, const vl_bf16 *bias,
                         const vl_cuda_gemv_scratch *scratch, cudaStream_t stream) {
    VL_CUDA_REQUIRE(vl_cuda_gemv_supported(w, m),
                    "gemv m=%lld W[%lld, %lld] %s: expected 1 <= m <= %d (NF4 or Q8ROW weight with "
                    "its scales) or %d (BF16)",
                    (long long)m, (long long)w->rows, (long long)w->cols, vl_dtype_name(w->dtype),
                    VL_CUDA_GEMV_WIDE_M, VL_CUDA_GEMV_MAX_M);
    const int fmt = gemv_format(w);
    GemvParams p = {};
    p.y = y;
    p.x = x;
    p.bias = bias;
    p.w = (const uint8_t *)w->data;
    p.absmax = w->absmax;
    p.absmax_code = w->absmax_code;
    p.absmax_map = w->absmax_map;
    p.absmax_offset = w->absmax_offset;
    p.m = (int)m;
    p.n = (int)w->rows;
    p.k = (int)w->cols;
    if (fmt == FMT_NF4 || fmt == FMT_NF4_DQ) memcpy(p.nf4_table, vl_nf4_table, sizeof p.nf4_table);

    const int vec = gemv_vec(fmt);
    const int fast = p.k % vec == 0 && vl_cuda_aligned16(w->data) && vl_cuda_aligned16(x);
    if (!fast) {
        switch (fmt) {
        case FMT_BF16:
            return launch_simple<FMT_BF16>(p, stream);
        case FMT_Q8ROW:
            return launch_simple<FMT_Q8ROW>(p, stream);
        case FMT_NF4:
            return launch_simple<FMT_NF4>(p, stream);
        default:
            return launch_simple<FMT_NF4_DQ>(p, stream);
        }
    }
    switch (fmt) {
    case FMT_BF16:
        return launch_fast_m<FMT_BF16>(c, p, scratch, stream);
    case FMT_Q8ROW:
        return launch_fast_m<FMT_Q8ROW>(c, p, scratch, stream);
    case FMT_NF4:
        return launch_fast_m<FMT_NF4>(c, p, scratch, stream);
    default:
        return launch_fast_m<FMT_NF4_DQ>(c, p, scratch, stream);
    }
}
