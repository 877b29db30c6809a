/* cuda_dequant_gemm_wgmma.cu: y = x . W^T (+ b) for an NF4 or Q8ROW W and many rows of x
 * (prefill) on Hopper (sm_90a), with W dequantized inside the GEMM: each tile of W's codes is
 * turned into bf16 in shared memory, where the warpgroup MMA (wgmma) reads it, so no bf16 copy
 * of W is written to or read from global memory (cuda_dequant_gemm.cu's slices, which stay for
 * every call this kernel does not take).
 *
 *   - Tiles: 128 rows of x by 256, 224, 192 or 128 rows of W (output columns; cols_of picks the
 *     one whose last round of tiles fills the GPU best), k steps of 64 (one 128-byte swizzle atom
 *     of bf16, and one NF4 block of each row of W). Persistent grid: one CTA an SM walks tiles
 *     blockIdx.x, + gridDim.x, ..., x's row block major, so the CTAs in flight share x's rows
 *     and W's codes stream through L2; the producer runs into the next tile while the consumers
 *     store the last.
 *   - CTA = 3 warpgroups. Warpgroup 0 produces: thread 0 issues the TMA loads of x's tile
 *     (128 x 64 bf16, in the 128-byte swizzle) and of W's codes (BN rows x 32 bytes NF4 or 64
 *     bytes int8, plain) into a ring of stages; thread r of the 128 then turns rows r and
 *     r + 128 (where the tile has it) of the staged codes into bf16 in the stage's W tile, in
 *     the swizzle wgmma reads (the int8 cache's producer of cuda_attention_wgmma.cu, for
 *     weights). Warpgroups 1 and 2 consume 64 rows of x each: acc[64 x BN] += x[64 x 16] .
 *     W[BN x 16]^T, wgmma m64nBNk16 with both operands K-major in shared memory, four per
 *     stage, one commit group per stage; a stage is released once the group after it is issued
 *     and it has completed.
 *   - Values: W's bf16 are exactly vl_weight_rows_f32's (NF4: bf16(table[code] * a_b) from the
 *     block planes of cuda_mma.cuh; Q8ROW: bf16(q * absmax * (1/127))), the products accumulate
 *     in fp32, and each output is bf16(acc + bias) in fp32: one rounding, as the sliced path.
 *   - Rows of x past m and rows of W past N come in as zeros (TMA out of bounds), with scale 0
 *     for W's; they are not stored.
 *   - Shared memory: NF4 4 stages of x 16 KB + W 32 KB + codes 8 KB (225 KB in all); Q8ROW 3
 *     stages with 16 KB of codes (193 KB). Registers: 56 for the producer, 224 for the consumers
 *     (up to 128 accumulators).
 *   - Measured (S26, H100, vlbench beside cuBLAS bf16, bench/RESULTS.md): correct
 *     (test_quant_gpu, memcheck clean) but slow: 221-372 TFLOP/s, 0.30-0.47 of cuBLAS, where
 *     the bf16 slices of cuda_dequant_gemm.cu reach 0.74-1.04. NF4 (about 3 integer
 *     instructions a weight) runs faster than int8 (about 4.5), and m = 8192 little faster than
 *     2048, which points to the producer's conversion as the bound: 4 warps (one a scheduler,
 *     nothing to hide their latency) making 16K weights a step, about 3600 cycles a step
 *     against about 1100 of tensor-core work (an inference from those ratios, not yet an
 *     Nsight Compute profile). So it is opt-in (dq_wgmma = 1). Next: convert in the consumers
 *     (8 warps, idle while their wgmma runs): W as wgmma's A operand from registers, each
 *     thread's fragment bytes picked from the staged codes (for NF4, byte q of each word of a
 *     row gives a k16 step's pairs), as CUTLASS's mixed-input GEMMs do. Two converting
 *     warpgroups (512 threads) do not compile with these tiles: ptxas holds the whole kernel to
 *     the launch's 128 registers a thread, and wgmma m64n256 with its 128 accumulators needs
 *     at least 154 (ptxas C7602); they would need tiles of at most 128 rows of W.
 * Takes (vl_dqg_wgmma, when enabled): a compute capability 9.0 device in a build with sm_90a code,
 * K a multiple of 64, N a multiple of 8, x, y and W's codes 16-byte aligned, a bias 4-byte aligned.
 * Leaves out: split-K or stream-K for grids of under two waves, TMA stores of y.
 */
#include "kernels/cuda_dqg_common.cuh"
#include "kernels/cuda_ops.h"

