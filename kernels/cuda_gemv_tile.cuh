/* cuda_gemv_tile.cuh: what the decode GEMV's tile kernels share (cuda_gemv.cu's and
 * cuda_gemv_lean.cu's: a CTA of 4 warps on one 16-row tile of W, K split over its warps and over
 * gridDim.y CTAs): the formats, the kernel parameters, cuda_gemv.cu's warp step (the loads, the
 * dequantization into mma A registers, the mma chain), the end of a tile (the warps' and CTAs'
 * sums added in order, bias, y) and the grid's K split. The layout and numerics are described at
 * the top of cuda_gemv.cu. */
#ifndef VL_CUDA_GEMV_TILE_CUH
#define VL_CUDA_GEMV_TILE_CUH

#include "kernels/cuda_gemv_common.cuh"

#define GEMV_WARPS           4
#define GEMV_THREADS         (GEMV_WARPS * 32)
#define GEMV_TILE_ROWS       16 /* rows of W per CTA: the A tile of one mma.m16n8k16 */
#define GEMV_TILE_COLS       8  /* x rows of one B tile (VL_CUDA_GEMV_MAX_M) */
#define GEMV_CTAS_PER_SM     4  /* launch bound: <= 128 registers per thread */
#define GEMV_MAX_GRID_SPLITS 64

static_assert(GEMV_THREADS == GEMV_TILE_ROWS * GEMV_TILE_COLS,
              "the epilogue maps one thread to one (row, x row) output of the tile");
static_assert(VL_CUDA_GEMV_MAX_M == GEMV_TILE_COLS, "m <= 8: the n dimension of one mma");
static_assert(VL_CUDA_GEMV_WIDE_M == 2 * GEMV_TILE_COLS, "m <= 16: two B tiles (NT = 2)");

enum { FMT_BF16, FMT_Q8ROW, FMT_NF4, FMT_NF4_DQ };

/* Whether FMT takes 9 to 16 rows of x (vl_cuda_gemv_supported): NF4 and Q8ROW, not bf16, whose
 * wide kernels are then never instantiated. */
template <int FMT> constexpr bool kGemvWide = FMT != FMT_BF16;

/* VEC: weights in 16 bytes; BATCH: warp steps whose loads are issued together (registers:
 * 2 x BATCH x 40 bytes per lane for the double buffer). */
template <int FMT> struct GemvFmt;
template <> struct GemvFmt<FMT_BF16> { static constexpr int VEC = 8, BATCH = 4; };
template <> struct GemvFmt<FMT_Q8ROW> { static constexpr int VEC = 16, BATCH = 4; };
template <> struct GemvFmt<FMT_NF4> { static constexpr int VEC = 32, BATCH = 2; };
template <> struct GemvFmt<FMT_NF4_DQ> { static constexpr int VEC = 32, BATCH = 2; };

struct GemvParams {
    vl_bf16 *y;          /* [m, n] */
    const vl_bf16 *x;    /* [m, k] */
    const vl_bf16 *bias; /* [n] or NULL */
    const uint8_t *w;    /* weight bytes */
    const float *absmax; /* NF4 block scales / nested scales; Q8ROW row absmax */
    const uint8_t *absmax_code;
    const float *absmax_map;
    float absmax_offset;
    int m, n, k;
    int iters;          /* fast kernels: warp steps along K, ceil(k / (4 VEC)) */
    float *partials;    /* [tiles, gridDim.y, 128] when gridDim.y > 1 */
    int *tile_counters; /* [tiles], zero between launches */
    float nf4_table[16];
};

/* ---- device helpers ------------------------------------------------------------------------ */

/* NF4 block scale b: fp32 absmax, or map[code] * nested + offset (multiply, then add: no FMA,
 * as the CPU twin). */
template <int FMT>
static __device__ __forceinline__ float nf4_scale(const float *s_map, uint32_t code, float nested,
                                                  float offset) {
    if constexpr (FMT == FMT_NF4_DQ)
        return __fadd_rn(__fmul_rn(s_map[code], nested), offset);
    else
        return nested;
}

/* ---- one warp step of a 16-row tile -----------------------------------------------------------
 */

/* One warp step of one lane: 16 bytes of its rows g and g + 8, and their scale data. */
struct GemvChunk {
    uint4 wa, wb;
    float sa, sb;    /* NF4: block scale; DQ: nested absmax */
    uint32_t ca, cb; /* DQ: block scale codes */
};

