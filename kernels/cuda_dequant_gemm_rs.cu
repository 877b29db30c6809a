/* cuda_dequant_gemm_rs.cu (work in progress, branch wip/dqg-rs; never run on a GPU yet): the NF4
 * dequant GEMM on Hopper with W converted by the consumer warps themselves and fed to wgmma as
 * its A operand from registers (CUTLASS's mixed-input design; our own code), so the conversion
 * runs in the 8 consumer warps while their previous wgmma works, instead of in one producer
 * warpgroup (cuda_dequant_gemm_wgmma.cu, measured producer-bound at 0.30-0.47 of cuBLAS).
 *
 *   y^T tile [128 rows of W x 256 rows of x] = W[128 x K] . x[256 x K]^T: two consumer
 *   warpgroups of 64 rows of W each, wgmma m64n256k16 with A (W) from registers and B (x)
 *   K-major in shared memory by TMA (128-byte swizzle), k steps of 64; W's codes (128 rows x 32
 *   bytes) come by TMA into the same stage. Warpgroup 0's thread 0 issues every load.
 *   A thread's A fragment of a k16 step j: rows g and g + 8 of its warp's 16, columns 2q, 2q + 1
 *   (a0 / a1) and 2q + 8, 2q + 9 (a2 / a3). A row's 64 codes of a step are 8 words (word i:
 *   columns 8i .. 8i + 7, its byte b columns 8i + 2b, + 1), so the thread's codes are byte q of
 *   every word: bytes q of words 0..3 gathered into one word give, through vl_nf4_lookup8, the
 *   pairs a0 and a2 of k16 steps 0 and 1; words 4..7 those of steps 2 and 3.
 *   Pipeline in a consumer: the fragments of step t + 1 are converted while the wgmma of step t
 *   runs (two fragment buffers; the in-flight one kept alive by register fences until its wait).
 *   Epilogue: bf16(acc + bias[w row]) staged in shared memory as [x row][w row], then copied out
 *   in 16-byte rows.
 * Takes: NF4, K % 64 == 0, N % 8 == 0, 16-byte aligned x, y, codes; compute capability 9.0.
 */
#include "kernels/cuda_hopper.cuh"
#include "kernels/cuda_mma.cuh"
#include "kernels/cuda_ops.h"

#include <limits.h>
#include <string.h>

