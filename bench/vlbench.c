/* vlbench.c: vlbench's entry point: the device's ceilings (copy bandwidth, bf16 GEMM peak)
 * measured at start, then the benchmarks the command line asked for.
 *
 *   vlbench [attention|gemv|gemm|all] [options]      (see vlbench_options.c or bench/README.md)
 *
 * No usable device ends in "vlbench: no CUDA device found" and exit 1. Tables go to stdout,
 * progress to stderr. Leaves out: the command line (vlbench_options.c), the cases themselves
 * (vlbench_linear.c, vlbench_attention.c), the helpers they share (vlbench_shared.c) and the
 * output format (vlbench_report.c).
 */
#include "bench/vlbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the device's ceilings ------------------------------------------------------------------ */

typedef struct {
    void *dst;
    const void *src;
    size_t bytes;
} copy_job;

static void copy_op(vl_backend *gpu, void *ctx) {
    copy_job *j = ctx;
    gpu->copy(gpu, j->dst, j->src, j->bytes);
}

typedef struct {
    void *y;
    const void *x, *w;
    int64_t m, n, k;
} gemm_job;

static void cublas_op(vl_backend *gpu, void *ctx) {
    gemm_job *j = ctx;
    vlb_cuda_cublas_linear(gpu, j->y, j->x, j->m, j->w, j->n, j->k);
}

/* Copy bandwidth: one cudaMemcpyAsync device to device of 1 GiB (or less when memory is short),
 * counting bytes read and written, like PyTorch's copy_ anchor. */
static void measure_copy(vlb_run *run) {
    vlb_bufs bufs = {.gpu = run->gpu};
    for (size_t bytes = (size_t)1 << 30; bytes >= ((size_t)1 << 24); bytes /= 2) {
        copy_job j = {vlb_alloc(&bufs, bytes), vlb_alloc(&bufs, bytes), bytes};
        if (j.dst && j.src) {
            vlb_fill_random(run->gpu, (void *)j.src, (int64_t)(bytes / 2), 1, 0.0f, 1.0f);
            double ms = vlb_cuda_time_ms(run->gpu, copy_op, &j, 2, 10, 0, NULL);
            run->copy_gbps = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
            vlb_free_all(&bufs);
            return;
        }
        vlb_free_all(&bufs);
    }
    run->copy_gbps = NAN;
}

/* bf16 peak: the best of a few large cuBLAS GEMMs on random data (zeros would run faster than
 * anything the model does). */
static void measure_peak(vlb_run *run) {
    static const int64_t shapes[][3] = {
        {8192, 8192, 8192}, {16384, 8192, 8192}, {8192, 8192, 16384}, {16384, 16384, 8192}};
    run->peak_tflops = NAN;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        vlb_bufs bufs = {.gpu = run->gpu};
        gemm_job j = {vlb_alloc(&bufs, (size_t)(m * n * 2)),
                      vlb_alloc(&bufs, (size_t)(m * k * 2)),
                      vlb_alloc(&bufs, (size_t)(n * k * 2)),
                      m,
                      n,
                      k};
        if (j.y && j.x && j.w) {
            vlb_fill_random(run->gpu, (void *)j.x, m * k, 2, 0.0f, 1.0f);
            vlb_fill_random(run->gpu, (void *)j.w, n * k, 3, 0.0f, 1.0f);
            double ms = vlb_cuda_time_ms(run->gpu, cublas_op, &j, 3, 10, 0, NULL);
            double tflops = 2.0 * (double)m * (double)n * (double)k / (ms * 1e-3) / 1e12;
            if (!(tflops <= run->peak_tflops)) { /* also replaces the initial NaN */
                run->peak_tflops = tflops;
                snprintf(run->peak_shape, sizeof run->peak_shape, "%lldx%lldx%lld", (long long)m,
                         (long long)n, (long long)k);
            }
        }
        vlb_free_all(&bufs);
    }
}

static void empty_op(vl_backend *gpu, void *ctx) {
    (void)ctx;
    vlb_cuda_empty_launch(gpu);
}

/* The launch floor: an empty kernel timed exactly as the cases are (events around each run, the
 * L2 eviction before it when on). Every time in the report includes this much: 3.6 us on an
 * H100 (S23), a third of a decode attention call over 1,364 keys. */
static void measure_floor(vlb_run *run) {
    run->floor_us =
        1e3 * vlb_cuda_time_ms(run->gpu, empty_op, NULL, 3, 50, run->opt->flush_l2, NULL);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    vlb_options opt;
    int rc = vlb_parse_options(argc, argv, &opt);
    if (rc) return rc == 2 ? 0 : 1;

    char why[256] = "";
    vl_backend *gpu = vl_backend_cuda(&opt.cuda, why, sizeof why);
    if (!gpu) {
        /* the backend's text ends in advice for vlrun; keep only its reason */
        char *advice = strstr(why, "; use --backend cpu");
        if (advice) *advice = '\0';
        if (strcmp(why, "no CUDA device found") == 0 || !why[0])
            fprintf(stderr, "vlbench: no CUDA device found\n");
        else if (strncmp(why, "no CUDA device found", 20) == 0)
            fprintf(stderr, "vlbench: %s\n", why);
        else
            fprintf(stderr, "vlbench: no CUDA device found (%s)\n", why);
        return 1;
    }
    FILE *json_file = NULL;
    if (opt.json_out && !(json_file = fopen(opt.json_out, "w"))) {
        fprintf(stderr, "vlbench: error: cannot write --json-out %s: %s\n", opt.json_out,
                strerror(errno));
        return 1;
    }

    vlb_run run = {.gpu = gpu, .cpu = vl_backend_cpu(), .opt = &opt};
    snprintf(run.device, sizeof run.device, "%s", gpu->device_name ? gpu->device_name : "?");
    vlb_cuda_device(gpu, &run.sm_count, &run.cc_major, &run.cc_minor, &run.l2_bytes,
                    &run.device_bytes);
    if (vlb_cuda_init(gpu)) {
        fprintf(stderr, "vlbench: out of device memory for the L2 flush buffer\n");
        return 1;
    }
    if (opt.ceilings) {
        fprintf(stderr, "vlbench: %s: measuring copy bandwidth, bf16 peak and launch floor\n",
                run.device);
        measure_copy(&run);
        measure_peak(&run);
        measure_floor(&run);
    } else { /* NaN ceilings: the report prints n/a for the % columns */
        run.copy_gbps = run.peak_tflops = run.floor_us = NAN;
    }

    run.md = opt.json ? NULL : stdout;
    run.json = opt.json ? stdout : json_file;
    vlb_report_begin(&run);
    if (opt.run_gemv) vlb_bench_linear(&run, 0);
    if (opt.run_gemm) vlb_bench_linear(&run, 1);
    if (opt.run_attention) vlb_bench_attention(&run);
    vlb_report_end(&run);
    vlb_cuda_free(gpu);
    vl_backend_free(gpu);
    if (json_file && fclose(json_file)) {
        fprintf(stderr, "vlbench: error: writing --json-out %s failed\n", opt.json_out);
        return 1;
    }
    fprintf(stderr, "vlbench: done, %d case(s) could not run\n", run.failures);
    return 0;
}
