/* cuda_gemv_lean.cu: the decode GEMV for up to 8 rows of x with a quantized W (NF4, NF4 with
 * double quantization, Q8ROW) in fewer instructions per weight than cuda_gemv.cu's kernel, whose
 * grid, tile, numerics and end it shares (cuda_gemv_tile.cuh).
 *
 * Why: the decode GEMV must stream W at the copy bandwidth, so the SMs have a few instructions per
 * weight to spend. cuda_gemv.cu's kernel spends about 7 (Nsight Compute, S16 and S21), about half
 * of them on the dequantization and half on addressing and bookkeeping: 64-bit element indices
 * and their block numbers per load, bounds checks per step, register copies of the double buffer,
 * and for NF4 a scale-table build or shared-memory lookup per 32 weights.
 *
 * What is different here:
 *   - a lane's share of a warp step is 32 contiguous bytes of each of its two rows (g, g + 8),
 *     two 16-byte loads: for NF4 exactly one 64-weight block, so its scale is loaded and its
 *     register table (vl_nf4_make_planes) built once per 64 weights, not per 32. The loads keep
 *     L1 allocation (evict-first): the lane's second 16 bytes share their 32-byte sectors with
 *     the first, which then come from L2 once.
 *   - addressing by pointers advanced a step at a time from the warp's first step; rows past N
 *     read row N - 1 (their sums are dropped at the end), so no step has a bounds check; K must be
 *     a multiple of the step (256 weights NF4, 128 Q8ROW), else cuda_gemv.cu's kernel runs.
 *   - the double buffer as two named step buffers in a loop unrolled by two: no copies.
 *   - two mma accumulator chains per step (even and odd words), half the dependent latency.
 *   - x rows past m read row 0 (their columns are dropped): no divergent branch.
 *   - (pdl, cuda_pdl.cuh) the first step's loads and the tables run before griddepcontrol.wait,
 *     beside the kernel that writes x.
 * An L2 prefetch of each lane's weights 1..4 steps ahead (S24) measured slower at every distance
 * on an H100 (S25: int8 18944x3584 2235 GB/s without, 2069..1899 with; NF4 1253, 1192..1113),
 * and was removed.
 * The ALU's limit (S24): the register lookups cost ~2.5 integer instructions a weight, so the
 * NF4 stream saturates the ALU pipe near 2.2-2.3 TB/s on an H100; a shared-memory table of code
 * pairs moved that work to the shared-memory pipe and was slower (bench/RESULTS.md).
 * NF4 words of a step via registers (vl_nf4_lookup8) or the shared-memory table: the backend's
 * gemv_nf4_regs words of each 16-byte half (the rest through the table).
 * Numerics: cuda_gemv.cu's (each weight bf16(table[code] * scale) or bf16(q * absmax / 127),
 * exact products, fp32 sums in a fixed order, one rounding).
 * Leaves out: 9 to 16 rows of x, bf16 W (cuda_gemv.cu, cuda_gemv_bf16.cu). */
#include "kernels/cuda_gemv_tile.cuh"
#include "kernels/cuda_pdl.cuh"

