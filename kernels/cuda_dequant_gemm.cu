/* cuda_dequant_gemm.cu: y = x . W^T + b for a quantized W (NF4, Q8ROW) and many rows of x
 * (prefill): dequantize W a slice of output rows at a time into a bf16 buffer, multiply each slice
 * with cuBLASLt, two buffers in flight.
 *
 * Pipeline: slice i is dequantized on a second stream (high priority) into buffer i % 2 while
 * the GEMM of slice i - 1 runs on the backend's stream; events order the two:
 *     side:  wait(start) D0 rec(ready0) D1 rec(ready1) wait(used0) D2 rec(ready0) ...
 *     main:  rec(start) wait(ready0) G0 rec(used0) wait(ready1) G1 rec(used1) ...
 * The dequantization is memory bound (0.5 or 1 B/weight in, 2 B out) and short; the GEMM at
 * m >= 2048 is compute bound, and a cuBLAS Hopper GEMM holds the whole register file of an SM,
 * so the next slice's dequantization runs in the SMs the GEMM leaves idle (its last wave); the
 * high stream priority lets it take them first. Nothing waits on the host: no synchronization.
 * Slice sizes: for m >= BIG_M the largest slices that fit a buffer, at least MIN_SLICES of
 * them when each keeps MIN_SPLIT_ROWS rows (the first dequantization is the only one not
 * hidden), balanced and rounded to 128 rows (whole GEMM tiles); for smaller m, slices of at most
 * L2_SLICE_BYTES so that the slice the GEMM reads is still in L2 when it reads it (then the GEMM is
 * bound by memory, not math). Numerics: each output is bf16(fp32 dot + bias), one rounding: the
 * bias is added by the cuBLASLt BIAS epilogue in fp32 (a bias preloaded into y with beta = 1 was
 * seen to round twice on H100), and split-K reductions that would go through bf16 (INPLACE,
 * OUTPUT_TYPE) are excluded. The weights the GEMM sees are exactly vl_weight_rows_f32's. cuBLASLt's
 * choice of algorithm is cached per slice shape and alignment. Slices are a multiple of 8 rows, so
 * that with N % 8 == 0 every slice's y and bias stay 16-byte aligned.
 * A biased GEMM goes through cuBLASLt only when it is 16-byte clean (K, N multiples of 8; x, y,
 * bias 16-byte aligned): at K = 130, N = 77 on H100 / CUDA 13 the bias epilogue rounded twice
 * (69% of outputs exact; see cuda_linear.cu). Other biased shapes (Qwen2.5-VL's vision MLP, 3420
 * wide) dequantize W's slices into the first buffer, one after the other on the main stream, and
 * multiply each with cuBLAS into fp32 in the second, then add the bias and round once
 * (cuda_gemm_bias_fp32.cu): exact, not pipelined. With dq_wgmma = 1 on an sm_90 device, the calls
 * the Hopper kernel takes (cuda_dequant_gemm_wgmma.cu: W converted inside the GEMM) run there
 * instead; off by default: on an H100 it ran at 0.77-1.05 of this path's rate, slower on most
 * shapes (S28).
 * Leaves out: small m (the GEMV path of cuda_linear.cu).
 */
#include "kernels/cuda_ops.h"

#include <limits.h>

#define BIG_M          512  /* m from which the GEMM is compute bound */
#define MIN_SLICES     2    /* at m >= BIG_M: hide half of the dequantization */
#define MIN_SPLIT_ROWS 1024 /* ...but no slice thinner than this: too few GEMM tiles at m=2048 */
#define L2_SLICE_BYTES ((size_t)12 << 20) /* two of these stay in H100's 50 MB L2 */
#define SLICE_ROUND    128                /* rows: a multiple of the GEMM's tile */

/* Rows per slice (see the file comment); forced > 0 overrides (tests, benchmarks). 0 when
 * one row does not fit a buffer. */
