/* cuda_linear.cu: linear (y = x . W^T + b) through cuBLAS, and embed (rows of a table).
 *
 * linear: row-major y[m, N] = x[m, K] . W[N, K]^T is, read column-major, y^T[N, m] =
 * W^T . x^T with W stored as a column-major [K, N] matrix: one cublasGemmEx(T, N) with bf16
 * inputs and output, fp32 accumulation (CUBLAS_COMPUTE_32F) and no copy or transpose.
 * The bias is written into y first and the GEMM runs with beta = 1, so each output is
 * bf16(acc + bias) with one rounding, like the CPU twin (fp32 dot + bias, then the value); a
 * separate bias add after a bf16 GEMM output would round twice. The extra pass over y costs
 * m*N*2 bytes, small beside the m*N*K GEMM; cublasLt's BIAS epilogue would fuse it at the price
 * of descriptor and heuristic plumbing.
 * Weights must be BF16: the engine converts F32/F16 checkpoints when it copies them to the
 * device (no convert-on-the-fly here). Biases likewise.
 * Leaves out: quantized weights, cublasLt epilogues (bias, GELU), algorithm selection.
 */
#include "kernels/cuda_ops.h"

#include <limits.h>

#define BIAS_THREADS  256
#define EMBED_THREADS 128

/* y[i, r] = bias[r] for i < m, r < n; n % VEC == 0. */
template <int VEC>
static __global__ void bias_rows_kernel(vl_bf16 *y, const vl_bf16 *bias, int64_t m, int64_t n) {
    const int64_t row_vecs = n / VEC, total = m * row_vecs;
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < total;
         v += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = (v % row_vecs) * VEC;
        if constexpr (VEC == 8)
            reinterpret_cast<uint4 *>(y)[v] = *reinterpret_cast<const uint4 *>(bias + r);
        else
            y[v] = bias[r];
    }
}

void vl_cuda_launch_linear(cublasHandle_t handle, cudaStream_t stream, vl_bf16 *y, const vl_bf16 *x,
                           int64_t m, const vl_bf16 *w, int64_t n_out, int64_t k_in,
                           const vl_bf16 *bias) {
    if (m <= 0) return;
    float beta = 0.0f;
    if (bias) {
        int vec = n_out % 8 == 0 && vl_cuda_aligned16(y) && vl_cuda_aligned16(bias);
        int64_t items = m * (vec ? n_out / 8 : n_out);
        if (vec)
            bias_rows_kernel<8>
                <<<vl_cuda_grid(items, BIAS_THREADS), BIAS_THREADS, 0, stream>>>(y, bias, m, n_out);
        else
            bias_rows_kernel<1>
                <<<vl_cuda_grid(items, BIAS_THREADS), BIAS_THREADS, 0, stream>>>(y, bias, m, n_out);
        VL_CUDA_LAUNCH_CHECK();
        beta = 1.0f;
    }
    const float alpha = 1.0f;
    const int N = (int)n_out, M = (int)m, K = (int)k_in;
    VL_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF,
                                 K, x, CUDA_R_16BF, K, &beta, y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

void vl_cuda_linear(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                    const vl_vec *bias) {
    VL_CUDA_REQUIRE(m >= 0 && w->rows > 0 && w->cols > 0 && m <= INT_MAX && w->rows <= INT_MAX &&
                        w->cols <= INT_MAX,
                    "linear m=%lld W[%lld, %lld] (cuBLAS sizes are int)", (long long)m,
                    (long long)w->rows, (long long)w->cols);
    VL_CUDA_REQUIRE(w->dtype == VL_DTYPE_BF16,
                    "linear weight W[%lld, %lld] is %s; the CUDA backend takes BF16 weights "
                    "(convert at load)",
                    (long long)w->rows, (long long)w->cols, vl_dtype_name(w->dtype));
    const int has_bias = bias && bias->data;
    VL_CUDA_REQUIRE(!has_bias || (bias->n == w->rows && bias->dtype == VL_DTYPE_BF16),
                    "linear bias of %lld %s for W[%lld, %lld]; expected %lld BF16",
                    (long long)bias->n, vl_dtype_name(bias->dtype), (long long)w->rows,
                    (long long)w->cols, (long long)w->rows);
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    vl_cuda_launch_linear(c->cublas, c->stream, (vl_bf16 *)y, (const vl_bf16 *)x, m,
                          (const vl_bf16 *)w->data, w->rows, w->cols,
                          has_bias ? (const vl_bf16 *)bias->data : NULL);
}

/* ---- embed ----------------------------------------------------------------------------------- */

/* One block per output row: y[i, :] = table[ids[i], :]. An id outside [0, rows) (the engine
 * never passes one) gives a row of NaN instead of a read out of bounds. */
template <int VEC>
static __global__ void embed_kernel(vl_bf16 *y, const vl_bf16 *table, int64_t rows, int64_t cols,
                                    const int32_t *ids) {
    const int64_t i = blockIdx.x;
    const int32_t id = ids[i];
    vl_bf16 *out = y + i * cols;
    if (id < 0 || id >= rows) {
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) out[j] = __float2bfloat16(NAN);
        return;
    }
    const vl_bf16 *row = table + (int64_t)id * cols;
    for (int64_t j = threadIdx.x * VEC; j < cols; j += (int64_t)blockDim.x * VEC) {
        if constexpr (VEC == 8)
            *reinterpret_cast<uint4 *>(out + j) = *reinterpret_cast<const uint4 *>(row + j);
        else
            out[j] = row[j];
    }
}

void vl_cuda_launch_embed(vl_bf16 *y, const vl_bf16 *table, int64_t rows, int64_t cols,
                          const int32_t *ids, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    /* row starts stay 16-byte aligned only when cols is a multiple of 8 */
    if (cols % 8 == 0 && vl_cuda_aligned16(y) && vl_cuda_aligned16(table))
        embed_kernel<8><<<(unsigned)n, EMBED_THREADS, 0, stream>>>(y, table, rows, cols, ids);
    else
        embed_kernel<1><<<(unsigned)n, EMBED_THREADS, 0, stream>>>(y, table, rows, cols, ids);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_embed(vl_backend *b, void *y, const vl_weight *table, const int32_t *ids, int64_t n) {
    VL_CUDA_REQUIRE(n >= 0 && n <= INT_MAX && table->rows > 0 && table->cols > 0,
                    "embed of %lld ids from a table [%lld, %lld]", (long long)n,
                    (long long)table->rows, (long long)table->cols);
    VL_CUDA_REQUIRE(table->dtype == VL_DTYPE_BF16,
                    "embedding table [%lld, %lld] is %s; the CUDA backend takes BF16 (convert at "
                    "load)",
                    (long long)table->rows, (long long)table->cols, vl_dtype_name(table->dtype));
    vl_cuda_launch_embed((vl_bf16 *)y, (const vl_bf16 *)table->data, table->rows, table->cols, ids,
                         n, vl_cuda_ctx_of(b)->stream);
}
