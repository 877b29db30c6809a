/* vlbench.c: vlbench's entry point: the command line, the device's ceilings (copy bandwidth,
 * bf16 GEMM peak) measured at start, and helpers the benchmark files share.
 *
 *   vlbench [attention|gemv|gemm|all] [options]      (see usage() or bench/README.md)
 *
 * Bad options end in one line "vlbench: error: ..." and exit 1 before any GPU work; no usable
 * device ends in "vlbench: no CUDA device found" and exit 1. Tables go to stdout, progress to
 * stderr. Leaves out: the cases themselves (vlbench_linear.c, vlbench_attention.c) and the
 * output format (vlbench_report.c).
 */
#include "bench/vlbench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ITERS  20
#define DEFAULT_WARMUP 3
#define MAX_ITERS      100000

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: vlbench [attention|gemv|gemm|all] [options]   (default: all)\n"
        "Times vlrun's CUDA kernels (through the op table) on Qwen2-VL-7B shapes beside\n"
        "cuBLAS bf16 or vlrun's eager attention, and the device's copy bandwidth and bf16\n"
        "peak measured at start. Markdown on stdout, progress on stderr.\n"
        "  attention          prefill causal 28/4 heads d128 at 4096, 16384, 38192 (one call),\n"
        "                     a 2048-query chunk at the end of a 38192 cache, vision 16 heads\n"
        "                     d80 at 5456 (4 segments and one), decode at 1364, 16384, 38192\n"
        "  gemv               m = 1 over N x K: 3584x3584 512x3584 4608x3584 18944x3584\n"
        "                     3584x18944 152064x3584 (lm_head, bf16 only)\n"
        "  gemm               the same shapes at m = 2048 and 5456\n"
        "options:\n"
        "  --iters N          timed runs per case, median reported (default %d)\n"
        "  --warmup N         untimed runs first (default %d)\n"
        "  --shape NxK[,...]  linear weight shapes (N out, K in) instead of the 7B set\n"
        "  --m M[,...]        GEMM rows (default 2048,5456)\n"
        "  --seq N[,...]      attention lengths instead of the defaults: prefill tokens,\n"
        "                     chunk cache, vision tokens, decode cache\n"
        "  --heads HQ[/HKV]   attention query / kv heads for every kind (default 28/4 text,\n"
        "                     16/16 vision)\n"
        "  --head-dim D       attention head dim for every kind (default 128 text, 80 vision)\n"
        "  --kinds LIST       attention kinds: prefill,chunk,vision,decode (default all)\n"
        "  --quant LIST       weight formats: bf16,nf4,int8 (default all three)\n"
        "  --double-quant     NF4 with double-quantized block scales\n"
        "  --json             one JSON object on stdout instead of markdown\n"
        "  --json-out FILE    also write the JSON object to FILE\n"
        "  --no-ref           skip the CPU reference (no error columns)\n"
        "  --no-flush         do not evict L2 before each timed run\n"
        "  --help             this text\n",
        DEFAULT_ITERS, DEFAULT_WARMUP);
}

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("vlbench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* A whole decimal integer in [lo, hi]; -1 when s is anything else. */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Splits a comma-separated list into at most VLB_MAX_LIST items of < 64 characters each;
 * the count, or -1 for an empty list, an empty item, or too many or too long items. */
static int split_list(const char *s, char items[VLB_MAX_LIST][64]) {
    int n = 0;
    for (const char *p = s;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= 64 || n == VLB_MAX_LIST) return -1;
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        if (!comma) return n + 1;
        p = comma + 1;
    }
}

/* A comma-separated list of integers in [lo, hi]; -1 on any bad element. */
static int parse_int_list(const char *s, int64_t lo, int64_t hi, int64_t *out, int *n) {
    char items[VLB_MAX_LIST][64];
    *n = split_list(s, items);
    if (*n < 0) return -1;
    for (int i = 0; i < *n; i++)
        if (parse_int(items[i], lo, hi, &out[i])) return -1;
    return 0;
}

