/* cuda_random.cu: --random-weights on the GPU, the device memory query for the report, and
 * pinned mapped host memory (--embed-on-host).
 * The fill is the same counter-based generator as its CPU twin (cpu_random.c, vl_random_unit),
 * so a checkpoint written by `vlrun synth` and a --random-weights run hold the same values
 * (up to the host's and device's float rounding of center + half * (2u - 1), which is exact
 * in practice since both round the same fp32 expression). */
#include "kernels/cuda_internal.h"
#include "kernels/cuda_ops.h"

__global__ void fill_random_bf16_kernel(vl_bf16 *dst, int64_t n, uint64_t key, float center,
                                        float half) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        double u = vl_random_unit(key + (uint64_t)i);
        dst[i] = __float2bfloat16_rn(center + half * (float)(2.0 * u - 1.0));
    }
}

extern "C" void vl_cuda_fill_random_bf16(vl_backend *b, void *dst, int64_t n, uint64_t key,
                                         float center, float half) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65535LL * 8) blocks = 65535LL * 8;
    if (blocks < 1) blocks = 1;
    fill_random_bf16_kernel<<<(unsigned)blocks, 256, 0, c->stream>>>((vl_bf16 *)dst, n, key, center,
                                                                     half);
    VL_CUDA_LAUNCH_CHECK();
}

/* Pinned, mapped host memory (--embed-on-host): NULL when the allocation fails. */
extern "C" void *vl_cuda_host_mapped_alloc(vl_backend *b, size_t bytes, void **device_ptr) {
    (void)vl_cuda_ctx_of(b); /* its device current */
    void *h = NULL;
    if (cudaHostAlloc(&h, bytes ? bytes : 1, cudaHostAllocMapped) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    VL_CUDA_CHECK(cudaHostGetDevicePointer(device_ptr, h, 0));
    return h;
}

extern "C" void vl_cuda_host_mapped_free(vl_backend *b, void *host_ptr) {
    (void)vl_cuda_ctx_of(b);
    if (host_ptr) VL_CUDA_CHECK(cudaFreeHost(host_ptr));
}

extern "C" void vl_cuda_mem_info(vl_backend *b, size_t *free_bytes, size_t *total_bytes) {
    (void)vl_cuda_ctx_of(b); /* the backend's device, not whichever is current */
    VL_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}
