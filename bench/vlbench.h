/* vlbench.h: what the files of vlbench share: the options, one result row, the report writer
 * and the small CUDA layer (vlbench_cuda.cu) that times ops on the backend's stream.
 *
 * vlbench times vlrun's CUDA kernels through the public op table (kernels.h) on Qwen2-VL-7B
 * shapes and sets each beside an anchor (cuBLAS bf16, or vlrun's eager attention) and the
 * device's own ceilings, measured at start. Leaves out: the PyTorch anchors
 * (scripts/device.sh bench runs them) and end-to-end model timings (vlrun --json).
 */
#ifndef VLBENCH_H
#define VLBENCH_H

#include "kernels/kernels.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options -------------------------------------------------------------------------------- */

#define VLB_MAX_LIST 16

enum { VLB_QUANT_BF16 = 1, VLB_QUANT_NF4 = 2, VLB_QUANT_INT8 = 4 };
enum {
    VLB_KIND_PREFILL = 1,
    VLB_KIND_CHUNK = 2,
    VLB_KIND_VISION = 4,
    VLB_KIND_DECODE = 8,
    VLB_KIND_DECODE_RT = 16 /* decode at a runtime length (n_past_dev), as in a CUDA graph */
};

/* A linear weight shape: N out features x K in features. */
typedef struct {
    const char *name; /* "q/o", ..., "custom" */
    int64_t n, k;
    int bf16_only; /* lm_head: the engine keeps it in bf16 */
} vlb_shape;

typedef struct {
    int run_attention, run_gemv, run_gemm;
    int iters, warmup;
    int json;             /* JSON on stdout instead of markdown */
    const char *json_out; /* also write the JSON here (markdown stays on stdout) */
    int ref;              /* compare sampled rows with the CPU backend */
    int flush_l2;         /* evict L2 before each timed run */
    int ceilings;         /* measure the copy bandwidth and bf16 peak at start */
    int quant_mask;       /* VLB_QUANT_* */
    int double_quant;     /* NF4 with double-quantized scales */
    int n_shapes;         /* 0: the 7B set */
    vlb_shape shapes[VLB_MAX_LIST];
    int n_m; /* GEMM rows; 0: 2048 and 5456 */
    int64_t m[VLB_MAX_LIST];
    int n_seq; /* attention lengths; 0: the defaults of each kind */
    int64_t seq[VLB_MAX_LIST];
    int heads, kv_heads, head_dim; /* 0: the model's (28/4 d128 text, 16/16 d80 vision) */
    int kind_mask;                 /* VLB_KIND_* */
    vl_cuda_config cuda;           /* --cuda-opt settings: the backend's configuration */
} vlb_options;

/* Parses argv into o (vlbench_options.c): 0, 1 after printing one error line, or 2 after
 * --help. */
int vlb_parse_options(int argc, char **argv, vlb_options *o);

/* ---- result rows ---------------------------------------------------------------------------- */

/* One benchmark case. Rates are derived from flops / bytes and the median time. */
typedef struct {
    const char *bench;   /* "gemv", "gemm", "attention" */
    char name[48];       /* "q/o", "prefill causal", ... */
    char shape[96];      /* human-readable dimensions */
    char dims_json[256]; /* the same as JSON members, e.g. "\"m\": 1, \"n\": 3584, \"k\": 3584" */
    const char *quant;   /* "bf16", "nf4", "nf4-dq", "int8", or "-" */
    char status[96];     /* "" when measured, else why not ("n/a: ...") */
    double ms, min_ms;   /* median and fastest of the timed runs */
    double flops, bytes; /* work of one call: multiply-adds x 2, bytes that must move */
    int memory_bound;    /* 1: rate in GB/s against copy bandwidth; 0: TFLOP/s against bf16 peak */
    double max_abs_err, max_rel_err; /* vs the CPU reference; NaN when not computed */
    const char *anchor;              /* NULL when there is none */
    double anchor_ms, anchor_max_abs_err;
} vlb_row;

void vlb_row_init(vlb_row *r, const char *bench, const char *quant);

/* ---- the run: device, ceilings, report --------------------------------------------------- */

