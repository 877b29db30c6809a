/* test_quant_gpu.c: quantization on the GPU (kernels/cuda_quant.cu) and the dequant GEMM
 * (kernels/cuda_dequant_gemm.cu) against their CPU twins (kernels/cpu_quant.c, the CPU linear).
 *
 *   quantize    NF4, NF4 with double quantization and Q8ROW of bf16 matrices: every byte of
 *               every buffer, and the offset's bits, equal vl_quantize_cpu's. Device buffers
 *               start poisoned and carry GUARD poisoned bytes after them, so a byte left
 *               unwritten (unless the CPU wrote the poison value) or written past the end fails.
 *               Shapes: one element, odd element counts, sizes that are not a multiple of the
 *               64-element block nor of the 256-block chunk, in-features 40, 48 and 136 (NF4
 *               blocks straddling rows), 7B shapes. Q8ROW's scale is __fdividef(127, absmax) on
 *               both sides (the CPU twin's table of it is checked here). Contents: N(0, 0.02);
 *               all-zero blocks and rows, huge, tiny, subnormal and signed-zero values; block
 *               scales spread over 2^40 (the offset's sum is then inexact in double and the GPU
 *               must take its in-order fallback, on one matrix over two scratch segments);
 *               inf and NaN.
 *   dequantize  the GPU's dequantize of the GPU-made weight against vl_weight_rows_f32 of the
 *               same bytes: every value bit-equal (NaN equals any NaN: payloads may differ).
 *   GEMM        the dequant GEMM against the CPU backend's linear on the same quantized weight,
 *               m in {9, 64, 300, 600, 2048}, with and without bias; slice sizes forced small on
 *               some shapes so that N is not a multiple of the slice, K not a multiple of 8 on
 *               one (with bias: the GEMV fallback); the default slicing plan with one slice and
 *               with two (both of its rules). The weights are the same bf16 values on both
 *               sides; only the fp32 summation order differs. Policy as tests/test_ops_gpu.c's
 *               linear: the CPU result is the fp32 value, the GPU returns it rounded once, so
 *               every output is within 2^-8 |ref| (one bf16 rounding) + (K/16 + 32) 2^-22
 *               |x_i| |w_r| (two fp32 summation orders; |x_i| |w_r| >= sum_k |x_ik w_rk|): under
 *               cancellation a tiny output may be several of its own ulps off, which a "one
 *               ulp" rule wrongly failed. And >= 99% of outputs must equal bf16(ref) exactly
 *               (order drift flips a rounding only next to a tie): a second rounding of the
 *               bias (69% exact when it happened), or a bf16 split-K reduction, breaks that.
 *               These run on the slices (wgmma 0); the Hopper kernel (cuda_dequant_gemm_wgmma.cu)
 *               is held to the same policy over its own edge cases (test_gemm_wgmma_all), and
 *               on an sm_90 device every one of them must have run on it.
 * Without a CUDA device (or in a build without CUDA): exit 77 (skip).
 * Leaves out: the linear dispatch between GEMV and GEMM (cuda_linear.cu), timing.
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"
#include "vltest_quant.h"

#include <float.h>

#ifdef VL_HAVE_CUDA
/* kernels/cuda_dequant_gemm.cu: the dequant GEMM with at most max_slice_rows rows per slice,
 * overlapped (1) or not (0; < 0: the backend's default), on the Hopper kernel (wgmma 1, where
 * it takes the call) or never (0). Returns 1 when the Hopper kernel ran. */
int vl_cuda_dequant_gemm_sliced(vl_backend *b, void *y, const void *x, int64_t m,
                                const vl_weight *w, const vl_vec *bias, int64_t max_slice_rows,
                                int overlap, int wgmma);
#endif
static int g_overlap = -1; /* test_gemm's dequant GEMM overlap; < 0: the backend's default */
static int g_wgmma = 0;    /* test_gemm: 1 runs the Hopper kernel where it takes the call */
static int g_wgmma_ran;    /* calls the Hopper kernel ran */

