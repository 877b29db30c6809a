/* cuda_linear.cu: linear (y = x . W^T + b): the dispatch over the GEMV, cuBLAS and the dequant
 * GEMM; the bf16 GEMMs through cuBLAS / cuBLASLt; and embed (rows of a table).
 *
 * Dispatch (vl_cuda_linear):
 *   m = 1, bf16, K % 8 == 0, aligned                -> vl_cuda_gemv_bf16 (gemv_bf16.cu): faster
 *                                                      than cuBLAS's GEMV on every decoder shape
 *                                                      (bench/RESULTS.md); with VL_GEMV_BF16=0,
 *                                                      and for other shapes, the next line
 *   m <= VL_CUDA_GEMV_MAX_M (8), any weight dtype   -> vl_cuda_launch_gemv (gemv.cu): decode
 *   bf16, larger m, no bias                         -> cublasGemmEx
 *   bf16, larger m, bias                            -> cuBLASLt with the BIAS epilogue
 *   NF4 / Q8ROW, larger m                           -> vl_cuda_launch_dequant_gemm
 * Row-major y[m, N] = x[m, K] . W[N, K]^T is, read column-major, y^T[N, m] = W^T . x^T with W a
 * column-major [K, N] matrix: one GEMM (T, N) with bf16 inputs and output and fp32 accumulation
 * (CUBLAS_COMPUTE_32F), no copy or transpose.
 * Bias: every output must be bf16(fp32 dot + bias), rounded once, like the CPU twin. Preloading
 * the bias into y and running cublasGemmEx with beta = 1 missed that on H100 (a third of the
 * outputs of the m = 300 test 1-2 ulp off, as if the product were rounded to bf16 before C was
 * added). cuBLASLt's BIAS epilogue adds the bias to the fp32 accumulator before the one
 * conversion (what PyTorch's addmm does), and the algorithm search is restricted to split-K
 * reductions in the compute type (fp32), never INPLACE / OUTPUT_TYPE (bf16). The chosen
 * algorithm is cached per (m, N, K, alignments). The cuBLASLt handle is the context's dq_lt
 * (shared with the dequant GEMM).
 * cuBLASLt gets only 16-byte-clean problems: K and N multiples of 8 (every row of x, W and y
 * starts 16-byte aligned) and x, W, y and bias 16-byte aligned. With K = 129, N = 131 (m = 17)
 * on H100 / CUDA 13 it returned an algorithm whose bias came out rounded twice (68% of outputs
 * exact, errors up to 1 bf16 ulp of the product: the signature of the beta = 1 preload), and the
 * dequant GEMM saw the same at K = 130, N = 77. Hopper's TMA kernels need 16-byte row strides,
 * so odd leading dimensions go to other kernels, and the MIN_ALIGNMENT preferences describe base
 * pointers only, not leading dimensions or the bias, so they cannot exclude them. Everything
 * else (and the case of no algorithm or no handle) runs the GEMV on 8 rows of x at a time:
 * exact for any shape and alignment, one rounding, slow for large m (W is read m / 8 times);
 * the model's shapes are all multiples of 8, so it is never expected there.
 * Weights must be BF16, NF4 or Q8ROW: the engine converts F32/F16 checkpoints when it copies them
 * to the device. Biases are BF16.
 * Leaves out: other cuBLASLt epilogues (GELU), strided x / y.
 */
#include "kernels/cuda_ops.h"

#include <limits.h>

#define EMBED_THREADS 128
#define LT_CACHE_SIZE 32 /* distinct biased GEMM shapes of a model: a dozen */

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

/* Largest power of two <= 256 dividing the address: the alignment cuBLASLt may assume. */
static uint32_t lt_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p & (a - 1))) a >>= 1;
    return a;
}

/* The algorithm cuBLASLt chose for a problem (found == 0: none), so that the heuristic runs
 * once per shape rather than once per call. Host-side only; the backend is single-threaded. */
typedef struct {
    int64_t m, n, k;
    uint32_t align_w, align_x, align_y;
    int found;
    cublasLtMatmulAlgo_t algo;
} lt_choice;

static lt_choice lt_cache[LT_CACHE_SIZE];
static int lt_cache_used, lt_cache_next;

static lt_choice *lt_cache_find(const lt_choice *key) {
    for (int i = 0; i < lt_cache_used; i++) {
        lt_choice *e = &lt_cache[i];
        if (e->m == key->m && e->n == key->n && e->k == key->k && e->align_w == key->align_w &&
            e->align_x == key->align_x && e->align_y == key->align_y)
            return e;
    }
    return NULL;
}

