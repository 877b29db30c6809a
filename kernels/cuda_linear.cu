/* cuda_linear.cu: linear (y = x . W^T + b): the dispatch over the GEMV, cuBLAS and the dequant
 * GEMM; the bf16 GEMMs through cuBLAS / cuBLASLt; and embed (rows of a table).
 *
 * Dispatch (vl_cuda_linear):
 *   m <= VL_CUDA_GEMV_MAX_M (8), any weight dtype   -> vl_cuda_gemv: the decode GEMV, chosen here
 *                                                      and nowhere else:
 *     m = 1, bf16, K % 8 == 0, aligned              -> vl_cuda_gemv_bf16 (cuda_gemv_bf16.cu):
 * faster than cuBLAS's GEMV on every decoder shape (bench/RESULTS.md); unless the backend's
 *                                                      gemv_bf16 is 0
 *     m = 1, Q8ROW with K >= 8192 that the lean    -> vl_cuda_gemv_quant_m1
 *       kernel leaves (gemv_quant_m1 -1), or NF4 /     (cuda_gemv_quant_m1.cu), where it takes them
 *       Q8ROW (gemv_quant_m1 1)
 *     everything else                               -> vl_cuda_launch_gemv (cuda_gemv.cu), which
 *                                                      sends NF4 / Q8ROW with K a multiple of its
 *                                                      step to the lean kernel (cuda_gemv_lean.cu)
 *                                                      unless the backend's gemv_lean is 0
 *   bf16, larger m, no bias                         -> cublasGemmEx
 *   bf16, larger m, bias, 16-byte clean             -> cuBLASLt with the BIAS epilogue
 *   bf16, larger m, bias, any other                 -> vl_cuda_launch_gemm_bias_fp32 (cuBLAS
 *                                                      into fp32, bias, one rounding)
 *   NF4 / Q8ROW, 9 to 16 rows, cfg.gemv_rows16 (1)  -> vl_cuda_launch_gemv with two x tiles
 *                                                      (W read once)
 *   NF4 / Q8ROW, m up to cfg.quant_gemv_rows (32)   -> the GEMV on 8 rows of x at a time (16
 *                                                      with gemv_rows16): vlrun serve's batched
 *                                                      decode steps
 *   NF4 / Q8ROW, larger m                           -> vl_cuda_launch_dequant_gemm
 * Row-major y[m, N] = x[m, K] . W[N, K]^T is, read column-major, y^T[N, m] = W^T . x^T with W a
 * column-major [K, N] matrix: one GEMM (T, N) with bf16 inputs and output and fp32 accumulation
 * (CUBLAS_COMPUTE_32F), no copy or transpose.
 * Bias: every output must be bf16(fp32 dot + bias), rounded once, like the CPU twin. Preloading
 * the bias into y and running cublasGemmEx with beta = 1 missed that on H100 (a third of the
 * outputs of the m = 300 test 1-2 ulp off, as if the product were rounded to bf16 before C was
 * added). cuBLASLt's BIAS epilogue adds the bias to the fp32 accumulator before the one
 * conversion (what PyTorch's addmm does), and the algorithm search is restricted to split-K
 * reductions in the compute type (fp32), never INPLACE / OUTPUT_TYPE (bf16): cuda_lt_gemm.cu,
 * shared with the dequant GEMM, as is the cuBLASLt handle (the context's dq_lt).
 * cuBLASLt gets only 16-byte-clean problems: K and N multiples of 8 (every row of x, W and y
 * starts 16-byte aligned) and x, W, y and bias 16-byte aligned. With K = 129, N = 131 (m = 17)
 * on H100 / CUDA 13 it returned an algorithm whose bias came out rounded twice (68% of outputs
 * exact, errors up to 1 bf16 ulp of the product: the signature of the beta = 1 preload), and the
 * dequant GEMM saw the same at K = 130, N = 77. Hopper's TMA kernels need 16-byte row strides,
 * so odd leading dimensions go to other kernels, and the MIN_ALIGNMENT preferences describe base
 * pointers only, not leading dimensions or the bias, so they cannot exclude them. Everything
 * else (and the case of no algorithm or no handle) runs cuBLAS into fp32 blocks of the attention
 * workspace, then adds the bias and rounds once (cuda_gemm_bias_fp32.cu): exact for any shape
 * and alignment. Qwen2.5-VL's vision MLP (3420 wide in 3B and 7B) runs there; it used to run the
 * GEMV 8 rows of x at a time (W read m / 8 times), 1.9 s a page on H100.
 * Weights must be BF16, NF4 or Q8ROW: the engine converts F32/F16 checkpoints when it copies them
 * to the device. Biases are BF16.
 * Leaves out: other cuBLASLt epilogues (GELU), strided x / y.
 */