#define BF16_U     (1.0 / 256)            /* 2^-8: one bf16 rounding, relative */
#define F32_U      5.9604644775390625e-08 /* 2^-24 */
#define BF16_SUB   0x1p-134               /* half the smallest bf16 subnormal */
#define GEMM_EXACT 0.99
#define GUARD      64   /* poisoned bytes / elements after every device buffer */
#define POISON     0xa5 /* byte poison */
#define NAN_BITS   0x7fc0

static vl_backend *cpu, *gpu;

/* ---- inputs ---------------------------------------------------------------------------------- */

typedef enum { KIND_NORMAL, KIND_SPECIAL, KIND_WIDE, KIND_NONFINITE } kind;
static const char *kind_name[] = {"normal", "special", "wide", "nonfinite"};

/* n bf16 values of the given kind (see the file comment). */
static uint16_t *make_matrix(int64_t rows, int64_t cols, kind k) {
    const int64_t n = rows * cols;
    uint16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = vl_f32_to_bf16((float)(0.02 * vt_rng_normal()));
    if (k == KIND_SPECIAL) {
        for (int64_t i = 0; i < n && i < VL_NF4_BLOCK; i++) h[i] = 0; /* an all-zero block */
        if (rows > 2)
            for (int64_t c = 0; c < cols; c++) h[cols + c] = 0x8000; /* a row of -0 */
        for (int64_t i = 0; i < n; i++) {
            if (i % 97 == 50)
                h[i] = vl_f32_to_bf16(i % 2 ? 1e30f : -1e30f);
            else if (i % 89 == 7)
                h[i] = vl_f32_to_bf16(i % 2 ? 1e-38f : -1e-38f);
            else if (i % 113 == 3)
                h[i] = 0x8000;
            else if (i % 1013 == 11)
                h[i] = 0x0001; /* the smallest subnormal */
            else if (i % 2003 == 5)
                h[i] = 0x7f7f; /* the largest finite bf16 */
        }
    } else if (k == KIND_WIDE) {
        /* every block scaled by 2^-s, s in [0, 40]: scales too far apart for an exact sum */
        for (int64_t b = 0; b * VL_NF4_BLOCK < n; b++) {
            float scale = ldexpf(1.0f, -(int)(vt_rng_next() % 41));
            for (int64_t i = b * VL_NF4_BLOCK; i < n && i < (b + 1) * VL_NF4_BLOCK; i++)
                h[i] = vl_f32_to_bf16(vl_bf16_to_f32(h[i]) * scale);
        }
    } else if (k == KIND_NONFINITE) {
        for (int64_t i = 0; i < n; i++) {
            if (i % 501 == 17)
                h[i] = 0x7f80; /* +inf */
            else if (i % 733 == 29)
                h[i] = 0xff80; /* -inf */
            else if (i % 307 == 101)
                h[i] = NAN_BITS; /* NaN */
        }
        for (int64_t i = VL_NF4_BLOCK; i < n && i < 2 * VL_NF4_BLOCK; i++) h[i] = NAN_BITS;
    }
    return h;
}

/* ---- device buffers ------------------------------------------------------------------------ */

/* bytes + GUARD device bytes: src (NULL: poison), then GUARD poison bytes. */
static void *dev_bytes(const void *src, size_t bytes) {
    unsigned char *host = malloc(bytes + GUARD);
    memset(host, POISON, bytes + GUARD);
    if (src) memcpy(host, src, bytes);
    void *d = vt_dev_alloc(gpu, bytes + GUARD);
    gpu->upload(gpu, d, host, bytes + GUARD);
    free(host);
    return d;
}

/* Downloads bytes + GUARD; checks that the guard is still poison. */
static void *dev_read(const char *what, const void *d, size_t bytes) {
    unsigned char *host = malloc(bytes + GUARD);
    gpu->download(gpu, host, d, bytes + GUARD);
    int touched = 0;
    for (size_t i = bytes; i < bytes + GUARD; i++) touched += host[i] != POISON;
    VT_CHECKF(touched == 0, "%s: %d guard bytes past the end were written", what, touched);
    return host;
}

static void *host_zeroed(size_t bytes) {
    return calloc(bytes ? bytes : 1, 1);
}

static void *dev_poisoned(size_t bytes) {
    return dev_bytes(NULL, bytes);
}

/* A quantized weight and its buffers (vltest_quant.h), in host or device memory. */
static void qweight_host(qweight *q, vl_dtype fmt, int dq, int64_t rows, int64_t cols) {
    qweight_make(q, fmt, dq, rows, cols, host_zeroed);
}