#include <limits.h>
#include <stdint.h>

namespace vl_dqg { /* named: a build without sm_90a code leaves parts unused */

using vl_dqg_common::Params;

/* The kernel's shape. */
template <bool NF4, int BN> struct G {
    static constexpr int kWgThreads = 128;
    static constexpr int kThreads = 3 * kWgThreads;
    static constexpr int kBM = 128; /* rows of x a tile, 64 a consumer */
    static constexpr int kBN = BN;  /* rows of W a tile: 128, 192, 224 or 256 */
    static constexpr int kBK = 64;  /* k a step */
    static constexpr int kStages = NF4 ? 4 : 3;
    static constexpr int kXBytes = kBM * 128;
    static constexpr int kWBytes = kBN * 128;
    static constexpr int kCodeRowBytes = NF4 ? kBK / 2 : kBK;
    static constexpr int kCodeBytes = kBN * kCodeRowBytes;
    static constexpr int kBars = 3 * kStages; /* full, empty, staged (codes landed) */
    static constexpr int smem_bytes =
        1024 /* alignment */ + kStages * (kXBytes + kWBytes + kCodeBytes) + 8 * kBars;
    static constexpr int kConsumerWarps = 8;
    static constexpr int kProducerBar = 1; /* named barrier of the producer's 128 threads */
    /* shared-memory addresses from the 1024-aligned base */
    __device__ static constexpr uint32_t x_tile(uint32_t b, int s) {
        return b + (uint32_t)(s * kXBytes);
    }
    __device__ static constexpr uint32_t w_tile(uint32_t b, int s) {
        return b + (uint32_t)(kStages * kXBytes + s * kWBytes);
    }
    __device__ static constexpr uint32_t codes(uint32_t b, int s) {
        return b + (uint32_t)(kStages * (kXBytes + kWBytes) + s * kCodeBytes);
    }
    __device__ static constexpr uint32_t bar(uint32_t b, int i) {
        return b + (uint32_t)(kStages * (kXBytes + kWBytes + kCodeBytes) + 8 * i);
    }
    __device__ static constexpr int full(int s) { return s; }
    __device__ static constexpr int empty(int s) { return kStages + s; }
    __device__ static constexpr int staged(int s) { return 2 * kStages + s; }
};
static_assert(G<true, 256>::smem_bytes <= 232448 && G<false, 256>::smem_bytes <= 232448,
              "the H100's shared memory a CTA");

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;
using vl_dqg_common::scale_of;

/* The CTA's step `it` (its tiles' k steps, one after the other): the tile and its k step. */
struct Step {
    int m0, n0, kt;
};
template <int BN> __device__ __forceinline__ Step step_of(const Params &p, int it, int ksteps) {
    const int tile = (int)blockIdx.x + (it / ksteps) * (int)gridDim.x;
    return {tile / p.tiles_n * 128, tile % p.tiles_n * BN, it % ksteps};
}

__device__ __forceinline__ void lds128(uint32_t w[4], uint32_t addr) {
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                 : "r"(addr));
}
__device__ __forceinline__ void sts128(uint32_t addr, uint32_t a, uint32_t b, uint32_t c,
                                       uint32_t d) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a), "r"(b), "r"(c),
                 "r"(d)
                 : "memory");
}

/* Row r of a W tile from its staged codes: 64 weights, 8 chunks of 16 bytes at chunk c ^ (r % 8)
 * (the 128-byte swizzle). The 16-byte pieces of the codes are read in an order rotated by row,
 * so that a quarter warp's 8 rows hit different banks. */
__device__ __forceinline__ void dequant_row_nf4(const Params &p, uint32_t src, uint32_t dst, int r,
                                                float scale) {
    const vl_nf4_planes t = vl_nf4_make_planes(p.nf4_table, scale);
    const uint32_t sw = (uint32_t)(r & 7), rot = (uint32_t)(r >> 2) & 1u;
    const uint32_t row_src = src + (uint32_t)(r * 32), row_dst = dst + (uint32_t)(r * 128);
#pragma unroll
    for (uint32_t h = 0; h < 2; h++) {
        const uint32_t piece = h ^ rot; /* codes 32 piece .. 32 piece + 31 */
        uint32_t w[4];
        lds128(w, row_src + piece * 16);
#pragma unroll
        for (uint32_t j = 0; j < 4; j++) {
            uint32_t o[4];
            vl_nf4_lookup8(o, t, w[j]);
            sts128(row_dst + (((4 * piece + j) ^ sw) << 4), o[0], o[1], o[2], o[3]);
        }
    }
}