template <int FMT>
static __device__ __forceinline__ void gemv_load(GemvChunk &c, const GemvParams &p, int64_t ea,
                                                 int64_t eb, bool va, bool vb) {
    /* ea / eb: flattened element index of this lane's chunk in rows g and g + 8 */
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if constexpr (FMT == FMT_BF16) {
        c.wa = va ? vl_ld_stream16(p.w + ea * 2) : zero;
        c.wb = vb ? vl_ld_stream16(p.w + eb * 2) : zero;
    } else if constexpr (FMT == FMT_Q8ROW) {
        c.wa = va ? vl_ld_stream16(p.w + ea) : zero;
        c.wb = vb ? vl_ld_stream16(p.w + eb) : zero;
    } else {
        c.wa = va ? vl_ld_stream16(p.w + ea / 2) : zero;
        c.wb = vb ? vl_ld_stream16(p.w + eb / 2) : zero;
        const int64_t ba = ea / VL_NF4_BLOCK, bb = eb / VL_NF4_BLOCK;
        if constexpr (FMT == FMT_NF4) {
            c.sa = va ? __ldg(p.absmax + ba) : 0.0f;
            c.sb = vb ? __ldg(p.absmax + bb) : 0.0f;
        } else {
            c.ca = va ? __ldg(p.absmax_code + ba) : 0u;
            c.cb = vb ? __ldg(p.absmax_code + bb) : 0u;
            c.sa = va ? __ldg(p.absmax + ba / VL_NF4_DQ_BLOCK) : 0.0f;
            c.sb = vb ? __ldg(p.absmax + bb / VL_NF4_DQ_BLOCK) : 0.0f;
        }
    }
}

/* The A registers of mma step s from a chunk (rows g: a[0], a[2]; rows g + 8: a[1], a[3]). */
template <int FMT>
static __device__ __forceinline__ void gemv_a_regs(uint32_t a[4], const GemvChunk &c, int s,
                                                   const float *s_table, float sa, float sb) {
    const uint32_t *wa = reinterpret_cast<const uint32_t *>(&c.wa);
    const uint32_t *wb = reinterpret_cast<const uint32_t *>(&c.wb);
    if constexpr (FMT == FMT_BF16) {
        a[0] = wa[2 * s], a[2] = wa[2 * s + 1];
        a[1] = wb[2 * s], a[3] = wb[2 * s + 1];
    } else if constexpr (FMT == FMT_Q8ROW) {
        /* sa / sb: row absmax */
        vl_q8_a_regs(a, wa[s], wb[s], sa, sb);
    } else {
        /* bytes 2s, 2s + 1 of the chunk = byte 2 (s % 2) (+1) of word s / 2 */
        const uint32_t va = wa[s / 2], vb = wb[s / 2];
        const uint32_t hi_a = (va >> 2) & 0x3C3C3C3Cu, lo_a = (va << 2) & 0x3C3C3C3Cu;
        const uint32_t hi_b = (vb >> 2) & 0x3C3C3C3Cu, lo_b = (vb << 2) & 0x3C3C3C3Cu;
        const int j = 2 * (s % 2);
        a[0] = vl_nf4_pair(s_table, hi_a, lo_a, j, sa);
        a[2] = vl_nf4_pair(s_table, hi_a, lo_a, j + 1, sa);
        a[1] = vl_nf4_pair(s_table, hi_b, lo_b, j, sb);
        a[3] = vl_nf4_pair(s_table, hi_b, lo_b, j + 1, sb);
    }
}

/* acc[r][t] += this lane's share of one warp step for row tile r and B tile t (x rows 8t .. 8t +
 * 7). x_lane[t]: x row 8t + g (NULL when that is >= m). x is loaded once for the RT row tiles, and
 * the A registers of a row tile once for the NT x tiles. */
template <int FMT, int NT, int RT>
static __device__ __forceinline__ void
gemv_step(float (&acc)[RT][NT][4], const GemvChunk (&c)[RT], const GemvParams &p,
          const vl_bf16 *const (&x_lane)[NT], int kc, const float *s_table, const float *s_map,
          const float (&row_sa)[RT], const float (&row_sb)[RT]) {
    constexpr int VEC = GemvFmt<FMT>::VEC, STEPS = VEC / 4;
    uint32_t xw[NT][VEC / 2];
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (x_lane[t] && kc < p.k) {
            const uint4 *src = reinterpret_cast<const uint4 *>(x_lane[t] + kc);
#pragma unroll
            for (int j = 0; j < VEC / 8; j++) {
                uint4 v = __ldg(src + j);
                xw[t][4 * j] = v.x, xw[t][4 * j + 1] = v.y, xw[t][4 * j + 2] = v.z,
                          xw[t][4 * j + 3] = v.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < VEC / 2; j++) xw[t][j] = 0;
        }
    }
#pragma unroll
    for (int r = 0; r < RT; r++) {
        float sa = row_sa[r], sb = row_sb[r];
        if constexpr (FMT == FMT_NF4 || FMT == FMT_NF4_DQ) {
            sa = nf4_scale<FMT>(s_map, c[r].ca, c[r].sa, p.absmax_offset);
            sb = nf4_scale<FMT>(s_map, c[r].cb, c[r].sb, p.absmax_offset);
        }
        float d[NT][4] = {};
#pragma unroll
        for (int s = 0; s < STEPS; s++) {
            uint32_t a[4];
            gemv_a_regs<FMT>(a, c[r], s, s_table, sa, sb);
#pragma unroll
            for (int t = 0; t < NT; t++) vl_mma_bf16(d[t], a, xw[t][2 * s], xw[t][2 * s + 1]);
        }
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[r][t][i] += d[t][i];
    }
}

