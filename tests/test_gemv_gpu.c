/* test_gemv_gpu.c: the decode path of the CUDA backend's linear (m <= 8 rows: the GEMVs of
 * kernels/cuda_gemv.cu, cuda_gemv_bf16.cu (bf16, m = 1) and cuda_gemv_quant_m1.cu) for every weight
 * format, and the dispatch around it, against the CPU twin.
 *
 * Weights are built directly, without a quantizer: random codes / bytes, random positive block
 * or row scales, and for double quantization random nested scales, a random 256-entry map and
 * an offset (none of them bf16-representable, so the fp32 products before the bf16 rounding of
 * each weight are exercised). The CPU backend's linear on the same host buffers is the
 * reference; the GPU gets copies uploaded with the backend's upload.
 * Policy (as tests/test_ops_gpu.c for linear): the CPU result is the fp32 value; the GPU must
 * return it rounded to bf16 once. Every output within 2^-8 |ref| (one rounding) plus a bound on
 * two fp32 summation orders, (K/16 + 32) 2^-22 |x_i| |w_r|; and at least 99% of the outputs
 * (per case of >= 100 outputs, and over all cases of a format) exactly bf16(ref): both compute
 * the same exact products, so only summation-order flips next to a tie may differ. The cuBLAS
 * paths (m > 8) keep test_ops_gpu's 90%.
 * Every GEMV case runs twice: the two results must be bit-identical (no order that depends on
 * scheduling). Outputs are poisoned with NaN and followed by guard elements.
 * Shapes: tiny and odd (N = 1, 7, K = 13 .. 200: the simple kernel and the tails of the fast
 * one), x one element off alignment (simple kernel), and the model's (N = 512 with K split
 * over CTAs, K = 3584, 1280, 18944).
 * Without a CUDA device the program exits 77 (skip). Leaves out: timing (vlbench), graphs.
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#include <stdint.h>

#define BF16_U     (1.0 / 256)
#define F32_U      5.9604644775390625e-08
#define BF16_SUB   0x1p-134
#define GUARD      64
#define NAN_BITS   0x7fc0
#define MAX_M      8 /* VL_CUDA_GEMV_MAX_M of kernels/cuda_ops.h (a C++ header) */
#define GEMV_EXACT 0.99
#define BLAS_EXACT 0.90

static vl_backend *cpu, *gpu;
/* Products of up to this many rows are expected on a GEMV (GEMV_EXACT), above it cuBLAS or the
 * dequant GEMM (BLAS_EXACT): MAX_M, or more under gemv_rows16 (test_rows16). */
static int64_t gemv_up_to = MAX_M;

enum { W_BF16, W_NF4, W_NF4_DQ, W_Q8ROW, W_KINDS };
static const char *const kind_name[W_KINDS] = {"bf16", "nf4", "nf4-dq", "q8row"};
/* exact / total outputs of the GEMV cases, per kind */
static int64_t kind_exact[W_KINDS], kind_total[W_KINDS];

/* ---- helpers ------------------------------------------------------------------------------- */

static void *dev_copy(const void *host, size_t bytes) {
    void *d = vt_dev_alloc(gpu, bytes ? bytes : 1);
    gpu->upload(gpu, d, host, bytes);
    return d;
}

static float uniform(double lo, double hi) {
    return (float)(lo + (hi - lo) * vt_rng_uniform());
}

/* n bf16-rounded N(0, sd^2) values and their bits */
static float *bf16_random(int64_t n, double sd, uint16_t **bits) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    *bits = malloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) {
        v[i] = vl_round_bf16((float)(sd * vt_rng_normal()));
        (*bits)[i] = vl_f32_to_bf16(v[i]);
    }
    return v;
}

/* ---- weights -------------------------------------------------------------------------------- */

typedef struct {
    vl_weight host, dev;
    void *host_buf[4], *dev_buf[4]; /* data, absmax, absmax_code, absmax_map */
    float *values;                  /* [N, K] what a bf16 GEMM sees (vl_weight_rows_f32) */
    double *row_norm;               /* [N] |W[r, :]| */
} test_weight;

/* Random N x K weight of `kind`; entries have rms about 1/sqrt(K), so outputs are about N(0, 1)
 * for N(0, 1) inputs. */