__device__ __forceinline__ void dequant_row_q8(uint32_t src, uint32_t dst, int r, float absmax) {
    const uint32_t sw = (uint32_t)(r & 7), rot = (uint32_t)(r >> 1) & 3u;
    const uint32_t row_src = src + (uint32_t)(r * 64), row_dst = dst + (uint32_t)(r * 128);
#pragma unroll
    for (uint32_t h = 0; h < 4; h++) {
        const uint32_t piece = (h + rot) & 3u; /* codes 16 piece .. 16 piece + 15: 2 chunks */
        uint32_t w[4];
        lds128(w, row_src + piece * 16);
        uint32_t o[8];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t biased = w[j] ^ 0x80808080u;
            o[2 * j] =
                vl_pack_bf16x2(vl_q8_weight(biased, 0, absmax), vl_q8_weight(biased, 1, absmax));
            o[2 * j + 1] =
                vl_pack_bf16x2(vl_q8_weight(biased, 2, absmax), vl_q8_weight(biased, 3, absmax));
        }
        sts128(row_dst + (((2 * piece) ^ sw) << 4), o[0], o[1], o[2], o[3]);
        sts128(row_dst + (((2 * piece + 1) ^ sw) << 4), o[4], o[5], o[6], o[7]);
    }
}

/* Warpgroup 0: the loads (thread 0) and the dequantization of W's tiles (every thread). */
template <bool NF4, int BN>
__device__ __forceinline__ void produce(const Params &p, const CUtensorMap *tm_x,
                                        const CUtensorMap *tm_w, uint32_t base, int total,
                                        int ksteps) {
    using K = G<NF4, BN>;
    const int tid = (int)threadIdx.x, lane = tid % 32;
    const bool two = tid + 128 < BN; /* a second row: tid + 128 */
    const auto stage_codes =
        [&](int it) { /* thread 0 */
                      const int s = it % K::kStages;
                      const Step st = step_of<BN>(p, it, ksteps);
                      bar_arrive_expect(K::bar(base, K::staged(s)), K::kCodeBytes);
                      tma_load_2d(K::codes(base, s), tm_w, K::bar(base, K::staged(s)),
                                  st.kt * K::kCodeRowBytes, st.n0);
        };
    if (tid == 0) {
        tma_prefetch_map(tm_x);
        tma_prefetch_map(tm_w);
        for (int it = 0; it < K::kStages && it < total; it++) stage_codes(it);
    }
    /* this thread's rows' scales, loaded a step ahead (each step would wait for its loads) */
    Step st = step_of<BN>(p, 0, ksteps);
    float next0 = scale_of<NF4>(p, st.n0 + tid, st.kt);
    float next1 = scale_of<NF4>(p, st.n0 + tid + 128, st.kt);
    for (int it = 0; it < total; it++) {
        const int s = it % K::kStages;
        const uint32_t phase = (uint32_t)(it / K::kStages) & 1u;
        const float sc0 = next0, sc1 = next1;
        const Step cur = st;
        if (it + 1 < total) {
            st = step_of<BN>(p, it + 1, ksteps);
            next0 = scale_of<NF4>(p, st.n0 + tid, st.kt);
            next1 = scale_of<NF4>(p, st.n0 + tid + 128, st.kt);
        }
        bar_wait(K::bar(base, K::empty(s)), phase ^ 1u); /* first pass: a fresh barrier, free */
        if (tid == 0) {
            bar_arrive_expect(K::bar(base, K::full(s)), K::kXBytes);
            tma_load_2d(K::x_tile(base, s), tm_x, K::bar(base, K::full(s)), cur.kt * 64, cur.m0);
        }
        bar_wait(K::bar(base, K::staged(s)), phase);
        const uint32_t src = K::codes(base, s), dst = K::w_tile(base, s);
        if constexpr (NF4) {
            dequant_row_nf4(p, src, dst, tid, sc0);
            if (two) dequant_row_nf4(p, src, dst, tid + 128, sc1);
        } else {
            dequant_row_q8(src, dst, tid, sc0);
            if (two) dequant_row_q8(src, dst, tid + 128, sc1);
        }
        fence_proxy_async(); /* this thread's rows, before the wgmma reads them */
        __syncwarp();
        if (lane == 0) bar_arrive(K::bar(base, K::full(s)));
        named_sync(K::kProducerBar, K::kWgThreads); /* every row of the staged codes is read */
        if (tid == 0 && it + K::kStages < total) stage_codes(it + K::kStages);
    }
}

