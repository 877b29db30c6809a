/* cuda_gemv_quant_m1.cu: the m = 1 decode GEMV for NF4 (fp32 block scales) and Q8ROW weights (once
 * "gemv_q_v2"), a variant of cuda_gemv.cu's tensor-core kernel. Measured on the H100 it is faster
 * only for Q8ROW with long rows (3584 x 18944: 1790 against 1466 GB/s), so that is where
 * vl_cuda_gemv (cuda_linear.cu) picks it by default; the backend's gemv_quant_m1 (vl_cuda_config)
 * = 1 / 0 picks it for every product it takes / for none.
 *
 * Numerics: cuda_gemv.cu's (the CPU twin's): w = bf16(table[code] * a_b) or bf16(q * absmax_r *
 * (1/127)) (fp32, no FMA contraction), exact bf16 x bf16 products summed in fp32, y = bf16(sum +
 * bias). Deterministic: every sum has a fixed order (mma chains, warp butterfly, shared-memory
 * split sum).
 *
 * Layout, and why: one warp owns two rows R, R + 1 of W over a contiguous range of 16-byte chunks
 * along K; lane l reads chunk c0 + l of both rows, so every load instruction reads 512 contiguous
 * bytes per row (fully used sectors), and UNROLL chunks per lane are in flight before any math.
 * The multiply-adds run on the tensor cores (the CUDA cores only dequantize): in mma.m16n8k16,
 * lane (g = lane / 4, q = lane % 4) places its row-R weights in A row g, its row-(R + 1) weights
 * in A row g + 8 and x at the same K positions in B column g. The diagonal D[g][g] (and D[g+8][g])
 * is then the dot product of the 4 lanes of group g alone; the rest of D is unused. So per 256
 * weights one mma replaces ~3 CUDA-core instructions per weight (2 bf16 unpacks and an FFMA), and
 * x needs no conversion at all (bf16 pairs are B registers as they are). Each chunk's mma chain
 * starts from zero and is added to fp32 accumulators (the tensor core's internal sum only covers
 * one chunk), as in cuda_gemv.cu.
 * A CTA is 8 warps: 8 / splits row pairs, each pair's K range split over `splits` warps whose
 * sums are added in shared memory in warp order (no scratch, no atomics). splits (1, 2, 4, 8) is
 * chosen so the grid covers ~3 waves of resident warps without leaving a warp under 16 chunks.
 * Requires: m = 1, NF4 without double quantization and K % 64 == 0, or Q8ROW and K % 16 == 0;
 * W data and x 16-byte aligned. vl_cuda_gemv_quant_m1 returns 0 otherwise (the caller uses
 * cuda_gemv.cu). Knobs: QV2_UNROLL (bytes in flight), QV2_CTAS_PER_SM (register bound), the
 * backend's gemv_quant_m1_splits (1, 2, 4 or 8: force the K split, for tuning).
 * Leaves out: m > 1, double-quantized NF4, bf16 weights (all stay on cuda_gemv.cu's kernels).
 */
#include "kernels/cuda_gemv_common.cuh"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define QV2_WARPS       8
#define QV2_THREADS     (QV2_WARPS * 32)
#define QV2_UNROLL      4 /* chunks per lane whose loads are issued together */
#define QV2_CTAS_PER_SM 2 /* launch bound: <= 128 registers per thread */
#define QV2_MAX_SPLITS  8
#define QV2_MIN_CHUNKS  16 /* a split never leaves a warp fewer chunks than this (half a step) */
#define QV2_WAVES       3

struct Qv2Params {
    vl_bf16 *y;          /* [n] */
    const vl_bf16 *x;    /* [k] */
    const vl_bf16 *bias; /* [n] or NULL */
    const uint8_t *w;    /* NF4: [n * k / 2]; Q8ROW: [n, k] */
    const float *absmax; /* NF4: [n * k / 64] block scales; Q8ROW: [n] row absmax */
    int n, k;
    int chunks; /* 16-byte chunks per row */
    int splits; /* warps per row pair */
    float nf4_table[16];
};

/* ---- device helpers -------------------------------------------------------------------------- */

/* ---- kernel ---------------------------------------------------------------------------------- */

/* One chunk of rows R (wa, sa) and R + 1 (wb, sb) against x (xc: the chunk's x, as bf16 pairs):
 * acc_a / acc_b += this lane's group's diagonal of the chunk's mma chain. */