static void weight_make(test_weight *t, int kind, int64_t N, int64_t K) {
    memset(t, 0, sizeof *t);
    const double inv = 1 / sqrt((double)K);
    vl_weight *h = &t->host;
    h->rows = N, h->cols = K;
    if (kind == W_BF16) {
        uint16_t *bits;
        free(bf16_random(N * K, inv, &bits));
        h->dtype = VL_DTYPE_BF16;
        t->host_buf[0] = bits;
        h->data = bits;
        t->dev_buf[0] = dev_copy(bits, (size_t)(N * K) * 2);
    } else {
        const vl_dtype fmt = kind == W_Q8ROW ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4;
        vl_quant_sizes sz;
        vl_quant_sizes_of(fmt, kind == W_NF4_DQ, N, K, &sz);
        h->dtype = fmt;
        uint8_t *data = malloc(sz.data);
        for (size_t i = 0; i < sz.data; i++) data[i] = (uint8_t)(vt_rng_next() >> 56);
        float *absmax = malloc(sz.absmax);
        const size_t n_absmax = sz.absmax / sizeof(float);
        /* NF4 |table| averages about 0.45, int8 |q| about 64: scale to rms ~ 1/sqrt(K) */
        const double scale = kind == W_Q8ROW ? 1.7 * inv : kind == W_NF4 ? 2 * inv : 1.5 * inv;
        for (size_t i = 0; i < n_absmax; i++) absmax[i] = uniform(0.5 * scale, 1.5 * scale);
        t->host_buf[0] = data, t->host_buf[1] = absmax;
        h->data = data, h->absmax = absmax;
        if (kind == W_NF4_DQ) {
            uint8_t *code = malloc(sz.absmax_code);
            float *map = malloc(sz.absmax_map);
            for (size_t i = 0; i < sz.absmax_code; i++) code[i] = (uint8_t)(vt_rng_next() >> 56);
            for (int i = 0; i < 256; i++) map[i] = uniform(0.0, 1.0);
            t->host_buf[2] = code, t->host_buf[3] = map;
            h->absmax_code = code, h->absmax_map = map;
            h->absmax_offset = uniform(0.2, 0.4);
        }
        t->dev_buf[0] = dev_copy(data, sz.data);
        t->dev_buf[1] = dev_copy(absmax, sz.absmax);
        if (kind == W_NF4_DQ) {
            t->dev_buf[2] = dev_copy(t->host_buf[2], sz.absmax_code);
            t->dev_buf[3] = dev_copy(t->host_buf[3], sz.absmax_map);
        }
    }
    t->dev = *h;
    t->dev.data = t->dev_buf[0];
    t->dev.absmax = t->dev_buf[1];
    t->dev.absmax_code = t->dev_buf[2];
    t->dev.absmax_map = t->dev_buf[3];
    t->values = malloc((size_t)(N * K) * sizeof(float));
    vl_weight_rows_f32(h, 0, N, t->values);
    t->row_norm = calloc((size_t)N, sizeof(double));
    for (int64_t r = 0; r < N; r++) {
        for (int64_t k = 0; k < K; k++)
            t->row_norm[r] += (double)t->values[r * K + k] * t->values[r * K + k];
        t->row_norm[r] = sqrt(t->row_norm[r]);
    }
}

static void weight_free(test_weight *t) {
    for (int i = 0; i < 4; i++) {
        free(t->host_buf[i]);
        if (t->dev_buf[i]) gpu->mem_free(gpu, t->dev_buf[i]);
    }
    free(t->values);
    free(t->row_norm);
}

/* ---- one case -------------------------------------------------------------------------------- */

