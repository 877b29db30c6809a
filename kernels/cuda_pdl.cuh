/* cuda_pdl.cuh: programmatic dependent launch (sm_90 and newer). A kernel launched with
 * vl_cuda_launch_pdl may start while the kernel before it in the stream (or graph) still runs:
 * its CTAs can do work that depends on nothing that kernel writes (constant weights brought into
 * L2 or registers, shared tables) and must call vl_pdl_wait() before reading anything an earlier
 * kernel wrote or writing anything one reads; the wait returns once the kernel before has
 * completed and its memory is visible. A kernel calls vl_pdl_launch_dependents() to let such a
 * successor start once all of its CTAs have called it (otherwise when they exit).
 * Why: a decode step is ~10 short kernels a layer; a GEMV's first weights need a DRAM round trip
 * (~1-2 us) that needs nothing from the kernel before it.
 * Below sm_90, and with the backend's pdl = 0, the launch is an ordinary one and both calls are
 * no-ops. Leaves out: which kernels use it (their launchers). */
#ifndef VL_CUDA_PDL_CUH
#define VL_CUDA_PDL_CUH

#include "kernels/cuda_ops.h"

#include <utility>

/* Whether vl_cuda_launch_pdl makes programmatic dependents on c's device. */
static inline bool vl_cuda_pdl_on(const vl_cuda_ctx *c) {
    return c->cfg.pdl && c->cc_major >= 9;
}

__device__ __forceinline__ void vl_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void vl_pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent of the kernel
 * before it where the device and the backend's pdl allow; an ordinary launch otherwise. */
template <typename... KernelArgs, typename... Args>
static inline void vl_cuda_launch_pdl(const vl_cuda_ctx *c, void (*kernel)(KernelArgs...),
                                      dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                      Args &&...args) {
    if (!vl_cuda_pdl_on(c)) {
        kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
        VL_CUDA_LAUNCH_CHECK();
        return;
    }
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    VL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

#endif