static void qweight_device(qweight *q, vl_dtype fmt, int dq, int64_t rows, int64_t cols) {
    qweight_make(q, fmt, dq, rows, cols, dev_poisoned);
}

static void qweight_free(qweight *q, vl_backend *b) {
    void *p[4] = {(void *)q->w.data, (void *)q->w.absmax, (void *)q->w.absmax_code,
                  (void *)q->w.absmax_map};
    for (int i = 0; i < 4; i++)
        if (p[i]) b ? b->mem_free(b, p[i]) : free(p[i]);
}

/* The device weight's buffers in host memory (guards checked). */
static void qweight_download(qweight *h, const qweight *d, const char *what) {
    char name[256];
    memset(h, 0, sizeof *h);
    h->w = d->w;
    h->sz = d->sz;
    snprintf(name, sizeof name, "%s data", what);
    h->w.data = dev_read(name, d->w.data, d->sz.data);
    snprintf(name, sizeof name, "%s absmax", what);
    h->w.absmax = dev_read(name, d->w.absmax, d->sz.absmax);
    if (d->sz.absmax_code) {
        snprintf(name, sizeof name, "%s absmax_code", what);
        h->w.absmax_code = dev_read(name, d->w.absmax_code, d->sz.absmax_code);
    }
    if (d->sz.absmax_map) {
        snprintf(name, sizeof name, "%s absmax_map", what);
        h->w.absmax_map = dev_read(name, d->w.absmax_map, d->sz.absmax_map);
    }
}

static const char *fmt_name(vl_dtype fmt, int dq) {
    return fmt == VL_DTYPE_Q8ROW ? "Q8ROW" : dq ? "NF4+DQ" : "NF4";
}

/* ---- quantize and dequantize ------------------------------------------------------------------
 */

static int64_t first_difference(const void *a, const void *b, size_t bytes) {
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < bytes; i++)
        if (x[i] != y[i]) return (int64_t)i;
    return -1;
}