/* A comma-separated list of names; returns the OR of the matching bits, -1 on an unknown one. */
static int parse_names(const char *s, const char *const *names, const int *bits, int count) {
    char items[VLB_MAX_LIST][64];
    int n = split_list(s, items), mask = 0;
    if (n < 0) return -1;
    for (int t = 0; t < n; t++) {
        int i = 0;
        while (i < count && strcmp(items[t], names[i]) != 0) i++;
        if (i == count) return -1;
        mask |= bits[i];
    }
    return mask;
}

/* Shapes "NxK[,NxK...]" (cuBLAS sizes are int). */
static int parse_shapes(const char *s, vlb_options *o) {
    char items[VLB_MAX_LIST][64];
    int n = split_list(s, items);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        char *x = strchr(items[i], 'x');
        if (!x) return -1;
        *x = '\0';
        vlb_shape *sh = &o->shapes[i];
        if (parse_int(items[i], 1, 1 << 30, &sh->n) || parse_int(x + 1, 1, 1 << 30, &sh->k))
            return -1;
        sh->name = "custom";
        sh->bf16_only = 0;
    }
    o->n_shapes = n;
    return 0;
}

/* Parses argv into o; 0, 1 after printing one error line, or 2 after --help. */
static int parse_options(int argc, char **argv, vlb_options *o) {
    memset(o, 0, sizeof *o);
    o->iters = DEFAULT_ITERS;
    o->warmup = DEFAULT_WARMUP;
    o->ref = 1;
    o->flush_l2 = 1;
    o->quant_mask = VLB_QUANT_BF16 | VLB_QUANT_NF4 | VLB_QUANT_INT8;
    o->kind_mask = VLB_KIND_PREFILL | VLB_KIND_CHUNK | VLB_KIND_VISION | VLB_KIND_DECODE;
    const char *what = NULL;
    int set_shape = 0, set_m = 0, set_seq = 0, set_attn = 0, set_quant = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (what) return fail("one benchmark at a time: got '%s' after '%s'", a, what);
            what = a;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 2;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--no-ref") == 0) {
            o->ref = 0;
            continue;
        }
        if (strcmp(a, "--no-flush") == 0) {
            o->flush_l2 = 0;
            continue;
        }
        if (strcmp(a, "--double-quant") == 0) {
            o->double_quant = 1;
            continue;
        }
        static const char *const with_value[] = {"--iters", "--warmup",  "--shape",    "--m",
                                                 "--seq",   "--heads",   "--head-dim", "--kinds",
                                                 "--quant", "--json-out"};
        int known = 0;
        for (size_t j = 0; j < sizeof with_value / sizeof *with_value; j++)
            known |= strcmp(a, with_value[j]) == 0;
        if (!known) return fail("unknown option '%s' (see vlbench --help)", a);
        if (i + 1 >= argc) return fail("%s needs a value (see vlbench --help)", a);
        const char *v = argv[++i];
        int64_t x;
        if (strcmp(a, "--iters") == 0) {
            if (parse_int(v, 1, MAX_ITERS, &x))
                return fail("--iters expects an integer in [1, %d], got '%s'", MAX_ITERS, v);
            o->iters = (int)x;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_int(v, 0, MAX_ITERS, &x))
                return fail("--warmup expects an integer in [0, %d], got '%s'", MAX_ITERS, v);
            o->warmup = (int)x;
        } else if (strcmp(a, "--shape") == 0) {
            if (parse_shapes(v, o))
                return fail("--shape expects NxK[,NxK...] with 1 <= N, K <= 2^30 (at most %d), "
                            "got '%s'",
                            VLB_MAX_LIST, v);
            set_shape = 1;
        } else if (strcmp(a, "--m") == 0) {
            if (parse_int_list(v, 1, 1 << 30, o->m, &o->n_m))
                return fail("--m expects M[,M...] with 1 <= M <= 2^30 (at most %d), got '%s'",
                            VLB_MAX_LIST, v);
            set_m = 1;
        } else if (strcmp(a, "--seq") == 0) {
            if (parse_int_list(v, 1, 1 << 24, o->seq, &o->n_seq))
                return fail("--seq expects N[,N...] with 1 <= N <= 2^24 (at most %d), got '%s'",
                            VLB_MAX_LIST, v);
            set_seq = 1;
        } else if (strcmp(a, "--heads") == 0) {
            int64_t hq, hkv;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            char *slash = strchr(buf, '/');
            if (slash) *slash = '\0';
            if (parse_int(buf, 1, 1024, &hq) || (slash && parse_int(slash + 1, 1, 1024, &hkv)))
                return fail("--heads expects HQ or HQ/HKV (1..1024), got '%s'", v);
            if (!slash) hkv = hq;
            if (hq % hkv != 0)
                return fail("--heads %s: query heads must be a multiple of kv heads", v);
            o->heads = (int)hq;
            o->kv_heads = (int)hkv;
            set_attn = 1;
        } else if (strcmp(a, "--head-dim") == 0) {
            if (parse_int(v, 1, 512, &x))
                return fail("--head-dim expects an integer in [1, 512], got '%s'", v);
            o->head_dim = (int)x;
            set_attn = 1;
        } else if (strcmp(a, "--kinds") == 0) {
            static const char *const names[] = {"prefill", "chunk", "vision", "decode"};
            static const int bits[] = {VLB_KIND_PREFILL, VLB_KIND_CHUNK, VLB_KIND_VISION,
                                       VLB_KIND_DECODE};
            int mask = parse_names(v, names, bits, 4);
            if (mask < 0)
                return fail("--kinds expects a list of prefill, chunk, vision, decode; got '%s'",
                            v);
            o->kind_mask = mask;
            set_attn = 1;
        } else if (strcmp(a, "--quant") == 0) {
            static const char *const names[] = {"bf16", "nf4", "int8"};
            static const int bits[] = {VLB_QUANT_BF16, VLB_QUANT_NF4, VLB_QUANT_INT8};
            int mask = parse_names(v, names, bits, 3);
            if (mask < 0) return fail("--quant expects a list of bf16, nf4, int8; got '%s'", v);
            o->quant_mask = mask;
            set_quant = 1;
        } else { /* --json-out */
            if (!*v) return fail("--json-out expects a file name");
            o->json_out = v;
        }
    }
    if (!what) what = "all";
    const int all = strcmp(what, "all") == 0;
    o->run_attention = all || strcmp(what, "attention") == 0;
    o->run_gemv = all || strcmp(what, "gemv") == 0;
    o->run_gemm = all || strcmp(what, "gemm") == 0;
    if (!o->run_attention && !o->run_gemv && !o->run_gemm)
        return fail("unknown benchmark '%s'; expected attention, gemv, gemm or all", what);
    const int linear = o->run_gemv || o->run_gemm;
    if ((set_shape || set_quant) && !linear)
        return fail("--shape and --quant apply to gemv and gemm, not %s", what);
    if (set_m && !o->run_gemm) return fail("--m applies to gemm (gemv is m = 1), not %s", what);
    if ((set_seq || set_attn) && !o->run_attention)
        return fail("--seq, --heads, --head-dim and --kinds apply to attention, not %s", what);
    if (o->double_quant && !(o->quant_mask & VLB_QUANT_NF4))
        return fail("--double-quant needs nf4 among --quant");
    return 0;
}

