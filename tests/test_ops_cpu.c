/* test_ops_cpu.c: every op of the CPU backend against a plain float64 reference written here.
 *
 * Inputs are random (fixed-seed PRNG, ~N(0,1)); parameters are rounded to their dtype first and
 * the reference uses the rounded values, decoded by this file's own f16/bf16 decoders. Each
 * tolerance is a rounding-error bound of the float32 computation (u = 2^-24) written next to
 * its op, so a wrong index, mask or formula (errors of order 1e-2 and more) cannot hide.
 * Outputs are filled with NaN first: an element the op forgot fails, and padding between
 * strided rows and past the end must still be NaN afterwards. A summary line per op prints the
 * worst error/tolerance ratio seen, to show how much room the bounds leave.
 * Leaves out: the CUDA backend (its own op test compares it with this one).
 */
#include "kernels/kernels.h"
#include "vltest.h"

#include <float.h>
#include <stdint.h>

#define U 5.9604644775390625e-08 /* 2^-24: float32 unit roundoff */

/* ---- random numbers, parameters, checks ---------------------------------------------------- */

static int rng_int(int n) {
    return (int)(vt_rng_next() % (uint64_t)n);
}

static float *floats_random(int64_t n, double mean, double sd) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + sd * vt_rng_normal());
    return p;
}

static float *floats_nan(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* Independent decoders: half = (1024 + mantissa) * 2^(exp - 25), subnormal mantissa * 2^-24. */
static double ref_f16(uint16_t h) {
    int e = (h >> 10) & 31, man = h & 1023;
    double v = e == 0 ? ldexp(man, -24) : ldexp(1024 + man, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double ref_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A parameter as the backend sees it (bytes of `dtype`) and as the reference sees it (val). */
typedef struct {
    vl_dtype dtype;
    void *bytes;
    double *val;
} param;

static param param_random(vl_dtype t, int64_t n, double mean, double sd) {
    param p = {t, malloc((size_t)n * 4), malloc((size_t)n * sizeof(double))};
    for (int64_t i = 0; i < n; i++) {
        float f = (float)(mean + sd * vt_rng_normal());
        uint16_t h;
        if (t == VL_DTYPE_F32) {
            ((float *)p.bytes)[i] = f;
            p.val[i] = f;
        } else if (t == VL_DTYPE_F16) {
            h = vl_f32_to_f16(f);
            ((uint16_t *)p.bytes)[i] = h;
            p.val[i] = ref_f16(h);
        } else {
            h = vl_f32_to_bf16(f);
            ((uint16_t *)p.bytes)[i] = h;
            p.val[i] = ref_bf16(h);
        }
    }
    return p;
}

static void param_free(param *p) {
    free(p->bytes);
    free(p->val);
}

static const vl_dtype param_dtypes[3] = {VL_DTYPE_F32, VL_DTYPE_F16, VL_DTYPE_BF16};

/* Every |got - ref| <= tol (NaN fails: an unwritten element). Returns the worst err/tol. */
static double expect_close(const char *what, const float *got, const double *ref, const double *tol,
                           int64_t n) {
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= tol[i])) {
            if (first < 0) first = i;
            bad++;
        } else if (tol[i] > 0 && err / tol[i] > worst) {
            worst = err / tol[i];
        }
    }
    VT_CHECKF(bad == 0, "%s: %lld of %lld off; first [%lld] got %.9g want %.9g +- %.3g", what,
              (long long)bad, (long long)n, (long long)first, first < 0 ? 0.0 : got[first],
              first < 0 ? 0.0 : ref[first], first < 0 ? 0.0 : tol[first]);
    return worst;
}

/* n floats every `stride` starting at p, of which the first `used` are data: the rest is
 * padding that nothing may write (still NaN). */
static void expect_padding_nan(const char *what, const float *p, int64_t rows, int64_t stride,
                               int64_t used) {
    int64_t written = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = used; j < stride; j++) written += !isnan(p[r * stride + j]);
    VT_CHECKF(written == 0, "%s: %lld padding elements were written", what, (long long)written);
}

static double max2(double a, double b) {
    return a > b ? a : b;
}

/* ---- memory ops and the CUDA stub ---------------------------------------------------------- */

static void test_memory(vl_backend *b) {
    VT_CHECK(strcmp(b->name, "cpu") == 0);
    VT_CHECK_INT(b->act, VL_DTYPE_F32);
    VT_CHECK(vl_backend_cpu() == b);
    size_t sizes[3] = {1, 64, 1000};
    for (int s = 0; s < 3; s++) {
        float *dev = b->mem_alloc(b, sizes[s] * sizeof(float));
        VT_CHECK(dev != NULL && (uintptr_t)dev % 64 == 0);
        float *host = floats_random((int64_t)sizes[s], 0, 1), *back = floats_nan((int64_t)sizes[s]);
        b->upload(b, dev, host, sizes[s] * sizeof(float));
        b->download(b, back, dev, sizes[s] * sizeof(float));
        VT_CHECK(memcmp(host, back, sizes[s] * sizeof(float)) == 0);
        float *dev2 = b->mem_alloc(b, sizes[s] * sizeof(float));
        b->copy(b, dev2, dev, sizes[s] * sizeof(float));
        b->sync(b);
        VT_CHECK(memcmp(host, dev2, sizes[s] * sizeof(float)) == 0);
        b->from_f32(b, dev2, back, (int64_t)sizes[s]);
        b->to_f32(b, host, dev2, (int64_t)sizes[s]);
        VT_CHECK(memcmp(host, back, sizes[s] * sizeof(float)) == 0);
        b->mem_free(b, dev);
        b->mem_free(b, dev2);
        free(host);
        free(back);
    }
    VT_CHECK(b->mem_alloc(b, SIZE_MAX) == NULL); /* rounding up to 64 B would overflow */
}