template <bool NF4>
__device__ __forceinline__ void qv2_chunk(float &acc_a, float &acc_b, const uint4 &wa,
                                          const uint4 &wb, float sa, float sb, const uint32_t *xc,
                                          const float *s_table, int diag) {
    const uint32_t *pa = reinterpret_cast<const uint32_t *>(&wa);
    const uint32_t *pb = reinterpret_cast<const uint32_t *>(&wb);
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (NF4) {
        /* 32 weights: mma step s takes weights 4s .. 4s + 3 = bytes 2s, 2s + 1 */
#pragma unroll
        for (int s = 0; s < 8; s++) {
            const uint32_t va = pa[s / 2], vb = pb[s / 2];
            const uint32_t hi_a = (va >> 2) & 0x3C3C3C3Cu, lo_a = (va << 2) & 0x3C3C3C3Cu;
            const uint32_t hi_b = (vb >> 2) & 0x3C3C3C3Cu, lo_b = (vb << 2) & 0x3C3C3C3Cu;
            const int j = 2 * (s % 2);
            uint32_t a[4];
            a[0] = vl_nf4_pair(s_table, hi_a, lo_a, j, sa);
            a[2] = vl_nf4_pair(s_table, hi_a, lo_a, j + 1, sa);
            a[1] = vl_nf4_pair(s_table, hi_b, lo_b, j, sb);
            a[3] = vl_nf4_pair(s_table, hi_b, lo_b, j + 1, sb);
            vl_mma_bf16(d, a, xc[2 * s], xc[2 * s + 1]);
        }
    } else {
        /* 16 weights: mma step s takes weights 4s .. 4s + 3 = word s */
#pragma unroll
        for (int s = 0; s < 4; s++) {
            uint32_t a[4];
            vl_q8_a_regs(a, pa[s], pb[s], sa, sb);
            vl_mma_bf16(d, a, xc[2 * s], xc[2 * s + 1]);
        }
    }
    /* D[g][g] is d[g % 2] of lane (g, g / 2), D[g + 8][g] its d[2 + g % 2]; other lanes add
     * unused values that are dropped before the warp sum */
    acc_a += diag ? d[0] : d[1];
    acc_b += diag ? d[2] : d[3];
}

template <bool NF4>
static __global__ void __launch_bounds__(QV2_THREADS, QV2_CTAS_PER_SM)
    gemv_q_v2_kernel(const __grid_constant__ Qv2Params p) {
    constexpr int VEC = NF4 ? 32 : 16; /* weights per 16-byte chunk */
    __shared__ float s_table[16];
    __shared__ float s_part[QV2_WARPS][2];

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
    const int pairs_per_cta = QV2_WARPS / p.splits, seg = warp % p.splits;
    const int ra = (blockIdx.x * pairs_per_cta + warp / p.splits) * 2, rb = ra + 1;
    const bool ra_ok = ra < p.n, rb_ok = rb < p.n;
    const int64_t row_bytes = NF4 ? p.k / 2 : p.k;
    const uint8_t *wa_row = p.w + (int64_t)(ra_ok ? ra : 0) * row_bytes;
    const uint8_t *wb_row = p.w + (int64_t)(rb_ok ? rb : 0) * row_bytes;
    const int c_begin = (int)((int64_t)seg * p.chunks / p.splits);
    const int c_end = (int)((int64_t)(seg + 1) * p.chunks / p.splits);
    /* NF4: the first block of each row (K % 64 == 0: two chunks per block, rows start blocks) */
    const int64_t blk_a = (int64_t)(ra_ok ? ra : 0) * (p.k / VL_NF4_BLOCK);
    const int64_t blk_b = (int64_t)(rb_ok ? rb : 0) * (p.k / VL_NF4_BLOCK);
    float row_sa = 0.0f, row_sb = 0.0f;
    if constexpr (!NF4) {
        row_sa = ra_ok ? __ldg(p.absmax + ra) : 0.0f;
        row_sb = rb_ok ? __ldg(p.absmax + rb) : 0.0f;
    }
    if (NF4 && tid < 16) s_table[tid] = p.nf4_table[tid];
    __syncthreads();

    const int diag = (g % 2) == 0; /* which of this lane's d registers hold its group's diagonal */
    const bool diag_lane = q == g / 2;
    float acc_a = 0.0f, acc_b = 0.0f;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    /* every lane runs the same trip count: the mma needs the whole warp */
    for (int c0 = c_begin; c0 < c_end; c0 += 32 * QV2_UNROLL) {
        uint4 wa[QV2_UNROLL], wb[QV2_UNROLL];
        float sa[QV2_UNROLL], sb[QV2_UNROLL];
#pragma unroll
        for (int u = 0; u < QV2_UNROLL; u++) {
            const int c = c0 + 32 * u + lane;
            const bool ok = c < c_end;
            wa[u] = ok && ra_ok ? vl_ld_stream16(wa_row + (int64_t)c * 16) : zero;
            wb[u] = ok && rb_ok ? vl_ld_stream16(wb_row + (int64_t)c * 16) : zero;
            if constexpr (NF4) {
                sa[u] = ok && ra_ok ? __ldg(p.absmax + blk_a + c / 2) : 0.0f;
                sb[u] = ok && rb_ok ? __ldg(p.absmax + blk_b + c / 2) : 0.0f;
            } else {
                sa[u] = row_sa, sb[u] = row_sb;
            }
        }
#pragma unroll
        for (int u = 0; u < QV2_UNROLL; u++) {
            if (c0 + 32 * u >= c_end) break; /* warp-uniform */
            const int c = c0 + 32 * u + lane;
            uint32_t xc[VEC / 2];
            if (c < c_end) {
                const uint4 *src = reinterpret_cast<const uint4 *>(p.x + (int64_t)c * VEC);
#pragma unroll
                for (int j = 0; j < VEC / 8; j++) {
                    const uint4 v = __ldg(src + j);
                    xc[4 * j] = v.x, xc[4 * j + 1] = v.y, xc[4 * j + 2] = v.z, xc[4 * j + 3] = v.w;
                }
            } else {
#pragma unroll
                for (int j = 0; j < VEC / 2; j++) xc[j] = 0u;
            }
            qv2_chunk<NF4>(acc_a, acc_b, wa[u], wb[u], sa[u], sb[u], xc, s_table, diag);
        }
    }

    /* the 8 groups' diagonals, added by a fixed butterfly */
    if (!diag_lane) acc_a = 0.0f, acc_b = 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
        acc_a += __shfl_xor_sync(0xffffffffu, acc_a, off);
        acc_b += __shfl_xor_sync(0xffffffffu, acc_b, off);
    }
    if (lane == 0) s_part[warp][0] = acc_a, s_part[warp][1] = acc_b;
    __syncthreads();
    /* the split's first warp adds the splits in order: lane 0 row R, lane 1 row R + 1 */
    if (seg == 0 && lane < 2) {
        const int r = lane ? rb : ra;
        if (r < p.n) {
            float v = s_part[warp][lane];
            for (int s = 1; s < p.splits; s++) v += s_part[warp + s][lane];
            if (p.bias) v += __bfloat162float(p.bias[r]);
            p.y[r] = __float2bfloat16_rn(v);
        }
    }
}