static void check_buffer(const char *what, const char *buf, const void *got, const void *ref,
                         size_t bytes) {
    int64_t at = first_difference(got, ref, bytes);
    size_t diff = 0;
    if (at >= 0)
        for (size_t i = (size_t)at; i < bytes; i++)
            diff += ((const unsigned char *)got)[i] != ((const unsigned char *)ref)[i];
    VT_CHECKF(at < 0,
              "%s: %s differs in %zu of %zu bytes, first at byte %lld (gpu 0x%02x, cpu 0x%02x)",
              what, buf, diff, bytes, (long long)at, at >= 0 ? ((const unsigned char *)got)[at] : 0,
              at >= 0 ? ((const unsigned char *)ref)[at] : 0);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* GPU dequantize of d (the device weight) against vl_weight_rows_f32 of its bytes h. */
static void check_dequantize(const char *what, const qweight *d, const qweight *h) {
    const int64_t n = d->w.rows * d->w.cols;
    float *ref = malloc((size_t)n * sizeof(float));
    vl_weight_rows_f32(&h->w, 0, d->w.rows, ref);
    uint16_t *poison = malloc((size_t)(n + GUARD) * 2);
    for (int64_t i = 0; i < n + GUARD; i++) poison[i] = NAN_BITS;
    void *dout = vt_dev_alloc(gpu, (size_t)(n + GUARD) * 2);
    gpu->upload(gpu, dout, poison, (size_t)(n + GUARD) * 2);
    gpu->dequantize(gpu, dout, &d->w);
    uint16_t *got = malloc((size_t)(n + GUARD) * 2);
    gpu->download(gpu, got, dout, (size_t)(n + GUARD) * 2);
    int64_t bad = 0, first = -1, guard = 0;
    for (int64_t i = 0; i < n; i++) {
        float g = vl_bf16_to_f32(got[i]);
        int same = isnan(g) && isnan(ref[i]) ? 1 : f32_bits(g) == f32_bits(ref[i]);
        if (!same && bad++ == 0) first = i;
    }
    for (int64_t i = n; i < n + GUARD; i++) guard += got[i] != NAN_BITS;
    VT_CHECKF(bad == 0,
              "%s: dequantize differs in %lld of %lld values, first [%lld] gpu %.9g cpu %.9g", what,
              (long long)bad, (long long)n, (long long)first,
              first >= 0 ? vl_bf16_to_f32(got[first]) : 0.0, first >= 0 ? ref[first] : 0.0);
    VT_CHECKF(guard == 0, "%s: dequantize wrote %lld elements past the end", what,
              (long long)guard);
    gpu->mem_free(gpu, dout);
    free(got);
    free(poison);
    free(ref);
}

static void test_quantize(int64_t rows, int64_t cols, kind k, vl_dtype fmt, int dq) {
    char what[160];
    snprintf(what, sizeof what, "%s %lldx%lld %s", fmt_name(fmt, dq), (long long)rows,
             (long long)cols, kind_name[k]);
    const int64_t n = rows * cols;
    uint16_t *src = make_matrix(rows, cols, k);

    qweight c;
    qweight_host(&c, fmt, dq, rows, cols);
    VT_CHECKF(vl_quantize_cpu(&c.w, src, dq) == 0, "%s: CPU quantize failed", what);

    void *dsrc = dev_bytes(src, (size_t)n * 2);
    qweight d, h;
    qweight_device(&d, fmt, dq, rows, cols);
    gpu->quantize(gpu, &d.w, dsrc, dq);
    qweight_download(&h, &d, what);

    check_buffer(what, "data", h.w.data, c.w.data, c.sz.data);
    check_buffer(what, "absmax", h.w.absmax, c.w.absmax, c.sz.absmax);
    if (c.sz.absmax_code)
        check_buffer(what, "absmax_code", h.w.absmax_code, c.w.absmax_code, c.sz.absmax_code);
    if (c.sz.absmax_map)
        check_buffer(what, "absmax_map", h.w.absmax_map, c.w.absmax_map, c.sz.absmax_map);
    VT_CHECKF(f32_bits(h.w.absmax_offset) == f32_bits(c.w.absmax_offset),
              "%s: offset gpu %.9g (0x%08x), cpu %.9g (0x%08x)", what, h.w.absmax_offset,
              f32_bits(h.w.absmax_offset), c.w.absmax_offset, f32_bits(c.w.absmax_offset));
    check_dequantize(what, &d, &h);
    printf("quantize %s\n", what);

    qweight_free(&h, NULL);
    qweight_free(&d, gpu);
    qweight_free(&c, NULL);
    gpu->mem_free(gpu, dsrc);
    free(src);
}

static void test_quantize_all(void) {
    /* in-features 40, 48, 136 (the tiny-odd model's): blocks straddle rows, and the last
     * block is partial for 3x40, 5x48 and 7x136 */
    static const int64_t shapes[][2] = {
        {1, 1},     {1, 3},      {3, 64},     {5, 33},    {100, 70},    {37, 1000},
        {256, 512}, {129, 4097}, {300, 2000}, {64, 4096}, {1024, 4096}, {512, 3584},
        {3, 40},    {120, 40},   {5, 48},     {16, 48},   {7, 136},     {48, 136}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < n_shapes; s++)
        for (int f = 0; f < 3; f++) {
            vl_dtype fmt = f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4;
            int dq = f == 1;
            test_quantize(shapes[s][0], shapes[s][1], KIND_NORMAL, fmt, dq);
            if (shapes[s][0] * shapes[s][1] >= 64 && shapes[s][0] * shapes[s][1] <= 600000)
                for (int k = KIND_SPECIAL; k <= KIND_NONFINITE; k++)
                    test_quantize(shapes[s][0], shapes[s][1], (kind)k, fmt, dq);
        }
    /* 7B shapes: gate/up [18944, 3584] in every format */
    for (int f = 0; f < 3; f++)
        test_quantize(18944, 3584, KIND_NORMAL, f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4, f == 1);
    /* 1.1 M blocks with scales 2^40 apart: the in-order fallback over two scratch segments */
    test_quantize(1100, 64000, KIND_WIDE, VL_DTYPE_NF4, 1);
}

/* ---- the dequant GEMM ---------------------------------------------------------------------------
 */

#ifdef VL_HAVE_CUDA
/* The Euclidean norm of each of the rows of a [rows, cols] matrix. */
static double *row_norms(const float *a, int64_t rows, int64_t cols) {
    double *norm = calloc((size_t)rows, sizeof(double));
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t k = 0; k < cols; k++) norm[i] += (double)a[i * cols + k] * a[i * cols + k];
        norm[i] = sqrt(norm[i]);
    }
    return norm;
}
#endif

