/* cuda_internal.h: what the CUDA files of kernels/ share (not part of the public face).
 *
 * Error handling: a CUDA or cuBLAS failure inside the engine is a broken invariant or an
 * exhausted device, never user input: VL_CUDA_CHECK / VL_CUBLAS_CHECK print the call, file and
 * line with the error string and abort (vl_cuda_fatal). Out-of-memory at planning time is
 * reported earlier, by the engine, through mem_alloc returning NULL. */
#ifndef VL_CUDA_INTERNAL_H
#define VL_CUDA_INTERNAL_H

#include "kernels/kernels.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

void vl_cuda_fatal(const char *call, const char *file, int line, const char *what);

#define VL_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        cudaError_t vl_err_ = (call);                                                              \
        if (vl_err_ != cudaSuccess)                                                                \
            vl_cuda_fatal(#call, __FILE__, __LINE__, cudaGetErrorString(vl_err_));                 \
    } while (0)

#define VL_CUBLAS_CHECK(call)                                                                      \
    do {                                                                                           \
        cublasStatus_t vl_st_ = (call);                                                            \
        if (vl_st_ != CUBLAS_STATUS_SUCCESS)                                                       \
            vl_cuda_fatal(#call, __FILE__, __LINE__, cublasGetStatusString(vl_st_));               \
    } while (0)

/* After every launch: catches bad launch configurations at the launch site. */
#define VL_CUDA_LAUNCH_CHECK() VL_CUDA_CHECK(cudaGetLastError())

/* Attention on the GPU (kernels/cuda_attention_prefill.cu, kernels/cuda_attention_decode.cu).
 * q/k/v/o are bf16. Dispatch: n_q == 1 -> split-KV decode (flash-decoding) with a combine step;
 * otherwise the tiled flash-attention prefill kernel (causal with q_pos0, or block-diagonal
 * segments). head_dim must be one of the compiled sizes (see vl_cuda_attention_supported).
 * b: the CUDA backend whose device facts and tuning (vl_cuda_config) size the launch; stream:
 * any stream of its device. workspace: device scratch of at least
 * vl_cuda_attention_workspace_bytes(p) bytes. */
int vl_cuda_attention_supported(const vl_attn_params *p); /* 1 if the kernels handle p */
size_t vl_cuda_attention_workspace_bytes(const vl_attn_params *p);
void vl_cuda_attention(vl_backend *b, const vl_attn_params *p, void *workspace,
                       size_t workspace_bytes, cudaStream_t stream);
/* 1 when vl_cuda_attention would run p on the Hopper prefill kernel (cuda_attention_wgmma.cu)
 * on backend b: for tests, which check both prefill kernels on an sm_90 device. */
int vl_cuda_attention_uses_wgmma(vl_backend *b, const vl_attn_params *p);
/* The "eager" baseline: materializes scores [n_heads, n_q, n_kv] fp32 in `scores`
 * (n_heads * n_q * n_kv * 4 bytes), then softmax and P.V. */
void vl_cuda_attention_naive(const vl_attn_params *p, float *scores, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