static void test_cuda_stub(void) {
#ifndef VL_HAVE_CUDA
    char why[200] = "";
    VT_CHECK(vl_backend_cuda(NULL, why, sizeof why) == NULL);
    VT_CHECK(strstr(why, "--backend cpu") != NULL);
    VT_CHECK(vl_backend_cuda(NULL, NULL, 0) == NULL);
    vl_backend_free(vl_backend_cpu()); /* nothing: the CPU backend is static */
    VT_CHECK(vl_backend_cpu()->caps == vl_backend_caps_of(VL_BACKEND_CPU));
#else
    VT_SKIP("this build has CUDA: vl_backend_cuda is the real one");
#endif
}

/* ---- linear and embed ---------------------------------------------------------------------- */

/* Reference y = x W^T + b. Bound: each of the 16 lanes sums ceil(cols/16) products, the lanes
 * are added in 4 levels and the bias once: |err| <= (cols/16 + 6) u (sum|x w| + |b|). */
static double check_linear(vl_backend *b, int64_t m, int64_t rows, int64_t cols, vl_dtype wt,
                           int bias_mode) {
    char what[96];
    snprintf(what, sizeof what, "linear m=%lld %lldx%lld %s bias=%d", (long long)m, (long long)rows,
             (long long)cols, vl_dtype_name(wt), bias_mode);
    param w = param_random(wt, rows * cols, 0, 0.2);
    vl_dtype bt = bias_mode == 2 ? VL_DTYPE_F32 : wt; /* mode 2: F32 bias on any weight */
    param bias = param_random(bt, rows, 0, 1);
    vl_weight W = {.data = w.bytes, .dtype = wt, .rows = rows, .cols = cols};
    vl_vec B = {bias_mode ? bias.bytes : NULL, bt, rows};
    float *x = floats_random(m * cols, 0, 1);
    float *y = floats_nan(m * rows + 8); /* 8 guard elements past the end */
    b->linear(b, y, x, m, &W, &B);
    double *ref = malloc((size_t)(m * rows) * sizeof(double));
    double *tol = malloc((size_t)(m * rows) * sizeof(double));
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = 0; r < rows; r++) {
            double acc = bias_mode ? bias.val[r] : 0, mag = fabs(acc);
            for (int64_t c = 0; c < cols; c++) {
                acc += (double)x[i * cols + c] * w.val[r * cols + c];
                mag += fabs((double)x[i * cols + c] * w.val[r * cols + c]);
            }
            ref[i * rows + r] = acc;
            tol[i * rows + r] = ((double)cols / 16 + 6) * U * mag;
        }
    double worst = expect_close(what, y, ref, tol, m * rows);
    expect_padding_nan(what, y + m * rows, 1, 8, 0);

    /* The result of row i must not depend on m nor on the thread split: recompute a few rows
     * alone (m = 1, one thread) and compare bits. */
    int64_t probe[3] = {0, m / 2, m - 1};
    for (int k = 0; k < 3 && m > 1; k++) {
        float *one = floats_nan(rows);
        b->linear(b, one, x + probe[k] * cols, 1, &W, &B);
        VT_CHECKF(memcmp(one, y + probe[k] * rows, (size_t)rows * 4) == 0, "%s: row %lld", what,
                  (long long)probe[k]);
        free(one);
    }
    param_free(&w);
    param_free(&bias);
    free(x);
    free(y);
    free(ref);
    free(tol);
    return worst;
}

static void test_linear(vl_backend *b) {
    const int64_t ms[3] = {1, 3, 17};
    const int64_t shapes[5][2] = {{7, 80}, {80, 7}, {96, 129}, {129, 96}, {1, 33}};
    double worst = 0;
    int cases = 0;
    for (int mi = 0; mi < 3; mi++)
        for (int s = 0; s < 5; s++)
            for (int d = 0; d < 3; d++)
                for (int bias_mode = 0; bias_mode < 3; bias_mode++, cases++)
                    worst = max2(worst, check_linear(b, ms[mi], shapes[s][0], shapes[s][1],
                                                     param_dtypes[d], bias_mode));
    /* m * rows * cols = 14.8e6: above the threading threshold; 515 rows is not a multiple of
     * the row block; then a long row (cols = 2000) */
    worst = max2(worst, check_linear(b, 300, 515, 96, VL_DTYPE_BF16, 1));
    worst = max2(worst, check_linear(b, 5, 64, 2000, VL_DTYPE_F16, 0));
    printf("linear: %d cases, worst err/tol %.3f\n", cases + 2, worst);
}