/* ---- launcher -------------------------------------------------------------------------------- */

template <bool NF4> static void qv2_launch(vl_cuda_ctx *c, Qv2Params &p) {
    const int ctas_per_sm =
        vl_cuda_ctas_per_sm(c, (const void *)gemv_q_v2_kernel<NF4>, QV2_THREADS, 0);
    const int64_t pairs = ((int64_t)p.n + 1) / 2;
    const int64_t want_warps = (int64_t)QV2_WAVES * c->sm_count * ctas_per_sm * QV2_WARPS;
    int splits = c->cfg.gemv_quant_m1_splits; /* 0: chosen here */
    if (!splits) {
        splits = 1;
        while (splits < QV2_MAX_SPLITS && pairs * splits < want_warps &&
               p.chunks / (2 * splits) >= QV2_MIN_CHUNKS)
            splits *= 2;
    }
    p.splits = splits;
    const int64_t pairs_per_cta = QV2_WARPS / splits;
    const int64_t ctas = (pairs + pairs_per_cta - 1) / pairs_per_cta;
    gemv_q_v2_kernel<NF4><<<(unsigned)ctas, QV2_THREADS, 0, c->stream>>>(p);
    VL_CUDA_LAUNCH_CHECK();
}

int vl_cuda_gemv_quant_m1(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, const vl_weight *w,
                          const vl_bf16 *bias) {
    const bool nf4 = w->dtype == VL_DTYPE_NF4 && !w->absmax_code;
    const bool q8 = w->dtype == VL_DTYPE_Q8ROW;
    if ((!nf4 && !q8) || !w->data || !w->absmax || w->rows < 1 || w->cols < 1 ||
        w->rows > INT_MAX - 1 || w->cols > INT_MAX || !vl_cuda_aligned16(w->data) ||
        !vl_cuda_aligned16(x))
        return 0;
    if (w->cols % (nf4 ? VL_NF4_BLOCK : 16) != 0) return 0;
    Qv2Params p = {};
    p.y = y;
    p.x = x;
    p.bias = bias;
    p.w = (const uint8_t *)w->data;
    p.absmax = w->absmax;
    p.n = (int)w->rows;
    p.k = (int)w->cols;
    p.chunks = nf4 ? p.k / 32 : p.k / 16;
    if (nf4) {
        memcpy(p.nf4_table, vl_nf4_table, sizeof p.nf4_table);
        qv2_launch<true>(c, p);
    } else {
        qv2_launch<false>(c, p);
    }
    return 1;
}
