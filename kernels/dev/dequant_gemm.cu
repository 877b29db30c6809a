/* kernels/dev/dequant_gemm.cu: the lab of the dequant GEMM (kernels/dequant_gemm.cu) and of the
 * load-time quantizer (kernels/quant_gpu.cu): where the slice size should sit.
 *
 * For each 7B shape (N x K: 18944 x 3584 gate/up, 3584 x 18944 down, 3584 x 3584 q/o) and m:
 *   anchor   cublasGemmEx bf16 on the unquantized W (what the bf16 model pays)
 *   default  vl_cuda_dequant_gemm_run with the backend's plan (2 x 32 MiB buffers)
 *   rows=R   the same with at most R rows per slice (buffers sized for the largest R)
 * in ms and as a fraction of the anchor (goal: >= 0.90 at m >= 2048); then the dequantization
 * alone (GB/s of codes read + bf16 written) and the quantizer (GB/s of bf16 read) per format.
 * Times: CUDA events around REPS launches after WARMUP, L2 flushed (a 256 MiB memset) before
 * each timed batch. Correctness is tests/test_quant_gpu.c's job, not this file's.
 * Build (from the repository root, after building build-dir):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -I. kernels/dev/dequant_gemm.cu \
 *        -Lbuild-dir -lvl_kernels -lcublasLt -lcublas -o /tmp/dqgemm_lab && /tmp/dqgemm_lab
 */
#include "kernels/cuda_ops.h"

#include <stdlib.h>

#define WARMUP 3
#define REPS   20

static vl_backend *gpu;
static void *flush_buf;
static const size_t flush_bytes = (size_t)256 << 20;

