/* cuda_dequant_gemm_rs.cu: the NF4 / Q8ROW dequant GEMM on Hopper with W converted by the
 * consumer warps themselves and fed to wgmma as its A operand from registers (the mixed-input
 * design of CUTLASS; our own code), so the conversion runs in the 8 consumer warps while their
 * previous wgmma works, instead of in one producer warpgroup (cuda_dequant_gemm_wgmma.cu).
 * Opt-in (`dq_wgmma=2`, or 3 for the 256 x 128 tile): on an H100 (S27) it ran at 0.46-0.73 of
 * cuBLAS bf16 (the shared-memory kernel 0.29-0.46, the default bf16 slices 0.70-0.90), its
 * consumers issue-bound: tensor pipe 51% busy, ~150 of a step's ~340 instructions the k step's
 * and tile's divisions and the block scales' loads (bench/RESULTS.md, S27).
 * This revision (branch wip/dqg-rs, not yet run on a GPU) removes both: the loading warpgroup's
 * 128 threads write each stage's block scales into shared memory beside its codes, and every
 * warpgroup counts steps, tiles and stages without a division.
 *
 *   y^T tile [128 rows of W x 256 rows of x] = W[128 x K] . x[256 x K]^T: two consumer
 *   warpgroups of 64 rows of W each, wgmma m64n256k16 with A (W) from registers and B (x)
 *   K-major in shared memory by TMA (128-byte swizzle), k steps of 64; W's codes (128 rows x 32
 *   bytes, or 64 for Q8ROW) come by TMA into the same stage. Warpgroup 0's thread 0 issues every
 *   load. WM = 2 (dq_wgmma=3): 256 rows of W x 128 of x, two m64n128 blocks a consumer.
 *   A thread's A fragment of a k16 step j: rows g and g + 8 of its warp's 16, columns 2q, 2q + 1
 *   (a0 / a1) and 2q + 8, 2q + 9 (a2 / a3). A row's 64 codes of a step are 8 words (word i:
 *   columns 8i .. 8i + 7, its byte b columns 8i + 2b, + 1), so the thread's codes are byte q of
 *   every word: bytes q of words 0..3 gathered into one word give, through vl_nf4_lookup8, the
 *   pairs a0 and a2 of k16 steps 0 and 1; words 4..7 those of steps 2 and 3. Q8ROW: bytes 2q,
 *   2q + 1 of each 8-byte group of the row's 64 codes, through vl_q8_weight.
 *   Pipeline in a consumer: the fragments of step t + 1 are converted while the wgmma of step t
 *   runs (two fragment buffers; the in-flight one kept alive by register fences until its wait).
 *   Epilogue: bf16(acc + bias[w row]) staged in shared memory as [x row][w row], then copied out
 *   in 16-byte rows.
 * Takes: NF4 or Q8ROW, K % 64 == 0, N % 8 == 0, 16-byte aligned x, y, codes; compute capability
 * 9.0 (vl_dqg_wgmma's checks first).
 */
#include "kernels/cuda_dqg_common.cuh"
#include "kernels/cuda_ops.h"