#include "kernels/cuda_ops.h"

#include <limits.h>

#define EMBED_THREADS 128

void vl_cuda_launch_linear(cublasHandle_t handle, cudaStream_t stream, vl_bf16 *y, const vl_bf16 *x,
                           int64_t m, const vl_bf16 *w, int64_t n_out, int64_t k_in,
                           const vl_bf16 *bias) {
    VL_CUDA_REQUIRE(bias == NULL,
                    "vl_cuda_launch_linear W[%lld, %lld] with a bias: a bias "
                    "preloaded into y rounds twice; use vl_cuda_launch_linear_bias",
                    (long long)n_out, (long long)k_in);
    if (m <= 0) return;
    const float alpha = 1.0f, beta = 0.0f;
    const int N = (int)n_out, M = (int)m, K = (int)k_in;
    VL_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF,
                                 K, x, CUDA_R_16BF, K, &beta, y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

/* ---- bf16 GEMM + bias through cuBLASLt ---------------------------------------------------- */

int vl_cuda_launch_linear_bias(cublasLtHandle_t lt, void *ws, size_t ws_bytes, cudaStream_t stream,
                               vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_bf16 *w,
                               int64_t n_out, int64_t k_in, const vl_bf16 *bias) {
    if (m <= 0) return 1;
    /* 16-byte-clean problems only (file comment): the epilogue's bias reads are not covered
     * by an alignment preference, and unaligned leading dimensions were seen to round twice */
    if (!lt || k_in % 8 != 0 || n_out % 8 != 0 || !vl_cuda_aligned16(bias) ||
        !vl_cuda_aligned16(x) || !vl_cuda_aligned16(w) || !vl_cuda_aligned16(y))
        return 0;
    return vl_cuda_lt_gemm_bf16(lt, ws, ws_bytes, stream, y, n_out, w, n_out, x, m, k_in, bias);
}

/* ---- the decode GEMV: which kernel -------------------------------------------------------- */

/* The quantized m = 1 kernel where the configuration asks for it: by default only where it
 * measured faster than the general GEMV (Q8ROW, rows of 8192 or more: the down projection) and
 * the lean kernel does not take the product (it measured faster still: S21, H100, 3584 x 18944
 * int8 2126 against 1762 GB/s). */
static int quant_m1_wanted(const vl_cuda_config *cfg, const vl_weight *w) {
    if (w->dtype != VL_DTYPE_NF4 && w->dtype != VL_DTYPE_Q8ROW) return 0;
    if (cfg->gemv_quant_m1 >= 0) return cfg->gemv_quant_m1;
    const int lean = cfg->gemv_lean && w->cols % vl_cuda_gemv_lean_step(w->dtype) == 0;
    return w->dtype == VL_DTYPE_Q8ROW && w->cols >= 8192 && !lean;
}

void vl_cuda_gemv(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
                  const vl_bf16 *bias) {
    /* the m = 1 kernels decline (launch nothing, return 0) shapes they do not take */
    if (m == 1 && w->dtype == VL_DTYPE_BF16 && c->cfg.gemv_bf16 &&
        vl_cuda_gemv_bf16(c, y, x, w, bias))
        return;
    if (m == 1 && quant_m1_wanted(&c->cfg, w) && vl_cuda_gemv_quant_m1(c, y, x, w, bias)) return;
    vl_cuda_launch_gemv(c, y, x, m, w, bias, &c->gemv, c->stream);
}

/* One GEMV pass over m <= VL_CUDA_GEMV_WIDE_M rows: the m <= 8 choice of vl_cuda_gemv, or the
 * general kernel with two x tiles. */
static void gemv_pass(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
                      const vl_bf16 *bias) {
    if (m <= VL_CUDA_GEMV_MAX_M)
        vl_cuda_gemv(c, y, x, m, w, bias);
    else
        vl_cuda_launch_gemv(c, y, x, m, w, bias, &c->gemv, c->stream);
}

/* ---- the table entry ---------------------------------------------------------------------- */

void vl_cuda_linear(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                    const vl_vec *bias) {
    VL_CUDA_REQUIRE(m >= 0 && w->rows > 0 && w->cols > 0 && m <= INT_MAX && w->rows <= INT_MAX &&
                        w->cols <= INT_MAX,
                    "linear m=%lld W[%lld, %lld] (kernel sizes are int)", (long long)m,
                    (long long)w->rows, (long long)w->cols);
    const int quantized = w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW;
    VL_CUDA_REQUIRE(w->dtype == VL_DTYPE_BF16 || quantized,
                    "linear weight W[%lld, %lld] is %s; the CUDA backend takes BF16, NF4 or Q8ROW "
                    "weights (convert at load)",
                    (long long)w->rows, (long long)w->cols, vl_dtype_name(w->dtype));
    VL_CUDA_REQUIRE(
        !quantized || (w->absmax && (w->dtype != VL_DTYPE_NF4 || !w->absmax_code || w->absmax_map)),
        "linear %s weight W[%lld, %lld] without its scales", vl_dtype_name(w->dtype),
        (long long)w->rows, (long long)w->cols);
    const int has_bias = bias && bias->data;
    VL_CUDA_REQUIRE(!has_bias || (bias->n == w->rows && bias->dtype == VL_DTYPE_BF16),
                    "linear bias of %lld %s for W[%lld, %lld]; expected %lld BF16",
                    (long long)bias->n, vl_dtype_name(bias->dtype), (long long)w->rows,
                    (long long)w->cols, (long long)w->rows);
    if (m == 0) return;
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    vl_bf16 *yb = (vl_bf16 *)y;
    const vl_bf16 *xb = (const vl_bf16 *)x;
    const vl_bf16 *bb = has_bias ? (const vl_bf16 *)bias->data : NULL;
    const int64_t gemv_rows =
        c->cfg.gemv_rows16 && quantized ? VL_CUDA_GEMV_WIDE_M : VL_CUDA_GEMV_MAX_M;
    if (m <= gemv_rows) {
        gemv_pass(c, yb, xb, m, w, bb);
    } else if (quantized && m <= c->cfg.quant_gemv_rows) {
        for (int64_t i0 = 0; i0 < m; i0 += gemv_rows) {
            const int64_t rows = m - i0 < gemv_rows ? m - i0 : gemv_rows;
            gemv_pass(c, yb + i0 * w->rows, xb + i0 * w->cols, rows, w, bb);
        }
    } else if (quantized) {
        vl_cuda_launch_dequant_gemm(b, yb, xb, m, w, bb);
    } else if (!bb) {
        vl_cuda_launch_linear(c->cublas, c->stream, yb, xb, m, (const vl_bf16 *)w->data, w->rows,
                              w->cols, NULL);
    } else if (/* the legacy handle's workspace: same stream, so never used concurrently */
               !vl_cuda_launch_linear_bias(c->dq_lt, c->cublas_ws, c->cublas_ws_bytes, c->stream,
                                           yb, xb, m, (const vl_bf16 *)w->data, w->rows, w->cols,
                                           bb)) {
        /* same stream as the attention, the workspace's other user */
        vl_cuda_launch_gemm_bias_fp32(c->cublas, c->stream, (float *)c->attn_ws, c->attn_ws_bytes,
                                      0, yb, w->rows, xb, m, (const vl_bf16 *)w->data, w->rows,
                                      w->cols, bb);
    }
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