/* y = x . W^T (+ bias) on both backends; x_off shifts x on the device by that many elements. */
static void check_case(const test_weight *t, int kind, int64_t m, int with_bias, int64_t x_off) {
    const int64_t N = t->host.rows, K = t->host.cols, n = m * N;
    char what[112];
    snprintf(what, sizeof what, "%-6s m=%lld N=%lld K=%lld%s%s", kind_name[kind], (long long)m,
             (long long)N, (long long)K, with_bias ? " +bias" : "", x_off ? " x misaligned" : "");
    uint16_t *x_bits, *b_bits;
    float *x = bf16_random(m * K, 1.0, &x_bits), *bias = bf16_random(N, 0.5, &b_bits);
    float *ref = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    vl_vec bc = {with_bias ? b_bits : NULL, VL_DTYPE_BF16, N};
    cpu->linear(cpu, ref, x, m, &t->host, &bc);

    uint16_t *dx = vt_dev_alloc(gpu, (size_t)(m * K + x_off + 1) * 2);
    gpu->upload(gpu, dx + x_off, x_bits, (size_t)(m * K) * 2);
    uint16_t *db = dev_copy(b_bits, (size_t)N * 2);
    uint16_t *poison = malloc((size_t)(n + GUARD) * 2), *got_bits[2];
    for (int64_t i = 0; i < n + GUARD; i++) poison[i] = NAN_BITS;
    uint16_t *dy = dev_copy(poison, (size_t)(n + GUARD) * 2);
    vl_vec bg = {with_bias ? db : NULL, VL_DTYPE_BF16, N};
    for (int run = 0; run < 2; run++) {
        gpu->upload(gpu, dy, poison, (size_t)(n + GUARD) * 2);
        gpu->linear(gpu, dy, dx + x_off, m, &t->dev, &bg);
        got_bits[run] = malloc((size_t)(n + GUARD) * 2);
        gpu->download(gpu, got_bits[run], dy, (size_t)(n + GUARD) * 2);
    }

    int64_t guard_written = 0, differ = 0, bad = 0, exact = 0, first = -1;
    for (int64_t i = n; i < n + GUARD; i++) guard_written += got_bits[0][i] != NAN_BITS;
    for (int64_t i = 0; i < n; i++) differ += got_bits[0][i] != got_bits[1][i];
    double worst = 0;
    for (int64_t i = 0; i < m; i++) {
        double x_norm = 0;
        for (int64_t k = 0; k < K; k++) x_norm += (double)x[i * K + k] * x[i * K + k];
        x_norm = sqrt(x_norm);
        for (int64_t r = 0; r < N; r++) {
            const int64_t e = i * N + r;
            const float got = vl_bf16_to_f32(got_bits[0][e]), want = ref[e];
            const double tol =
                BF16_U * fabs(want) + ((double)K / 16 + 32) * 4 * F32_U * x_norm * t->row_norm[r];
            const double err = fabs((double)got - (double)want);
            if (!(err <= tol + BF16_SUB)) {
                if (first < 0) first = e;
                bad++;
            }
            if (tol > 0 && err == err) worst = fmax(worst, err / tol);
            exact += got == vl_round_bf16(want);
        }
    }
    const int blas = m > gemv_up_to;
    const double frac = n ? (double)exact / (double)n : 1.0;
    const double min_exact = blas ? BLAS_EXACT : GEMV_EXACT;
    printf("  %-48s n=%-7lld err/tol %.3f exact %6.2f%%%s\n", what, (long long)n, worst, 100 * frac,
           bad || guard_written || differ ? "  FAIL" : "");
    VT_CHECKF(bad == 0, "%s: %lld of %lld outside tolerance; first [%lld] got %.9g want %.9g", what,
              (long long)bad, (long long)n, (long long)first,
              first < 0 ? 0.0 : vl_bf16_to_f32(got_bits[0][first]), first < 0 ? 0.0 : ref[first]);
    VT_CHECKF(guard_written == 0, "%s: %lld guard elements past the end were written", what,
              (long long)guard_written);
    VT_CHECKF(differ == 0, "%s: two runs differ in %lld of %lld outputs", what, (long long)differ,
              (long long)n);
    if (n >= 100)
        VT_CHECKF(frac >= min_exact, "%s: only %.2f%% of outputs equal bf16(cpu result)", what,
                  100 * frac);
    if (!blas) kind_exact[kind] += exact, kind_total[kind] += n;

    gpu->mem_free(gpu, dx);
    gpu->mem_free(gpu, db);
    gpu->mem_free(gpu, dy);
    free(x), free(x_bits), free(bias), free(b_bits), free(ref), free(poison);
    free(got_bits[0]), free(got_bits[1]);
}