static void *dalloc(size_t bytes) {
    void *p = gpu->mem_alloc(gpu, bytes);
    if (!p) {
        fprintf(stderr, "out of device memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

typedef void (*op_fn)(void *ctx);

/* Mean ms of one op over REPS launches. */
static double time_ms(op_fn op, void *ctx) {
    cudaStream_t s = vl_cuda_ctx_of(gpu)->stream;
    for (int i = 0; i < WARMUP; i++) op(ctx);
    VL_CUDA_CHECK(cudaMemsetAsync(flush_buf, 0, flush_bytes, s));
    cudaEvent_t t0, t1;
    VL_CUDA_CHECK(cudaEventCreate(&t0));
    VL_CUDA_CHECK(cudaEventCreate(&t1));
    VL_CUDA_CHECK(cudaEventRecord(t0, s));
    for (int i = 0; i < REPS; i++) op(ctx);
    VL_CUDA_CHECK(cudaEventRecord(t1, s));
    VL_CUDA_CHECK(cudaEventSynchronize(t1));
    float ms = 0;
    VL_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
    VL_CUDA_CHECK(cudaEventDestroy(t0));
    VL_CUDA_CHECK(cudaEventDestroy(t1));
    return ms / REPS;
}

typedef struct {
    vl_bf16 *y;
    const vl_bf16 *x;
    int64_t m;
    const vl_bf16 *w_bf16;
    vl_weight *wq;
    vl_cuda_dqgemm_res res;
} gemm_job;

static void anchor_op(void *p) {
    gemm_job *j = (gemm_job *)p;
    vl_cuda_ctx *c = vl_cuda_ctx_of(gpu);
    vl_cuda_launch_linear(c->cublas, c->stream, j->y, j->x, j->m, j->w_bf16, j->wq->rows,
                          j->wq->cols, NULL);
}

static void default_op(void *p) {
    gemm_job *j = (gemm_job *)p;
    vl_cuda_launch_dequant_gemm(gpu, j->y, j->x, j->m, j->wq, NULL);
}

static void forced_op(void *p) {
    gemm_job *j = (gemm_job *)p;
    vl_cuda_dequant_gemm_run(&j->res, j->y, j->x, j->m, j->wq, NULL);
}

static void dequant_op(void *p) {
    gemm_job *j = (gemm_job *)p;
    vl_cuda_launch_dequantize_rows((vl_bf16 *)j->y, j->wq, 0, j->wq->rows,
                                   vl_cuda_ctx_of(gpu)->stream);
}

typedef struct {
    vl_weight *wq;
    const void *src;
    int dq;
} quant_job;

static void quant_op(void *p) {
    quant_job *j = (quant_job *)p;
    vl_cuda_quantize(gpu, j->wq, j->src, j->dq);
}

/* A quantized weight with device buffers. */
static vl_weight make_weight(vl_dtype fmt, int dq, int64_t n, int64_t k, const void *w_bf16) {
    vl_quant_sizes sz;
    vl_quant_sizes_of(fmt, dq, n, k, &sz);
    vl_weight w = {};
    w.dtype = fmt;
    w.rows = n;
    w.cols = k;
    w.data = dalloc(sz.data);
    w.absmax = (const float *)dalloc(sz.absmax);
    if (sz.absmax_code) w.absmax_code = (const uint8_t *)dalloc(sz.absmax_code);
    if (sz.absmax_map) w.absmax_map = (const float *)dalloc(sz.absmax_map);
    vl_cuda_quantize(gpu, &w, w_bf16, dq);
    return w;
}

int main(void) {
    char why[256];
    gpu = vl_backend_cuda(why, sizeof why);
    if (!gpu) {
        fprintf(stderr, "%s\n", why);
        return 77;
    }
    vl_cuda_ctx *c = vl_cuda_ctx_of(gpu);
    printf("%s\n", gpu->device_name);
    flush_buf = dalloc(flush_bytes);
    static const int64_t shapes[][2] = {{18944, 3584}, {3584, 18944}, {3584, 3584}};
    static const int64_t ms[] = {512, 2048, 4096};
    static const int64_t forced_rows[] = {256, 512, 768, 1024, 1536, 1792, 2048, 3584, 4736};
    const int n_forced = (int)(sizeof forced_rows / sizeof forced_rows[0]);
    /* lab buffers: the largest forced slice of the largest K */
    const size_t lab_bytes = (size_t)4736 * 18944 * 2;
    vl_cuda_dqgemm_res lab = {};
    lab.lt = c->dq_lt;
    lab.stream = c->stream;
    lab.side_stream = c->dq_stream;
    lab.start = c->dq_start;
    for (int j = 0; j < 2; j++) {
        lab.ready[j] = c->dq_ready[j];
        lab.consumed[j] = c->dq_consumed[j];
        lab.slice[j] = (vl_bf16 *)dalloc(lab_bytes);
    }
    lab.slice_bytes = lab_bytes;
    lab.lt_ws = c->cublas_ws;
    lab.lt_ws_bytes = c->cublas_ws_bytes;

    for (int s = 0; s < 3; s++) {
        const int64_t n = shapes[s][0], k = shapes[s][1], m_max = 4096;
        vl_bf16 *w = (vl_bf16 *)dalloc((size_t)(n * k) * 2);
        vl_bf16 *x = (vl_bf16 *)dalloc((size_t)(m_max * k) * 2);
        vl_bf16 *y = (vl_bf16 *)dalloc((size_t)(m_max * (n > k ? n : k)) * 2);
        gpu->fill_random_bf16(gpu, w, n * k, 1, 0.0f, 0.05f);
        gpu->fill_random_bf16(gpu, x, m_max * k, 2, 0.0f, 1.0f);
        for (int f = 0; f < 3; f++) {
            const vl_dtype fmt = f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4;
            const int dq = f == 1;
            const char *name = f == 2 ? "Q8ROW" : dq ? "NF4+DQ" : "NF4";
            vl_weight wq = make_weight(fmt, dq, n, k, w);
            gemm_job job = {y, x, 0, w, &wq, lab};
            quant_job qj = {&wq, w, dq};
            const double q_ms = time_ms(quant_op, &qj);
            const double d_ms = time_ms(dequant_op, &job);
            vl_quant_sizes sz;
            vl_quant_sizes_of(fmt, dq, n, k, &sz);
            printf("\n%s W[%lld, %lld]: quantize %.3f ms (%.0f GB/s of bf16 in), dequantize %.3f "
                   "ms (%.0f GB/s)\n",
                   name, (long long)n, (long long)k, q_ms, n * k * 2 / q_ms / 1e6, d_ms,
                   (double)(sz.total + (size_t)(n * k) * 2) / d_ms / 1e6);
            for (int mi = 0; mi < 3; mi++) {
                job.m = ms[mi];
                const double a_ms = time_ms(anchor_op, &job);
                const double def_ms = time_ms(default_op, &job);
                printf("  m=%-5lld anchor %.3f ms (%.0f TFLOP/s)  default %.3f ms (%.2fx)",
                       (long long)job.m, a_ms, 2.0 * job.m * n * k / a_ms / 1e9, def_ms,
                       a_ms / def_ms);
                for (int r = 0; r < n_forced; r++) {
                    if (forced_rows[r] > n) continue;
                    job.res.max_slice_rows = forced_rows[r];
                    const double f_ms = time_ms(forced_op, &job);
                    printf("  rows=%lld %.2fx", (long long)forced_rows[r], a_ms / f_ms);
                }
                printf("\n");
            }
            gpu->mem_free(gpu, (void *)wq.data);
            gpu->mem_free(gpu, (void *)wq.absmax);
            if (wq.absmax_code) gpu->mem_free(gpu, (void *)wq.absmax_code);
            if (wq.absmax_map) gpu->mem_free(gpu, (void *)wq.absmax_map);
        }
        gpu->mem_free(gpu, y);
        gpu->mem_free(gpu, x);
        gpu->mem_free(gpu, w);
    }
    return 0;
}