static void test_embed(vl_backend *b) {
    const int64_t widths[2] = {7, 96};
    const int32_t ids[6] = {0, 36, 5, 5, 17, 0};
    for (int wi = 0; wi < 2; wi++)
        for (int d = 0; d < 3; d++) {
            int64_t V = 37, E = widths[wi];
            param table = param_random(param_dtypes[d], V * E, 0, 1);
            vl_weight T = {.data = table.bytes, .dtype = param_dtypes[d], .rows = V, .cols = E};
            float *y = floats_nan(6 * E + 8);
            b->embed(b, y, &T, ids, 6);
            int64_t wrong = 0;
            for (int i = 0; i < 6; i++)
                for (int64_t e = 0; e < E; e++)
                    wrong += (double)y[i * E + e] != table.val[ids[i] * E + e]; /* exact */
            VT_CHECKF(wrong == 0, "embed E=%lld %s: %lld wrong", (long long)E,
                      vl_dtype_name(param_dtypes[d]), (long long)wrong);
            expect_padding_nan("embed", y + 6 * E, 1, 8, 0);
            param_free(&table);
            free(y);
        }
}

/* ---- norms --------------------------------------------------------------------------------- */

static const int64_t norm_widths[4] = {7, 80, 96, 129};

/* rmsnorm bound: the sum of squares (all terms >= 0) is off by (n/16 + 5) u relative, the
 * division, eps add, sqrt and reciprocal add ~3.5 u; rsqrt halves the first part; two products
 * follow: |err| <= ((n/16 + 9)/2 + 4) u |ref|. */
static double check_rmsnorm(vl_backend *b, int64_t m, int64_t n, int wmode) {
    const float eps = 1e-6f;
    char what[64];
    snprintf(what, sizeof what, "rmsnorm m=%lld n=%lld w=%d", (long long)m, (long long)n, wmode);
    param w = param_random(wmode < 3 ? param_dtypes[wmode] : VL_DTYPE_F32, n, 1, 0.5);
    vl_vec W = {wmode < 3 ? w.bytes : NULL, w.dtype, n};
    float *x = floats_random(m * n, 0, 2);
    float *y = floats_nan(m * n + 8);
    b->rmsnorm(b, y, x, m, n, &W, eps);
    double *ref = malloc((size_t)(m * n) * sizeof(double)), *tol = malloc((size_t)(m * n) * 8);
    for (int64_t i = 0; i < m; i++) {
        double ms = 0;
        for (int64_t j = 0; j < n; j++) ms += (double)x[i * n + j] * x[i * n + j];
        double inv_rms = 1 / sqrt(ms / (double)n + eps);
        for (int64_t j = 0; j < n; j++) {
            ref[i * n + j] = x[i * n + j] * inv_rms * (wmode < 3 ? w.val[j] : 1.0);
            tol[i * n + j] = (((double)n / 16 + 9) / 2 + 4) * U * fabs(ref[i * n + j]);
        }
    }
    double worst = expect_close(what, y, ref, tol, m * n);
    expect_padding_nan(what, y + m * n, 1, 8, 0);
    param_free(&w);
    free(x);
    free(y);
    free(ref);
    free(tol);
    return worst;
}

/* layernorm bound, d = x - mean: the mean is off by (n/16 + 6) u mean|x|; the variance's first
 * order error from it cancels (sum d = 0), leaving (n/16 + 7) u relative; so
 * |err| <= (n/16 + 10) u (|w| (|d| + mean|x|) / std + |b|). Inputs carry a mean of 3 so that
 * subtracting it matters. */
static double check_layernorm(vl_backend *b, int64_t m, int64_t n, int wmode, int bmode) {
    const float eps = 1e-6f;
    char what[80];
    snprintf(what, sizeof what, "layernorm m=%lld n=%lld w=%d b=%d", (long long)m, (long long)n,
             wmode, bmode);
    param w = param_random(wmode < 3 ? param_dtypes[wmode] : VL_DTYPE_F32, n, 1, 0.5);
    param bias = param_random(bmode < 3 ? param_dtypes[bmode] : VL_DTYPE_F32, n, 0, 1);
    vl_vec W = {wmode < 3 ? w.bytes : NULL, w.dtype, n};
    vl_vec B = {bmode < 3 ? bias.bytes : NULL, bias.dtype, n};
    float *x = floats_random(m * n, 3, 1.5);
    float *y = floats_nan(m * n + 8);
    b->layernorm(b, y, x, m, n, &W, &B, eps);
    double *ref = malloc((size_t)(m * n) * sizeof(double)), *tol = malloc((size_t)(m * n) * 8);
    for (int64_t i = 0; i < m; i++) {
        const float *xi = x + i * n;
        double mean = 0, mean_abs = 0, var = 0;
        for (int64_t j = 0; j < n; j++) mean += xi[j], mean_abs += fabs(xi[j]);
        mean /= (double)n;
        mean_abs /= (double)n;
        for (int64_t j = 0; j < n; j++) var += (xi[j] - mean) * (xi[j] - mean);
        double std = sqrt(var / (double)n + eps);
        for (int64_t j = 0; j < n; j++) {
            double wj = wmode < 3 ? w.val[j] : 1.0, bj = bmode < 3 ? bias.val[j] : 0.0;
            double d = xi[j] - mean;
            ref[i * n + j] = d / std * wj + bj;
            tol[i * n + j] =
                ((double)n / 16 + 10) * U * (fabs(wj) * (fabs(d) + mean_abs) / std + fabs(bj));
        }
    }
    double worst = expect_close(what, y, ref, tol, m * n);
    expect_padding_nan(what, y + m * n, 1, 8, 0);
    param_free(&w);
    param_free(&bias);
    free(x);
    free(y);
    free(ref);
    free(tol);
    return worst;
}

