/* vlbench_linear.c: GEMV (m = 1, the decode step) and GEMM (prefill) through the op table's
 * linear, for bf16, NF4 and int8 (Q8ROW) weights, beside cuBLAS bf16 on the same shape.
 *
 * Per shape N x K: a random bf16 weight W[N, K] and input x[m_max, K]; the anchor
 * (cublasGemmEx, bf16) is timed once per m; then for each weight format the weight is made
 * (bf16: W itself; NF4/int8: gpu->quantize of W) and gpu->linear is timed. The anchor always
 * multiplies the unquantized W: it answers "how does this format's kernel compare with what
 * the bf16 model would cost".
 * Rates: GEMV is memory-bound: GB/s = (weight bytes as stored + x + y) / time. GEMM: TFLOP/s =
 * 2 m N K / time.
 * Reference: VLB_REF_ROWS rows of y from the CPU backend (fp32) on the same x rows and the
 * weight values the kernel should see (W, or vl_weight_rows_f32 of the quantized weight), so
 * the error column measures the kernel, not the quantization.
 * Leaves out: biases (a separate pass in the CUDA backend) and fused gate/up (37888 x 3584).
 */
#include "bench/vlbench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const vlb_shape default_shapes[] = {
    {"q/o", 3584, 3584, 0},      {"k/v", 512, 3584, 0},    {"qkv fused", 4608, 3584, 0},
    {"gate/up", 18944, 3584, 0}, {"down", 3584, 18944, 0}, {"lm_head", 152064, 3584, 1},
};
static const int64_t default_m[] = {2048, 5456};

#define W_HALF 0.05f /* |w| of the random weights: the 7B model's weights are ~0.02 rms */

typedef struct {
    void *y;
    const void *x;
    int64_t m;
    const vl_weight *w;
} linear_job;

static void linear_op(vl_backend *gpu, void *ctx) {
    const linear_job *j = ctx;
    gpu->linear(gpu, j->y, j->x, j->m, j->w, NULL);
}

