/* cuda_gemm_bias_fp32.cu: y = bf16(x . W^T + bias) for bf16 x and W of any shape and alignment,
 * one rounding: cuBLAS writes the fp32 products of a block of rows of x into a scratch buffer
 * (cublasGemmEx with an fp32 C takes any leading dimension, and any split-K reduction it picks is
 * in fp32), then one kernel adds the bias in fp32 and rounds to bf16 into y.
 *
 * Why: cuBLASLt's bias epilogue is exact only on 16-byte-clean problems (cuda_linear.cu has the
 * measurements), and Qwen2.5-VL's vision MLP (3B, 7B) is 3420 wide, so its gate / up (N = 3420)
 * and down (K = 3420) projections are not. They used to run the GEMV 8 rows of x at a time,
 * reading W m / 8 times: 1.9 s a page on H100. Here W is read once per block of rows; the
 * round trip through fp32 costs 8 bytes an output more traffic than the epilogue would.
 * The biased linear (cuda_linear.cu) uses the attention workspace as the scratch; the dequant
 * GEMM (cuda_dequant_gemm.cu) its second slice buffer, with W's bf16 slice in the first.
 * Leaves out: a fused epilogue for unaligned shapes (cuBLASLt has none that is exact).
 */
#include "kernels/cuda_ops.h"

#include <limits.h>

#define BIAS_ROUND_THREADS 256
#define MAX_GRID_Y         65535 /* CUDA's limit on gridDim.y */

/* y[r, j] = bf16(acc[r, j] + bias[j]) for rows r < rows, columns j < n; y's rows ld_y apart. */
static __global__ void add_bias_round_kernel(vl_bf16 *y, int64_t ld_y, const float *acc,
                                             int64_t rows, int64_t n, const vl_bf16 *bias) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *a = acc + r * n;
        vl_bf16 *out = y + r * ld_y;
        for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n;
             j += (int64_t)gridDim.x * blockDim.x) {
            const float b = bias ? __bfloat162float(bias[j]) : 0.0f;
            out[j] = __float2bfloat16(a[j] + b);
        }
    }
}

void vl_cuda_launch_gemm_bias_fp32(cublasHandle_t blas, cudaStream_t stream, float *scratch,
                                   size_t scratch_bytes, int64_t max_block_rows, vl_bf16 *y,
                                   int64_t ld_y, const vl_bf16 *x, int64_t m, const vl_bf16 *w,
                                   int64_t n, int64_t k, const vl_bf16 *bias) {
    if (m <= 0) return;
    VL_CUDA_REQUIRE(n > 0 && k > 0 && n <= INT_MAX && k <= INT_MAX && m <= INT_MAX && ld_y >= n,
                    "fp32 GEMM m=%lld W[%lld, %lld] ld_y %lld", (long long)m, (long long)n,
                    (long long)k, (long long)ld_y);
    int64_t block = (int64_t)(scratch_bytes / ((size_t)n * sizeof(float)));
    if (max_block_rows > 0 && max_block_rows < block) block = max_block_rows;
    VL_CUDA_REQUIRE(block >= 1, "fp32 GEMM: one row of %lld outputs does not fit %zu bytes",
                    (long long)n, scratch_bytes);
    const float one = 1.0f, zero = 0.0f;
    const unsigned grid_x = (unsigned)((n + BIAS_ROUND_THREADS - 1) / BIAS_ROUND_THREADS);
    for (int64_t i0 = 0; i0 < m; i0 += block) {
        const int64_t rows = m - i0 < block ? m - i0 : block;
        /* column-major: acc^T[n, rows] = W^T . x^T, as in vl_cuda_launch_linear */
        VL_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)rows, (int)k,
                                     &one, w, CUDA_R_16BF, (int)k, x + i0 * k, CUDA_R_16BF, (int)k,
                                     &zero, scratch, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
        const dim3 grid(grid_x, (unsigned)(rows < MAX_GRID_Y ? rows : MAX_GRID_Y));
        add_bias_round_kernel<<<grid, BIAS_ROUND_THREADS, 0, stream>>>(y + i0 * ld_y, ld_y, scratch,
                                                                       rows, n, bias);
        VL_CUDA_LAUNCH_CHECK();
    }
}

/* The biased linear of a bf16 W through this path with blocks of at most max_block_rows rows of
 * x (tests/test_ops_gpu.c: several blocks at test sizes), in the attention workspace. */
extern "C" void vl_cuda_linear_bias_fp32_blocked(vl_backend *b, void *y, const void *x, int64_t m,
                                                 const vl_weight *w, const vl_vec *bias,
                                                 int64_t max_block_rows) {
    VL_CUDA_REQUIRE(
        w->dtype == VL_DTYPE_BF16 &&
            (!bias || !bias->data || (bias->dtype == VL_DTYPE_BF16 && bias->n == w->rows)),
        "fp32 GEMM test entry: W[%lld, %lld] %s; expected BF16 with a BF16 bias",
        (long long)w->rows, (long long)w->cols, vl_dtype_name(w->dtype));
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    vl_cuda_launch_gemm_bias_fp32(c->cublas, c->stream, (float *)c->attn_ws, c->attn_ws_bytes,
                                  max_block_rows, (vl_bf16 *)y, w->rows, (const vl_bf16 *)x, m,
                                  (const vl_bf16 *)w->data, w->rows, w->cols,
                                  bias && bias->data ? (const vl_bf16 *)bias->data : NULL);
}