namespace vl_rs {

using vl_dqg_common::Params;

/* The tile of one CTA: WM = 1: 128 rows of W x 256 rows of x (wgmma m64n256, one 64-row block
 * of W a consumer); WM = 2: 256 x 128 (m64n128, two blocks a consumer: half the bytes of x a
 * product, twice the conversions a thread). */
template <int WM, bool NF4> struct R {
    static constexpr int kWg = 128, kThreads = 384;
    static constexpr int kBW = 128 * WM;           /* rows of W a tile (64 * WM a consumer) */
    static constexpr int kBX = 256 / WM;           /* rows of x a tile */
    static constexpr int kCodeRow = NF4 ? 32 : 64; /* bytes of a row's 64 codes */
    static constexpr int kStages = WM == 1 ? (NF4 ? 4 : 3) : (NF4 ? 6 : 4);
    static constexpr int kXBytes = kBX * 128; /* 64 bf16 a row */
    static constexpr int kCodeBytes = kBW * kCodeRow;
    static constexpr int kOutPitch = kBW * 2 + 16; /* bytes a staged x row: kBW bf16 + pad */
    static constexpr int kOutBytes = kBX * kOutPitch;
    static constexpr int kScaleBytes = kBW * 4; /* the fp32 scale of each row at the stage's step */
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
static_assert(R<1, true>::smem_bytes <= 232448 && R<2, true>::smem_bytes <= 232448 &&
                  R<1, false>::smem_bytes <= 232448 && R<2, false>::smem_bytes <= 232448,
              "the H100's shared memory a CTA");

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;

/* Where a CTA is: its tile's first rows of x and W, the k step, the stage and its phase; moved
 * a step at a time (one division a tile, none a step). */
struct Step {
    int tile, x0, w0, kt, s;
    uint32_t phase;
};
template <int WM, bool NF4> __device__ __forceinline__ void tile_origin(const Params &p, Step &st) {
    st.x0 = st.tile / p.tiles_n * R<WM, NF4>::kBX;
    st.w0 = st.tile % p.tiles_n * R<WM, NF4>::kBW;
}
template <int WM, bool NF4> __device__ __forceinline__ Step first_step(const Params &p) {
    Step st = {(int)blockIdx.x, 0, 0, 0, 0, 0u};
    tile_origin<WM, NF4>(p, st);
    return st;
}
template <int WM, bool NF4>
__device__ __forceinline__ void next_step(const Params &p, int ksteps, Step &st) {
    if (++st.kt == ksteps) {
        st.kt = 0;
        st.tile += (int)gridDim.x;
        tile_origin<WM, NF4>(p, st);
    }
    if (++st.s == R<WM, NF4>::kStages) st.s = 0, st.phase ^= 1u;
}

using vl_dqg_common::scale_of;

/* One row's fragments of a k step: lo[0..3] = a0 / a2 of k16 steps 0, 1 (pairs of byte q of
 * words 0..3), hi[0..3] the same of steps 2, 3 (words 4..7). */
__device__ __forceinline__ void row_pairs(const Params &p, uint32_t row_src, uint32_t q,
                                          float scale, uint32_t lo[4], uint32_t hi[4]) {
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
    const vl_nf4_planes t = vl_nf4_make_planes(p.nf4_table, scale);
    vl_nf4_lookup8(lo, t, a);
    vl_nf4_lookup8(hi, t, b);
}

/* The fragments of k16 steps 0..3 of this thread's rows r0 (scale s0) and r0 + 8 (s1). */
__device__ __forceinline__ void convert_nf4(const Params &p, uint32_t codes, int r0, uint32_t q,
                                            float s0, float s1, uint32_t a[4][4]) {
    uint32_t lo0[4], hi0[4], lo1[4], hi1[4];
    row_pairs(p, codes + (uint32_t)(r0 * 32), q, s0, lo0, hi0);
    row_pairs(p, codes + (uint32_t)((r0 + 8) * 32), q, s1, lo1, hi1);
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
        convert_nf4(p, codes, r0, q, s0, s1, a);
    else
        convert_q8(codes, r0, q, s0, s1, a);
}

/* acc[b] (rows of W r0 + 64 b, + 8; columns x 8i + 2q, + 1) as bf16(acc + bias) into the
 * staging [x row][w row], then the tile's rows of y copied out 16 bytes at a time. */
template <int WM, bool NF4>
__device__ __forceinline__ void store_tile(const Params &p, float acc[WM][R<WM, NF4>::kBX / 2],
                                           uint32_t s_out, Step st, int r0, int q, int ctid) {
    using T = R<WM, NF4>;
#pragma unroll
    for (int b = 0; b < WM; b++) {
        const int wl0 = r0 + 64 * b, wl1 = wl0 + 8;
        const float b0 = p.bias && st.w0 + wl0 < p.n ? __bfloat162float(p.bias[st.w0 + wl0]) : 0.f;
        const float b1 = p.bias && st.w0 + wl1 < p.n ? __bfloat162float(p.bias[st.w0 + wl1]) : 0.f;
#pragma unroll
        for (int i = 0; i < T::kBX / 8; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const uint32_t xrow = s_out + (uint32_t)((8 * i + 2 * q + e) * T::kOutPitch);
                const __nv_bfloat16 v0 = __float2bfloat16_rn(__fadd_rn(acc[b][4 * i + e], b0));
                const __nv_bfloat16 v1 = __float2bfloat16_rn(__fadd_rn(acc[b][4 * i + 2 + e], b1));
                asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * wl0),
                             "h"(*reinterpret_cast<const unsigned short *>(&v0))
                             : "memory");
                asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * wl1),
                             "h"(*reinterpret_cast<const unsigned short *>(&v1))
                             : "memory");
            }
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

