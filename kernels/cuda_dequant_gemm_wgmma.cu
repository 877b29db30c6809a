/* cuda_dequant_gemm_wgmma.cu: y = x . W^T (+ b) for an NF4 or Q8ROW W and many rows of x
 * (prefill) on Hopper (sm_90a), W converted inside the GEMM: the tensor-core warps turn W's codes
 * into wgmma's A operand in registers (the mixed-input design of CUTLASS; our own code), so no
 * bf16 copy of W is written or read (cuda_dequant_gemm.cu's slices, which serve every call this
 * kernel does not take).
 *
 *   - Tile: y^T [128 rows of W x 256 rows of x] = W[128 x K] . x[256 x K]^T, k steps of 64 (one
 *     128-byte swizzle atom of bf16, one NF4 block of each row of W). Persistent grid: one CTA an
 *     SM walks tiles blockIdx.x, + gridDim.x, ..., x's row block major.
 *   - CTA = 3 warpgroups. Warpgroup 0 loads: thread 0 brings x's 256 x 64 tile by TMA (128-byte
 *     swizzle) and W's codes (128 rows x 32 bytes NF4, 64 Q8ROW) into a ring of stages (NF4 4,
 *     Q8ROW 3); thread t writes row t's fp32 scale of the step (NF4's block scale, with double
 *     quantization; Q8ROW's row absmax) beside them; all 128 arrive on the stage's full barrier.
 *     Warpgroups 1 and 2 own 64 rows of W each: acc[64 x 256] += W[64 x 16] . x[256 x 16]^T,
 *     wgmma m64n256k16 with A from registers.
 *   - A thread's A fragment of a k16 step j: rows g and g + 8 of its warp's 16, columns 2q, 2q + 1
 *     (a0 / a2) and 2q + 8, 2q + 9 (a1 / a3). A row's 64 codes of a step are 8 words (word i:
 *     columns 8i .. 8i + 7, its byte b columns 8i + 2b, + 1), so the thread's codes are byte q of
 *     every word: bytes q of words 0..3 gathered into one word give, through vl_nf4_lookup8, the
 *     pairs a0 and a2 of k16 steps 0 and 1; words 4..7 those of steps 2 and 3. Q8ROW: bytes 2q,
 *     2q + 1 of each 8-byte group of the row's 64 codes, through vl_q8_weight.
 *   - Pipeline in a consumer: one step's products always queued behind the running ones (issue
 *     step t, wait for step t - 1 with wgmma.wait_group 1, release its stage, convert step t + 1
 *     into the fragments t - 1 used); the loop is unrolled by two so that the two fragment
 *     buffers alternate without copies (the one in flight kept alive by register fences until
 *     its wait). At a tile's end everything is waited for, the next tile's first fragments are
 *     converted and the tile is stored. Steps, tiles and stages are counted incrementally (one
 *     division a tile).
 *   - Values: W's bf16 are exactly vl_weight_rows_f32's, the products accumulate in fp32, and
 *     each output is bf16(acc + bias) in fp32: one rounding, as the sliced path. Rows of x past
 *     m and of W past N come in as zeros (TMA out of bounds; scale 0), and are not stored.
 *   - Epilogue: bf16(acc + bias[w row]) staged in shared memory as [x row][w row], then copied
 *     out in 16-byte rows.
 *   - Measured (H100, S28, bench/RESULTS.md): 0.61-0.85 of cuBLAS bf16 at m = 2048, 0.73-0.86
 *     at 8192, against 0.74-0.88 / 0.85-1.03 for the bf16 slices, so it is opt-in (dq_wgmma=1).
 *     Tensor pipe ~70% busy; the consumers' conversion (each row's lookup planes, 16 multiplies
 *     a row and step, are a third of it) and, at m = 2048, the last round of tiles are the limits.
 *   - History (git has each): S26's kernel dequantized W into shared memory in the loading
 *     warpgroup (0.29-0.46: its 4 converting warps were the bound); S27's first form of this one
 *     (0.46-0.73) spent ~150 of a step's ~340 consumer instructions on divisions and the scales'
 *     global loads, and waited for each step's products; a 256 x 128 tile was slower on every
 *     shape; S28's planes made by the loading warpgroup (3 stages) were slower (the consumers
 *     then waited on the loads: its scale load, planes and stores delay thread 0's TMA).
 * Takes (vl_dqg_wgmma, when enabled): a compute capability 9.0 device in a build with sm_90a code,
 * K a multiple of 64, N a multiple of 8, x, y and W's codes 16-byte aligned, a bias 4-byte aligned.
 * Leaves out: split-K or stream-K for grids of under two waves, TMA stores of y.
 */