static void test_gemm(vl_dtype fmt, int dq, int64_t n_out, int64_t k_in, int64_t m, int with_bias,
                      int64_t slice_rows) {
#ifdef VL_HAVE_CUDA
    char what[160];
    snprintf(what, sizeof what, "gemm %s N=%lld K=%lld m=%lld%s slice %lld%s wgmma %d",
             fmt_name(fmt, dq), (long long)n_out, (long long)k_in, (long long)m,
             with_bias ? " +bias" : "", (long long)slice_rows, g_overlap == 0 ? " serial" : "",
             g_wgmma);
    uint16_t *w_src = malloc((size_t)(n_out * k_in) * 2);
    for (int64_t i = 0; i < n_out * k_in; i++)
        w_src[i] = vl_f32_to_bf16((float)(0.05 * vt_rng_normal()));
    float *x = malloc((size_t)(m * k_in) * sizeof(float));
    uint16_t *x_bits = malloc((size_t)(m * k_in) * 2);
    for (int64_t i = 0; i < m * k_in; i++) {
        x[i] = vl_round_bf16((float)vt_rng_normal());
        x_bits[i] = vl_f32_to_bf16(x[i]);
    }
    float *bias = malloc((size_t)n_out * sizeof(float));
    uint16_t *bias_bits = malloc((size_t)n_out * 2);
    for (int64_t i = 0; i < n_out; i++) {
        bias[i] = vl_round_bf16((float)(0.5 * vt_rng_normal()));
        bias_bits[i] = vl_f32_to_bf16(bias[i]);
    }

    /* the weight quantized on the GPU; the CPU reference uses the same bytes */
    void *dw_src = dev_bytes(w_src, (size_t)(n_out * k_in) * 2);
    qweight d, h;
    qweight_device(&d, fmt, dq, n_out, k_in);
    gpu->quantize(gpu, &d.w, dw_src, dq);
    qweight_download(&h, &d, what);

    float *ref = malloc((size_t)(m * n_out) * sizeof(float));
    vl_vec cbias = {with_bias ? bias : NULL, VL_DTYPE_F32, n_out};
    cpu->linear(cpu, ref, x, m, &h.w, &cbias);

    void *dx = dev_bytes(x_bits, (size_t)(m * k_in) * 2);
    void *dbias = dev_bytes(bias_bits, (size_t)n_out * 2);
    uint16_t *poison = malloc((size_t)(m * n_out + GUARD) * 2);
    for (int64_t i = 0; i < m * n_out + GUARD; i++) poison[i] = NAN_BITS;
    void *dy = vt_dev_alloc(gpu, (size_t)(m * n_out + GUARD) * 2);
    gpu->upload(gpu, dy, poison, (size_t)(m * n_out + GUARD) * 2);
    vl_vec gbias = {with_bias ? dbias : NULL, VL_DTYPE_BF16, n_out};
    const int ran =
        vl_cuda_dequant_gemm_sliced(gpu, dy, dx, m, &d.w, &gbias, slice_rows, g_overlap, g_wgmma);
    VT_CHECKF(!ran || g_wgmma, "%s: the Hopper kernel ran with wgmma 0", what);
    g_wgmma_ran += ran;
    uint16_t *got = malloc((size_t)(m * n_out + GUARD) * 2);
    gpu->download(gpu, got, dy, (size_t)(m * n_out + GUARD) * 2);

    /* tolerances (file comment) from the weights both sides multiply: the dequantized W */
    float *w_f32 = malloc((size_t)(n_out * k_in) * sizeof(float));
    vl_weight_rows_f32(&h.w, 0, n_out, w_f32);
    double *x_norm = row_norms(x, m, k_in), *w_norm = row_norms(w_f32, n_out, k_in);
    const double drift = ((double)k_in / 16 + 32) * 4 * F32_U;
    int64_t exact = 0, bad = 0, first_bad = -1, guard = 0;
    double worst = 0, tol_first = 0;
    for (int64_t i = 0; i < m * n_out; i++) {
        const float g = vl_bf16_to_f32(got[i]);
        const double tol = BF16_U * fabs((double)ref[i]) +
                           drift * x_norm[i / n_out] * w_norm[i % n_out] + BF16_SUB;
        const double err = fabs((double)g - (double)ref[i]);
        exact += got[i] == vl_f32_to_bf16(ref[i]) && !isnan(ref[i]);
        if (!(err <= tol)) { /* NaN on either side fails */
            if (bad++ == 0) first_bad = i, tol_first = tol;
        } else {
            worst = fmax(worst, err / tol);
        }
    }
    for (int64_t i = m * n_out; i < m * n_out + GUARD; i++) guard += got[i] != NAN_BITS;
    const double frac = (double)exact / (double)(m * n_out);
    printf("%-58s exact %.5f, err/tol %.3f, outside %lld\n", what, frac, worst, (long long)bad);
    VT_CHECKF(frac >= GEMM_EXACT, "%s: only %.4f of outputs equal bf16(cpu)", what, frac);
    VT_CHECKF(bad == 0,
              "%s: %lld outputs outside tolerance, first [%lld, %lld] gpu %.6g cpu %.6g +- %.3g",
              what, (long long)bad, (long long)(first_bad / n_out), (long long)(first_bad % n_out),
              first_bad >= 0 ? vl_bf16_to_f32(got[first_bad]) : 0.0,
              first_bad >= 0 ? ref[first_bad] : 0.0, tol_first);
    free(w_f32);
    free(x_norm);
    free(w_norm);
    VT_CHECKF(guard == 0, "%s: %lld elements past the end of y written", what, (long long)guard);

    gpu->mem_free(gpu, dy);
    gpu->mem_free(gpu, dbias);
    gpu->mem_free(gpu, dx);
    gpu->mem_free(gpu, dw_src);
    qweight_free(&h, NULL);
    qweight_free(&d, gpu);
    free(got);
    free(poison);
    free(ref);
    free(bias_bits);
    free(bias);
    free(x_bits);
    free(x);
    free(w_src);
#else
    (void)fmt, (void)dq, (void)n_out, (void)k_in, (void)m, (void)with_bias, (void)slice_rows,
        (void)g_overlap, (void)g_wgmma, (void)g_wgmma_ran;
#endif
}