static void test_norms(vl_backend *b) {
    const int64_t ms[3] = {1, 3, 17};
    double worst_rms = 0, worst_ln = 0;
    for (int mi = 0; mi < 3; mi++)
        for (int ni = 0; ni < 4; ni++)
            for (int wmode = 0; wmode < 4; wmode++) { /* F32, F16, BF16, absent */
                worst_rms = max2(worst_rms, check_rmsnorm(b, ms[mi], norm_widths[ni], wmode));
                worst_ln = max2(
                    worst_ln, check_layernorm(b, ms[mi], norm_widths[ni], wmode, (wmode + mi) % 4));
            }
    printf("rmsnorm, layernorm: 48 cases each, worst err/tol %.3f, %.3f\n", worst_rms, worst_ln);
}

/* ---- element-wise ---------------------------------------------------------------------------- */

/* Random values plus the tails where exp overflows or erf saturates. */
static float *activation_inputs(int64_t n) {
    static const float edges[8] = {0.0f, -5.0f, 5.0f, -20.0f, 20.0f, -100.0f, 100.0f, 1e-30f};
    float *x = floats_random(n, 0, 3);
    memcpy(x, edges, sizeof edges);
    return x;
}

static void test_elementwise(vl_backend *b) {
    const int64_t n = 129;
    float *x = activation_inputs(n), *a = floats_random(n, 0, 1), *up = floats_random(n, 0, 1);
    float *y = malloc((size_t)(n + 8) * sizeof(float));
    double *ref = malloc((size_t)n * sizeof(double)), *tol = malloc((size_t)n * sizeof(double));
    double worst = 0;

    /* add: one float32 addition is correctly rounded, so it must equal the rounded sum */
    memcpy(y, x, (size_t)n * sizeof(float));
    b->add(b, y, a, n);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) wrong += y[i] != (float)((double)x[i] + (double)a[i]);
    VT_CHECKF(wrong == 0, "add: %lld elements differ from the rounded sum", (long long)wrong);

    /* silu_mul: expf (<= 1 ulp, error not amplified since exp/(1+exp) <= 1) and 4 roundings:
     * 8 u relative; FLT_MIN absorbs results below float32's normal range */
    for (int64_t i = 0; i < n + 8; i++) y[i] = NAN;
    b->silu_mul(b, y, x, up, n);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = x[i] / (1 + exp(-(double)x[i])) * up[i];
        tol[i] = 8 * U * fabs(ref[i]) + FLT_MIN;
    }
    worst = max2(worst, expect_close("silu_mul", y, ref, tol, n));
    expect_padding_nan("silu_mul", y + n, 1, 8, 0);

    /* silu_mul_rows: 3 rows of 43 from a [gate | up] of 3 x 86 (x and up interleaved by row):
     * bit for bit silu_mul of the same elements, rows in their places, nothing past them */
    {
        const int64_t rows = 3, w = n / rows;
        float *gu = malloc((size_t)(rows * 2 * w) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            memcpy(gu + r * 2 * w, x + r * w, (size_t)w * sizeof(float));
            memcpy(gu + r * 2 * w + w, up + r * w, (size_t)w * sizeof(float));
        }
        float *z = malloc((size_t)(rows * w + 8) * sizeof(float));
        for (int64_t i = 0; i < rows * w + 8; i++) z[i] = NAN;
        b->silu_mul_rows(b, z, gu, rows, w);
        int64_t differ = 0;
        for (int64_t i = 0; i < rows * w; i++) differ += memcmp(&z[i], &y[i], sizeof(float)) != 0;
        VT_CHECKF(differ == 0, "silu_mul_rows: %lld of %lld elements differ from silu_mul",
                  (long long)differ, (long long)(rows * w));
        expect_padding_nan("silu_mul_rows", z + rows * w, 1, 8, 0);
        free(gu);
        free(z);
    }

    /* quick_gelu: as silu, plus 1.702 rounded to float32, whose relative error reaches the
     * sigmoid multiplied by its condition number |z| (1 - sigmoid(z)) <= |z|, z = 1.702 x */
    memcpy(y, x, (size_t)n * sizeof(float));
    b->quick_gelu(b, y, n);
    for (int64_t i = 0; i < n; i++) {
        double z = 1.702 * x[i];
        ref[i] = x[i] / (1 + exp(-z));
        tol[i] = (8 + 2 * fabs(z)) * U * fabs(ref[i]) + FLT_MIN;
    }
    worst = max2(worst, expect_close("quick_gelu", y, ref, tol, n));

    /* gelu: erff is ~1 ulp of a value near +-1, i.e. ~u absolute, and 1 + erf cancels for
     * x << 0, so the bound is absolute in 0.5 |x|: |err| <= 2 u (|x| + 2 |ref|) */
    memcpy(y, x, (size_t)n * sizeof(float));
    b->gelu(b, y, n);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
        tol[i] = 2 * U * (fabs(x[i]) + 2 * fabs(ref[i])) + FLT_MIN;
    }
    worst = max2(worst, expect_close("gelu", y, ref, tol, n));
    printf("silu_mul, quick_gelu, gelu: worst err/tol %.3f\n", worst);
    free(x);
    free(a);
    free(up);
    free(y);
    free(ref);
    free(tol);
}