/* ---- the cases ---------------------------------------------------------------------------------
 */

/* Every m in {1, 2, 3, MAX_M}, with and without bias. */
static void check_shape(int kind, int64_t N, int64_t K) {
    test_weight t;
    weight_make(&t, kind, N, K);
    const int64_t ms[] = {1, 2, 3, MAX_M};
    for (int i = 0; i < 4; i++)
        for (int with_bias = 0; with_bias < 2; with_bias++)
            check_case(&t, kind, ms[i], with_bias, 0);
    weight_free(&t);
}

static void test_kind(int kind) {
    printf("%s\n", kind_name[kind]);
    /* tiny and odd: N = 1, 7, 33; K not a multiple of the fast path's vector (13, 24 for the
     * quantized formats, 200 for NF4), K below one warp step (16, 64), K with a partial last
     * step (96, 136, 200 for bf16) */
    const int64_t small[][2] = {{1, 64}, {7, 128}, {33, 200}, {5, 16},   {3, 24},
                                {9, 13}, {17, 96}, {31, 136}, {40, 3584}};
    for (int s = 0; s < (int)(sizeof small / sizeof small[0]); s++)
        check_shape(kind, small[s][0], small[s][1]);
    /* the model's: k/v projection (K split over CTAs), vision, a deep K (down projection) */
    check_shape(kind, 512, 3584);
    check_shape(kind, 300, 1280);
    check_shape(kind, 16, 18944);
    /* more row tiles than one wave holds: K split anyway to fill the last wave */
    check_shape(kind, 8500, 512);

    /* x one element off 16-byte alignment: the simple kernel on a fast-path shape */
    test_weight t;
    weight_make(&t, kind, 512, 3584);
    check_case(&t, kind, 1, 1, 1);
    check_case(&t, kind, 3, 0, 1);
    /* m = 0 writes nothing */
    uint16_t *dy = vt_dev_alloc(gpu, GUARD * 2), poison[GUARD], back[GUARD];
    for (int i = 0; i < GUARD; i++) poison[i] = NAN_BITS;
    gpu->upload(gpu, dy, poison, sizeof poison);
    gpu->linear(gpu, dy, dy, 0, &t.dev, NULL);
    gpu->download(gpu, back, dy, sizeof back);
    VT_CHECKF(memcmp(back, poison, sizeof back) == 0, "%s m=0 wrote to y", kind_name[kind]);
    gpu->mem_free(gpu, dy);
    /* one step past the GEMV: cuBLAS (bf16), or for a quantized W the GEMV 8 rows at a time up
     * to quant_gemv_rows (32, a batched decode step), then the dequant GEMM */
    check_case(&t, kind, MAX_M + 1, 1, 0);
    if (kind == W_BF16) {
        check_case(&t, kind, MAX_M + 1, 0, 0);
        check_case(&t, kind, 64, 1, 0);
    } else {
        check_case(&t, kind, 20, 1, 0);
        check_case(&t, kind, 32, 0, 0);
        check_case(&t, kind, 33, 1, 0);
    }
    weight_free(&t);

    const double frac = kind_total[kind] ? (double)kind_exact[kind] / kind_total[kind] : 1.0;
    printf("  %s: %lld GEMV outputs, %.3f%% exactly bf16(cpu result)\n", kind_name[kind],
           (long long)kind_total[kind], 100 * frac);
    VT_CHECKF(frac >= GEMV_EXACT, "%s: only %.3f%% of all GEMV outputs exact", kind_name[kind],
              100 * frac);
}

/* Biased bf16 GEMMs of prefill sizes go through cuBLASLt's bias epilogue: one rounding. */
static void test_blas_bias(void) {
    printf("bf16 GEMM + bias (cuBLASLt)\n");
    test_weight t;
    weight_make(&t, W_BF16, 1280, 1280);
    check_case(&t, W_BF16, 300, 1, 0);
    check_case(&t, W_BF16, 300, 0, 0);
    weight_free(&t);
}

/* A second CUDA backend created with options of vl_cuda_config set ("key=value", several
 * separated by commas): how a test picks a kernel variant. It becomes `gpu` until gpu_restore. */
