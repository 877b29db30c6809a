/* cuda_lt_gemm.cu: one bf16 GEMM through cuBLASLt, with an optional bias added by the BIAS
 * epilogue, and the cache of the algorithms cuBLASLt chose. The biased linear (cuda_linear.cu)
 * and each slice of the dequant GEMM (cuda_dequant_gemm.cu) run here.
 *
 * D[n, m] (column-major, leading dimension ld_d) = A^T . B with A = W seen as a K x n
 * column-major matrix (ld K) and B = x as K x m (ld K): row-major y[m, ld_d] = x[m, K] . W^T.
 * Compute type fp32, output bf16, one rounding: the bias joins the fp32 accumulator before the
 * conversion, and the algorithm search is restricted to split-K reductions in the compute type
 * (never through bf16). The alignment preferences tell cuBLASLt what the base pointers allow; they
 * cover neither leading dimensions nor the bias, which is why callers send only 16-byte-clean
 * problems when there is a bias (cuda_linear.cu's comment has the measurements).
 * Host-side cache: the heuristic runs once per (handle, m, n, K, ld_d, alignments); the backend is
 * single-threaded. Leaves out: other epilogues, other data types. */
#include "kernels/cuda_ops.h"

/* A model's shapes: a dozen biased linears, two slices per dequant GEMM and m. */
#define LT_CACHE_SIZE 64

/* Largest power of two <= 256 dividing the address: the alignment cuBLASLt may assume. */
static uint32_t lt_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p & (a - 1))) a >>= 1;
    return a;
}

typedef struct {
    cublasLtHandle_t lt;
    int64_t m, n, k, ld_d;
    uint32_t align_a, align_b, align_d, align_bias; /* align_bias 0: no bias */
    int found;
    cublasLtMatmulAlgo_t algo;
} lt_choice;

static lt_choice lt_cache[LT_CACHE_SIZE];
static int lt_cache_used, lt_cache_next;

static lt_choice *lt_cache_find(const lt_choice *key) {
    for (int i = 0; i < lt_cache_used; i++) {
        lt_choice *e = &lt_cache[i];
        if (e->lt == key->lt && e->m == key->m && e->n == key->n && e->k == key->k &&
            e->ld_d == key->ld_d && e->align_a == key->align_a && e->align_b == key->align_b &&
            e->align_d == key->align_d && e->align_bias == key->align_bias)
            return e;
    }
    return NULL;
}

static void lt_set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                        const void *value, size_t bytes) {
    VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, value, bytes));
}

/* The cached choice for `key`, asking cuBLASLt the first time. */
static const lt_choice *lt_choose(lt_choice *key, cublasLtMatmulDesc_t op,
                                  cublasLtMatrixLayout_t a_desc, cublasLtMatrixLayout_t b_desc,
                                  cublasLtMatrixLayout_t d_desc, size_t ws_bytes) {
    lt_choice *choice = lt_cache_find(key);
    if (choice) return choice;
    cublasLtMatmulPreference_t pref;
    VL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t max_ws = ws_bytes;
    const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE; /* fp32 partials */
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws);
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions, sizeof reductions);
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->align_a, 4);
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->align_b, 4);
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->align_d, 4);
    lt_set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->align_d, 4);
    cublasLtMatmulHeuristicResult_t heur = {};
    int found = 0;
    VL_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(key->lt, op, a_desc, b_desc, d_desc, d_desc,
                                                   pref, 1, &heur, &found));
    VL_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    key->found = found > 0;
    key->algo = heur.algo;
    choice = &lt_cache[lt_cache_next];
    *choice = *key;
    lt_cache_next = (lt_cache_next + 1) % LT_CACHE_SIZE;
    if (lt_cache_used < LT_CACHE_SIZE) lt_cache_used++;
    return choice;
}

int vl_cuda_lt_gemm_bf16(cublasLtHandle_t lt, void *ws, size_t ws_bytes, cudaStream_t stream,
                         vl_bf16 *d, int64_t ld_d, const vl_bf16 *a, int64_t n, const vl_bf16 *x,
                         int64_t m, int64_t k, const vl_bf16 *bias) {
    if (m <= 0 || n <= 0) return 1;
    if (!lt) return 0;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a_desc, b_desc, d_desc;
    VL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
    VL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans));
    VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans,
                                                   sizeof no_trans));
    if (bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = CUDA_R_16BF;
        VL_CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                       sizeof bias));
        VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                       &bias_type, sizeof bias_type));
    }
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_desc, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, k));
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_desc, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, k));
    VL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&d_desc, CUDA_R_16BF, (uint64_t)n, (uint64_t)m, ld_d));

    lt_choice key = {};
    key.lt = lt, key.m = m, key.n = n, key.k = k, key.ld_d = ld_d;
    key.align_a = lt_alignment(a), key.align_b = lt_alignment(x), key.align_d = lt_alignment(d);
    key.align_bias = bias ? lt_alignment(bias) : 0;
    const lt_choice *choice = lt_choose(&key, op, a_desc, b_desc, d_desc, ws_bytes);
    if (choice->found) {
        const float alpha = 1.0f, beta = 0.0f;
        VL_CUBLAS_CHECK(cublasLtMatmul(lt, op, &alpha, a, a_desc, x, b_desc, &beta, d, d_desc, d,
                                       d_desc, &choice->algo, ws, ws_bytes, stream));
    }
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d_desc));
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(b_desc));
    VL_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(a_desc));
    VL_CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
    return choice->found;
}