namespace vl_rs {

struct Params {
    const float *absmax;
    const uint8_t *absmax_code;
    const float *absmax_map;
    float absmax_offset;
    float nf4_table[16];
    const vl_bf16 *bias;
    vl_bf16 *y;
    int m, n, k;
    int tiles_w, tiles;
};

struct R {
    static constexpr int kWg = 128, kThreads = 384;
    static constexpr int kBW = 128; /* rows of W a tile (64 a consumer) */
    static constexpr int kBX = 256; /* rows of x a tile */
    static constexpr int kStages = 4;
    static constexpr int kXBytes = kBX * 128;      /* 32 KB */
    static constexpr int kCodeBytes = kBW * 32;    /* 4 KB */
    static constexpr int kOutPitch = kBW * 2 + 16; /* bytes a staged x row: 128 bf16 + pad */
    static constexpr int kOutBytes = kBX * kOutPitch;
    static constexpr int smem_bytes =
        1024 + kStages * (kXBytes + kCodeBytes) + kOutBytes + 8 * 2 * kStages;
    __device__ static constexpr uint32_t x_tile(uint32_t b, int s) {
        return b + (uint32_t)(s * kXBytes);
    }
    __device__ static constexpr uint32_t codes(uint32_t b, int s) {
        return b + (uint32_t)(kStages * kXBytes + s * kCodeBytes);
    }
    __device__ static constexpr uint32_t out(uint32_t b) {
        return b + (uint32_t)(kStages * (kXBytes + kCodeBytes));
    }
    __device__ static constexpr uint32_t full(uint32_t b, int s) {
        return out(b) + (uint32_t)(kOutBytes + 8 * s);
    }
    __device__ static constexpr uint32_t empty(uint32_t b, int s) {
        return out(b) + (uint32_t)(kOutBytes + 8 * (kStages + s));
    }
};
static_assert(R::smem_bytes <= 232448, "the H100's shared memory a CTA");

#ifdef VL_HOPPER_DEVICE
using namespace vl_hopper;

struct Step {
    int x0, w0, kt;
};
__device__ __forceinline__ Step step_of(const Params &p, int it, int ksteps) {
    const int tile = (int)blockIdx.x + (it / ksteps) * (int)gridDim.x;
    return {tile / p.tiles_w * R::kBX, tile % p.tiles_w * R::kBW, it % ksteps};
}

__device__ __forceinline__ float scale_of(const Params &p, int row, int kt) {
    if (row >= p.n) return 0.f;
    const int64_t b = (int64_t)row * (p.k / 64) + kt;
    return p.absmax_code == NULL ? vl_nf4_block_scale<false>(p.absmax, NULL, NULL, 0.f, b)
                                 : vl_nf4_block_scale<true>(p.absmax, p.absmax_code, p.absmax_map,
                                                            p.absmax_offset, b);
}

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
__device__ __forceinline__ void convert(const Params &p, uint32_t codes, int r0, uint32_t q,
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

__device__ __forceinline__ void fence_frags(uint32_t a[4][4]) {
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) reg_fence(a[j][i]);
}

/* acc (rows of W r0, r0 + 8; columns x 8i + 2q, + 1) as bf16(acc + bias) into the staging
 * [x row][w row], then the tile's rows of y copied out 16 bytes at a time. */
__device__ __forceinline__ void store_tile(const Params &p, const float acc[128], uint32_t s_out,
                                           Step st, int wl0, int q, int ctid) {
    const float b0 = p.bias && st.w0 + wl0 < p.n ? __bfloat162float(p.bias[st.w0 + wl0]) : 0.f;
    const float b1 =
        p.bias && st.w0 + wl0 + 8 < p.n ? __bfloat162float(p.bias[st.w0 + wl0 + 8]) : 0.f;
#pragma unroll
    for (int i = 0; i < 32; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const uint32_t xrow = s_out + (uint32_t)((8 * i + 2 * q + e) * R::kOutPitch);
            const __nv_bfloat16 v0 = __float2bfloat16_rn(__fadd_rn(acc[4 * i + e], b0));
            const __nv_bfloat16 v1 = __float2bfloat16_rn(__fadd_rn(acc[4 * i + 2 + e], b1));
            asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * wl0),
                         "h"(*reinterpret_cast<const unsigned short *>(&v0))
                         : "memory");
            asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(xrow + 2 * (wl0 + 8)),
                         "h"(*reinterpret_cast<const unsigned short *>(&v1))
                         : "memory");
        }
    named_sync(1, 2 * R::kWg);
    /* 256 x rows x 16 chunks of 8 bf16 */
    for (int c = ctid; c < R::kBX * (R::kBW / 8); c += 2 * R::kWg) {
        const int xr = c / (R::kBW / 8), ch = c % (R::kBW / 8);
        const int row = st.x0 + xr, col = st.w0 + 8 * ch;
        if (row >= p.m || col >= p.n) continue;
        uint32_t v0, v1, v2, v3;
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(v0), "=r"(v1), "=r"(v2), "=r"(v3)
                     : "r"(s_out + (uint32_t)(xr * R::kOutPitch + 16 * ch)));
        *reinterpret_cast<uint4 *>(p.y + (int64_t)row * p.n + col) = make_uint4(v0, v1, v2, v3);
    }
    named_sync(1, 2 * R::kWg); /* the staging is free for the next tile */
}
#endif /* VL_HOPPER_DEVICE */