#include "kernels/cuda_hopper.cuh"
#include "kernels/cuda_mma.cuh"
#include "kernels/cuda_ops.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

namespace vl_dqg { /* named: a build without sm_90a code leaves parts unused */

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

/* The tile of one CTA: 128 rows of W x 256 rows of x (wgmma m64n256, 64 rows of W a consumer). */
template <bool NF4> struct R {
    static constexpr int kWg = 128, kThreads = 384;
    static constexpr int kBW = 128;                /* rows of W a tile (64 a consumer) */
    static constexpr int kBX = 256;                /* rows of x a tile */
    static constexpr int kCodeRow = NF4 ? 32 : 64; /* bytes of a row's 64 codes */
    static constexpr int kStages = NF4 ? 4 : 3;
    static constexpr int kXBytes = kBX * 128; /* 64 bf16 a row */
    static constexpr int kCodeBytes = kBW * kCodeRow;
    static constexpr int kOutPitch = kBW * 2 + 16; /* bytes a staged x row: kBW bf16 + pad */
    static constexpr int kOutBytes = kBX * kOutPitch;
    static constexpr int kScaleBytes = kBW * 4; /* each row's fp32 scale at the stage's step */
    static constexpr int smem_bytes =
        1024 + kStages * (kXBytes + kCodeBytes + kScaleBytes) + kOutBytes + 8 * 2 * kStages;
    __device__ static constexpr uint32_t x_tile(uint32_t b, int s) {
        return b + (uint32_t)(s * kXBytes);
    }
    __device__ static constexpr uint32_t codes(uint32_t b, int s) {
        return b + (uint32_t)(kStages * kXBytes + s * kCodeBytes);
    }
    __device__ static constexpr uint32_t scales(uint32_t b, int s) {
        return b + (uint32_t)(kStages * (kXBytes + kCodeBytes) + s * kScaleBytes);
    }
    __device__ static constexpr uint32_t out(uint32_t b) {
        return b + (uint32_t)(kStages * (kXBytes + kCodeBytes + kScaleBytes));
    }
    __device__ static constexpr uint32_t full(uint32_t b, int s) {
        return out(b) + (uint32_t)(kOutBytes + 8 * s);
    }
    __device__ static constexpr uint32_t empty(uint32_t b, int s) {
        return out(b) + (uint32_t)(kOutBytes + 8 * (kStages + s));
    }
};
static_assert(R<true>::smem_bytes <= 232448 && R<false>::smem_bytes <= 232448,
              "the H100's shared memory a CTA");

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;

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

/* Where a CTA is: its tile's first rows of x and W, the k step, the stage and its phase; moved
 * a step at a time (one division a tile, none a step). */
struct Step {
    int tile, x0, w0, kt, s;
    uint32_t phase;
};
template <bool NF4> __device__ __forceinline__ void tile_origin(const Params &p, Step &st) {
    st.x0 = st.tile / p.tiles_n * R<NF4>::kBX;
    st.w0 = st.tile % p.tiles_n * R<NF4>::kBW;
}
template <bool NF4> __device__ __forceinline__ Step first_step(const Params &p) {
    Step st = {(int)blockIdx.x, 0, 0, 0, 0, 0u};
    tile_origin<NF4>(p, st);
    return st;
}
template <bool NF4>
__device__ __forceinline__ void next_step(const Params &p, int ksteps, Step &st) {
    if (++st.kt == ksteps) {
        st.kt = 0;
        st.tile += (int)gridDim.x;
        tile_origin<NF4>(p, st);
    }
    if (++st.s == R<NF4>::kStages) st.s = 0, st.phase ^= 1u;
}

/* One row's fragments of a k step: lo[0..3] = a0 / a2 of k16 steps 0, 1 (pairs of byte q of
 * words 0..3), hi[0..3] the same of steps 2, 3 (words 4..7). */
__device__ __forceinline__ void row_pairs(uint32_t row_src, uint32_t q, const vl_nf4_planes &t,
                                          uint32_t lo[4], uint32_t hi[4]) {
    uint32_t w[8];
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                 : "r"(row_src));
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(w[4]), "=r"(w[5]), "=r"(w[6]), "=r"(w[7])
                 : "r"(row_src + 16));
    const uint32_t sel = q | ((q + 4) << 4); /* byte q of the first word, then of the second */
    const uint32_t a = vl_prmt(vl_prmt(w[0], w[1], sel), vl_prmt(w[2], w[3], sel), 0x5410u);
    const uint32_t b = vl_prmt(vl_prmt(w[4], w[5], sel), vl_prmt(w[6], w[7], sel), 0x5410u);
    vl_nf4_lookup8(lo, t, a);
    vl_nf4_lookup8(hi, t, b);
}