static void test_gemm_all(void) {
    static const int64_t ms[] = {9, 64, 300, 2048};
    for (int f = 0; f < 3; f++) {
        vl_dtype fmt = f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4;
        int dq = f == 1;
        for (int bias = 0; bias < 2; bias++) {
            for (int i = 0; i < 4; i++) test_gemm(fmt, dq, 200, 320, ms[i], bias, 0);
            /* K % 8 != 0 (the element-wise dequantization), 3 slices of 32, 32, 13 rows; with
             * bias cuBLAS into fp32 (cuBLASLt's bias epilogue rounded twice at this shape) */
            test_gemm(fmt, dq, 77, 130, 9, bias, 32);
            test_gemm(fmt, dq, 77, 130, 300, bias, 32);
            /* the tiny-odd model's Linears: in-features 40, 48, 136 (NF4 blocks straddle
             * rows), the default plan */
            test_gemm(fmt, dq, 120, 40, 300, bias, 0);
            test_gemm(fmt, dq, 136, 48, 64, bias, 0);
            test_gemm(fmt, dq, 48, 136, 300, bias, 0);
            test_gemm(fmt, dq, 48, 136, 9, bias, 16);
            /* 11 slices, the last one 40 rows: N is not a multiple of the slice */
            test_gemm(fmt, dq, 1000, 256, 64, bias, 96);
            test_gemm(fmt, dq, 1000, 256, 2048, bias, 96);
            /* a 7B shape (k/v projection), the default plan: one slice */
            test_gemm(fmt, dq, 512, 3584, 300, bias, 0);
            test_gemm(fmt, dq, 512, 3584, 2048, bias, 0);
            /* the default plan's own splits: at m >= 512 at least two slices (1152 + 1024 rows);
             * below, slices that stay in L2 (16 MiB of bf16 W: two slices of 1024 rows) */
            test_gemm(fmt, dq, 2176, 256, 600, bias, 0);
            test_gemm(fmt, dq, 2048, 4096, 64, bias, 0);
            /* Qwen2.5-VL 3B / 7B vision MLP: N = 3420 (gate / up), K = 3420 (down) */
            test_gemm(fmt, dq, 3420, 1280, 300, bias, 0);
            test_gemm(fmt, dq, 1280, 3420, 300, bias, 0);
        }
    }
    /* dq_overlap 0: each slice dequantized on the main stream just before its GEMM (the
     * buffers alternate as before; larger slices at m >= 512: no two-slice minimum) */
    g_overlap = 0;
    for (int f = 0; f < 3; f++) {
        vl_dtype fmt = f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4;
        for (int bias = 0; bias < 2; bias++) {
            test_gemm(fmt, f == 1, 1000, 256, 2048, bias, 96);
            test_gemm(fmt, f == 1, 2176, 256, 600, bias, 0);
            test_gemm(fmt, f == 1, 512, 3584, 2048, bias, 0);
            test_gemm(fmt, f == 1, 77, 130, 300, bias, 32);
        }
    }
    g_overlap = -1;
}