/* ---- helpers shared by the benchmark files ----------------------------------------------------
 */

void vlb_row_init(vlb_row *r, const char *bench, const char *quant) {
    memset(r, 0, sizeof *r);
    r->bench = bench;
    r->quant = quant;
    r->ms = r->min_ms = r->anchor_ms = NAN;
    r->max_abs_err = r->max_rel_err = r->anchor_max_abs_err = NAN;
}

void *vlb_alloc(vlb_bufs *bufs, size_t bytes) {
    if (bufs->n == VLB_MAX_BUFS) return NULL;
    void *p = bufs->gpu->mem_alloc(bufs->gpu, bytes);
    if (p) bufs->p[bufs->n++] = p;
    return p;
}

void vlb_free_all(vlb_bufs *bufs) {
    bufs->gpu->sync(bufs->gpu);
    for (int i = 0; i < bufs->n; i++) bufs->gpu->mem_free(bufs->gpu, bufs->p[i]);
    bufs->n = 0;
}

void vlb_fill_random(vl_backend *gpu, void *dst, int64_t n, uint64_t key, float center,
                     float half) {
    if (gpu->fill_random_bf16) {
        gpu->fill_random_bf16(gpu, dst, n, key, center, half);
        return;
    }
    /* the same values made on the host, a chunk at a time */
    enum { CHUNK = 1 << 20 };
    uint16_t *h = malloc(CHUNK * sizeof(uint16_t));
    if (!h) {
        fprintf(stderr, "vlbench: out of host memory\n");
        exit(1);
    }
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t c = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (int64_t i = 0; i < c; i++)
            h[i] = vl_f32_to_bf16(
                center + half * (float)(2.0 * vl_random_unit(key + (uint64_t)(i0 + i)) - 1.0));
        gpu->upload(gpu, (uint16_t *)dst + i0, h, (size_t)c * 2);
    }
    free(h);
}