typedef struct {
    vl_backend *gpu, *cpu;
    const vlb_options *opt;
    char device[256];
    int sm_count, cc_major, cc_minor;
    size_t l2_bytes, device_bytes;
    double copy_gbps;       /* device-to-device cudaMemcpyAsync, bytes read + written */
    double peak_tflops;     /* best of a few large cuBLAS bf16 GEMMs */
    char peak_shape[48];    /* the GEMM that gave it */
    double floor_us;        /* an empty kernel timed as every case is: the launch floor */
    FILE *md, *json;        /* NULL when not wanted */
    int json_rows;          /* rows written so far (for the commas) */
    const char *md_section; /* the section whose table header was printed last */
    int failures;           /* rows that could not run */
} vlb_run;

/* Prints the row (markdown and/or JSON) as soon as it is measured, and a progress line on
 * stderr, so that a run cut short still leaves what it measured. */
void vlb_report_begin(vlb_run *run);
void vlb_report_row(vlb_run *run, const vlb_row *r);
void vlb_report_end(vlb_run *run);

/* The three benchmark families (vlbench_linear.c, vlbench_attention.c). */
void vlb_bench_linear(vlb_run *run, int gemm); /* gemm 0: m = 1 (GEMV); 1: the --m list */
void vlb_bench_attention(vlb_run *run);

/* ---- shared helpers (vlbench_shared.c)
 * -------------------------------------------------------------- */

/* Device buffers of one case, freed together. */
#define VLB_MAX_BUFS 24
typedef struct {
    vl_backend *gpu;
    void *p[VLB_MAX_BUFS];
    int n;
} vlb_bufs;
void *vlb_alloc(vlb_bufs *bufs, size_t bytes); /* NULL when the device is out of memory */
void vlb_free_all(vlb_bufs *bufs);

/* n bf16 values, uniform in center +- half, from a counter-based key (vl_random_unit). */
void vlb_fill_random(vl_backend *gpu, void *dst, int64_t n, uint64_t key, float center, float half);

/* Up to VLB_REF_ROWS distinct row indices spread over [0, n): first, thirds, last. */
#define VLB_REF_ROWS 4
int vlb_ref_rows(int64_t n, int64_t rows[VLB_REF_ROWS]);

/* 1 when a call of this work and traffic is limited by memory bandwidth: its flops per byte
 * fall below the device's ridge point (bf16 peak / copy bandwidth, ~260 on an H100). */
int vlb_memory_bound(const vlb_run *run, double flops, double bytes);

/* Max |a - ref| over n values, folded into *max_abs; max |ref| into *max_ref. */
void vlb_compare(const float *a, const float *ref, int64_t n, double *max_abs, double *max_ref);

/* ---- the CUDA layer (vlbench_cuda.cu) ------------------------------------------------------- */

typedef void (*vlb_op_fn)(vl_backend *gpu, void *ctx);

/* Allocates the L2-eviction buffer (max(256 MiB, 4 x L2)); 0, or -1 when out of memory. */
int vlb_cuda_init(vl_backend *gpu);
void vlb_cuda_free(vl_backend *gpu);
/* Device facts for the report. */
void vlb_cuda_device(vl_backend *gpu, int *sm_count, int *cc_major, int *cc_minor, size_t *l2_bytes,
                     size_t *device_bytes);
/* Times fn on the backend's stream with CUDA events: `warmup` untimed calls, then `iters`
 * timed ones, each after an L2-evicting read when flush_l2. Returns the median in ms and the
 * fastest in *min_ms. */
double vlb_cuda_time_ms(vl_backend *gpu, vlb_op_fn fn, void *ctx, int warmup, int iters,
                        int flush_l2, double *min_ms);
/* The anchor: y[m, n] = x[m, k] . w[n, k]^T through cublasGemmEx (bf16, fp32 accumulation),
 * the launcher the backend used before it had a GEMV; on the backend's stream. */
/* One launch of an empty kernel (a CTA of 128 threads per SM) on the backend's stream. */
void vlb_cuda_empty_launch(vl_backend *gpu);
void vlb_cuda_cublas_linear(vl_backend *gpu, void *y, const void *x, int64_t m, const void *w,
                            int64_t n, int64_t k);
/* 1 when the backend's attention kernels take p and its workspace is large enough. */
int vlb_cuda_attention_ok(vl_backend *gpu, const vl_attn_params *p);
/* vlrun's eager attention (scores materialized in `scores`, fp32 [H, n_q, n_kv]). */
void vlb_cuda_attention_naive(vl_backend *gpu, const vl_attn_params *p, float *scores);

#ifdef __cplusplus
}
#endif
#endif