/* This thread's two rows of a consumer's 64 x 256 accumulators as bf16(acc + bias) (the
 * layout of cuda_hopper.cuh: acc[4i], acc[4i + 1] row g, columns 8i + 2q, + 1; acc[4i + 2],
 * acc[4i + 3] row g + 8). */
template <int BN>
__device__ __forceinline__ void store_tile(const Params &p, const float acc[BN / 2], int row0,
                                           int n0, int q) {
    vl_bf16 *dst0 = p.y + (int64_t)row0 * p.n, *dst1 = dst0 + (int64_t)8 * p.n;
    const bool in0 = row0 < p.m, in1 = row0 + 8 < p.m;
#pragma unroll
    for (int i = 0; i < BN / 8; i++) {
        const int col = n0 + 8 * i + 2 * q;
        if (col >= p.n) break; /* n % 8 == 0: col + 1 < n with col */
        float b0 = 0.f, b1 = 0.f;
        if (p.bias) {
            const uint32_t bb = __ldg(reinterpret_cast<const unsigned int *>(p.bias + col));
            b0 = __uint_as_float(bb << 16);
            b1 = __uint_as_float(bb & 0xffff0000u);
        }
        if (in0)
            *reinterpret_cast<uint32_t *>(dst0 + col) =
                vl_pack_bf16x2(__fadd_rn(acc[4 * i], b0), __fadd_rn(acc[4 * i + 1], b1));
        if (in1)
            *reinterpret_cast<uint32_t *>(dst1 + col) =
                vl_pack_bf16x2(__fadd_rn(acc[4 * i + 2], b0), __fadd_rn(acc[4 * i + 3], b1));
    }
}
#endif /* VL_HOPPER_DEVICE */

template <bool NF4, int BN>
__global__ void __launch_bounds__(G<NF4, BN>::kThreads, 1)
    dqg_kernel(const __grid_constant__ Params p, const __grid_constant__ CUtensorMap tm_x,
               const __grid_constant__ CUtensorMap tm_w) {
#ifdef VL_HOPPER_DEVICE
    using K = G<NF4, BN>;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u; /* the swizzle's alignment */
    const int tid = (int)threadIdx.x, wg = tid / K::kWgThreads;
    const int ksteps = p.k / 64;
    const int my_tiles = (p.tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    const int total = my_tiles * ksteps;

    if (tid == 0) {
        for (int s = 0; s < K::kStages; s++) {
            bar_init(K::bar(base, K::full(s)), 1 + 4); /* the x load's expect, 4 warps' rows */
            bar_init(K::bar(base, K::empty(s)), K::kConsumerWarps);
            bar_init(K::bar(base, K::staged(s)), 1);
        }
        bar_init_fence();
    }
    __syncthreads();

    /* registers: 128 x 56 + 256 x 224 = 64512 of the 64K */
    if (wg == 0) {
        regs_dealloc<56>();
        produce<NF4, BN>(p, &tm_x, &tm_w, base, total, ksteps);
        return;
    }
    regs_alloc<224>();
    const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32;
    float acc[BN / 2];
    int it = 0;
    for (int t = 0; t < my_tiles; t++) {
        for (int kt = 0; kt < ksteps; kt++, it++) {
            const int s = it % K::kStages;
            bar_wait(K::bar(base, K::full(s)), (uint32_t)(it / K::kStages) & 1u);
            const uint32_t xa = K::x_tile(base, s) + (uint32_t)(cw * 64 * 128);
            const uint32_t wb = K::w_tile(base, s);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                WgmmaSS<BN>::run(acc, desc_sw128(xa + 32 * kk, 16, 1024),
                                 desc_sw128(wb + 32 * kk, 16, 1024), kt > 0 || kk > 0);
            wg_commit();
            wg_wait<1>(); /* the stage before is read: give it back */
            if (kt > 0 && lane == 0) bar_arrive(K::bar(base, K::empty((it - 1) % K::kStages)));
        }
        wg_wait<0>();
#pragma unroll
        for (int i = 0; i < BN / 2; i++) reg_fence(acc[i]);
        if (lane == 0) bar_arrive(K::bar(base, K::empty((it - 1) % K::kStages)));
        const Step st = step_of<BN>(p, it - 1, ksteps);
        store_tile<BN>(p, acc, st.m0 + 64 * cw + 16 * warp + lane / 4, st.n0, lane % 4);
    }
#endif /* VL_HOPPER_DEVICE */
}

#ifdef VL_HOPPER_KERNELS
template <bool NF4, int BN>
void launch(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
            const vl_bf16 *bias, cudaStream_t stream) {
    using K = G<NF4, BN>;
    const Params p = vl_dqg_common::params_of(y, m, w, bias, K::kBM, K::kBN);
    CUtensorMap tm_x, tm_w;
    vl_dqg_common::tensor_maps(c, x, m, w, K::kBM, K::kBN, &tm_x, &tm_w);
    const void *kernel = (const void *)dqg_kernel<NF4, BN>;
    (void)vl_cuda_ctas_per_sm(c, kernel, K::kThreads, K::smem_bytes); /* the opt-in */
    const int grid = p.tiles < c->sm_count ? p.tiles : c->sm_count;
    dqg_kernel<NF4, BN><<<grid, K::kThreads, K::smem_bytes, stream>>>(p, tm_x, tm_w);
    VL_CUDA_LAUNCH_CHECK();
}

/* The tile's rows of W for an m x n product: of 256, 224, 192 and 128, the one whose tiles fill
 * the grid's last round best (a round: one tile on each SM; the time ~ rounds x rows), the
 * larger on a tie (fewer redone dequantizations of W). forced > 0 overrides. */
int cols_of(int64_t m, int64_t n, int sms, int forced) {
    if (forced > 0) return forced;
    static const int cand[] = {256, 224, 192, 128};
    int best = 256;
    int64_t best_cost = INT64_MAX;
    for (int i = 0; i < 4; i++) {
        const int64_t tiles = (m + 127) / 128 * ((n + cand[i] - 1) / cand[i]);
        const int64_t cost = (tiles + sms - 1) / sms * cand[i];
        if (cost < best_cost) best_cost = cost, best = cand[i];
    }
    return best;
}

template <bool NF4>
void launch_cols(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
                 const vl_bf16 *bias, cudaStream_t stream) {
    switch (cols_of(m, w->rows, c->sm_count, c->cfg.dq_wgmma_cols)) {
    case 128:
        launch<NF4, 128>(c, y, x, m, w, bias, stream);
        break;
    case 192:
        launch<NF4, 192>(c, y, x, m, w, bias, stream);
        break;
    case 224:
        launch<NF4, 224>(c, y, x, m, w, bias, stream);
        break;
    default:
        launch<NF4, 256>(c, y, x, m, w, bias, stream);
        break;
    }
}
#endif /* VL_HOPPER_KERNELS */

} // namespace vl_dqg