static vl_backend *main_gpu;
static void gpu_with(const char *opt) {
    vl_cuda_config cfg;
    vl_cuda_config_init(&cfg);
    char why[256] = "", one[64];
    vl_backend *b = NULL;
    int ok = 1;
    for (const char *o = opt; ok && *o;) {
        const size_t len = strcspn(o, ",");
        snprintf(one, sizeof one, "%.*s", (int)len, o);
        ok = vl_cuda_config_set(&cfg, one, why, sizeof why) == 0;
        o += len + (o[len] == ',');
    }
    if (ok) b = vl_backend_cuda(&cfg, why, sizeof why);
    if (!b) {
        fprintf(stderr, "FAIL: a CUDA backend with %s: %s\n", opt, why);
        exit(1);
    }
    main_gpu = gpu;
    gpu = b;
}

static void gpu_restore(void) {
    vl_backend_free(gpu);
    gpu = main_gpu;
}

/* ---- the opt-in m = 1 kernel for NF4 / Q8ROW (kernels/cuda_gemv_quant_m1.cu) -----------------
 * Forced on for every product it takes (a backend with gemv_quant_m1=1), the same checks as
 * above: tolerance, >= 99% exact, two runs bit-identical, guards untouched. Shapes cover
 * each K split it picks (1, 2, 4, 8 warps per row pair), odd N (a half-empty last row pair), K not
 * taken by it (NF4 K % 64 != 0, Q8ROW K % 16 != 0, misaligned x: cuda_gemv.cu's kernels), m > 1
 * (cuda_gemv.cu's), and the model's big shapes. */
static void test_q_v2(int kind) {
    printf("%s, m = 1 kernel v2\n", kind_name[kind]);
    const int64_t exact0 = kind_exact[kind], total0 = kind_total[kind];
    gpu_with("gemv_quant_m1=1");
    const int64_t shapes[][2] = {
        {1, 64},     {7, 128},    {33, 192},    {5, 64},      {3, 16},       {9, 13},
        {17, 96},    {31, 136},   {40, 3584},   {512, 3584},  {511, 3584},   {300, 1280},
        {16, 18944}, {8500, 512}, {4608, 3584}, {4607, 3584}, {3584, 18944}, {18944, 3584}};
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        test_weight t;
        weight_make(&t, kind, shapes[s][0], shapes[s][1]);
        check_case(&t, kind, 1, 1, 0);
        check_case(&t, kind, 1, 0, 0);
        if (s < 9) check_case(&t, kind, 2, 1, 0);  /* m > 1: cuda_gemv.cu's kernel */
        if (s == 9) check_case(&t, kind, 1, 1, 1); /* misaligned x: cuda_gemv.cu's simple kernel */
        weight_free(&t);
    }
    gpu_restore();
    const int64_t exact = kind_exact[kind] - exact0, total = kind_total[kind] - total0;
    const double frac = total ? (double)exact / (double)total : 1.0;
    printf("  %s (v2): %lld GEMV outputs, %.3f%% exactly bf16(cpu result)\n", kind_name[kind],
           (long long)total, 100 * frac);
    VT_CHECKF(frac >= GEMV_EXACT, "%s (v2): only %.3f%% of all GEMV outputs exact", kind_name[kind],
              100 * frac);
}

/* ---- the m <= 8 kernels: lean or general, NF4 in registers or shared memory ---------------------
 * The lean kernel (cuda_gemv_lean.cu, the default where K is a multiple of its step) with every
 * split of a 16-byte NF4 chunk's 4 words between lookups in registers (the block's byte planes)
 * and the shared-memory table (gemv_nf4_regs 0..4), and, with gemv_lean=0, cuda_gemv.cu's kernel
 * (which has no register table), for NF4, double-quantized NF4 and (regs 4 only: it has no table)
 * Q8ROW; the same checks as above. Shapes: K off the lean step (the general kernel), N = 1 and N
 * not a multiple of 16 (rows read past N), fewer steps than warps (K = 256, 512), K split over CTAs
 * (N = 512, 16 x 18944), the model's q/k/v rows; then the GEMVs launched the ordinary way (pdl=0:
 * NF4, int8, bf16; every other run has the default, programmatic dependents on sm_90). */