template <int WM> __device__ __forceinline__ void fence_frags(uint32_t a[WM][4][4]) {
#pragma unroll
    for (int b = 0; b < WM; b++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) reg_fence(a[b][j][i]);
}

/* Warpgroup 0 fills every stage: its threads the scales of the stage's rows (row w0 + t, and
 * w0 + 128 + t for a 256-row tile), thread 0 also x's tile and W's codes by TMA. All 128 arrive on
 * the stage's full barrier (thread 0 with the bytes the TMA brings). */
template <int WM, bool NF4>
__device__ __forceinline__ void fill_stages(const Params &p, uint32_t base, int total, int ksteps,
                                            int t, const CUtensorMap *tm_x,
                                            const CUtensorMap *tm_w) {
    using T = R<WM, NF4>;
    if (t == 0) {
        tma_prefetch_map(tm_x);
        tma_prefetch_map(tm_w);
    }
    Step st = first_step<WM, NF4>(p);
    for (int it = 0; it < total; it++, next_step<WM, NF4>(p, ksteps, st)) {
        bar_wait(T::empty(base, st.s), st.phase ^ 1u);
#pragma unroll
        for (int b = 0; b < WM; b++) {
            const float v = scale_of<NF4>(p, st.w0 + t + 128 * b, st.kt);
            asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(T::scales(base, st.s) +
                                                           (uint32_t)(4 * (t + 128 * b))),
                         "f"(v)
                         : "memory");
        }
        if (t != 0) {
            bar_arrive(T::full(base, st.s));
            continue;
        }
        bar_arrive_expect(T::full(base, st.s), T::kXBytes + T::kCodeBytes);
        tma_load_2d(T::x_tile(base, st.s), tm_x, T::full(base, st.s), st.kt * 64, st.x0);
        tma_load_2d(T::codes(base, st.s), tm_w, T::full(base, st.s), st.kt * T::kCodeRow, st.w0);
    }
}
#endif /* VL_HOPPER_DEVICE */

template <int WM, bool NF4>
__global__ void __launch_bounds__(R<WM, NF4>::kThreads, 1)
    dqg_rs_kernel(const __grid_constant__ Params p, const __grid_constant__ CUtensorMap tm_x,
                  const __grid_constant__ CUtensorMap tm_w) {
#ifdef VL_HOPPER_DEVICE
    using T = R<WM, NF4>;
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
        fill_stages<WM, NF4>(p, base, total, ksteps, tid, &tm_x, &tm_w);
        return;
    }
    regs_alloc<224>();
    const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4;
    const uint32_t q = (uint32_t)(lane % 4);
    const int r0 = 64 * WM * cw + 16 * warp + g; /* this thread's first row of W in the tile */
    float acc[WM][T::kBX / 2];
    uint32_t fa[WM][4][4], fb[WM][4][4]; /* fragments: step t's (in flight), step t + 1's */
    Step cur = first_step<WM, NF4>(p);
    bar_wait(T::full(base, 0), 0);