static void anchor_op(vl_backend *gpu, void *ctx) {
    const linear_job *j = ctx;
    vlb_cuda_cublas_linear(gpu, j->y, j->x, j->m, j->w->data, j->w->rows, j->w->cols);
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "vlbench: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* The reference rows of one m: x rows (host fp32) and y rows computed on the CPU. */
typedef struct {
    int nr;
    int64_t rows[VLB_REF_ROWS];
    float *x;   /* [nr, K] */
    float *ref; /* [nr, N] with the bf16 weight */
} ref_rows;

/* Rows `rows` of the device matrix a[., cols] (bf16) as host fp32 [nr, cols]. */
static void rows_to_host(vl_backend *gpu, float *dst, const void *a, int64_t cols,
                         const int64_t *rows, int nr) {
    for (int i = 0; i < nr; i++)
        gpu->to_f32(gpu, dst + i * cols, (const uint16_t *)a + rows[i] * cols, cols);
}

/* max |y - ref| over the reference rows, and that over max |ref|. */
static void compare_rows(vl_backend *gpu, const void *y, const ref_rows *rr, const float *ref,
                         int64_t n, double *max_abs, double *max_rel) {
    float *got = xmalloc((size_t)(rr->nr * n) * sizeof(float));
    rows_to_host(gpu, got, y, n, rr->rows, rr->nr);
    double err = 0, big = 0;
    vlb_compare(got, ref, rr->nr * n, &err, &big);
    *max_abs = err;
    *max_rel = big > 0 ? err / big : NAN;
    free(got);
}

/* Host copies of a quantized weight's buffers, and its values as fp32 [N, K]. */
static float *quantized_values(vl_backend *gpu, const vl_weight *wq, const vl_quant_sizes *sz) {
    uint8_t *h = xmalloc(sz->data + sz->absmax + sz->absmax_code + sz->absmax_map);
    vl_weight hw = *wq;
    size_t off = 0;
    gpu->download(gpu, h, wq->data, sz->data);
    hw.data = h;
    off += sz->data;
    if (sz->absmax) {
        gpu->download(gpu, h + off, wq->absmax, sz->absmax);
        hw.absmax = (const float *)(h + off);
        off += sz->absmax;
    }
    if (sz->absmax_code) {
        gpu->download(gpu, h + off, wq->absmax_code, sz->absmax_code);
        hw.absmax_code = h + off;
        off += sz->absmax_code;
    }
    if (sz->absmax_map) {
        gpu->download(gpu, h + off, wq->absmax_map, sz->absmax_map);
        hw.absmax_map = (const float *)(h + off);
    }
    float *values = xmalloc((size_t)(wq->rows * wq->cols) * sizeof(float));
    vl_weight_rows_f32(&hw, 0, wq->rows, values);
    free(h);
    return values;
}

static void fill_dims(vlb_row *r, const vlb_shape *sh, int64_t m) {
    snprintf(r->name, sizeof r->name, "%s", sh->name);
    snprintf(r->shape, sizeof r->shape, "m=%lld N=%lld K=%lld", (long long)m, (long long)sh->n,
             (long long)sh->k);
    snprintf(r->dims_json, sizeof r->dims_json, "\"m\": %lld, \"n\": %lld, \"k\": %lld",
             (long long)m, (long long)sh->n, (long long)sh->k);
}

static const char *quant_label(int q, int double_quant) {
    return q == VLB_QUANT_BF16   ? "bf16"
           : q == VLB_QUANT_INT8 ? "int8"
           : double_quant        ? "nf4-dq"
                                 : "nf4";
}

/* Every (format, m) row of one shape reports the same status (out of memory, ...). */
static void report_all(vlb_run *run, const char *bench, const vlb_shape *sh, const int64_t *ms,
                       int n_m, const char *status) {
    const vlb_options *o = run->opt;
    for (int q = VLB_QUANT_BF16; q <= VLB_QUANT_INT8; q <<= 1) {
        if (!(o->quant_mask & q) || (q != VLB_QUANT_BF16 && sh->bf16_only)) continue;
        for (int mi = 0; mi < n_m; mi++) {
            vlb_row r;
            vlb_row_init(&r, bench, quant_label(q, o->double_quant));
            fill_dims(&r, sh, ms[mi]);
            snprintf(r.status, sizeof r.status, "%s", status);
            vlb_report_row(run, &r);
        }
    }
}

static void bench_shape(vlb_run *run, const char *bench, const vlb_shape *sh, uint64_t key,
                        const int64_t *ms, int n_m) {
    vl_backend *gpu = run->gpu;
    const vlb_options *o = run->opt;
    const int64_t N = sh->n, K = sh->k;
    int64_t m_max = 0;
    for (int mi = 0; mi < n_m; mi++) m_max = ms[mi] > m_max ? ms[mi] : m_max;

    vlb_bufs bufs = {.gpu = gpu};
    void *W = vlb_alloc(&bufs, (size_t)(N * K) * 2);
    void *x = vlb_alloc(&bufs, (size_t)(m_max * K) * 2);
    void *y = vlb_alloc(&bufs, (size_t)(m_max * N) * 2);
    if (!W || !x || !y) {
        vlb_free_all(&bufs);
        report_all(run, bench, sh, ms, n_m, "n/a: out of device memory");
        return;
    }
    vlb_fill_random(gpu, W, N * K, key, 0.0f, W_HALF);
    vlb_fill_random(gpu, x, m_max * K, key + (uint64_t)(N * K), 0.0f, 1.0f);
    const vl_weight wbf = {.data = W, .dtype = VL_DTYPE_BF16, .rows = N, .cols = K};

    /* the bf16 reference: x rows of every m and y rows through the CPU backend */
    ref_rows rr[VLB_MAX_LIST];
    uint16_t *w_host = NULL;
    if (o->ref) {
        w_host = xmalloc((size_t)(N * K) * 2);
        gpu->download(gpu, w_host, W, (size_t)(N * K) * 2);
        const vl_weight w_cpu = {.data = w_host, .dtype = VL_DTYPE_BF16, .rows = N, .cols = K};
        for (int mi = 0; mi < n_m; mi++) {
            rr[mi].nr = vlb_ref_rows(ms[mi], rr[mi].rows);
            rr[mi].x = xmalloc((size_t)(rr[mi].nr * K) * sizeof(float));
            rr[mi].ref = xmalloc((size_t)(rr[mi].nr * N) * sizeof(float));
            rows_to_host(gpu, rr[mi].x, x, K, rr[mi].rows, rr[mi].nr);
            run->cpu->linear(run->cpu, rr[mi].ref, rr[mi].x, rr[mi].nr, &w_cpu, NULL);
        }
        free(w_host);
    }

    /* the anchor, once per m */
    double anchor_ms[VLB_MAX_LIST], anchor_err[VLB_MAX_LIST], unused;
    for (int mi = 0; mi < n_m; mi++) {
        linear_job j = {y, x, ms[mi], &wbf};
        anchor_ms[mi] =
            vlb_cuda_time_ms(gpu, anchor_op, &j, o->warmup, o->iters, o->flush_l2, NULL);
        anchor_err[mi] = NAN;
        if (o->ref) compare_rows(gpu, y, &rr[mi], rr[mi].ref, N, &anchor_err[mi], &unused);
    }

    for (int q = VLB_QUANT_BF16; q <= VLB_QUANT_INT8; q <<= 1) {
        if (!(o->quant_mask & q) || (q != VLB_QUANT_BF16 && sh->bf16_only)) continue;
        const char *label = quant_label(q, o->double_quant);
        const char *status = "";
        vl_weight w = wbf;
        vl_quant_sizes sz = {0};
        vlb_bufs qbufs = {.gpu = gpu};
        float *w_values = NULL; /* fp32 [N, K] the quantized kernel should see */
        if (q != VLB_QUANT_BF16) {
            const vl_dtype fmt = q == VLB_QUANT_NF4 ? VL_DTYPE_NF4 : VL_DTYPE_Q8ROW;
            const int dq = q == VLB_QUANT_NF4 && o->double_quant;
            vl_quant_sizes_of(fmt, dq, N, K, &sz);
            w = (vl_weight){.dtype = fmt, .rows = N, .cols = K};
            if (!gpu->quantize) {
                status = "n/a: the backend has no quantize";
            } else {
                w.data = vlb_alloc(&qbufs, sz.data);
                w.absmax = sz.absmax ? vlb_alloc(&qbufs, sz.absmax) : NULL;
                w.absmax_code = sz.absmax_code ? vlb_alloc(&qbufs, sz.absmax_code) : NULL;
                w.absmax_map = sz.absmax_map ? vlb_alloc(&qbufs, sz.absmax_map) : NULL;
                if (!w.data || (sz.absmax && !w.absmax) || (sz.absmax_code && !w.absmax_code) ||
                    (sz.absmax_map && !w.absmax_map)) {
                    status = "n/a: out of device memory";
                } else {
                    gpu->quantize(gpu, &w, W, dq);
                    gpu->sync(gpu);
                    if (o->ref) w_values = quantized_values(gpu, &w, &sz);
                }
            }
        }
        const double w_bytes = q == VLB_QUANT_BF16 ? (double)(N * K) * 2 : (double)sz.total;
        for (int mi = 0; mi < n_m; mi++) {
            const int64_t m = ms[mi];
            vlb_row r;
            vlb_row_init(&r, bench, label);
            fill_dims(&r, sh, m);
            snprintf(r.status, sizeof r.status, "%s", status);
            r.flops = 2.0 * (double)m * (double)N * (double)K;
            r.bytes = w_bytes + 2.0 * (double)m * (double)(N + K);
            r.memory_bound = vlb_memory_bound(run, r.flops, r.bytes);
            r.anchor = "cuBLAS bf16";
            r.anchor_ms = anchor_ms[mi];
            r.anchor_max_abs_err = q == VLB_QUANT_BF16 ? anchor_err[mi] : NAN;
            if (!status[0]) {
                linear_job j = {y, x, m, &w};
                r.ms = vlb_cuda_time_ms(gpu, linear_op, &j, o->warmup, o->iters, o->flush_l2,
                                        &r.min_ms);
                if (o->ref && q == VLB_QUANT_BF16) {
                    compare_rows(gpu, y, &rr[mi], rr[mi].ref, N, &r.max_abs_err, &r.max_rel_err);
                } else if (o->ref) {
                    const vl_weight w_cpu = {
                        .data = w_values, .dtype = VL_DTYPE_F32, .rows = N, .cols = K};
                    float *ref = xmalloc((size_t)(rr[mi].nr * N) * sizeof(float));
                    run->cpu->linear(run->cpu, ref, rr[mi].x, rr[mi].nr, &w_cpu, NULL);
                    compare_rows(gpu, y, &rr[mi], ref, N, &r.max_abs_err, &r.max_rel_err);
                    free(ref);
                }
            }
            vlb_report_row(run, &r);
        }
        free(w_values);
        vlb_free_all(&qbufs);
    }

    if (o->ref)
        for (int mi = 0; mi < n_m; mi++) {
            free(rr[mi].x);
            free(rr[mi].ref);
        }
    vlb_free_all(&bufs);
}

void vlb_bench_linear(vlb_run *run, int gemm) {
    const vlb_options *o = run->opt;
    const vlb_shape *shapes = o->n_shapes ? o->shapes : default_shapes;
    const int n_shapes =
        o->n_shapes ? o->n_shapes : (int)(sizeof default_shapes / sizeof *default_shapes);
    static const int64_t one = 1;
    const int64_t *ms = gemm ? (o->n_m ? o->m : default_m) : &one;
    const int n_m = gemm ? (o->n_m ? o->n_m : (int)(sizeof default_m / sizeof *default_m)) : 1;
    for (int s = 0; s < n_shapes; s++)
        bench_shape(run, gemm ? "gemm" : "gemv", &shapes[s], 0x1000u * (uint64_t)(s + 1), ms, n_m);
}