static void m8_cases(int kind, const char *opt) {
    printf("%s, %s\n", kind_name[kind], opt);
    const int64_t exact0 = kind_exact[kind], total0 = kind_total[kind];
    gpu_with(opt);
    const int64_t shapes[][2] = {{7, 128},    {33, 96},    {1, 256},    {33, 512},   {40, 3584},
                                 {512, 3584}, {16, 18944}, {8500, 512}, {4608, 3584}};
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        test_weight t;
        weight_make(&t, kind, shapes[s][0], shapes[s][1]);
        check_case(&t, kind, 1, 1, 0);
        check_case(&t, kind, 3, 0, 0);
        if (s < 7) check_case(&t, kind, MAX_M, 1, 0);
        weight_free(&t);
    }
    gpu_restore();
    const int64_t exact = kind_exact[kind] - exact0, total = kind_total[kind] - total0;
    const double frac = total ? (double)exact / (double)total : 1.0;
    printf("  %s (%s): %lld GEMV outputs, %.3f%% exactly bf16(cpu result)\n", kind_name[kind], opt,
           (long long)total, 100 * frac);
    VT_CHECKF(frac >= GEMV_EXACT, "%s (%s): only %.3f%% of all GEMV outputs exact", kind_name[kind],
              opt, 100 * frac);
}

static void test_m8_kernel(int kind, int regs, int lean) {
    char opt[96];
    snprintf(opt, sizeof opt, "gemv_nf4_regs=%d,gemv_lean=%d", regs, lean);
    m8_cases(kind, opt);
}

/* ---- the m = 1 bf16 kernel (kernels/cuda_gemv_bf16.cu)
 * --------------------------------------------- On, then off (cuda_gemv.cu's kernels: a backend
 * with gemv_bf16=0): the same checks as above. Shapes cover each split it picks (1, 2, 4, 8 warps
 * per row; 4 with uneven segments), N not a multiple of the 8 rows of a CTA, K not taken by it (K %
 * 8 != 0, misaligned x: cuda_gemv.cu's kernels), and the decoder's shapes (fused q/k/v, fused
 * gate/up, down). */
static void test_gemv_bf16(int mode) {
    printf("bf16, m = 1 kernel %s\n", mode ? "gemv_bf16" : "off (cuda_gemv.cu)");
    const int64_t exact0 = kind_exact[W_BF16], total0 = kind_total[W_BF16];
    gpu_with(mode ? "gemv_bf16=1" : "gemv_bf16=0");
    const int64_t shapes[][2] = {{1, 8},       {7, 128},      {33, 200},    {9, 16},
                                 {5, 20},      {3, 13},       {40, 3584},   {40, 4088},
                                 {16, 18944},  {8500, 512},   {8501, 1280}, {4608, 3584},
                                 {3584, 3584}, {37888, 3584}, {3584, 18944}};
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        test_weight t;
        weight_make(&t, W_BF16, shapes[s][0], shapes[s][1]);
        check_case(&t, W_BF16, 1, 1, 0);
        check_case(&t, W_BF16, 1, 0, 0);
        if (s == 6)
            check_case(&t, W_BF16, 1, 1, 1); /* misaligned x: cuda_gemv.cu's simple kernel */
        weight_free(&t);
    }
    gpu_restore();
    const int64_t exact = kind_exact[W_BF16] - exact0, total = kind_total[W_BF16] - total0;
    const double frac = total ? (double)exact / (double)total : 1.0;
    printf("  bf16 (m = 1, %s): %lld GEMV outputs, %.3f%% exactly bf16(cpu result)\n",
           mode ? "on" : "off", (long long)total, 100 * frac);
    VT_CHECKF(frac >= GEMV_EXACT, "bf16 (m = 1, %s): only %.3f%% of all GEMV outputs exact",
              mode ? "on" : "off", 100 * frac);
}