/* ---- rotary ---------------------------------------------------------------------------------- */

/* Reference rotation of pair (k, k + D/2) of every head by angle (double), with the bound of
 * the float32 path: the angle carries the relative error rho of inv_freq (exponent rounding
 * amplified by |ln theta| * exponent, powf, reciprocal, product); cos/sin add ~2 u.
 * |err| <= (|x0| + |x1|) (|angle| rho + 4 u). */
static void ref_rotate(const float *in, double *ref, double *tol, int heads, int D, int k,
                       double angle, double rho) {
    for (int h = 0; h < heads; h++) {
        double x0 = in[h * D + k], x1 = in[h * D + k + D / 2];
        double c = cos(angle), s = sin(angle),
               t = (fabs(x0) + fabs(x1)) * (fabs(angle) * rho + 4 * U);
        ref[h * D + k] = x0 * c - x1 * s;
        ref[h * D + k + D / 2] = x1 * c + x0 * s;
        tol[h * D + k] = tol[h * D + k + D / 2] = t;
    }
}

/* Runs rope_text or rope_vision (sections == NULL) on a strided x[s, heads, D] and compares. */
static double check_rope(vl_backend *b, const char *what, int64_t s, int heads, int D,
                         const int32_t *pos, const int sections[3], float theta) {
    int64_t stride = (int64_t)heads * D + 5, n = s * stride;
    float *x = floats_random(n, 0, 1), *in = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < s; i++)
        for (int64_t j = (int64_t)heads * D; j < stride; j++) x[i * stride + j] = NAN;
    memcpy(in, x, (size_t)n * sizeof(float));
    if (sections)
        b->rope_text(b, x, stride, s, heads, D, pos, sections, theta);
    else
        b->rope_vision(b, x, stride, s, heads, D, pos, theta);

    double *ref = malloc((size_t)heads * D * sizeof(double)), *tol = malloc((size_t)heads * D * 8);
    double worst = 0;
    int dim = sections ? D : D / 2; /* the `dim` of the inv_freq formula */
    for (int64_t i = 0; i < s; i++) {
        for (int k = 0; k < D / 2; k++) {
            int freq = k, axis;
            if (sections) {
                axis = k < sections[0] ? 0 : k < sections[0] + sections[1] ? 1 : 2;
            } else { /* pairs k < D/4 turn with h, the others with w, frequency k mod D/4 */
                axis = k < D / 4 ? 0 : 1;
                freq = k % (D / 4);
            }
            double exponent = 2.0 * freq / dim;
            double angle = pos[axis * s + i] * pow((double)theta, -exponent);
            double rho = (fabs(log((double)theta)) * exponent + 5) * U;
            ref_rotate(in + i * stride, ref, tol, heads, D, k, angle, rho);
        }
        worst = max2(worst, expect_close(what, x + i * stride, ref, tol, (int64_t)heads * D));
    }
    expect_padding_nan(what, x, s, stride, (int64_t)heads * D);
    free(x);
    free(in);
    free(ref);
    free(tol);
    return worst;
}

static int32_t *positions_random(int rows, int64_t s, int max) {
    int32_t *pos = malloc((size_t)(rows * s) * sizeof(int32_t));
    for (int64_t i = 0; i < rows * s; i++) pos[i] = rng_int(max);
    return pos;
}

static void test_rope(vl_backend *b) {
    const int sec128[3] = {16, 24, 24}, sec32[3] = {4, 6, 6};
    double worst = 0;
    int32_t *pos = positions_random(3, 11, 600); /* t, h, w rows differ everywhere */
    worst = max2(worst, check_rope(b, "rope_text D=128", 11, 3, 128, pos, sec128, 1e6f));
    free(pos);
    pos = positions_random(3, 5, 50);
    worst = max2(worst, check_rope(b, "rope_text D=32", 5, 2, 32, pos, sec32, 1e4f));
    free(pos);

    /* equal rows: M-RoPE is plain RoPE, bit for bit whatever the sections */
    int64_t s = 9;
    pos = positions_random(3, s, 1000);
    memcpy(pos + s, pos, (size_t)s * 4);
    memcpy(pos + 2 * s, pos, (size_t)s * 4);
    worst = max2(worst, check_rope(b, "rope_text equal rows", s, 4, 128, pos, sec128, 1e6f));
    const int one_d[3] = {64, 0, 0};
    float *x1 = floats_random(s * 4 * 128, 0, 1), *x2 = malloc((size_t)s * 4 * 128 * 4);
    memcpy(x2, x1, (size_t)s * 4 * 128 * 4);
    b->rope_text(b, x1, 4 * 128, s, 4, 128, pos, sec128, 1e6f);
    b->rope_text(b, x2, 4 * 128, s, 4, 128, pos, one_d, 1e6f);
    VT_CHECK(memcmp(x1, x2, (size_t)s * 4 * 128 * 4) == 0);
    free(x1);
    free(x2);
    free(pos);

    pos = positions_random(2, 7, 60);
    worst = max2(worst, check_rope(b, "rope_vision D=80", 7, 2, 80, pos, NULL, 1e4f));
    free(pos);
    pos = positions_random(2, 5, 60);
    worst = max2(worst, check_rope(b, "rope_vision D=40", 5, 3, 40, pos, NULL, 1e4f));
    free(pos);
    printf("rope_text, rope_vision: 5 cases, worst err/tol %.3f\n", worst);
}