/* The Hopper dequant GEMM (cuda_dequant_gemm_wgmma.cu), on a compute capability 9.0 device:
 * tiles of 128 rows of W by 256 rows of x, k steps of 64, a persistent grid. Edge cases: m of 1,
 * not a multiple of the tile (rows of x past m are zeros from TMA and not stored), one tile and
 * more than one a CTA (4608 x 1024 at m = 1000: 144 tiles for 132 SMs); N of 8, not a multiple
 * of 128 (W's rows past N: zero codes, scale 0); K of one step (64) and of many; NF4 with and
 * without double quantization, Q8ROW; bias and none. Every case must have run on it; elsewhere
 * none. */
static void test_gemm_wgmma_all(void) {
#ifdef VL_HAVE_CUDA
    int major, minor;
    const int hopper = vt_device_sm90(&major, &minor);
    static const int64_t shapes[][3] = {/* N, K, m */
                                        {200, 320, 1},    {200, 320, 300},  {8, 64, 129},
                                        {264, 64, 127},   {256, 128, 128},  {1000, 256, 2048},
                                        {512, 3584, 300}, {2176, 256, 600}, {4608, 1024, 1000},
                                        {2048, 4096, 64}, {1280, 3456, 257}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    g_wgmma = 1;
    g_wgmma_ran = 0;
    int cases = 0;
    for (int f = 0; f < 3; f++)
        for (int bias = 0; bias < 2; bias++)
            for (int i = 0; i < n_shapes; i++, cases++)
                test_gemm(f == 2 ? VL_DTYPE_Q8ROW : VL_DTYPE_NF4, f == 1, shapes[i][0],
                          shapes[i][1], shapes[i][2], bias, 0);
    /* K % 64 != 0 and N % 8 != 0: never the Hopper kernel */
    test_gemm(VL_DTYPE_NF4, 0, 48, 136, 300, 1, 0);
    test_gemm(VL_DTYPE_NF4, 0, 77, 128, 300, 0, 0);
    g_wgmma = 0;
    printf("Hopper dequant GEMM: %d of %d cases (sm_90: %s)\n", g_wgmma_ran, cases,
           hopper ? "yes" : "no");
    VT_CHECKF(hopper ? g_wgmma_ran == cases : g_wgmma_ran == 0,
              "%d of %d cases ran on the Hopper dequant GEMM (compute capability %d.%d; built "
              "without 90 in VL_CUDA_ARCHITECTURES?)",
              g_wgmma_ran, cases, major, minor);
#endif
}

int main(void) {
    if (!(gpu = vt_gpu_or_skip())) return vt_finish();
    cpu = vl_backend_cpu();
    if (!gpu->quantize || !gpu->dequantize) {
        VT_CHECKF(0, "the CUDA backend has no quantize / dequantize entry");
        return vt_finish();
    }
    vt_rng_state = 0x5eed0042;
    test_quantize_all();
    test_gemm_all();
    test_gemm_wgmma_all();
    return vt_finish();
}
