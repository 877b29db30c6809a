/* cuda_gemv_stream.cu: the decode GEMV for up to 8 rows of x with a quantized W (NF4, NF4 with
 * double quantization, Q8ROW): cuda_gemv.cu's warp step (cuda_gemv_tile.cuh: a 16-row tile of W
 * on the tensor cores, the same numerics), scheduled so that every warp of one wave streams the
 * same number of steps.
 *
 * Why: cuda_gemv.cu gives a CTA one 16-row tile and splits its K over the CTA's 4 warps. A grid of
 * such CTAs runs in waves whose last is partly empty (18944 rows: 1184 CTAs, 2.24 waves of the
 * 528 an H100 holds, so the third wave's quarter takes a whole wave's time), or leaves SMs idle
 * (4608 rows: 288 CTAs, half a wave; its grid split of K only starts below that). Both leave
 * bandwidth unused in a kernel that should be bound by it.
 *
 * Schedule: the work is the sequence of T = tiles x iters warp steps, tile-major. Warp w of W takes
 * steps [floor(w T / W), floor((w + 1) T / W)): as many warps as one wave holds, fewer where each
 * would get under STREAM_MIN_STEPS, so every warp has the same run (+-1 step) and all start at
 * once. A run crosses tile boundaries. A tile the warp covers whole goes to y directly (plus the
 * bias, one rounding). A piece of a tile goes to a scratch slot (the warp's first piece to slot
 * 2w, its last to 2w + 1: a run holds at most two pieces), and the last of the tile's warps to
 * arrive (a counter per tile) adds the pieces in warp order, adds the bias, writes y and zeroes the
 * counter for the next launch. Deterministic: every sum has a fixed order.
 * Loads: the run's steps are loaded STREAM_BATCH at a time one batch ahead (register double
 * buffer), as in cuda_gemv.cu, across tile boundaries.
 * Requires what cuda_gemv.cu's fast kernel requires (K % VEC == 0, W and x 16-byte aligned), m <=
 * 8, and scratch for 2 W slots of 16 m floats and a counter per tile; vl_gemv_stream_launch
 * returns 0 otherwise. Leaves out: 9 to 16 rows of x and bf16 W (cuda_gemv.cu, cuda_gemv_bf16.cu).
 */
#include "kernels/cuda_gemv_tile.cuh"

#define STREAM_MIN_STEPS 4 /* steps a warp streams at least (fewer warps for small products) */
/* Steps whose loads a warp issues together (NF4's BATCH in cuda_gemv.cu; Q8ROW's 4 would spill
 * under the 4-CTA register bound here, and a full wave of warps keeps enough bytes in flight) */
#define STREAM_BATCH 2

/* First step of warp w's run. */
static __device__ __forceinline__ int64_t stream_begin(int w, int64_t T, int W) {
    return (int64_t)w * T / W;
}

/* The warp whose run holds step s: the largest w with floor(w T / W) <= s. */
static __device__ __forceinline__ int stream_warp_of(int64_t s, int64_t T, int W) {
    return (int)(((s + 1) * W - 1) / T);
}

/* The scratch slot of warp v's piece of the tile starting at step t0: its first piece (slot 2v)
 * unless its run started in an earlier tile. */
static __device__ __forceinline__ int64_t stream_slot(int v, int64_t t0, int64_t T, int W) {
    return 2 * (int64_t)v + (stream_begin(v, T, W) < t0 ? 1 : 0);
}

/* This lane's 4 sums of tile t (rows g, g + 8; x rows 2q, 2q + 1) to y, plus the bias. */
static __device__ __forceinline__ void stream_store(const GemvParams &p, int t, int g, int q,
                                                    const float v[4]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int row = t * GEMV_TILE_ROWS + g + 8 * (i / 2), col = 2 * q + i % 2;
        if (row < p.n && col < p.m) {
            float out = v[i];
            if (p.bias) out += __bfloat162float(p.bias[row]);
            p.y[(int64_t)col * p.n + row] = __float2bfloat16_rn(out);
        }
    }
}

/* The end of warp w's piece of tile t (acc: this lane's sums): y directly when the run covers the
 * whole tile, else a scratch slot, and the tile's last piece to arrive writes y. */
