/* cuda_hopper.cuh: Hopper (sm_90a) building blocks as inline PTX: the tensor memory accelerator
 * (TMA: cp.async.bulk.tensor, completing on an mbarrier), mbarriers, warpgroup register
 * reallocation (setmaxnreg) and warpgroup MMA (wgmma) with its shared-memory descriptors.
 * Everything here compiles only where __CUDA_ARCH_FEAT_SM90_ALL is defined (the sm_90a pass of
 * the build; CMakeLists.txt builds 90a where 90 is asked for). A kernel that uses it guards its
 * body with VL_HOPPER_DEVICE and is launched only on a compute capability 9.0 device.
 *
 * Shared-memory tiles for wgmma use the 128-byte swizzle, the layout TMA writes with
 * CU_TENSOR_MAP_SWIZZLE_128B: a tile is rows of 64 bf16 (128 bytes); within each group of 8 rows
 * (1024 bytes, 1024-aligned) the 16-byte chunk c of row r sits at chunk c ^ (r % 8). A matrix
 * with more than 64 columns is kept as several such column blocks ("atoms"), one after another.
 * Descriptor (PTX ISA, "matrix descriptor"): start address >> 4 in bits 0-13, leading byte
 * offset >> 4 in bits 16-29, stride byte offset >> 4 in bits 32-45, swizzle mode in bits 62-63
 * (1: 128-byte). For an operand whose reduction dim (K) is the contiguous one ("K-major": Q and K
 * of attention): stride offset = 1024 (the next 8 rows), leading offset unused; a k step of 16
 * inside an atom adds 32 bytes to the start address. For an operand whose M/N dim is the
 * contiguous one ("MN-major": V, read transposed): leading offset = the distance between column
 * blocks of 64, stride offset = 1024 (the next 8 rows of K).
 * wgmma fragments (per warp w of the warpgroup, lane = 4 g + q): the fp32 accumulator of
 * m64nN holds, for i < N / 8, d[4i], d[4i + 1] = row 16w + g, columns 8i + 2q, + 1 and
 * d[4i + 2], d[4i + 3] = row 16w + g + 8, same columns; an A operand from registers (m64k16)
 * is mma.m16n8k16's A fragment of rows 16w .. 16w + 15 (cuda_attention_mma.cuh).
 */
#ifndef VL_CUDA_HOPPER_CUH
#define VL_CUDA_HOPPER_CUH

#include <cuda.h> /* CUtensorMap */
#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VL_HOPPER_DEVICE 1
#endif

namespace vl_hopper {

#ifdef VL_HOPPER_DEVICE

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* ---- mbarrier ----------------------------------------------------------------------------- */

__device__ __forceinline__ void bar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* Makes the barriers initialized above visible to the async proxy (TMA). */
__device__ __forceinline__ void bar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void bar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Arrives and adds `bytes` to the transaction count the phase waits for (the TMA loads). */
__device__ __forceinline__ void bar_arrive_expect(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
/* Waits until the phase of parity `parity` has completed. */
__device__ __forceinline__ void bar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile("{\n .reg .pred p;\n"
                     " mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

/* Orders this thread's ordinary shared-memory writes before later reads by the async proxy
 * (wgmma, TMA); a barrier among the writers must follow. */
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* ---- TMA ---------------------------------------------------------------------------------- */

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)map) : "memory");
}
/* The box of a 3-d tensor map at coordinates (c0, c1, c2) into shared memory at dst; completes
 * (its bytes counted) on the mbarrier bar. Coordinates past the tensor read zeros. */
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                            int c0, int c1, int c2) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}

/* The box of a 2-d tensor map at coordinates (c0, c1), as tma_load_3d. */
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                            int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(bar), "r"(c0), "r"(c1)
                 : "memory");
}

/* ---- warpgroups --------------------------------------------------------------------------- */

template <int REGS> __device__ __forceinline__ void regs_dealloc() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
template <int REGS> __device__ __forceinline__ void regs_alloc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(REGS));
}
/* Named barrier `id` (1..15) over `threads` threads (warpgroups synchronizing among
 * themselves, without the producer). */