static int64_t slice_rows_of(int64_t n_rows, int64_t k, int64_t m, size_t buf_bytes, int64_t forced,
                             int overlap) {
    const int64_t fit = (int64_t)(buf_bytes / ((size_t)k * sizeof(vl_bf16)));
    if (forced > 0 || fit == 0) return min(forced > 0 ? forced : fit, fit);
    int64_t cap = fit;
    if (m < BIG_M) cap = max((int64_t)1, min(cap, (int64_t)(L2_SLICE_BYTES / ((size_t)k * 2))));
    int64_t n_slices = (n_rows + cap - 1) / cap;
    if (overlap && m >= BIG_M && n_rows >= MIN_SLICES * MIN_SPLIT_ROWS)
        n_slices = max(n_slices, (int64_t)MIN_SLICES);
    int64_t rows = (n_rows + n_slices - 1) / n_slices;
    const int64_t rounded = (rows + SLICE_ROUND - 1) / SLICE_ROUND * SLICE_ROUND;
    if (rounded <= cap) return rounded;
    const int64_t rounded8 = (rows + 7) / 8 * 8;
    return rounded8 <= cap ? rounded8 : cap;
}

/* One slice: D[ns, m] = A[ns, K] . x[m, K]^T (+ bias) in cuBLASLt's column-major terms:
 * A = the slice buffer seen as K x ns (ld K) transposed, B = x as K x m (ld K), D = y + n0 as
 * ns x m with ld = N (the full output row). */
static void gemm_slice(const vl_cuda_dqgemm_res *r, vl_bf16 *d, int64_t ld_d, const vl_bf16 *a,
                       int64_t ns, const vl_bf16 *x, int64_t m, int64_t k, const vl_bf16 *bias) {
    const int found = vl_cuda_lt_gemm_bf16(r->lt, r->lt_ws, r->lt_ws_bytes, r->stream, d, ld_d, a,
                                           ns, x, m, k, bias);
    VL_CUDA_REQUIRE(found, "cuBLASLt has no bf16 GEMM for a slice of %lld rows, K %lld, m %lld%s",
                    (long long)ns, (long long)k, (long long)m, bias ? " with bias" : "");
}

void vl_cuda_dequant_gemm_run(const vl_cuda_dqgemm_res *r, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                              const vl_weight *w, const vl_bf16 *bias) {
    if (m <= 0) return;
    const int64_t n = w->rows, k = w->cols;
    int64_t rows = slice_rows_of(n, k, m, r->slice_bytes, r->max_slice_rows, r->overlap);
    if (rows > 8) rows -= rows % 8; /* slice starts y + n0, bias + n0 keep y's alignment */
    VL_CUDA_REQUIRE(rows >= 1,
                    "dequant GEMM: one row of W[%lld, %lld] (%lld bytes in bf16) does not fit a "
                    "slice buffer of %zu bytes",
                    (long long)n, (long long)k, (long long)(k * 2), r->slice_bytes);
    const int lt_bias_ok = k % 8 == 0 && n % 8 == 0 && rows % 8 == 0 && vl_cuda_aligned16(x) &&
                           vl_cuda_aligned16(y) && vl_cuda_aligned16(bias);
    if (bias && !lt_bias_ok) { /* see the file comment */
        if (r->max_slice_rows <= 0) rows = min(n, (int64_t)(r->slice_bytes / ((size_t)k * 2)));
        for (int64_t n0 = 0; n0 < n; n0 += rows) {
            const int64_t ns = min(rows, n - n0);
            vl_cuda_launch_dequantize_rows(r->slice[0], w, n0, ns, r->stream);
            vl_cuda_launch_gemm_bias_fp32(r->blas, r->stream, (float *)r->slice[1], r->slice_bytes,
                                          0, y + n0, n, x, m, r->slice[0], ns, k, bias + n0);
        }
        return;
    }
    if (!r->overlap) { /* one stream: no contention between a GEMM and the next dequantization */
        for (int64_t n0 = 0, i = 0; n0 < n; n0 += rows, i++) {
            const int64_t ns = min(rows, n - n0);
            vl_cuda_launch_dequantize_rows(r->slice[i & 1], w, n0, ns, r->stream);
            gemm_slice(r, y + n0, n, r->slice[i & 1], ns, x, m, k, bias ? bias + n0 : NULL);
        }
        return;
    }
    VL_CUDA_CHECK(cudaEventRecord(r->start, r->stream));
    VL_CUDA_CHECK(cudaStreamWaitEvent(r->side_stream, r->start, 0));
    int64_t i = 0;
    for (int64_t n0 = 0; n0 < n; n0 += rows, i++) {
        const int64_t ns = min(rows, n - n0);
        const int buf = (int)(i & 1);
        if (i >= 2) VL_CUDA_CHECK(cudaStreamWaitEvent(r->side_stream, r->consumed[buf], 0));
        vl_cuda_launch_dequantize_rows(r->slice[buf], w, n0, ns, r->side_stream);
        VL_CUDA_CHECK(cudaEventRecord(r->ready[buf], r->side_stream));
        VL_CUDA_CHECK(cudaStreamWaitEvent(r->stream, r->ready[buf], 0));
        gemm_slice(r, y + n0, n, r->slice[buf], ns, x, m, k, bias ? bias + n0 : NULL);
        VL_CUDA_CHECK(cudaEventRecord(r->consumed[buf], r->stream));
    }
    /* Every side-stream dequantization is waited for by a GEMM on the main stream, so the
     * main stream is past all of this call's work once its last GEMM is. */
}