/* ---- 9 to 16 rows of x in one pass (two x tiles; gemv_rows16=1, the default) ---------------
 * The same checks as above for m = 9, 12, 16 (the fast kernel, its split-K scratch at N = 512,
 * the simple kernel at K % VEC != 0 and for misaligned x), then the chunked passes of a quantized
 * W (20, 32 rows: 16 + 4, 16 + 16); bf16 past 8 rows is cuBLAS's (BLAS_EXACT). Then, with
 * gemv_rows16=0, a quantized W's 8-row passes (12 rows: 8 + 4, 20: 8 + 8 + 4), once. Under each
 * gemv_row_tiles for NF4 / int8 (one or two 16-row tiles of W per warp; 3: two under a 4-CTA
 * register bound), once for bf16 (cuBLAS past 8 rows). */
static void test_rows16(int kind, const char *row_tiles, int eight_row_passes) {
    printf("%s, 9 to 16 rows in one pass, %s\n", kind_name[kind], row_tiles);
    const int64_t exact0 = kind_exact[kind], total0 = kind_total[kind];
    gpu_with(row_tiles); /* gemv_rows16=1 is the default */
    gemv_up_to = kind == W_BF16 ? MAX_M : 32;
    const int64_t shapes[][2] = {{33, 192}, {300, 1280}, {512, 3584}, {4608, 3584}, {40, 13}};
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        test_weight t;
        weight_make(&t, kind, shapes[s][0], shapes[s][1]);
        check_case(&t, kind, 9, 1, 0);
        check_case(&t, kind, 12, 0, 0);
        check_case(&t, kind, 16, 1, 0);
        if (s == 1) {
            check_case(&t, kind, 12, 1, 1); /* misaligned x: the simple kernel */
            check_case(&t, kind, 20, 1, 0);
            check_case(&t, kind, 32, 0, 0);
        }
        weight_free(&t);
    }
    if (kind != W_BF16 && eight_row_passes) {
        gpu_restore();
        gpu_with("gemv_rows16=0");
        test_weight t;
        weight_make(&t, kind, 300, 1280);
        check_case(&t, kind, 12, 1, 0);
        check_case(&t, kind, 20, 0, 0);
        weight_free(&t);
    }
    gemv_up_to = MAX_M;
    gpu_restore();
    const int64_t exact = kind_exact[kind] - exact0, total = kind_total[kind] - total0;
    const double frac = total ? (double)exact / (double)total : 1.0;
    printf("  %s (16 rows): %lld GEMV outputs, %.3f%% exactly bf16(cpu result)\n", kind_name[kind],
           (long long)total, 100 * frac);
    VT_CHECKF(frac >= GEMV_EXACT, "%s (16 rows): only %.3f%% of all GEMV outputs exact",
              kind_name[kind], 100 * frac);
}

int main(void) {
    vt_rng_state = 0x9e77e5eedULL;
    if (!(gpu = vt_gpu_or_skip())) return vt_finish();
    cpu = vl_backend_cpu();
    for (int kind = 0; kind < W_KINDS; kind++) test_kind(kind);
    test_blas_bias();
    test_gemv_bf16(1);
    test_gemv_bf16(0);
    for (int regs = 0; regs <= 4; regs++) {
        test_m8_kernel(W_NF4, regs, 1);
        test_m8_kernel(W_NF4_DQ, regs, 1);
    }
    for (int kind = W_NF4; kind < W_KINDS; kind++) test_m8_kernel(kind, 4, 0);
    test_m8_kernel(W_Q8ROW, 4, 1);
    /* the GEMVs launched the ordinary way (pdl=0; the default, pdl=1, launches them as
     * programmatic dependents on sm_90): the lean kernel, and the bf16 one at m = 1 */
    m8_cases(W_NF4, "pdl=0");
    m8_cases(W_Q8ROW, "pdl=0");
    m8_cases(W_BF16, "pdl=0");
    test_q_v2(W_NF4);
    test_q_v2(W_Q8ROW);
    const char *row_tiles[] = {"gemv_row_tiles=1", "gemv_row_tiles=2", "gemv_row_tiles=3"};
    /* bf16 takes cuBLAS past 8 rows whatever the row tiles; the 8-row passes have none */
    for (int kind = 0; kind < W_KINDS; kind++)
        for (int r = 0; r < (kind == W_BF16 ? 1 : 3); r++) test_rows16(kind, row_tiles[r], r == 0);
    return vt_finish();
}