/* ---- kv_append and attention ------------------------------------------------------------------
 */

typedef struct {
    const char *name;
    int n_heads, n_kv_heads, head_dim;
    int64_t n_q, n_kv, q_pos0;
    int causal;
    const int32_t *seg;
    int n_seg;
    int from_cache; /* k, v: head-major cache written by kv_append; else views of the fused qkv */
} attn_case;

/* Key j visible to query i? Written from the definition, not from the backend's loop bounds. */
static int ref_visible(const attn_case *c, int64_t i, int64_t j) {
    if (c->causal && j > c->q_pos0 + i) return 0;
    if (c->n_seg > 0) {
        int si = 0, sj = 0;
        for (int s = 0; s < c->n_seg; s++) {
            if (i >= c->seg[s]) si = s;
            if (j >= c->seg[s]) sj = s;
        }
        return si == sj;
    }
    return 1;
}

/* Reference o[i, h, :] (double) and its bound. A score is off by E = (D/16 + 6) u scale
 * sum|q k|, exp(s - max) by E_j + E_max + u |s - max| relative (+1.5 u from expf), so every p
 * by A = 2 max(E + u |s - max|) + (n/16 + 9) u relative (sum and division included); P.V in
 * blocks of 64 adds (64 + n/64 + 2) u: |err_d| <= (A + (n/64 + 66) u) sum p |v_d|. */
static void ref_attention(const attn_case *c, const float *q, const float *k, const float *v,
                          int64_t i, int h, double *ref, double *tol) {
    const int D = c->head_dim, g = h / (c->n_heads / c->n_kv_heads);
    const double scale = 1 / sqrt((double)D);
    double *score = malloc((size_t)c->n_kv * sizeof(double)), *err = malloc((size_t)c->n_kv * 8);
    double max = -INFINITY, sum = 0, worst_arg = 0;
    int64_t n = 0;
    const float *qi = q + (i * c->n_heads + h) * D;
    for (int64_t j = 0; j < c->n_kv; j++) {
        if (!ref_visible(c, i, j)) continue;
        const float *kj = k + (j * c->n_kv_heads + g) * D;
        double dot = 0, mag = 0;
        for (int d = 0; d < D; d++)
            dot += (double)qi[d] * kj[d], mag += fabs((double)qi[d] * kj[d]);
        score[j] = dot * scale;
        err[j] = ((double)D / 16 + 6) * U * scale * mag;
        max = max2(max, score[j]);
        n++;
    }
    for (int64_t j = 0; j < c->n_kv; j++)
        if (ref_visible(c, i, j)) worst_arg = max2(worst_arg, err[j] + U * fabs(score[j] - max));
    for (int64_t j = 0; j < c->n_kv; j++)
        if (ref_visible(c, i, j)) sum += exp(score[j] - max);
    double rel = 2 * worst_arg + ((double)n / 16 + 9) * U + ((double)n / 64 + 66) * U;
    for (int d = 0; d < D; d++) {
        double o = 0, mag = 0;
        for (int64_t j = 0; j < c->n_kv; j++) {
            if (!ref_visible(c, i, j)) continue;
            double p = exp(score[j] - max) / sum, vd = v[(j * c->n_kv_heads + g) * D + d];
            o += p * vd;
            mag += p * fabs(vd);
        }
        ref[d] = o;
        tol[d] = rel * mag + FLT_MIN;
    }
    free(score);
    free(err);
}

/* attention_naive on p: o2 must have exactly the bits of o (the same arithmetic in the eager
 * order), and the materialized matrix must hold probabilities: rows over the bound row_len,
 * 0 at masked keys, summing to 1. */
static void check_naive(vl_backend *b, const attn_case *c, const vl_attn_params *p, const float *o,
                        const char *what) {
    const int64_t row_len = p->n_kv, rows = (int64_t)c->n_heads * c->n_q;
    float *scores = floats_nan(rows * row_len), *o2 = floats_nan(c->n_q * p->o_stride);
    vl_attn_params pn = *p;
    pn.o = o2;
    b->attention_naive(b, &pn, scores);
    VT_CHECKF(memcmp(o2, o, (size_t)(c->n_q * p->o_stride) * sizeof(float)) == 0,
              "%s: attention_naive%s differs from attention", c->name, what);
    int64_t bad_mask = 0, bad_sum = 0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t i = r % c->n_q;
        double sum = 0;
        for (int64_t j = 0; j < row_len; j++) {
            const float pr = scores[r * row_len + j];
            if (j < c->n_kv && ref_visible(c, i, j))
                sum += pr;
            else
                bad_mask += pr != 0.0f;
        }
        bad_sum += !(fabs(sum - 1) <= 1e-5);
    }
    VT_CHECKF(bad_mask == 0 && bad_sum == 0,
              "%s: attention_naive%s scores: %lld masked entries not 0, %lld rows not summing to 1",
              c->name, what, (long long)bad_mask, (long long)bad_sum);
    free(scores), free(o2);
}

