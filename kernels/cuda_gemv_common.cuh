/* gemv_common.cuh: the device helpers the two decode GEMV kernels share (gemv.cu, gemv_q_v2.cu):
 * a streaming 16-byte weight load that does not pollute L1 (every weight byte is read once) and
 * the packing of two fp32 values into one bf16x2 register for the tensor-core operands. */
#ifndef VL_GEMV_COMMON_CUH
#define VL_GEMV_COMMON_CUH

#include "kernels/cuda_ops.h"

#include <stdlib.h>

__device__ __forceinline__ uint4 vl_ld_stream16(const void *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* Two floats rounded to nearest-even bf16, `first` in the low half (the lower k). */
__device__ __forceinline__ uint32_t vl_pack_bf16x2(float first, float second) {
    __nv_bfloat162 v = __floats2bfloat162_rn(first, second);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* The K split (warps per row) forced by environment variable `name` (1, 2, 4 or 8; anything
 * else: 0, the launcher chooses), read once into *cache (start it at -1). For tuning. */
static inline int vl_gemv_forced_splits(const char *name, int *cache) {
    if (*cache < 0) {
        const char *v = getenv(name);
        const int s = v ? atoi(v) : 0;
        *cache = s == 1 || s == 2 || s == 4 || s == 8 ? s : 0;
    }
    return *cache;
}

#endif