#pragma unroll
    for (int b = 0; b < WM; b++)
        convert<NF4>(p, T::codes(base, 0), T::scales(base, 0), r0 + 64 * b, q, fa[b]);
    for (int it = 0; it < total; it++) {
        const uint32_t xb = T::x_tile(base, cur.s);
        wg_fence();
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int b = 0; b < WM; b++)
                WgmmaRS<T::kBX>::run(acc[b], fa[b][j], desc_sw128(xb + 32 * j, 16, 1024),
                                     cur.kt > 0 || j > 0);
        wg_commit();
        Step nxt = cur;
        next_step<WM, NF4>(p, ksteps, nxt);
        if (it + 1 < total) { /* step t + 1's fragments while step t's products run */
            bar_wait(T::full(base, nxt.s), nxt.phase);
#pragma unroll
            for (int b = 0; b < WM; b++)
                convert<NF4>(p, T::codes(base, nxt.s), T::scales(base, nxt.s), r0 + 64 * b, q,
                             fb[b]);
        }
        wg_wait<0>();
        fence_frags<WM>(fa);
        if (lane == 0) bar_arrive(T::empty(base, cur.s));
        if (cur.kt == ksteps - 1) {
#pragma unroll
            for (int b = 0; b < WM; b++)
#pragma unroll
                for (int i = 0; i < T::kBX / 2; i++) reg_fence(acc[b][i]);
            store_tile<WM, NF4>(p, acc, T::out(base), cur, r0, (int)q, tid - T::kWg);
        }
        cur = nxt;
#pragma unroll
        for (int b = 0; b < WM; b++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int i = 0; i < 4; i++) fa[b][j][i] = fb[b][j][i];
    }
#endif
}

#ifdef VL_HOPPER_KERNELS
template <int WM, bool NF4>
void launch(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
            const vl_bf16 *bias, cudaStream_t stream) {
    using T = R<WM, NF4>;
    const Params p = vl_dqg_common::params_of(y, m, w, bias, T::kBX, T::kBW);
    CUtensorMap tm_x, tm_w;
    vl_dqg_common::tensor_maps(c, x, m, w, T::kBX, T::kBW, &tm_x, &tm_w);
    (void)vl_cuda_ctas_per_sm(c, (const void *)dqg_rs_kernel<WM, NF4>, T::kThreads, T::smem_bytes);
    const int grid = p.tiles < c->sm_count ? p.tiles : c->sm_count;
    dqg_rs_kernel<WM, NF4><<<grid, T::kThreads, T::smem_bytes, stream>>>(p, tm_x, tm_w);
    VL_CUDA_LAUNCH_CHECK();
}
#endif

} // namespace vl_rs

/* Called by vl_dqg_wgmma once its shape check (`takes`: the device, the format, the dims and
 * the alignment) has accepted the call; 1 when it ran (a build with sm_90a code). */
int vl_dqg_rs(vl_cuda_ctx *c, int wide_w, vl_bf16 *y, const vl_bf16 *x, int64_t m,
              const vl_weight *w, const vl_bf16 *bias, cudaStream_t stream) {
#ifdef VL_HOPPER_KERNELS
    const bool nf4 = w->dtype == VL_DTYPE_NF4;
    if (wide_w && nf4)
        vl_rs::launch<2, true>(c, y, x, m, w, bias, stream);
    else if (wide_w)
        vl_rs::launch<2, false>(c, y, x, m, w, bias, stream);
    else if (nf4)
        vl_rs::launch<1, true>(c, y, x, m, w, bias, stream);
    else
        vl_rs::launch<1, false>(c, y, x, m, w, bias, stream);
    return 1;
#else
    (void)c, (void)wide_w, (void)y, (void)x, (void)m, (void)w, (void)bias, (void)stream;
    return 0;
#endif
}