__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/* Arrives at named barrier `id` without waiting (the other side of named_sync: `threads` counts
 * the arriving and the waiting threads together). */
__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/* ---- wgmma -------------------------------------------------------------------------------- */

__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr, uint32_t lead_bytes,
                                               uint32_t stride_bytes) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)(lead_bytes >> 4) << 16) |
           ((uint64_t)(stride_bytes >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving reads or writes of r across the asynchronous wgmma (which
 * reads and writes it until wg_wait returns). */
__device__ __forceinline__ void reg_fence(float &r) {
    asm volatile("" : "+f"(r)::"memory");
}
__device__ __forceinline__ void reg_fence(uint32_t &r) {
    asm volatile("" : "+r"(r)::"memory");
}

/* wgmma's operand lists: the accumulators d[0 .. n) as "+f" operands and their "%i" names, in
 * blocks of 8 (the names' first block without a leading comma). */
#define VL_WG_D8(i)                                                                                \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]),    \
        "+f"(d[i + 6]), "+f"(d[i + 7])
#define VL_WG_D64                                                                                  \
    VL_WG_D8(0), VL_WG_D8(8), VL_WG_D8(16), VL_WG_D8(24), VL_WG_D8(32), VL_WG_D8(40),              \
        VL_WG_D8(48), VL_WG_D8(56)
#define VL_WG_D128                                                                                 \
    VL_WG_D64, VL_WG_D8(64), VL_WG_D8(72), VL_WG_D8(80), VL_WG_D8(88), VL_WG_D8(96),               \
        VL_WG_D8(104), VL_WG_D8(112), VL_WG_D8(120)
#define VL_WG_R8_0  "%0, %1, %2, %3, %4, %5, %6, %7"
#define VL_WG_R8_1  ", %8, %9, %10, %11, %12, %13, %14, %15"
#define VL_WG_R8_2  ", %16, %17, %18, %19, %20, %21, %22, %23"
#define VL_WG_R8_3  ", %24, %25, %26, %27, %28, %29, %30, %31"
#define VL_WG_R8_4  ", %32, %33, %34, %35, %36, %37, %38, %39"
#define VL_WG_R8_5  ", %40, %41, %42, %43, %44, %45, %46, %47"
#define VL_WG_R8_6  ", %48, %49, %50, %51, %52, %53, %54, %55"
#define VL_WG_R8_7  ", %56, %57, %58, %59, %60, %61, %62, %63"
#define VL_WG_R8_8  ", %64, %65, %66, %67, %68, %69, %70, %71"
#define VL_WG_R8_9  ", %72, %73, %74, %75, %76, %77, %78, %79"
#define VL_WG_R8_10 ", %80, %81, %82, %83, %84, %85, %86, %87"
#define VL_WG_R8_11 ", %88, %89, %90, %91, %92, %93, %94, %95"
#define VL_WG_R8_12 ", %96, %97, %98, %99, %100, %101, %102, %103"
#define VL_WG_R8_13 ", %104, %105, %106, %107, %108, %109, %110, %111"
#define VL_WG_R8_14 ", %112, %113, %114, %115, %116, %117, %118, %119"
#define VL_WG_R8_15 ", %120, %121, %122, %123, %124, %125, %126, %127"
#define VL_WG_REGS64                                                                               \
    "{" VL_WG_R8_0 VL_WG_R8_1 VL_WG_R8_2 VL_WG_R8_3 VL_WG_R8_4 VL_WG_R8_5 VL_WG_R8_6 VL_WG_R8_7 "}"
#define VL_WG_REGS128                                                                              \
    "{" VL_WG_R8_0 VL_WG_R8_1 VL_WG_R8_2 VL_WG_R8_3 VL_WG_R8_4 VL_WG_R8_5 VL_WG_R8_6 VL_WG_R8_7    \
        VL_WG_R8_8 VL_WG_R8_9 VL_WG_R8_10 VL_WG_R8_11 VL_WG_R8_12 VL_WG_R8_13 VL_WG_R8_14          \
            VL_WG_R8_15 "}"

/* d[64 x N] (+)= A[64 x 16] . B[16 x N], A and B K-major in shared memory (descriptors); N / 2
 * accumulators a thread; accumulate = 0 overwrites d. N: 128 (attention's S = Q K^T). IA, IB,
 * IP: the operand numbers of the two descriptors and the flag, after the N / 2 accumulators. */
template <int N> struct WgmmaSS;
#define VL_WGMMA_SS(N, REGS, D, IA, IB, IP)                                                        \
    template <> struct WgmmaSS<N> {                                                                \
        static __device__ __forceinline__ void run(float d[N / 2], uint64_t desc_a,                \
                                                   uint64_t desc_b, int accumulate) {              \
            asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %" #IP ", 0;\n"                       \
                         " wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 " REGS         \
                         ", %" #IA ", %" #IB ", p, 1, 1, 0, 0;\n}\n"                               \
                         : D                                                                       \
                         : "l"(desc_a), "l"(desc_b), "r"(accumulate));                             \
        }                                                                                          \
    };
VL_WGMMA_SS(128, VL_WG_REGS64, VL_WG_D64, 64, 65, 66)
#undef VL_WGMMA_SS

/* d[64 x N] (+)= A[64 x 16] . B[16 x N], A from registers (mma.m16n8k16's A fragment of the
 * warp's 16 rows), B K-major in shared memory; accumulate = 0 overwrites d. N: 256 (the dequant
 * GEMM, cuda_dequant_gemm_wgmma.cu). IA: the first A operand's number, after the N / 2
 * accumulators. */
template <int N> struct WgmmaRS;
#define VL_WGMMA_RS(N, REGS, D, IA, IA1, IA2, IA3, IB, IP)                                         \
    template <> struct WgmmaRS<N> {                                                                \
        static __device__ __forceinline__ void run(float d[N / 2], const uint32_t a[4],            \
                                                   uint64_t desc_b, int accumulate) {              \
            asm volatile(                                                                          \
                "{\n .reg .pred p;\n setp.ne.b32 p, %" #IP ", 0;\n"                                \
                " wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 " REGS ", {%" #IA       \
                ", %" #IA1 ", %" #IA2 ", %" #IA3 "}, %" #IB ", p, 1, 1, 0;\n}\n"                   \
                : D                                                                                \
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));       \
        }                                                                                          \
    };
VL_WGMMA_RS(256, VL_WG_REGS128, VL_WG_D128, 128, 129, 130, 131, 132, 133)
#undef VL_WGMMA_RS

/* d[64 x 128] += A[64 x 16] . B[16 x 128], A from registers (four bf16x2 per thread), B
 * MN-major in shared memory (read transposed). */
__device__ __forceinline__ void wgmma_rs_m64n128_tb(float d[64], const uint32_t a[4],
                                                    uint64_t desc_b) {
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %69, 0;\n"
                 " wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " VL_WG_REGS64
                 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : VL_WG_D64
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

#undef VL_WG_D8
#undef VL_WG_D64
#undef VL_WG_D128
#undef VL_WG_R8_0
#undef VL_WG_R8_1
#undef VL_WG_R8_2
#undef VL_WG_R8_3
#undef VL_WG_R8_4
#undef VL_WG_R8_5
#undef VL_WG_R8_6
#undef VL_WG_R8_7
#undef VL_WG_R8_8
#undef VL_WG_R8_9
#undef VL_WG_R8_10
#undef VL_WG_R8_11
#undef VL_WG_R8_12
#undef VL_WG_R8_13
#undef VL_WG_R8_14
#undef VL_WG_R8_15
#undef VL_WG_REGS64
#undef VL_WG_REGS128

#endif /* VL_HOPPER_DEVICE */

} // namespace vl_hopper

#endif
