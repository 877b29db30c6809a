/* cuda_gemv_common.cuh: what the decode GEMV kernels share (cuda_gemv.cu, cuda_gemv_bf16.cu,
 * cuda_gemv_quant_m1.cu): a streaming 16-byte weight load that does not pollute L1 (every weight
 * byte is read once), an L2 prefetch hint, and through cuda_mma.cuh the mma wrapper and the NF4 /
 * int8 unpacking. */
#ifndef VL_GEMV_COMMON_CUH
#define VL_GEMV_COMMON_CUH

#include "kernels/cuda_mma.cuh"
#include "kernels/cuda_ops.h"

__device__ __forceinline__ uint4 vl_ld_stream16(const void *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* A hint to bring the 32-byte sector at p into L2: no register waits for it, and it never faults.
 * The bf16 GEMV (cuda_gemv_bf16.cu) uses it for its first batch of weights under pdl. */
__device__ __forceinline__ void vl_prefetch_l2(const void *p) {
    asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p));
}

#endif