int vl_cuda_launch_linear_bias(cublasLtHandle_t lt, void *ws, size_t ws_bytes, cudaStream_t stream,
                               vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_bf16 *w,
                               int64_t n_out, int64_t k_in, const vl_bf16 *bias) {
    if (m <= 0) return 1;
    /* 16-byte-clean problems only (file comment): the epilogue's bias reads are not covered
     * by an alignment preference, and unaligned leading dimensions were seen to round twice */
    if (!lt || k_in % 8 != 0 || n_out % 8 != 0 || !vl_cuda_aligned16(bias) ||
        !vl_cuda_aligned16(x) || !vl_cuda_aligned16(w) || !vl_cuda_aligned16(y))
        return 0;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t w_desc, x_desc, y_desc;
    VL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = CUDA_R_16BF;
    VL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans));
    VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans,
                                                   sizeof no_trans));
    VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                   sizeof epilogue));
    VL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                   &bias_type, sizeof bias_type));
    VL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&w_desc, CUDA_R_16BF, (uint64_t)k_in, (uint64_t)n_out, k_in));
    VL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&x_desc, CUDA_R_16BF, (uint64_t)k_in, (uint64_t)m, k_in));
    VL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&y_desc, CUDA_R_16BF, (uint64_t)n_out, (uint64_t)m, n_out));

    lt_choice key = {};
    key.m = m, key.n = n_out, key.k = k_in;
    key.align_w = lt_alignment(w), key.align_x = lt_alignment(x), key.align_y = lt_alignment(y);
    lt_choice *choice = lt_cache_find(&key);
    if (!choice) {
        cublasLtMatmulPreference_t pref;
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const uint64_t max_ws = ws_bytes;
        const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE; /* fp32 partials */
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions, sizeof reductions));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_w, sizeof key.align_w));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_x, sizeof key.align_x));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_y, sizeof key.align_y));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_y, sizeof key.align_y));
        cublasLtMatmulHeuristicResult_t heur = {};
        int found = 0;
        VL_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, w_desc, x_desc, y_desc, y_desc, pref,
                                                       1, &heur, &found));
        VL_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
        key.found = found > 0;
        key.algo = heur.algo;
        choice = &lt_cache[lt_cache_next];
        *choice = key;
        lt_cache_next = (lt_cache_next + 1) % LT_CACHE_SIZE;
        if (lt_cache_used < LT_CACHE_SIZE) lt_cache_used++;
    }
    const int found = choice->found;
    if (found) {
        const float alpha = 1.0f, beta = 0.0f;
        VL_CUBLAS_CHECK(cublasLtMatmul(lt, op, &alpha, w, w_desc, x, x_desc, &beta, y, y_desc, y,
                                       y_desc, &choice->algo, ws, ws_bytes, stream));
    }
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(y_desc));
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(x_desc));
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(w_desc));
    VL_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
    return found;
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
    if (m == 1 && !quantized && vl_cuda_gemv_bf16_enabled() &&
        vl_cuda_gemv_bf16(yb, xb, w, bb, c->stream)) {
        /* decode's bf16 GEMVs, every shape it takes (gemv_bf16.cu) */
    } else if (m <= VL_CUDA_GEMV_MAX_M) {
        vl_cuda_launch_gemv(yb, xb, m, w, bb, &c->gemv, c->stream);
    } else if (quantized) {
        vl_cuda_launch_dequant_gemm(b, yb, xb, m, w, bb);
    } else if (!bb) {
        vl_cuda_launch_linear(c->cublas, c->stream, yb, xb, m, (const vl_bf16 *)w->data, w->rows,
                              w->cols, NULL);
    } else if (/* the legacy handle's workspace: same stream, so never used concurrently */
               !vl_cuda_launch_linear_bias(c->dq_lt, c->cublas_ws, c->cublas_ws_bytes, c->stream,
                                           yb, xb, m, (const vl_bf16 *)w->data, w->rows, w->cols,
                                           bb)) {
        for (int64_t i0 = 0; i0 < m; i0 += VL_CUDA_GEMV_MAX_M) {
            const int64_t rows = m - i0 < VL_CUDA_GEMV_MAX_M ? m - i0 : VL_CUDA_GEMV_MAX_M;
            vl_cuda_launch_gemv(yb + i0 * w->rows, xb + i0 * w->cols, rows, w, bb, &c->gemv,
                                c->stream);
        }
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