/* 1 when c's device and the operands' shapes and alignment take the kernel (the file comment). */
static int takes(const vl_cuda_ctx *c, const vl_weight *w, const void *y, const void *x, int64_t m,
                 const void *bias) {
#ifdef VL_HOPPER_KERNELS
    if (c->cc_major != 9 || c->cc_minor != 0) return 0;
    if (w->dtype != VL_DTYPE_NF4 && w->dtype != VL_DTYPE_Q8ROW) return 0;
    if (w->cols % 64 != 0 || w->rows % 8 != 0 || m < 1 || m > INT_MAX / 2 ||
        w->rows > INT_MAX / 2 || w->cols > INT_MAX / 2)
        return 0;
    /* tiles counted in an int: at most 2^31 / 4 of them */
    if ((m + 127) / 128 * ((w->rows + 255) / 256) > INT_MAX / 4) return 0;
    if (!vl_cuda_aligned16(x) || !vl_cuda_aligned16(y) || !vl_cuda_aligned16(w->data)) return 0;
    return bias == NULL || ((uintptr_t)bias & 3u) == 0;
#else
    (void)c, (void)w, (void)y, (void)x, (void)m, (void)bias;
    return 0;
#endif
}

int vl_dqg_wgmma(vl_cuda_ctx *c, int enabled, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                 const vl_weight *w, const vl_bf16 *bias, cudaStream_t stream) {
    if (!enabled || !takes(c, w, y, x, m, bias)) return 0;
    if (enabled >= 2 && vl_dqg_rs(c, enabled == 3, y, x, m, w, bias, stream)) return 1;
#ifdef VL_HOPPER_KERNELS
    if (w->dtype == VL_DTYPE_NF4)
        vl_dqg::launch_cols<true>(c, y, x, m, w, bias, stream);
    else
        vl_dqg::launch_cols<false>(c, y, x, m, w, bias, stream);
#else
    (void)stream;
#endif
    return 1;
}