/* 16 bytes through L1 with evict-first priority (the lane's other 16 bytes of the sector follow) */
static __device__ __forceinline__ uint4 lean_ld16(const void *ptr) {
    uint4 v;
    asm("ld.global.nc.L1::evict_first.v4.u32 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(ptr));
    return v;
}

/* One warp step of a lane: 32 bytes of each of its rows and their block scales (NF4) or scale
 * codes and nested scales (double quantization). */
struct LeanStep {
    uint4 a0, a1, b0, b1;
    float sa, sb;
    uint32_t ca, cb;
};

template <int FMT> constexpr int kLeanStepK = FMT == FMT_Q8ROW ? 128 : 256; /* weights a step */

/* The 8 (NF4) weights of word v of a row as 4 bf16 pairs, through the shared-memory table. */
static __device__ __forceinline__ void lean_nf4_shared(uint32_t out[4], const float *s_table,
                                                       uint32_t v, float scale) {
    const uint32_t hi4 = (v >> 2) & 0x3C3C3C3Cu, lo4 = (v << 2) & 0x3C3C3C3Cu;
#pragma unroll
    for (int j = 0; j < 4; j++) out[j] = vl_nf4_pair(s_table, hi4, lo4, j, scale);
}

/* acc += one step of this lane: rows a, b against x (xq: this lane's x elements of the step). */
template <int FMT, int LUTW>
static __device__ __forceinline__ void
lean_step(float (&acc)[1][1][4], const LeanStep &s, const vl_bf16 *xq, const float *s_table,
          const float *s_map, const GemvParams &p, float row_sa, float row_sb) {
    const uint32_t wa[8] = {s.a0.x, s.a0.y, s.a0.z, s.a0.w, s.a1.x, s.a1.y, s.a1.z, s.a1.w};
    const uint32_t wb[8] = {s.b0.x, s.b0.y, s.b0.z, s.b0.w, s.b1.x, s.b1.y, s.b1.z, s.b1.w};
    const uint4 *xv = reinterpret_cast<const uint4 *>(xq);
    float d[2][4] = {};
    if constexpr (FMT == FMT_Q8ROW) {
        /* word w: weights 4w .. 4w + 3; one mma per word, x 8 weights per 16-byte load */
#pragma unroll
        for (int h = 0; h < 4; h++) {
            const uint4 x = __ldg(xv + h);
            const uint32_t xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int w = 2 * h + i;
                uint32_t a[4];
                vl_q8_a_regs(a, wa[w], wb[w], row_sa, row_sb);
                vl_mma_bf16(d[i], a, xs[2 * i], xs[2 * i + 1]);
            }
        }
    } else {
        float sa = s.sa, sb = s.sb;
        if constexpr (FMT == FMT_NF4_DQ) {
            sa = nf4_scale<FMT>(s_map, s.ca, s.sa, p.absmax_offset);
            sb = nf4_scale<FMT>(s_map, s.cb, s.sb, p.absmax_offset);
        }
        vl_nf4_planes ta = {}, tb = {};
        if constexpr (LUTW > 0) {
            ta = vl_nf4_make_planes(p.nf4_table, sa);
            tb = vl_nf4_make_planes(p.nf4_table, sb);
        }
        /* word w: weights 8w .. 8w + 7; two mmas per word, x 8 weights per 16-byte load */
#pragma unroll
        for (int w = 0; w < 8; w++) {
            uint32_t oa[4], ob[4];
            if (w < 8 - LUTW) {
                lean_nf4_shared(oa, s_table, wa[w], sa);
                lean_nf4_shared(ob, s_table, wb[w], sb);
            } else {
                vl_nf4_lookup8(oa, ta, wa[w]);
                vl_nf4_lookup8(ob, tb, wb[w]);
            }
            const uint4 x = __ldg(xv + w);
            const uint32_t a0[4] = {oa[0], ob[0], oa[1], ob[1]};
            const uint32_t a1[4] = {oa[2], ob[2], oa[3], ob[3]};
            vl_mma_bf16(d[w % 2], a0, x.x, x.y);
            vl_mma_bf16(d[w % 2], a1, x.z, x.w);
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) acc[0][0][i] += d[0][i] + d[1][i];
}

template <int FMT, int LUTW>
static __global__ void __launch_bounds__(GEMV_THREADS, GEMV_CTAS_PER_SM)
    gemv_lean_kernel(const __grid_constant__ GemvParams p) {
    constexpr int STEP_K = kLeanStepK<FMT>;
    constexpr int STEP_BYTES = FMT == FMT_Q8ROW ? STEP_K : STEP_K / 2; /* 128 either way */
    constexpr int LANE_K = STEP_K / 4;                                 /* weights a lane a step */
    __shared__ float s_table[16];
    __shared__ float s_map[FMT == FMT_NF4_DQ ? 256 : 1];
    __shared__ float s_red[GEMV_WARPS][GEMV_TILE_ROWS][GEMV_TILE_COLS];
    __shared__ int s_last;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
    const int r0 = blockIdx.x * GEMV_TILE_ROWS;
    const int ra = min(r0 + g, p.n - 1), rb = min(r0 + g + 8, p.n - 1);
    const int splits = gridDim.y * GEMV_WARPS, split = blockIdx.y * GEMV_WARPS + warp;
    const int it_begin = (int)((int64_t)split * p.iters / splits);
    const int it_end = (int)((int64_t)(split + 1) * p.iters / splits);

    /* this lane's first step: its 32 bytes of rows a and b, its x elements, its blocks */
    const int64_t row_bytes = FMT == FMT_Q8ROW ? p.k : p.k / 2;
    const int64_t first = (int64_t)it_begin * STEP_BYTES + q * 32;
    const uint8_t *pa = p.w + (int64_t)ra * row_bytes + first;
    const uint8_t *pb = p.w + (int64_t)rb * row_bytes + first;
    const vl_bf16 *xq =
        p.x + (int64_t)(g < p.m ? g : 0) * p.k + (int64_t)it_begin * STEP_K + q * LANE_K;
    const int64_t blocks_per_row = p.k / VL_NF4_BLOCK;
    int64_t blk_a = (int64_t)ra * blocks_per_row + (int64_t)it_begin * 4 + q;
    int64_t blk_b = (int64_t)rb * blocks_per_row + (int64_t)it_begin * 4 + q;
    float row_sa = 0.0f, row_sb = 0.0f;
    if constexpr (FMT == FMT_Q8ROW) row_sa = __ldg(p.absmax + ra), row_sb = __ldg(p.absmax + rb);

    auto load = [&](LeanStep &s) {
        s.a0 = lean_ld16(pa), s.a1 = lean_ld16(pa + 16);
        s.b0 = lean_ld16(pb), s.b1 = lean_ld16(pb + 16);
        pa += STEP_BYTES, pb += STEP_BYTES;
        if constexpr (FMT == FMT_NF4) {
            s.sa = __ldg(p.absmax + blk_a), s.sb = __ldg(p.absmax + blk_b);
        } else if constexpr (FMT == FMT_NF4_DQ) {
            s.ca = __ldg(p.absmax_code + blk_a), s.cb = __ldg(p.absmax_code + blk_b);
            s.sa = __ldg(p.absmax + blk_a / VL_NF4_DQ_BLOCK);
            s.sb = __ldg(p.absmax + blk_b / VL_NF4_DQ_BLOCK);
        }
        blk_a += 4, blk_b += 4;
    };

    float acc[1][1][4] = {};
    LeanStep s0 = {}, s1 = {};
    if (it_begin < it_end) load(s0); /* in flight while the tables are filled */
    if constexpr (FMT != FMT_Q8ROW)
        if (tid < 16) s_table[tid] = p.nf4_table[tid];
    if constexpr (FMT == FMT_NF4_DQ)
        for (int i = tid; i < 256; i += GEMV_THREADS) s_map[i] = __ldg(p.absmax_map + i);
    /* all of the above reads weights only; x and y belong to the kernels around this one */
    vl_pdl_wait();
    __syncthreads();
    for (int it = it_begin; it < it_end; it += 2) {
        if (it + 1 < it_end) load(s1);
        lean_step<FMT, LUTW>(acc, s0, xq, s_table, s_map, p, row_sa, row_sb);
        xq += STEP_K;
        if (it + 1 >= it_end) break;
        if (it + 2 < it_end) load(s0);
        lean_step<FMT, LUTW>(acc, s1, xq, s_table, s_map, p, row_sa, row_sb);
        xq += STEP_K;
    }
    gemv_tile_finish<1, 1>(p, acc, &s_red[0][0][0], &s_last, r0);
}

/* ---- launcher -------------------------------------------------------------------------------- */

template <int FMT, int LUTW>
static void lean_run(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                     cudaStream_t stream) {
    const int ctas_per_sm =
        vl_cuda_ctas_per_sm(c, (const void *)gemv_lean_kernel<FMT, LUTW>, GEMV_THREADS, 0);
    p.iters = p.k / kLeanStepK<FMT>;
    const int64_t tiles = (p.n + GEMV_TILE_ROWS - 1) / GEMV_TILE_ROWS;
    const int splits =
        gemv_grid_splits(tiles, p.iters, (int64_t)c->sm_count * ctas_per_sm, GEMV_THREADS, scratch);
    if (splits > 1) {
        p.partials = scratch->partials;
        p.tile_counters = scratch->tile_counters;
    }
    vl_cuda_launch_pdl(c, gemv_lean_kernel<FMT, LUTW>, dim3((unsigned)tiles, (unsigned)splits),
                       dim3(GEMV_THREADS), 0, stream, p);
}

/* NF4: the backend's gemv_nf4_regs words of each 16 bytes looked up in registers */
template <int FMT>
static void lean_nf4(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                     cudaStream_t stream) {
    switch (c->cfg.gemv_nf4_regs) {
    case 0:
        return lean_run<FMT, 0>(c, p, scratch, stream);
    case 1:
        return lean_run<FMT, 2>(c, p, scratch, stream);
    case 2:
        return lean_run<FMT, 4>(c, p, scratch, stream);
    case 3:
        return lean_run<FMT, 6>(c, p, scratch, stream);
    default:
        return lean_run<FMT, 8>(c, p, scratch, stream);
    }
}

int vl_cuda_gemv_lean_step(vl_dtype dtype) {
    return dtype == VL_DTYPE_Q8ROW ? kLeanStepK<FMT_Q8ROW>
           : dtype == VL_DTYPE_NF4 ? kLeanStepK<FMT_NF4>
                                   : 0;
}

int vl_gemv_lean_launch(vl_cuda_ctx *c, int fmt, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                        cudaStream_t stream) {
    if (p.m < 1 || p.m > GEMV_TILE_COLS || p.n < 1) return 0;
    const int step_k = fmt == FMT_Q8ROW ? kLeanStepK<FMT_Q8ROW> : kLeanStepK<FMT_NF4>;
    if (p.k % step_k != 0 || !vl_cuda_aligned16(p.w) || !vl_cuda_aligned16(p.x)) return 0;
    switch (fmt) {
    case FMT_Q8ROW:
        lean_run<FMT_Q8ROW, 0>(c, p, scratch, stream);
        return 1;
    case FMT_NF4:
        lean_nf4<FMT_NF4>(c, p, scratch, stream);
        return 1;
    case FMT_NF4_DQ:
        lean_nf4<FMT_NF4_DQ>(c, p, scratch, stream);
        return 1;
    default:
        return 0;
    }
}