/* The fragments of k16 steps 0..3 of this thread's rows r0 (planes t0) and r0 + 8 (t1). */
__device__ __forceinline__ void convert_nf4(uint32_t codes, int r0, uint32_t q,
                                            const vl_nf4_planes &t0, const vl_nf4_planes &t1,
                                            uint32_t a[4][4]) {
    uint32_t lo0[4], hi0[4], lo1[4], hi1[4];
    row_pairs(codes + (uint32_t)(r0 * 32), q, t0, lo0, hi0);
    row_pairs(codes + (uint32_t)((r0 + 8) * 32), q, t1, lo1, hi1);
#pragma unroll
    for (int j = 0; j < 2; j++) {
        a[j][0] = lo0[2 * j], a[j][2] = lo0[2 * j + 1];
        a[j][1] = lo1[2 * j], a[j][3] = lo1[2 * j + 1];
        a[j + 2][0] = hi0[2 * j], a[j + 2][2] = hi0[2 * j + 1];
        a[j + 2][1] = hi1[2 * j], a[j + 2][3] = hi1[2 * j + 1];
    }
}

/* One Q8ROW row's pairs of a k step: p[i] = the weights of columns 8i + 2q, + 1 (bytes 2q, 2q + 1
 * of the row's 8-byte group i), so p[2j] / p[2j + 1] are a0 / a2 of k16 step j. */
__device__ __forceinline__ void row_pairs_q8(uint32_t row_src, uint32_t q, float absmax,
                                             uint32_t pr[8]) {
    uint32_t w[16];
#pragma unroll
    for (int v = 0; v < 4; v++)
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(w[4 * v]), "=r"(w[4 * v + 1]), "=r"(w[4 * v + 2]), "=r"(w[4 * v + 3])
                     : "r"(row_src + 16 * v));
    const int hi = (int)(q >> 1), b0 = 2 * (int)(q & 1u);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const uint32_t biased = (hi ? w[2 * i + 1] : w[2 * i]) ^ 0x80808080u;
        pr[i] =
            vl_pack_bf16x2(vl_q8_weight(biased, b0, absmax), vl_q8_weight(biased, b0 + 1, absmax));
    }
}

__device__ __forceinline__ void convert_q8(uint32_t codes, int r0, uint32_t q, float s0, float s1,
                                           uint32_t a[4][4]) {
    uint32_t p0[8], p1[8];
    row_pairs_q8(codes + (uint32_t)(r0 * 64), q, s0, p0);
    row_pairs_q8(codes + (uint32_t)((r0 + 8) * 64), q, s1, p1);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        a[j][0] = p0[2 * j], a[j][2] = p0[2 * j + 1];
        a[j][1] = p1[2 * j], a[j][3] = p1[2 * j + 1];
    }
}

/* The fragments of k16 steps 0..3 of rows r0 and r0 + 8 from a stage's codes and scales. */
template <bool NF4>
__device__ __forceinline__ void convert(const Params &p, uint32_t codes, uint32_t scales, int r0,
                                        uint32_t q, uint32_t a[4][4]) {
    float s0, s1;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(s0) : "r"(scales + (uint32_t)(4 * r0)));
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(s1) : "r"(scales + (uint32_t)(4 * r0 + 32)));
    if (NF4)
        convert_nf4(codes, r0, q, vl_nf4_make_planes(p.nf4_table, s0),
                    vl_nf4_make_planes(p.nf4_table, s1), a);
    else
        convert_q8(codes, r0, q, s0, s1, a);
}

/* acc (rows of W r0, r0 + 8; columns x 8i + 2q, + 1) as bf16(acc + bias) into the staging
 * [x row][w row], then the tile's rows of y copied out 16 bytes at a time. */