/* The end of a tile kernel (every warp of the CTA on the same rows r0 .., each with its share of
 * K): the warps' sums added in shared memory in warp order (s_red: [GEMV_WARPS][16 RT][8 NT]);
 * with the K split over CTAs too (gridDim.y > 1), each CTA parks its sums in the scratch and the
 * tile's last CTA (a counter, zeroed again by it) adds them in order; then bias, one rounding, y.
 */
template <int NT, int RT>
static __device__ __forceinline__ void gemv_tile_finish(const GemvParams &p,
                                                        const float (&acc)[RT][NT][4], float *s_red,
                                                        int *s_last, int r0) {
    constexpr int TILE = GEMV_TILE_ROWS * RT, COLS = NT * GEMV_TILE_COLS;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
#define RED(w, r, c) s_red[((w)*TILE + (r)) * COLS + (c)]
    /* C fragment of row tile r, x tile t: {row g, x rows 8t + 2q, 8t + 2q + 1}, {row g + 8, same}
     */
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int x0 = 8 * t + 2 * q, ra = GEMV_TILE_ROWS * r + g;
            RED(warp, ra, x0) = acc[r][t][0];
            RED(warp, ra, x0 + 1) = acc[r][t][1];
            RED(warp, ra + 8, x0) = acc[r][t][2];
            RED(warp, ra + 8, x0 + 1) = acc[r][t][3];
        }
    __syncthreads();
    /* thread tid: output (row + 16 r, col + 8t) of the tile for each r, t */
    const int row = tid / GEMV_TILE_COLS, col = tid % GEMV_TILE_COLS;
    float v[RT][NT];
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int rr = row + GEMV_TILE_ROWS * r;
            v[r][t] = RED(0, rr, col + 8 * t);
#pragma unroll
            for (int w = 1; w < GEMV_WARPS; w++) v[r][t] += RED(w, rr, col + 8 * t);
        }

    if (gridDim.y > 1) {
        /* split K over CTAs: park the partials, the last CTA of the tile adds them in order */
        constexpr int SLOT = RT * NT * GEMV_THREADS;
        float *slots = p.partials + (int64_t)blockIdx.x * gridDim.y * SLOT;
#pragma unroll
        for (int r = 0; r < RT; r++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                slots[blockIdx.y * SLOT + (r * NT + t) * GEMV_THREADS + tid] = v[r][t];
        __threadfence();
        __syncthreads();
        if (tid == 0) *s_last = atomicAdd(p.tile_counters + blockIdx.x, 1) == (int)gridDim.y - 1;
        __syncthreads();
        if (!*s_last) return;
        __threadfence();
#pragma unroll
        for (int r = 0; r < RT; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                v[r][t] = 0.0f;
                for (unsigned y = 0; y < gridDim.y; y++)
                    v[r][t] += __ldcg(slots + y * SLOT + (r * NT + t) * GEMV_THREADS + tid);
            }
        if (tid == 0) p.tile_counters[blockIdx.x] = 0; /* ready for the next launch */
    }
#pragma unroll
    for (int r = 0; r < RT; r++) {
        const int rr = r0 + row + GEMV_TILE_ROWS * r;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (col + 8 * t < p.m && rr < p.n) {
                float out = v[r][t];
                if (p.bias) out += __bfloat162float(p.bias[rr]);
                p.y[(int64_t)(col + 8 * t) * p.n + rr] = __float2bfloat16_rn(out);
            }
        }
    }
#undef RED
}

/* CTAs along K (gridDim.y) for `tiles` row tiles of a tile kernel. With more tiles than the GPU
 * holds at once, none: the grid runs in waves anyway. Otherwise as many as keep every CTA
 * resident in a single wave (slots / tiles: a second, partial wave would leave the end of the
 * launch to a few SMs), at least one warp step per warp, within the scratch. */
static inline int gemv_grid_splits(int64_t tiles, int iters, int64_t slots, int floats_per_cta,
                                   const vl_cuda_gemv_scratch *scratch) {
    if (!scratch || !scratch->partials || !scratch->tile_counters ||
        tiles > scratch->n_tile_counters || tiles >= slots)
        return 1;
    int64_t splits = slots / tiles;
    if (splits > iters / GEMV_WARPS) splits = iters / GEMV_WARPS;
    if (splits > GEMV_MAX_GRID_SPLITS) splits = GEMV_MAX_GRID_SPLITS;
    const int64_t fit = scratch->partial_floats / (tiles * floats_per_cta);
    if (splits > fit) splits = fit;
    return splits < 1 ? 1 : (int)splits;
}

/* cuda_gemv_lean.cu: launches the lean kernel for up to 8 rows of x (NF4, NF4 with double
 * quantization, Q8ROW) and returns 1, or returns 0 when it does not take the product (K not a
 * multiple of its step, W or x not 16-byte aligned). p is filled as for cuda_gemv.cu's kernels. */
int vl_gemv_lean_launch(vl_cuda_ctx *c, int fmt, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                        cudaStream_t stream);

#endif