/* The other forms of the call p (whose result is o) must give exactly the same bits:
 * attention_naive, and for a causal call on a cache of cap positions (0: none) the runtime cache
 * length n_past_dev with the bound at the cache capacity (its spare rows hold NaN, so a read
 * past the length shows) and at the length itself. */
static void check_attention_variants(vl_backend *b, const attn_case *c, const vl_attn_params *p,
                                     const float *o, int64_t cap) {
    check_naive(b, c, p, o, "");
    if (!c->causal || c->n_seg > 0 || cap == 0) return;
    const int32_t n_past = (int32_t)(c->n_kv - c->n_q);
    const int64_t bounds[2] = {cap, c->n_kv};
    for (int k = 0; k < 2; k++) {
        vl_attn_params pr = *p;
        float *o2 = floats_nan(c->n_q * p->o_stride);
        pr.o = o2, pr.n_past_dev = &n_past, pr.n_kv = bounds[k], pr.q_pos0 = 1 << 30;
        b->attention(b, &pr);
        VT_CHECKF(memcmp(o2, o, (size_t)(c->n_q * p->o_stride) * sizeof(float)) == 0,
                  "%s: n_past_dev with bound %lld differs from the explicit call", c->name,
                  (long long)bounds[k]);
        check_naive(b, c, &pr, o, " with n_past_dev");
        free(o2);
    }
}

/* Builds logical q[n_q, H, D], k/v[n_kv, G, D], lays them out as the engine does, runs the op,
 * compares. Fused layout: qkv rows [q (H*D) | k (G*D) | v (G*D)] of the last n_q tokens; in the
 * cache layout the first n_kv - n_q keys come from an earlier "chunk" appended before. */
static double check_attention(vl_backend *b, const attn_case *c, float **o_out) {
    const int H = c->n_heads, G = c->n_kv_heads, D = c->head_dim;
    const int64_t row = (int64_t)(H + 2 * G) * D, n_past = c->n_kv - c->n_q;
    float *q = floats_random(c->n_q * H * D, 0, 1);
    float *k = floats_random(c->n_kv * G * D, 0, 1), *v = floats_random(c->n_kv * G * D, 0, 1);
    float *past = floats_random(n_past * row + 1, 0, 1), *fused = floats_random(c->n_q * row, 0, 1);
    for (int64_t t = 0; t < c->n_kv; t++) { /* token t of the keys lives in past or fused */
        float *dst = t < n_past ? past + t * row : fused + (t - n_past) * row;
        memcpy(dst + H * D, k + t * G * D, (size_t)G * D * 4);
        memcpy(dst + (H + G) * D, v + t * G * D, (size_t)G * D * 4);
    }
    for (int64_t i = 0; i < c->n_q; i++) memcpy(fused + i * row, q + i * H * D, (size_t)H * D * 4);

    vl_attn_params p = {.q = fused,
                        .q_stride = row,
                        .n_q = c->n_q,
                        .n_kv = c->n_kv,
                        .n_heads = H,
                        .n_kv_heads = G,
                        .head_dim = D,
                        .scale = 1.0f / sqrtf((float)D),
                        .causal = c->causal,
                        .q_pos0 = c->q_pos0,
                        .seg_starts = c->seg,
                        .n_seg = c->n_seg};
    const int64_t cap = c->n_kv + 3; /* cache positions per head, 3 left unused */
    float *kc = floats_nan(G * cap * D), *vc = floats_nan(G * cap * D);
    if (c->from_cache) {
        b->kv_append(b, kc, cap * D, past + H * D, row, n_past, G, D, 0, NULL);
        b->kv_append(b, vc, cap * D, past + (H + G) * D, row, n_past, G, D, 0, NULL);
        b->kv_append(b, kc, cap * D, fused + H * D, row, c->n_q, G, D, n_past, NULL);
        b->kv_append(b, vc, cap * D, fused + (H + G) * D, row, c->n_q, G, D, n_past, NULL);
        int64_t wrong = 0, unused = 0;
        for (int g = 0; g < G; g++)
            for (int64_t t = 0; t < cap; t++)
                for (int d = 0; d < D; d++) {
                    int64_t at = (g * cap + t) * D + d, src = (t * G + g) * D + d;
                    if (t >= c->n_kv)
                        unused += !isnan(kc[at]) + !isnan(vc[at]);
                    else
                        wrong += kc[at] != k[src] || vc[at] != v[src];
                }
        VT_CHECKF(wrong == 0 && unused == 0, "%s: kv_append %lld wrong, %lld unused written",
                  c->name, (long long)wrong, (long long)unused);
        p.k = kc, p.v = vc, p.kv_tok_stride = D, p.kv_head_stride = cap * D;
    } else {
        p.k = fused + H * D, p.v = fused + (H + G) * D, p.kv_tok_stride = row;
        p.kv_head_stride = D;
    }
    p.o_stride = (int64_t)H * D + 3;
    float *o = floats_nan(c->n_q * p.o_stride);
    p.o = o;
    b->attention(b, &p);

    double *ref = malloc((size_t)D * sizeof(double)), *tol = malloc((size_t)D * sizeof(double));
    double worst = 0;
    for (int64_t i = 0; i < c->n_q; i++)
        for (int h = 0; h < H; h++) {
            ref_attention(c, q, k, v, i, h, ref, tol);
            worst = max2(worst, expect_close(c->name, o + i * p.o_stride + h * D, ref, tol, D));
        }
    expect_padding_nan(c->name, o, c->n_q, p.o_stride, (int64_t)H * D);
    check_attention_variants(b, c, &p, o, c->from_cache ? cap : 0);

    /* a big causal call (threaded) row by row as decode steps: the same bits */
    for (int64_t i = c->n_q - 1; c->causal && !c->from_cache && c->n_q > 100 && i >= 0; i -= 97) {
        vl_attn_params one = p;
        float *o1 = floats_nan(p.o_stride);
        one.q = fused + i * row, one.n_q = 1, one.q_pos0 = i, one.o = o1;
        b->attention(b, &one);
        VT_CHECKF(memcmp(o1, o + i * p.o_stride, (size_t)H * D * 4) == 0, "%s: row %lld alone",
                  c->name, (long long)i);
        free(o1);
    }
    free(q), free(k), free(v), free(past), free(fused), free(kc), free(vc), free(ref), free(tol);
    if (o_out)
        *o_out = o;
    else
        free(o);
    return worst;
}