template <bool NF4>
__device__ __forceinline__ void store_tile(const Params &p, float acc[R<NF4>::kBX / 2],
                                           uint32_t s_out, Step st, int r0, int q, int ctid) {
    using T = R<NF4>;
    const int wl0 = r0, wl1 = r0 + 8;
    const float b0 = p.bias && st.w0 + wl0 < p.n ? __bfloat162float(p.bias[st.w0 + wl0]) : 0.f;
    const float b1 = p.bias && st.w0 + wl1 < p.n ? __bfloat162float(p.bias[st.w0 + wl1]) : 0.f;
#pragma unroll
    for (int i = 0; i < T::kBX / 8; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const uint32_t xrow = s_out + (uint32_t)((8 * i + 2 * q + e) * T::kOutPitch);
            const __nv_bfloat16 v0 = __float2bfloat16_rn(__fadd_rn(acc[4 * i + e], b0));
            const __nv_bfloat16 v1 = __float2bfloat16_rn(__fadd_rn(acc[4 * i + 2 + e], b1));
            asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * wl0),
                         "h"(*reinterpret_cast<const unsigned short *>(&v0))
                         : "memory");
            asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * wl1),
                         "h"(*reinterpret_cast<const unsigned short *>(&v1))
                         : "memory");
        }
    named_sync(1, 2 * T::kWg);
    /* kBX x rows x kBW / 8 chunks of 8 bf16 */
    for (int c = ctid; c < T::kBX * (T::kBW / 8); c += 2 * T::kWg) {
        const int xr = c / (T::kBW / 8), ch = c % (T::kBW / 8);
        const int row = st.x0 + xr, col = st.w0 + 8 * ch;
        if (row >= p.m || col >= p.n) continue;
        uint32_t v0, v1, v2, v3;
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(v0), "=r"(v1), "=r"(v2), "=r"(v3)
                     : "r"(s_out + (uint32_t)(xr * T::kOutPitch + 16 * ch)));
        *reinterpret_cast<uint4 *>(p.y + (int64_t)row * p.n + col) = make_uint4(v0, v1, v2, v3);
    }
    named_sync(1, 2 * T::kWg); /* the staging is free for the next tile */
}

__device__ __forceinline__ void fence_frags(uint32_t a[4][4]) {
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) reg_fence(a[j][i]);
}

/* Warpgroup 0 fills every stage: thread t the scale of the stage's row w0 + t, thread 0 also
 * x's tile and W's codes by TMA. All 128 arrive on the stage's full barrier (thread 0 with the
 * bytes the TMA brings). */
template <bool NF4>
__device__ __forceinline__ void fill_stages(const Params &p, uint32_t base, int total, int ksteps,
                                            int t, const CUtensorMap *tm_x,
                                            const CUtensorMap *tm_w) {
    using T = R<NF4>;
    if (t == 0) {
        tma_prefetch_map(tm_x);
        tma_prefetch_map(tm_w);
    }
    Step st = first_step<NF4>(p);
    for (int it = 0; it < total; it++, next_step<NF4>(p, ksteps, st)) {
        bar_wait(T::empty(base, st.s), st.phase ^ 1u);
        const float v = scale_of<NF4>(p, st.w0 + t, st.kt);
        asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(T::scales(base, st.s) + (uint32_t)(4 * t)),
                     "f"(v)
                     : "memory");
        if (t != 0) {
            bar_arrive(T::full(base, st.s));
            continue;
        }
        bar_arrive_expect(T::full(base, st.s), T::kXBytes + T::kCodeBytes);
        tma_load_2d(T::x_tile(base, st.s), tm_x, T::full(base, st.s), st.kt * 64, st.x0);
        tma_load_2d(T::codes(base, st.s), tm_w, T::full(base, st.s), st.kt * T::kCodeRow, st.w0);
    }
}

/* Waits for step st's stage and converts its fragments of rows r0, r0 + 8 into a. */
template <bool NF4>
__device__ __forceinline__ void stage_fragments(const Params &p, uint32_t base, Step st, int r0,
                                                uint32_t q, uint32_t a[4][4]) {
    using T = R<NF4>;
    bar_wait(T::full(base, st.s), st.phase);
    convert<NF4>(p, T::codes(base, st.s), T::scales(base, st.s), r0, q, a);
}

/* A consumer's k step, one product always queued behind the running one: issues step cur's
 * products from `a`, waits for the step before (prev: its fragments `b` and its stage are then
 * free), converts the next step into `b`, and at a tile's end (everything waited for) stores
 * the tile. held: prev's stage is still held (not at a tile's first step). */