__global__ void __launch_bounds__(R::kThreads, 1)
    dqg_rs_kernel(const __grid_constant__ Params p, const __grid_constant__ CUtensorMap tm_x,
                  const __grid_constant__ CUtensorMap tm_w) {
#ifdef VL_HOPPER_DEVICE
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
    const int tid = (int)threadIdx.x, wg = tid / R::kWg;
    const int ksteps = p.k / 64;
    const int my_tiles = (p.tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
    const int total = my_tiles * ksteps;
    if (tid == 0) {
        for (int s = 0; s < R::kStages; s++) {
            bar_init(R::full(base, s), 1);
            bar_init(R::empty(base, s), 8);
        }
        bar_init_fence();
    }
    __syncthreads();
    if (wg == 0) { /* the loads */
        regs_dealloc<24>();
        if (tid == 0) {
            tma_prefetch_map(&tm_x);
            tma_prefetch_map(&tm_w);
            for (int it = 0; it < total; it++) {
                const int s = it % R::kStages;
                const Step st = step_of(p, it, ksteps);
                bar_wait(R::empty(base, s), ((uint32_t)(it / R::kStages) & 1u) ^ 1u);
                bar_arrive_expect(R::full(base, s), R::kXBytes + R::kCodeBytes);
                tma_load_2d(R::x_tile(base, s), &tm_x, R::full(base, s), st.kt * 64, st.x0);
                tma_load_2d(R::codes(base, s), &tm_w, R::full(base, s), st.kt * 32, st.w0);
            }
        }
        return;
    }
    regs_alloc<240>();
    const int cw = wg - 1, warp = (tid / 32) % 4, lane = tid % 32, g = lane / 4;
    const uint32_t q = (uint32_t)(lane % 4);
    const int wl0 = 64 * cw + 16 * warp + g; /* this thread's first row of W in the tile */
    float acc[128];
    uint32_t fa[4][4], fb[4][4]; /* fragments: step t's (in flight), step t + 1's */
    Step st = step_of(p, 0, ksteps);
    float s0 = scale_of(p, st.w0 + wl0, st.kt), s1 = scale_of(p, st.w0 + wl0 + 8, st.kt);
    bar_wait(R::full(base, 0), 0);
    convert(p, R::codes(base, 0), wl0, q, s0, s1, fa);
    for (int it = 0; it < total; it++) {
        const int s = it % R::kStages;
        const Step cur = st;
        if (it + 1 < total) {
            st = step_of(p, it + 1, ksteps);
            s0 = scale_of(p, st.w0 + wl0, st.kt);
            s1 = scale_of(p, st.w0 + wl0 + 8, st.kt);
        }
        const uint32_t xb = R::x_tile(base, s);
        wg_fence();
#pragma unroll
        for (int j = 0; j < 4; j++)
            wgmma_rs_m64n256(acc, fa[j], desc_sw128(xb + 32 * j, 16, 1024), cur.kt > 0 || j > 0);
        wg_commit();
        if (it + 1 < total) { /* step t + 1's fragments while step t's products run */
            const int s_next = (it + 1) % R::kStages;
            bar_wait(R::full(base, s_next), (uint32_t)((it + 1) / R::kStages) & 1u);
            convert(p, R::codes(base, s_next), wl0, q, s0, s1, fb);
        }
        wg_wait<0>();
        fence_frags(fa);
        if (lane == 0) bar_arrive(R::empty(base, s));
        if (cur.kt == ksteps - 1) {
#pragma unroll
            for (int i = 0; i < 128; i++) reg_fence(acc[i]);
            store_tile(p, acc, R::out(base), cur, wl0, (int)q, tid - R::kWg);
        }
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) fa[j][i] = fb[j][i];
    }
#endif
}

#ifdef VL_HOPPER_KERNELS
void launch(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
            const vl_bf16 *bias, cudaStream_t stream) {
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
    p.tiles_w = (int)((w->rows + R::kBW - 1) / R::kBW);
    p.tiles = p.tiles_w * (int)((m + R::kBX - 1) / R::kBX);
    CUtensorMap tm_x, tm_w;
    const uint64_t x_dims[2] = {(uint64_t)w->cols, (uint64_t)m};
    const uint64_t x_strides[1] = {(uint64_t)w->cols * 2};
    const uint32_t x_box[2] = {64, R::kBX};
    vl_cuda_tensor_map(c, &tm_x, 2, 2, x, x_dims, x_strides, x_box, 1);
    const uint64_t w_dims[2] = {(uint64_t)w->cols / 2, (uint64_t)w->rows};
    const uint64_t w_strides[1] = {(uint64_t)w->cols / 2};
    const uint32_t w_box[2] = {32, R::kBW};
    vl_cuda_tensor_map(c, &tm_w, 1, 2, w->data, w_dims, w_strides, w_box, 0);
    (void)vl_cuda_ctas_per_sm(c, (const void *)dqg_rs_kernel, R::kThreads, R::smem_bytes);
    const int grid = p.tiles < c->sm_count ? p.tiles : c->sm_count;
    dqg_rs_kernel<<<grid, R::kThreads, R::smem_bytes, stream>>>(p, tm_x, tm_w);
    VL_CUDA_LAUNCH_CHECK();
}
#endif

} // namespace vl_rs

/* 1 when it ran (NF4, the shapes above, an sm_90 device in an sm_90a build). */
int vl_dqg_rs(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
              const vl_bf16 *bias, cudaStream_t stream) {
#ifdef VL_HOPPER_KERNELS
    if (c->cc_major != 9 || c->cc_minor != 0 || w->dtype != VL_DTYPE_NF4) return 0;
    if (w->cols % 64 != 0 || w->rows % 8 != 0 || m < 1 || m > INT_MAX / 2 ||
        w->rows > INT_MAX / 2 || w->cols > INT_MAX / 2)
        return 0;
    if (!vl_cuda_aligned16(x) || !vl_cuda_aligned16(y) || !vl_cuda_aligned16(w->data)) return 0;
    vl_rs::launch(c, y, x, m, w, bias, stream);
    return 1;
#else
    (void)c, (void)y, (void)x, (void)m, (void)w, (void)bias, (void)stream;
    return 0;
#endif
}