int vlb_ref_rows(int64_t n, int64_t rows[VLB_REF_ROWS]) {
    const int64_t want[VLB_REF_ROWS] = {0, n / 3, 2 * n / 3, n - 1};
    int k = 0;
    for (int i = 0; i < VLB_REF_ROWS; i++)
        if (k == 0 || want[i] > rows[k - 1]) rows[k++] = want[i];
    return k;
}

int vlb_memory_bound(const vlb_run *run, double flops, double bytes) {
    double ridge = run->peak_tflops * 1e12 / (run->copy_gbps * 1e9);
    if (!isfinite(ridge) || ridge <= 0) ridge = 100.0; /* a ceiling could not be measured */
    return flops < ridge * bytes;
}

void vlb_compare(const float *a, const float *ref, int64_t n, double *max_abs, double *max_ref) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > *max_abs || d != d) *max_abs = d; /* NaN sticks */
        if (fabs((double)ref[i]) > *max_ref) *max_ref = fabs((double)ref[i]);
    }
}

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

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    vlb_options opt;
    int rc = parse_options(argc, argv, &opt);
    if (rc) return rc == 2 ? 0 : 1;

    char why[256] = "";
    vl_backend *gpu = vl_backend_cuda(NULL, why, sizeof why);
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
    if (opt.json_out && !(json_file = fopen(opt.json_out, "w")))
        return fail("cannot write --json-out %s: %s", opt.json_out, strerror(errno));

    vlb_run run = {.gpu = gpu, .cpu = vl_backend_cpu(), .opt = &opt};
    snprintf(run.device, sizeof run.device, "%s", gpu->device_name ? gpu->device_name : "?");
    vlb_cuda_device(gpu, &run.sm_count, &run.cc_major, &run.cc_minor, &run.l2_bytes,
                    &run.device_bytes);
    if (vlb_cuda_init(gpu)) {
        fprintf(stderr, "vlbench: out of device memory for the L2 flush buffer\n");
        return 1;
    }
    fprintf(stderr, "vlbench: %s: measuring copy bandwidth and bf16 peak\n", run.device);
    measure_copy(&run);
    measure_peak(&run);

    run.md = opt.json ? NULL : stdout;
    run.json = opt.json ? stdout : json_file;
    vlb_report_begin(&run);
    if (opt.run_gemv) vlb_bench_linear(&run, 0);
    if (opt.run_gemm) vlb_bench_linear(&run, 1);
    if (opt.run_attention) vlb_bench_attention(&run);
    vlb_report_end(&run);
    vlb_cuda_free(gpu);
    if (json_file && fclose(json_file)) return fail("writing --json-out %s failed", opt.json_out);
    fprintf(stderr, "vlbench: done, %d case(s) could not run\n", run.failures);
    return 0;
}