static __device__ void stream_flush(const GemvParams &p, int t, int w, int64_t T, int64_t j_begin,
                                    int64_t j_end, const float acc[4]) {
    const int lane = threadIdx.x % 32, g = lane / 4, q = lane % 4, W = p.stream_warps;
    const int64_t t0 = (int64_t)t * p.iters, t1 = t0 + p.iters;
    if (t0 >= j_begin && t1 <= j_end) return stream_store(p, t, g, q, acc);
    const int64_t slot_floats = (int64_t)GEMV_TILE_ROWS * p.m; /* [x row][16 rows] */
    float *mine = p.partials + stream_slot(w, t0, T, W) * slot_floats;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i / 2), col = 2 * q + i % 2;
        if (col < p.m) mine[col * GEMV_TILE_ROWS + row] = acc[i];
    }
    __threadfence();
    __syncwarp();
    int last = 0;
    const int v0 = stream_warp_of(t0, T, W), v1 = stream_warp_of(t1 - 1, T, W);
    if (lane == 0) last = atomicAdd(p.tile_counters + t, 1) == v1 - v0;
    if (!__shfl_sync(0xffffffffu, last, 0)) return;
    __threadfence();
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int v = v0; v <= v1; v++) {
        const float *slot = p.partials + stream_slot(v, t0, T, W) * slot_floats;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int row = g + 8 * (i / 2), col = 2 * q + i % 2;
            if (col < p.m) sum[i] += __ldcg(slot + col * GEMV_TILE_ROWS + row);
        }
    }
    stream_store(p, t, g, q, sum);
    if (lane == 0) p.tile_counters[t] = 0; /* ready for the next launch */
}

/* Where a loaded step of the run is: its tile and K step. */
struct StreamStep {
    int tile, ks;
};

template <int FMT, int RW>
static __global__ void __launch_bounds__(GEMV_THREADS, GEMV_CTAS_PER_SM)
    gemv_stream_kernel(const __grid_constant__ GemvParams p) {
    constexpr int VEC = GemvFmt<FMT>::VEC, STEP_K = 4 * VEC, BATCH = STREAM_BATCH;
    constexpr bool NF4 = FMT == FMT_NF4 || FMT == FMT_NF4_DQ;
    __shared__ float s_table[16];
    __shared__ float s_map[FMT == FMT_NF4_DQ ? 256 : 1];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, q = lane % 4;
    if constexpr (NF4)
        if (tid < 16) s_table[tid] = p.nf4_table[tid];
    if constexpr (FMT == FMT_NF4_DQ)
        for (int i = tid; i < 256; i += GEMV_THREADS) s_map[i] = __ldg(p.absmax_map + i);
    __syncthreads();
    const int W = p.stream_warps, w = blockIdx.x * GEMV_WARPS + warp;
    if (w >= W) return; /* the last CTA's spare warps (after the barrier) */
    const int64_t T = (int64_t)p.tiles * p.iters;
    const int64_t j_begin = stream_begin(w, T, W), j_end = stream_begin(w + 1, T, W);
    const vl_bf16 *const x_lane[1] = {g < p.m ? p.x + (int64_t)g * p.k : nullptr};

    /* the next step to load: its tile and K step, advanced one step at a time */
    int64_t j_load = j_begin;
    int t_load = (int)(j_begin / p.iters), ks_load = (int)(j_begin % p.iters);
    auto load_batch = [&](GemvChunk(&chunks)[BATCH][1], StreamStep(&at)[BATCH]) {
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            if (j_load >= j_end) break; /* warp-uniform */
            const int ra = t_load * GEMV_TILE_ROWS + g, rb = ra + 8,
                      kc = ks_load * STEP_K + q * VEC;
            const bool ra_ok = ra < p.n, rb_ok = rb < p.n, k_ok = kc < p.k;
            gemv_load<FMT>(chunks[u][0], p, (int64_t)(ra_ok ? ra : 0) * p.k + kc,
                           (int64_t)(rb_ok ? rb : 0) * p.k + kc, ra_ok && k_ok, rb_ok && k_ok);
            at[u].tile = t_load, at[u].ks = ks_load;
            if constexpr (FMT == FMT_Q8ROW) { /* the rows' scales ride in the chunk's slots */
                chunks[u][0].sa = ra_ok ? __ldg(p.absmax + ra) : 0.0f;
                chunks[u][0].sb = rb_ok ? __ldg(p.absmax + rb) : 0.0f;
            }
            j_load++;
            if (++ks_load == p.iters) ks_load = 0, t_load++;
        }
    };

    float acc[1][1][4] = {};
    GemvChunk cur[BATCH][1] = {}, next[BATCH][1] = {};
    StreamStep at_cur[BATCH] = {}, at_next[BATCH] = {};
    load_batch(cur, at_cur);
    for (int64_t j = j_begin; j < j_end; j += BATCH) {
        if (j + BATCH < j_end) load_batch(next, at_next);
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            if (j + u >= j_end) break;                                          /* warp-uniform */
            const float row_sa[1] = {cur[u][0].sa}, row_sb[1] = {cur[u][0].sb}; /* Q8ROW */
            gemv_step<FMT, 1, 1, RW>(acc, cur[u], p, x_lane, at_cur[u].ks * STEP_K + q * VEC,
                                     s_table, s_map, row_sa, row_sb);
            if (at_cur[u].ks == p.iters - 1 || j + u == j_end - 1) {
                stream_flush(p, at_cur[u].tile, w, T, j_begin, j_end, acc[0][0]);
#pragma unroll
                for (int i = 0; i < 4; i++) acc[0][0][i] = 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < BATCH; u++) cur[u][0] = next[u][0], at_cur[u] = at_next[u];
    }
}