/* The resources of the backend's context. */
static vl_cuda_dqgemm_res res_of(vl_backend *b, int64_t max_slice_rows) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    vl_cuda_dqgemm_res r;
    r.lt = c->dq_lt;
    r.blas = c->cublas;
    r.stream = c->stream;
    r.side_stream = c->dq_stream;
    r.start = c->dq_start;
    for (int j = 0; j < 2; j++) {
        r.ready[j] = c->dq_ready[j];
        r.consumed[j] = c->dq_consumed[j];
        r.slice[j] = c->dq_slice[j];
    }
    r.slice_bytes = c->dq_slice_bytes;
    r.lt_ws = c->cublas_ws; /* the legacy handle's workspace: same stream, so never concurrent */
    r.lt_ws_bytes = c->cublas_ws_bytes;
    r.max_slice_rows = max_slice_rows > 0 ? max_slice_rows : c->cfg.dq_slice_rows;
    r.overlap = c->cfg.dq_overlap;
    return r;
}

static void check_args(const vl_weight *w, int64_t m) {
    VL_CUDA_REQUIRE(w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW,
                    "dequant GEMM with a %s weight; expected NF4 or Q8ROW",
                    vl_dtype_name(w->dtype));
    VL_CUDA_REQUIRE(m >= 0 && m <= INT_MAX && w->rows > 0 && w->cols > 0 && w->rows <= INT_MAX &&
                        w->cols <= INT_MAX && w->data && w->absmax,
                    "dequant GEMM m=%lld W[%lld, %lld]", (long long)m, (long long)w->rows,
                    (long long)w->cols);
}

void vl_cuda_launch_dequant_gemm(vl_backend *b, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                                 const vl_weight *w, const vl_bf16 *bias) {
    check_args(w, m);
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    if (vl_dqg_wgmma(c, c->cfg.dq_wgmma, y, x, m, w, bias, c->stream)) return;
    const vl_cuda_dqgemm_res r = res_of(b, 0);
    vl_cuda_dequant_gemm_run(&r, y, x, m, w, bias);
}

extern "C" int vl_cuda_dequant_gemm_sliced(vl_backend *b, void *y, const void *x, int64_t m,
                                           const vl_weight *w, const vl_vec *bias,
                                           int64_t max_slice_rows, int overlap, int wgmma) {
    check_args(w, m);
    const int has_bias = bias && bias->data;
    VL_CUDA_REQUIRE(!has_bias || (bias->n == w->rows && bias->dtype == VL_DTYPE_BF16),
                    "dequant GEMM bias of %lld %s for W[%lld, %lld]; expected %lld BF16",
                    (long long)bias->n, vl_dtype_name(bias->dtype), (long long)w->rows,
                    (long long)w->cols, (long long)w->rows);
    const vl_bf16 *bias_data = has_bias ? (const vl_bf16 *)bias->data : NULL;
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    if (vl_dqg_wgmma(c, wgmma < 0 ? c->cfg.dq_wgmma : wgmma, (vl_bf16 *)y, (const vl_bf16 *)x, m, w,
                     bias_data, c->stream))
        return 1;
    vl_cuda_dqgemm_res r = res_of(b, max_slice_rows);
    if (overlap >= 0) r.overlap = overlap;
    vl_cuda_dequant_gemm_run(&r, (vl_bf16 *)y, (const vl_bf16 *)x, m, w, bias_data);
    return 0;
}