template <bool NF4>
__device__ __forceinline__ void
consume_step(const Params &p, uint32_t base, int ksteps, bool last, Step &cur, Step &prev,
             bool &held, float (&acc)[R<NF4>::kBX / 2], uint32_t (&a)[4][4], uint32_t (&b)[4][4],
             int r0, uint32_t q, int lane, int ctid) {
    using T = R<NF4>;
    const uint32_t xb = T::x_tile(base, cur.s);
    wg_fence();
#pragma unroll
    for (int j = 0; j < 4; j++)
        WgmmaRS<T::kBX>::run(acc, a[j], desc_sw128(xb + 32 * j, 16, 1024), cur.kt > 0 || j > 0);
    wg_commit();
    if (held) {
        wg_wait<1>();
        fence_frags(b);
        if (lane == 0) bar_arrive(T::empty(base, prev.s));
    }
    held = true;
    Step nxt = cur;
    next_step<NF4>(p, ksteps, nxt);
    if (cur.kt == ksteps - 1) { /* the tile's end */
        wg_wait<0>();
        fence_frags(a);
#pragma unroll
        for (int i = 0; i < T::kBX / 2; i++) reg_fence(acc[i]);
        if (lane == 0) bar_arrive(T::empty(base, cur.s));
        held = false;
        /* before the store: the next tile's products start right after it. The store stays
         * inside this branch: after a separate `if`, ptxas serialized the wgmmas (C7514) */
        if (!last) stage_fragments<NF4>(p, base, nxt, r0, q, b);
        store_tile<NF4>(p, acc, T::out(base), cur, r0, (int)q, ctid);
    } else if (!last) {
        stage_fragments<NF4>(p, base, nxt, r0, q, b);
    }
    prev = cur;
    cur = nxt;
}
#endif /* VL_HOPPER_DEVICE */

template <bool NF4>
__global__ void __launch_bounds__(R<NF4>::kThreads, 1)
    dqg_kernel(const __grid_constant__ Params p, const __grid_constant__ CUtensorMap tm_x,
               const __grid_constant__ CUtensorMap tm_w) {
#ifdef VL_HOPPER_DEVICE
    using T = R<NF4>;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
    const int tid = (int)threadIdx.x, wg = tid / T::kWg;
    const int ksteps = p.k / 64;
    const int my_tiles = (p.tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    const int total = my_tiles * ksteps;
    if (tid == 0) {
        for (int s = 0; s < T::kStages; s++) {
            bar_init(T::full(base, s), T::kWg);
            bar_init(T::empty(base, s), 8);
        }
        bar_init_fence();
    }
    __syncthreads();
    if (wg == 0) { /* the loads and the scales */
        regs_dealloc<56>();
        fill_stages<NF4>(p, base, total, ksteps, tid, &tm_x, &tm_w);
        return;
    }
    regs_alloc<224>();
    const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4;
    const uint32_t q = (uint32_t)(lane % 4);
    const int r0 = 64 * cw + 16 * warp + g; /* this thread's first row of W in the tile */
    float acc[T::kBX / 2];
    uint32_t fa[4][4], fb[4][4]; /* fragments, in turn: the step in flight's, the next one's */
    Step cur = first_step<NF4>(p);
    stage_fragments<NF4>(p, base, cur, r0, q, fa);
    Step prev = cur;
    bool held = false;
    int it = 0;
    for (; it + 1 < total; it += 2) { /* no branch at the back edge: no copies of acc */
        consume_step<NF4>(p, base, ksteps, false, cur, prev, held, acc, fa, fb, r0, q, lane,
                          tid - T::kWg);
        consume_step<NF4>(p, base, ksteps, it + 2 >= total, cur, prev, held, acc, fb, fa, r0, q,
                          lane, tid - T::kWg);
    }
    if (it < total)
        consume_step<NF4>(p, base, ksteps, true, cur, prev, held, acc, fa, fb, r0, q, lane,
                          tid - T::kWg);
#endif
}

#ifdef VL_HOPPER_KERNELS
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

template <bool NF4>
void launch(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
            const vl_bf16 *bias, cudaStream_t stream) {
    using T = R<NF4>;
    const Params p = params_of(y, m, w, bias, T::kBX, T::kBW);
    CUtensorMap tm_x, tm_w;
    tensor_maps(c, x, m, w, T::kBX, T::kBW, &tm_x, &tm_w);
    (void)vl_cuda_ctas_per_sm(c, (const void *)dqg_kernel<NF4>, T::kThreads, T::smem_bytes);
    const int grid = p.tiles < c->sm_count ? p.tiles : c->sm_count;
    dqg_kernel<NF4><<<grid, T::kThreads, T::smem_bytes, stream>>>(p, tm_x, tm_w);
    VL_CUDA_LAUNCH_CHECK();
}
#endif

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
    if ((m + 255) / 256 * ((w->rows + 127) / 128) > INT_MAX / 4) return 0;
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
#ifdef VL_HOPPER_KERNELS
    if (w->dtype == VL_DTYPE_NF4)
        vl_dqg::launch<true>(c, y, x, m, w, bias, stream);
    else
        vl_dqg::launch<false>(c, y, x, m, w, bias, stream);
#else
    (void)stream;
#endif
    return 1;
}