/* ---- launcher -------------------------------------------------------------------------------- */

template <int FMT, int RW>
static int stream_run(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                      cudaStream_t stream) {
    constexpr int STEP_K = 4 * GemvFmt<FMT>::VEC;
    p.iters = (p.k + STEP_K - 1) / STEP_K;
    p.tiles = (p.n + GEMV_TILE_ROWS - 1) / GEMV_TILE_ROWS;
    if (p.tiles > scratch->n_tile_counters) return 0;
    const int64_t T = (int64_t)p.tiles * p.iters;
    const int ctas_per_sm =
        vl_cuda_ctas_per_sm(c, (const void *)gemv_stream_kernel<FMT, RW>, GEMV_THREADS, 0);
    int64_t warps = (int64_t)c->sm_count * ctas_per_sm * GEMV_WARPS; /* one wave */
    if (warps > T / STREAM_MIN_STEPS) warps = T / STREAM_MIN_STEPS;
    const int64_t fit = scratch->partial_floats / (2 * (int64_t)GEMV_TILE_ROWS * p.m);
    if (warps > fit) warps = fit;
    if (warps < 1) warps = 1;
    p.stream_warps = (int)warps;
    p.partials = scratch->partials;
    p.tile_counters = scratch->tile_counters;
    const unsigned ctas = (unsigned)((warps + GEMV_WARPS - 1) / GEMV_WARPS);
    gemv_stream_kernel<FMT, RW><<<ctas, GEMV_THREADS, 0, stream>>>(p);
    VL_CUDA_LAUNCH_CHECK();
    return 1;
}

template <int FMT>
static int stream_nf4(vl_cuda_ctx *c, GemvParams &p, const vl_cuda_gemv_scratch *scratch,
                      cudaStream_t stream) {
    switch (c->cfg.gemv_nf4_regs) {
    case 0:
        return stream_run<FMT, 0>(c, p, scratch, stream);
    case 1:
        return stream_run<FMT, 1>(c, p, scratch, stream);
    case 2:
        return stream_run<FMT, 2>(c, p, scratch, stream);
    case 3:
        return stream_run<FMT, 3>(c, p, scratch, stream);
    default:
        return stream_run<FMT, 4>(c, p, scratch, stream);
    }
}

int vl_gemv_stream_launch(vl_cuda_ctx *c, int fmt, GemvParams &p,
                          const vl_cuda_gemv_scratch *scratch, cudaStream_t stream) {
    if (p.m < 1 || p.m > GEMV_TILE_COLS || !scratch || !scratch->partials ||
        !scratch->tile_counters)
        return 0;
    switch (fmt) {
    case FMT_Q8ROW:
        return stream_run<FMT_Q8ROW, 0>(c, p, scratch, stream);
    case FMT_NF4:
        return stream_nf4<FMT_NF4>(c, p, scratch, stream);
    case FMT_NF4_DQ:
        return stream_nf4<FMT_NF4_DQ>(c, p, scratch, stream);
    default:
        return 0;
    }
}