static void test_attention(vl_backend *b) {
    static const int32_t seg_vision[5] = {0, 5, 6, 20, 33}; /* incl. a 1-token segment */
    static const int32_t seg_big[4] = {0, 1, 100, 300};
    const attn_case cases[] = {
        {"prefill chunk after cache, GQA 7, D=128", 14, 2, 128, 9, 22, 13, 1, NULL, 0, 1},
        {"decode, GQA 3, D=24", 6, 2, 24, 1, 40, 39, 1, NULL, 0, 1},
        {"decode first token, GQA 7, D=128", 7, 1, 128, 1, 1, 0, 1, NULL, 0, 1},
        {"vision segments, D=80", 3, 3, 80, 33, 33, 0, 0, seg_vision, 4, 0},
        {"full non-causal, GQA 4, D=24", 4, 1, 24, 17, 17, 0, 0, NULL, 0, 0},
        {"causal prefill, GQA 3, D=24", 3, 1, 24, 17, 17, 0, 1, NULL, 0, 0},
        {"big causal (threads), D=80", 2, 1, 80, 300, 300, 0, 1, NULL, 0, 0},
        {"big segments (threads), D=80", 2, 2, 80, 300, 300, 0, 0, seg_big, 3, 0},
    };
    double worst = 0;
    int n_cases = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n_cases; i++) worst = max2(worst, check_attention(b, &cases[i], NULL));

    /* a 1-token segment sees only itself: its output is exactly its own v */
    float *o;
    attn_case one = {"1-token segment", 1, 1, 24, 3, 3, 0, 0, (const int32_t[]){0, 1, 2, 3}, 3, 0};
    vt_rng_state = 77;
    check_attention(b, &one, &o);
    vt_rng_state = 77; /* replay the generator: the same q, k, v as check_attention drew */
    float *q = floats_random(3 * 24, 0, 1), *k = floats_random(3 * 24, 0, 1);
    float *v = floats_random(3 * 24, 0, 1);
    int64_t wrong = 0;
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 24; d++) wrong += o[i * 27 + d] != v[i * 24 + d];
    VT_CHECKF(wrong == 0, "1-token segments: %lld outputs differ from v", (long long)wrong);
    free(o), free(q), free(k), free(v);
    printf("attention: %d cases, worst err/tol %.3f\n", n_cases + 1, worst);
}

/* fill_random_bf16 (cpu_random.c): value i is bf16(center + half * (2 u - 1)) of the key's
 * counter key + i, for n across the parallel threshold; what follows dst stays untouched. */
static void test_fill_random(vl_backend *b) {
    printf("fill_random_bf16\n");
    const int64_t n = 1000003;
    uint16_t *dst = malloc((size_t)(n + 8) * 2);
    for (int i = 0; i < 8; i++) dst[n + i] = 0x7fc1;
    b->fill_random_bf16(b, dst, n, 0x1234567ull, 1.0f, 0.05f);
    int64_t wrong = 0, spread_lo = 0, spread_hi = 0;
    for (int64_t i = 0; i < n; i++) {
        const double u = vl_random_unit(0x1234567ull + (uint64_t)i);
        wrong += dst[i] != vl_f32_to_bf16(1.0f + 0.05f * (float)(2.0 * u - 1.0));
        spread_lo += vl_bf16_to_f32(dst[i]) < 0.96f;
        spread_hi += vl_bf16_to_f32(dst[i]) > 1.04f;
    }
    for (int i = 0; i < 8; i++) wrong += dst[n + i] != 0x7fc1;
    VT_CHECKF(wrong == 0, "fill_random_bf16: %lld values wrong", (long long)wrong);
    VT_CHECK(spread_lo > n / 20 && spread_hi > n / 20); /* uniform over 0.95 .. 1.05 */
    free(dst);
}

int main(void) {
    vt_rng_state = 0x5eed1234abcdULL;
    vl_backend *b = vl_backend_cpu();
    test_memory(b);
    test_cuda_stub();
    test_linear(b);
    test_embed(b);
    test_norms(b);
    test_elementwise(b);
    test_rope(b);
    test_attention(b);
    test_fill_random(b);
    return vt_finish();
}
