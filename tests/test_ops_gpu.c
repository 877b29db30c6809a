/* test_ops_gpu.c: every op of the CUDA backend against its CPU twin, on the same inputs.
 *
 * Inputs are random (fixed seed) and rounded to bf16 first; the CPU twin runs on those values
 * held as float32, the GPU on their bf16 bits. The CPU result is the fp32 value the op defines;
 * the GPU must return it rounded to bf16 once, so every tolerance is
 *     2^-8 |ref|   (one bf16 rounding: 8 significant bits, round to nearest)
 *   + a bound on how far two fp32 evaluations of the same formula may drift apart (summation
 *     order, libm vs libdevice ulps), written next to each op.
 * A second check catches what a loose bound would not: at least 90% of the outputs must equal
 * bf16(ref) exactly (fp32 drift flips a rounding only next to a tie; truncation or a second
 * rounding would miss on a large fraction).
 * Outputs are poisoned with NaN (bf16 0x7fc0) and followed by GUARD poisoned elements: an
 * element the op forgot fails, and so does a write past the end or into row padding.
 * One line per case prints max abs / max rel error, the worst err/tol and the exact fraction.
 * Without a CUDA device (or in a build without CUDA) the program says why and exits 77 (skip).
 * Leaves out: attention beyond one smoke case per path (the attention test covers it), and
 * timing.
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#ifdef VL_HAVE_CUDA
#include "kernels/cuda_internal.h" /* vl_cuda_attention_supported */
/* kernels/cuda_gemm_bias_fp32.cu: the biased linear through fp32, in row blocks */
void vl_cuda_linear_bias_fp32_blocked(vl_backend *b, void *y, const void *x, int64_t m,
                                      const vl_weight *w, const vl_vec *bias,
                                      int64_t max_block_rows);
#endif

#include <float.h>
#include <stdint.h>

#define BF16_U   (1.0 / 256)            /* 2^-8: one bf16 rounding, relative */
#define F32_U    5.9604644775390625e-08 /* 2^-24 */
#define BF16_SUB 0x1p-134               /* half the smallest bf16 subnormal */
#define GUARD    64                     /* poisoned elements after every device tensor */
#define NAN_BITS 0x7fc0

static vl_backend *cpu, *gpu;

/* ---- random numbers ---------------------------------------------------------------------- */

/* n values ~ N(mean, sd^2), already rounded to bf16: what both backends see. */
static float *bf16_random(int64_t n, double mean, double sd) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = vl_round_bf16((float)(mean + sd * vt_rng_normal()));
    return p;
}

static int32_t *ints_random(int64_t n, int32_t below) {
    int32_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(vt_rng_next() % (uint64_t)below);
    return p;
}

static uint16_t *bits_of(const float *v, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) h[i] = vl_f32_to_bf16(v[i]);
    return h;
}

static double *doubles(int64_t n) {
    return calloc((size_t)(n > 0 ? n : 1), sizeof(double));
}

/* ---- device tensors ---------------------------------------------------------------------- */

/* n + GUARD bf16 elements: the n values (NULL: poison), then GUARD poisoned elements. */
static uint16_t *dev_bf16(const float *v, int64_t n) {
    uint16_t *host = malloc((size_t)(n + GUARD) * 2);
    for (int64_t i = 0; i < n + GUARD; i++)
        host[i] = v && i < n && !isnan(v[i]) ? vl_f32_to_bf16(v[i]) : NAN_BITS;
    uint16_t *d = vt_dev_alloc(gpu, (size_t)(n + GUARD) * 2);
    gpu->upload(gpu, d, host, (size_t)(n + GUARD) * 2);
    free(host);
    return d;
}

static int32_t *dev_i32(const int32_t *v, int64_t n) {
    int32_t *d = vt_dev_alloc(gpu, (size_t)(n > 0 ? n : 1) * 4);
    gpu->upload(gpu, d, v, (size_t)n * 4);
    return d;
}

/* The n values of a device tensor as floats; checks that its GUARD elements are still poison. */
static float *dev_read(const char *what, const uint16_t *d, int64_t n) {
    uint16_t *host = malloc((size_t)(n + GUARD) * 2);
    gpu->download(gpu, host, d, (size_t)(n + GUARD) * 2);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = vl_bf16_to_f32(host[i]);
    int64_t touched = 0;
    for (int64_t i = n; i < n + GUARD; i++) touched += host[i] != NAN_BITS;
    VT_CHECKF(touched == 0, "%s: %lld guard elements past the end were written", what,
              (long long)touched);
    free(host);
    return v;
}

/* ---- comparison -------------------------------------------------------------------------- */

/* got (GPU, bf16 values) against ref (CPU, fp32) with per-element tolerance tol; min_exact is
 * the fraction that must equal bf16(ref) exactly (0: not checked). Prints one line. */
static void compare(const char *what, const float *got, const float *ref, const double *tol,
                    int64_t n, double min_exact) {
    int64_t bad = 0, first = -1, exact = 0;
    double max_abs = 0, max_rel = 0, worst = 0, ref_max = 0;
    for (int64_t i = 0; i < n; i++) ref_max = fmax(ref_max, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)ref[i]);
        /* + BF16_SUB: below 2^-126 the rounding step of bf16 is absolute, not relative */
        if (!(err <= tol[i] + BF16_SUB)) {
            if (first < 0) first = i;
            bad++;
        }
        exact += got[i] == vl_round_bf16(ref[i]);
        if (isnan(err)) continue;
        max_abs = fmax(max_abs, err);
        /* relative error where it means something: not for the near-zeros of a cancellation */
        if (fabs((double)ref[i]) >= ref_max / 1024) max_rel = fmax(max_rel, err / fabs(ref[i]));
        if (tol[i] > 0) worst = fmax(worst, err / tol[i]);
    }
    double frac = n ? (double)exact / (double)n : 1.0;
    printf("  %-52s n=%-8lld max_abs %.2e max_rel %.2e err/tol %.3f exact %5.1f%%%s\n", what,
           (long long)n, max_abs, max_rel, worst, 100 * frac, bad ? "  FAIL" : "");
    VT_CHECKF(bad == 0,
              "%s: %lld of %lld outside tolerance; first [%lld] got %.9g want %.9g +- %.3g", what,
              (long long)bad, (long long)n, (long long)first, first < 0 ? 0.0 : got[first],
              first < 0 ? 0.0 : ref[first], first < 0 ? 0.0 : tol[first]);
    if (min_exact > 0 && n >= 64)
        VT_CHECKF(frac >= min_exact, "%s: only %.1f%% of outputs equal bf16(cpu result)", what,
                  100 * frac);
}

#define MIN_EXACT 0.90

/* ---- memory, conversions ------------------------------------------------------------------- */

static void test_memory(void) {
    printf("memory\n");
    VT_CHECK(strcmp(gpu->name, "cuda") == 0);
    VT_CHECK_INT(gpu->act, VL_DTYPE_BF16);
    VT_CHECK(gpu->caps == vl_backend_caps_of(VL_BACKEND_CUDA));
    /* an impossible size gives NULL, and the failure must not leak into the next op's check */
    VT_CHECK(gpu->mem_alloc(gpu, (size_t)1 << 62) == NULL);
    void *zero = gpu->mem_alloc(gpu, 0);
    VT_CHECK(zero != NULL);
    gpu->mem_free(gpu, zero);
    gpu->mem_free(gpu, NULL);

    enum { BYTES = 1001 };
    unsigned char src[BYTES], back[BYTES];
    for (int i = 0; i < BYTES; i++) src[i] = (unsigned char)(vt_rng_next() & 0xff);
    unsigned char *d = vt_dev_alloc(gpu, 2 * BYTES);
    gpu->upload(gpu, d, src, BYTES);
    gpu->copy(gpu, d + BYTES + 7, d + 3, 333); /* odd offsets and length */
    gpu->download(gpu, back, d, BYTES);
    VT_CHECK(memcmp(src, back, BYTES) == 0);
    gpu->download(gpu, back, d + BYTES + 7, 333);
    VT_CHECK(memcmp(src + 3, back, 333) == 0);
    gpu->sync(gpu);
    gpu->mem_free(gpu, d);
}

static void test_convert(void) {
    printf("from_f32 / to_f32\n");
    /* 5,000,003 values cross the 4 Mi-float staging chunk of cuda_backend.cu */
    const int64_t n = 5000003;
    float *src = malloc((size_t)n * sizeof(float));
    const float specials[] = {0.0f,
                              -0.0f,
                              INFINITY,
                              -INFINITY,
                              NAN,
                              FLT_MAX,
                              -FLT_MAX,
                              1e-40f,
                              -1e-45f,
                              FLT_MIN,
                              1.0f + 1.0f / 256,
                              1.0f + 3.0f / 256,
                              -1.0f - 1.0f / 256,
                              3.3895313892515355e38f};
    const int n_special = (int)(sizeof specials / sizeof specials[0]);
    for (int64_t i = 0; i < n; i++)
        src[i] = i < n_special
                     ? specials[i]
                     : (float)(vt_rng_normal() * ldexp(1.0, (int)(vt_rng_next() % 41) - 20));
    uint16_t *d = vt_dev_alloc(gpu, (size_t)n * 2);
    gpu->from_f32(gpu, d, src, n);
    uint16_t *bits = malloc((size_t)n * 2);
    gpu->download(gpu, bits, d, (size_t)n * 2);
    int64_t wrong = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        uint16_t want = vl_f32_to_bf16(src[i]);
        int ok = isnan(src[i]) ? isnan(vl_bf16_to_f32(bits[i])) : bits[i] == want;
        if (!ok && first < 0) first = i;
        wrong += !ok;
    }
    printf("  from_f32 n=%lld: %lld not rounded to nearest even\n", (long long)n, (long long)wrong);
    VT_CHECKF(wrong == 0, "from_f32: %lld wrong; first [%lld] %.9g -> 0x%04x, want 0x%04x",
              (long long)wrong, (long long)first, first < 0 ? 0.0 : src[first],
              first < 0 ? 0 : bits[first], first < 0 ? 0 : vl_f32_to_bf16(src[first]));

    /* to_f32 of every bit pattern (and then the values above), into a buffer with a tail */
    for (int64_t i = 0; i < n; i++) bits[i] = i < 65536 ? (uint16_t)i : vl_f32_to_bf16(src[i]);
    gpu->upload(gpu, d, bits, (size_t)n * 2);
    float *back = malloc((size_t)(n + 16) * sizeof(float));
    for (int i = 0; i < 16; i++) back[n + i] = 12345.0f;
    gpu->to_f32(gpu, back, d, n);
    wrong = 0;
    first = -1;
    for (int64_t i = 0; i < n; i++) {
        float want = vl_bf16_to_f32(bits[i]);
        int ok = isnan(want) ? isnan(back[i]) : memcmp(&want, &back[i], 4) == 0;
        if (!ok && first < 0) first = i;
        wrong += !ok;
    }
    for (int i = 0; i < 16; i++) wrong += back[n + i] != 12345.0f;
    printf("  to_f32 n=%lld: %lld wrong\n", (long long)n, (long long)wrong);
    VT_CHECKF(wrong == 0, "to_f32: %lld wrong; first [%lld] 0x%04x -> %.9g", (long long)wrong,
              (long long)first, first < 0 ? 0 : bits[first], first < 0 ? 0.0 : back[first]);
    gpu->mem_free(gpu, d);
    free(src);
    free(bits);
    free(back);
}

/* fill_random_bf16: the same bits as the CPU twin (cpu_random.c), over more values than one
 * grid covers (each thread loops), with a tail that stays untouched. Center 0 (the Linear
 * weights' range): nvcc may fuse center + half * x into one FMA, which rounds like the CPU's
 * separate multiply only when nothing is added. */
static void test_fill_random(void) {
    printf("fill_random_bf16\n");
    const int64_t n = ((int64_t)65535 * 8 * 256) + 4097;
    uint16_t *d = vt_dev_alloc(gpu, (size_t)(n + GUARD) * 2);
    uint16_t *want = malloc((size_t)(n + GUARD) * 2), *got = malloc((size_t)(n + GUARD) * 2);
    for (int64_t i = 0; i < n + GUARD; i++) want[i] = NAN_BITS;
    gpu->upload(gpu, d, want, (size_t)(n + GUARD) * 2);
    gpu->fill_random_bf16(gpu, d, n, 0xfeedull << 20, 0.0f, 0.0346f);
    cpu->fill_random_bf16(cpu, want, n, 0xfeedull << 20, 0.0f, 0.0346f);
    gpu->download(gpu, got, d, (size_t)(n + GUARD) * 2);
    int64_t differ = 0;
    for (int64_t i = 0; i < n + GUARD; i++) differ += got[i] != want[i];
    VT_CHECKF(differ == 0, "fill_random_bf16: %lld of %lld values differ from the CPU twin",
              (long long)differ, (long long)n);
    gpu->mem_free(gpu, d);
    free(want);
    free(got);
}

/* ---- linear, embed ------------------------------------------------------------------------- */

/* x_off shifts x by that many elements (a misaligned view). Tolerance: besides the output
 * rounding, the CPU sums K products in 16 lanes (<= (K/16 + 5) roundings of 2^-24) and the GPU
 * in fp32 tensor-core k-steps plus split-K partials (assume <= K/16 + 32 roundings, each up to
 * 2^-23 if truncating): both within (K/16 + 32) 2^-22 sum|x_k w_k| <= (K/16 + 32) 2^-22
 * |x_i| |w_r| (Cauchy-Schwarz, so no O(m N K) loop here). */
/* block_rows > 0: the fp32 path (cuda_gemm_bias_fp32.cu) directly, in blocks of that many rows */
static void check_linear_blocks(int64_t m, int64_t K, int64_t N, int with_bias, int64_t x_off,
                                int64_t block_rows) {
    char what[128];
    snprintf(what, sizeof what, "linear m=%lld K=%lld N=%lld%s%s", (long long)m, (long long)K,
             (long long)N, with_bias ? " +bias" : "", x_off ? " x misaligned" : "");
    if (block_rows > 0)
        snprintf(what + strlen(what), sizeof what - strlen(what), " fp32 blocks of %lld",
                 (long long)block_rows);
    float *x = bf16_random(m * K, 0, 1), *w = bf16_random(N * K, 0, 1 / sqrt((double)K));
    float *bias = bf16_random(N, 0, 0.5);
    uint16_t *w_bits = bits_of(w, N * K), *b_bits = bits_of(bias, N);
    float *ref = malloc((size_t)(m * N + 1) * sizeof(float));
    vl_weight wc = {.data = w_bits, .dtype = VL_DTYPE_BF16, .rows = N, .cols = K};
    vl_vec bc = {with_bias ? b_bits : NULL, VL_DTYPE_BF16, N};
    cpu->linear(cpu, ref, x, m, &wc, &bc);

    uint16_t *dx = vt_dev_alloc(gpu, (size_t)(m * K + x_off + 1) * 2), *dw = dev_bf16(w, N * K);
    uint16_t *db = dev_bf16(bias, N), *dy = dev_bf16(NULL, m * N);
    uint16_t *x_bits = bits_of(x, m * K);
    gpu->upload(gpu, dx + x_off, x_bits, (size_t)(m * K) * 2);
    vl_weight wg = {.data = dw, .dtype = VL_DTYPE_BF16, .rows = N, .cols = K};
    vl_vec bg = {with_bias ? db : NULL, VL_DTYPE_BF16, N};
#ifdef VL_HAVE_CUDA
    if (block_rows > 0)
        vl_cuda_linear_bias_fp32_blocked(gpu, dy, dx + x_off, m, &wg, &bg, block_rows);
    else
#endif
        gpu->linear(gpu, dy, dx + x_off, m, &wg, &bg);
    float *got = dev_read(what, dy, m * N);

    double *tol = doubles(m * N), *x_norm = doubles(m), *w_norm = doubles(N);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t k = 0; k < K; k++) x_norm[i] += (double)x[i * K + k] * x[i * K + k];
        x_norm[i] = sqrt(x_norm[i]);
    }
    for (int64_t r = 0; r < N; r++) {
        for (int64_t k = 0; k < K; k++) w_norm[r] += (double)w[r * K + k] * w[r * K + k];
        w_norm[r] = sqrt(w_norm[r]);
    }
    const double acc = ((double)K / 16 + 32) * 4 * F32_U;
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = 0; r < N; r++)
            tol[i * N + r] = BF16_U * fabs(ref[i * N + r]) + acc * x_norm[i] * w_norm[r];
    compare(what, got, ref, tol, m * N, MIN_EXACT);

    gpu->mem_free(gpu, dx);
    gpu->mem_free(gpu, dw);
    gpu->mem_free(gpu, db);
    gpu->mem_free(gpu, dy);
    free(x), free(w), free(bias), free(w_bits), free(b_bits), free(x_bits);
    free(ref), free(got), free(tol), free(x_norm), free(w_norm);
}

static void check_linear(int64_t m, int64_t K, int64_t N, int with_bias, int64_t x_off) {
    check_linear_blocks(m, K, N, with_bias, x_off, 0);
}

static void test_linear(void) {
    printf("linear\n");
    check_linear(1, 3584, 512, 1, 0); /* decode k/v projection */
    check_linear(3, 80, 96, 0, 0);
    check_linear(17, 129, 131, 1, 0); /* odd K and N: no vector bias path */
    check_linear(17, 96, 3584, 0, 1); /* x one element off alignment */
    /* biased, not 16-byte clean: not cuBLASLt (its bias epilogue rounded twice at 17x129x131)
     * but cuBLAS into fp32, then the bias; one case per reason: K, N, x alignment */
    check_linear(300, 130, 72, 1, 0);
    check_linear(64, 256, 77, 1, 0);
    check_linear(20, 1280, 1280, 1, 1);
    /* Qwen2.5-VL 3B / 7B vision MLP: gate / up N = 3420, down K = 3420 */
    check_linear(300, 1280, 3420, 1, 0);
    check_linear(300, 3420, 1280, 1, 0);
    /* the fp32 path in several row blocks (the last one short), with and without bias */
    check_linear_blocks(300, 130, 77, 1, 0, 64);
    check_linear_blocks(45, 3420, 96, 1, 1, 8);
    check_linear_blocks(33, 64, 40, 0, 0, 16);
    check_linear(300, 1280, 1280, 1, 0); /* vision block */
    check_linear(300, 3584, 1000, 1, 0);
    /* K % 8 != 0 (test_engine_gpu's "odder"): GEMVs, cuBLAS, the biased fp32 path */
    check_linear(1, 30, 42, 1, 0);
    check_linear(5, 30, 4096, 0, 0);
    check_linear(52, 50, 30, 0, 0);
    check_linear(300, 90, 36, 1, 0);

    /* m = 0 writes nothing */
    uint16_t *dw = dev_bf16(NULL, 16 * 8), *dy = dev_bf16(NULL, 0);
    vl_weight wg = {.data = dw, .dtype = VL_DTYPE_BF16, .rows = 16, .cols = 8};
    gpu->linear(gpu, dy, dw, 0, &wg, NULL);
    free(dev_read("linear m=0", dy, 0));
    gpu->mem_free(gpu, dw);
    gpu->mem_free(gpu, dy);
}

/* Rows are copied bit for bit; an id outside the table gives a NaN row (the CPU twin aborts
 * there instead, so that part is GPU-only). */
static void check_embed(int64_t V, int64_t E, int64_t n) {
    char what[96];
    snprintf(what, sizeof what, "embed V=%lld E=%lld n=%lld", (long long)V, (long long)E,
             (long long)n);
    float *table = bf16_random(V * E, 0, 1);
    int32_t *ids = ints_random(n, (int32_t)V);
    ids[0] = 0;
    ids[n - 1] = (int32_t)(V - 1);
    uint16_t *t_bits = bits_of(table, V * E);
    float *ref = malloc((size_t)(n * E) * sizeof(float));
    vl_weight tc = {.data = t_bits, .dtype = VL_DTYPE_BF16, .rows = V, .cols = E};
    cpu->embed(cpu, ref, &tc, ids, n);
    uint16_t *dt = dev_bf16(table, V * E), *dy = dev_bf16(NULL, n * E);
    int32_t *di = dev_i32(ids, n);
    vl_weight tg = {.data = dt, .dtype = VL_DTYPE_BF16, .rows = V, .cols = E};
    gpu->embed(gpu, dy, &tg, di, n);
    float *got = dev_read(what, dy, n * E);
    double *tol = doubles(n * E); /* zero: exact */
    compare(what, got, ref, tol, n * E, 1.0);

    int32_t bad_ids[2] = {-1, (int32_t)V};
    int32_t *d_bad = dev_i32(bad_ids, 2);
    uint16_t *d_rows = dev_bf16(NULL, 2 * E);
    gpu->embed(gpu, d_rows, &tg, d_bad, 2);
    float *rows = dev_read(what, d_rows, 2 * E);
    int64_t not_nan = 0;
    for (int64_t j = 0; j < 2 * E; j++) not_nan += !isnan(rows[j]);
    VT_CHECKF(not_nan == 0, "%s: ids -1 and V left %lld non-NaN elements", what,
              (long long)not_nan);

    gpu->mem_free(gpu, dt);
    gpu->mem_free(gpu, dy);
    gpu->mem_free(gpu, di);
    gpu->mem_free(gpu, d_bad);
    gpu->mem_free(gpu, d_rows);
    free(table), free(ids), free(t_bits), free(ref), free(got), free(tol), free(rows);
}

static void test_embed(void) {
    printf("embed\n");
    check_embed(1000, 96, 1);
    check_embed(1000, 129, 17);
    check_embed(1000, 3584, 300);
}

/* ---- element-wise ops ---------------------------------------------------------------------- */

typedef enum { EW_ADD, EW_SILU_MUL, EW_QUICK_GELU, EW_GELU } ew_op;
static const char *const ew_names[] = {"add", "silu_mul", "quick_gelu", "gelu"};

/* Tolerance beyond the rounding: add is the same fp32 addition on both sides (exact match);
 * silu/quick_gelu differ by the ulps of expf (CUDA <= 2, glibc <= 1) through a division:
 * 2^-20 |ref| leaves room for 16 ulps; gelu's 1 + erf(t) cancels for t << 0, where erff's
 * absolute error (a few 2^-24) is multiplied by 0.5|x|: 2^-20 (|x| + |ref|). */
static void check_elementwise(ew_op op, int64_t n, int64_t off) {
    char what[96];
    snprintf(what, sizeof what, "%s n=%lld%s", ew_names[op], (long long)n,
             off ? " misaligned" : "");
    float *a = bf16_random(n, 0, 2), *bv = bf16_random(n, 0, 1);
    float *ref = malloc((size_t)(n + 1) * sizeof(float));
    memcpy(ref, a, (size_t)n * sizeof(float));
    /* device: a (in place, or the gate), b; both shifted by `off` elements */
    uint16_t *da = dev_bf16(NULL, n + off), *db = dev_bf16(NULL, n + off);
    uint16_t *dy = dev_bf16(NULL, n + off);
    uint16_t *a_bits = bits_of(a, n), *b_bits = bits_of(bv, n);
    gpu->upload(gpu, da + off, a_bits, (size_t)n * 2);
    gpu->upload(gpu, db + off, b_bits, (size_t)n * 2);
    uint16_t *out = da;
    switch (op) {
    case EW_ADD: /* y += a: y is `a` here, the addend `b` */
        cpu->add(cpu, ref, bv, n);
        gpu->add(gpu, da + off, db + off, n);
        break;
    case EW_SILU_MUL:
        cpu->silu_mul(cpu, ref, a, bv, n);
        gpu->silu_mul(gpu, dy + off, da + off, db + off, n);
        out = dy;
        break;
    case EW_QUICK_GELU:
        cpu->quick_gelu(cpu, ref, n);
        gpu->quick_gelu(gpu, da + off, n);
        break;
    case EW_GELU:
        cpu->gelu(cpu, ref, n);
        gpu->gelu(gpu, da + off, n);
        break;
    }
    float *got_all = dev_read(what, out, n + off), *got = got_all + off;
    double *tol = doubles(n);
    for (int64_t i = 0; i < n; i++) {
        double r = fabs(ref[i]);
        tol[i] = BF16_U * r + (op == EW_ADD    ? 0
                               : op == EW_GELU ? 0x1p-20 * (fabs(a[i]) + r)
                                               : 0x1p-20 * r);
    }
    compare(what, got, ref, tol, n, MIN_EXACT);
    gpu->mem_free(gpu, da);
    gpu->mem_free(gpu, db);
    gpu->mem_free(gpu, dy);
    free(a), free(bv), free(ref), free(a_bits), free(b_bits), free(got_all), free(tol);
}

/* silu_mul_rows over `rows` rows of a [gate | up] product 2n wide (shifted by `off` elements:
 * the scalar path) against the CPU twin, with silu_mul's tolerance; dev_read checks that the
 * poisoned guard after the rows is untouched. */
static void check_silu_mul_rows(int64_t rows, int64_t n, int64_t off) {
    char what[96];
    snprintf(what, sizeof what, "silu_mul_rows rows=%lld n=%lld%s", (long long)rows, (long long)n,
             off ? " misaligned" : "");
    const int64_t in_n = rows * 2 * n, out_n = rows * n;
    float *gu = bf16_random(in_n, 0, 2), *ref = malloc((size_t)out_n * sizeof(float));
    uint16_t *d_in = dev_bf16(NULL, in_n + off), *d_out = dev_bf16(NULL, out_n + off);
    uint16_t *in_bits = bits_of(gu, in_n);
    gpu->upload(gpu, d_in + off, in_bits, (size_t)in_n * 2);
    cpu->silu_mul_rows(cpu, ref, gu, rows, n);
    gpu->silu_mul_rows(gpu, d_out + off, d_in + off, rows, n);
    float *got_all = dev_read(what, d_out, out_n + off), *got = got_all + off;
    double *tol = doubles(out_n);
    for (int64_t i = 0; i < out_n; i++) tol[i] = BF16_U * fabs(ref[i]) + 0x1p-20 * fabs(ref[i]);
    compare(what, got, ref, tol, out_n, MIN_EXACT);
    gpu->mem_free(gpu, d_in);
    gpu->mem_free(gpu, d_out);
    free(gu), free(ref), free(in_bits), free(got_all), free(tol);
}

static void test_elementwise(void) {
    printf("element-wise\n");
    const int64_t sizes[] = {1, 7, 8, 129, 10752, 384003};
    for (int op = 0; op < 4; op++) {
        for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++)
            check_elementwise((ew_op)op, sizes[s], 0);
        check_elementwise((ew_op)op, 10752, 1); /* n % 8 == 0 but not 16-byte aligned */
    }
    check_silu_mul_rows(1, 8, 0);
    check_silu_mul_rows(3, 13, 0);     /* n % 8 != 0: the scalar path */
    check_silu_mul_rows(16, 18944, 0); /* a 16-row decode step's MLP */
    check_silu_mul_rows(5, 1024, 1);   /* not 16-byte aligned */
}

/* ---- norms --------------------------------------------------------------------------------- */

/* The statistics are fp32 sums of n terms in different orders on the two sides: the CPU's
 * 16 lanes (n/16 + 5 roundings) and the GPU's per-thread runs plus a shuffle tree (under
 * n/32 + 16): c_n = (n/16 + 64) 2^-23 bounds their relative drift. rmsnorm: c_n |ref|.
 * layernorm: a drift of the mean moves every output by about c_n mean|x| inv_std |w|, and the
 * variance by c_n relative: c_n ((|x - mean| + mean|x|) inv_std |w| + |b| + |ref|). */
static void check_norm(int layer, int64_t m, int64_t n, int with_params) {
    char what[96];
    snprintf(what, sizeof what, "%s m=%lld n=%lld%s", layer ? "layernorm" : "rmsnorm", (long long)m,
             (long long)n, with_params ? "" : " no weight/bias");
    float *x = layer ? bf16_random(m * n, 0.5, 2) : bf16_random(m * n, 0, 1);
    float *w = bf16_random(n, 1, 0.1), *bias = bf16_random(n, 0, 0.1);
    uint16_t *w_bits = bits_of(w, n), *b_bits = bits_of(bias, n);
    float *ref = malloc((size_t)(m * n) * sizeof(float));
    const float eps = 1e-6f;
    vl_vec wc = {with_params ? w_bits : NULL, VL_DTYPE_BF16, n};
    vl_vec bc = {with_params ? b_bits : NULL, VL_DTYPE_BF16, n};
    uint16_t *dx = dev_bf16(x, m * n), *dy = dev_bf16(NULL, m * n);
    uint16_t *dw = dev_bf16(w, n), *db = dev_bf16(bias, n);
    vl_vec wg = {with_params ? dw : NULL, VL_DTYPE_BF16, n};
    vl_vec bg = {with_params ? db : NULL, VL_DTYPE_BF16, n};
    if (layer) {
        cpu->layernorm(cpu, ref, x, m, n, &wc, &bc, eps);
        gpu->layernorm(gpu, dy, dx, m, n, &wg, &bg, eps);
    } else {
        cpu->rmsnorm(cpu, ref, x, m, n, &wc, eps);
        gpu->rmsnorm(gpu, dy, dx, m, n, &wg, eps);
    }
    float *got = dev_read(what, dy, m * n);
    double *tol = doubles(m * n);
    const double c = ((double)n / 16 + 64) * 2 * F32_U;
    for (int64_t i = 0; i < m; i++) {
        const float *xi = x + i * n;
        double mean = 0, mean_abs = 0, var = 0;
        for (int64_t j = 0; j < n; j++) mean += xi[j], mean_abs += fabs(xi[j]);
        mean /= (double)n;
        mean_abs /= (double)n;
        for (int64_t j = 0; j < n; j++) var += (xi[j] - mean) * (xi[j] - mean);
        double inv_std = 1 / sqrt(var / (double)n + eps);
        for (int64_t j = 0; j < n; j++) {
            double r = fabs(ref[i * n + j]), wj = with_params ? fabs(w[j]) : 1;
            double bj = with_params ? fabs(bias[j]) : 0;
            tol[i * n + j] = BF16_U * r + c * r;
            if (layer) tol[i * n + j] += c * ((fabs(xi[j] - mean) + mean_abs) * inv_std * wj + bj);
        }
    }
    compare(what, got, ref, tol, m * n, MIN_EXACT);
    gpu->mem_free(gpu, dx);
    gpu->mem_free(gpu, dy);
    gpu->mem_free(gpu, dw);
    gpu->mem_free(gpu, db);
    free(x), free(w), free(bias), free(w_bits), free(b_bits), free(ref), free(got), free(tol);
}

static void test_norms(void) {
    printf("norms\n");
    const int64_t shapes[][2] = {{1, 80},   {3, 96},    {17, 129},  {300, 1280},
                                 {1, 3584}, {17, 3584}, {300, 3584}};
    for (int layer = 0; layer < 2; layer++) {
        for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
            check_norm(layer, shapes[s][0], shapes[s][1], 1);
        check_norm(layer, 17, 1280, 0);
        check_norm(layer, 3, 129, 0);
    }
}

/* Two device tensors of n bf16 (plus their guards) hold the same bits: a fused op against the
 * ops it replaces (each of those is checked against its CPU twin here). */
static void check_same_bits(const char *what, const uint16_t *da, const uint16_t *db, int64_t n) {
    uint16_t *a = malloc((size_t)(n + GUARD) * 2), *b = malloc((size_t)(n + GUARD) * 2);
    gpu->download(gpu, a, da, (size_t)(n + GUARD) * 2);
    gpu->download(gpu, b, db, (size_t)(n + GUARD) * 2);
    int64_t differ = 0, first = -1;
    for (int64_t i = 0; i < n + GUARD; i++)
        if (a[i] != b[i]) differ += 1, first = first < 0 ? i : first;
    printf("  %-52s %lld of %lld differ from the separate ops\n", what, (long long)differ,
           (long long)n);
    VT_CHECKF(differ == 0, "%s: %lld elements differ from the separate ops, first [%lld]", what,
              (long long)differ, (long long)first);
    free(a), free(b);
}

/* add_rmsnorm (y written over a, as the decoder does) against add + rmsnorm on the GPU (same
 * bits), and against the CPU twin: x within one bf16 rounding; y also moves by the rounding of
 * the sums it normalizes (<= 2^-8 each, and their rms) on top of check_norm's bound. */
static void check_add_rmsnorm(int64_t m, int64_t n) {
    char what[96];
    snprintf(what, sizeof what, "add_rmsnorm m=%lld n=%lld", (long long)m, (long long)n);
    float *x = bf16_random(m * n, 0, 3), *a = bf16_random(m * n, 0, 1);
    float *w = bf16_random(n, 1, 0.1);
    uint16_t *w_bits = bits_of(w, n);
    const float eps = 1e-6f;
    vl_vec wc = {w_bits, VL_DTYPE_BF16, n};
    float *ref_x = malloc((size_t)(m * n) * sizeof(float)), *ref_y = malloc((size_t)(m * n) * 4);
    memcpy(ref_x, x, (size_t)(m * n) * sizeof(float));
    cpu->add_rmsnorm(cpu, ref_y, ref_x, a, m, n, &wc, eps);
    uint16_t *dx = dev_bf16(x, m * n), *da = dev_bf16(a, m * n), *dw = dev_bf16(w, n);
    uint16_t *dx2 = dev_bf16(x, m * n), *dy2 = dev_bf16(NULL, m * n);
    vl_vec wg = {dw, VL_DTYPE_BF16, n};
    gpu->add(gpu, dx2, da, m * n);
    gpu->rmsnorm(gpu, dy2, dx2, m, n, &wg, eps);
    gpu->add_rmsnorm(gpu, da, dx, da, m, n, &wg, eps); /* y over a */
    check_same_bits(what, dx, dx2, m * n);
    check_same_bits(what, da, dy2, m * n);
    float *got_x = dev_read(what, dx, m * n), *got_y = dev_read(what, da, m * n);
    double *tol_x = doubles(m * n), *tol_y = doubles(m * n);
    const double c = ((double)n / 16 + 64) * 2 * F32_U;
    for (int64_t i = 0; i < m * n; i++) {
        tol_x[i] = BF16_U * fabs(ref_x[i]);
        tol_y[i] = (3 * BF16_U + c) * fabs(ref_y[i]);
    }
    compare(what, got_x, ref_x, tol_x, m * n, MIN_EXACT);
    compare(what, got_y, ref_y, tol_y, m * n, 0.5);
    uint16_t *bufs[] = {dx, da, dw, dx2, dy2};
    for (int i = 0; i < 5; i++) gpu->mem_free(gpu, bufs[i]);
    free(x), free(a), free(w), free(w_bits), free(ref_x), free(ref_y), free(got_x), free(got_y);
    free(tol_x), free(tol_y);
}

static void test_add_rmsnorm(void) {
    printf("add_rmsnorm\n");
    check_add_rmsnorm(1, 3584);
    check_add_rmsnorm(17, 3584);
    check_add_rmsnorm(3, 129);  /* scalar path */
    check_add_rmsnorm(2, 1031); /* scalar, wider than its registers: add + rmsnorm */
}

/* ---- rotary ------------------------------------------------------------------------------- */

/* x[s, stride] with heads * D data elements per row and poisoned padding after them. Both
 * sides compute identical fp32 angles; cosf/sinf (glibc) and sincosf (CUDA, <= 2 ulp) differ
 * by a few 2^-24, and the rotation rounds twice in fp32: 2^-20 (|x0| + |x1|) of the pair. */
static void check_rope(int vision, int64_t s, int heads, int D, int64_t stride, int32_t pos_range) {
    char what[96];
    snprintf(what, sizeof what, "%s s=%lld heads=%d D=%d stride=%lld pos<%d",
             vision ? "rope_vision" : "rope_text", (long long)s, heads, D, (long long)stride,
             (int)pos_range);
    /* text sections: {16, 24, 24} at D 128, the same split of D / 2 at other head dims */
    const int s0 = D / 8 > 0 ? D / 8 : 1, s1 = (D / 2 - s0) / 2;
    const int rows = vision ? 2 : 3, sections[3] = {s0, s1, D / 2 - s0 - s1};
    const float theta = vision ? 10000.0f : 1000000.0f;
    float *x = bf16_random(s * stride, 0, 1);
    for (int64_t i = 0; i < s; i++)
        for (int64_t j = (int64_t)heads * D; j < stride; j++) x[i * stride + j] = NAN;
    int32_t *pos = ints_random(rows * s, pos_range); /* every row different */
    float *ref = malloc((size_t)(s * stride + 1) * sizeof(float));
    memcpy(ref, x, (size_t)(s * stride) * sizeof(float));
    uint16_t *dx = dev_bf16(x, s * stride);
    int32_t *dp = dev_i32(pos, rows * s);
    if (vision) {
        cpu->rope_vision(cpu, ref, stride, s, heads, D, pos, theta);
        gpu->rope_vision(gpu, dx, stride, s, heads, D, dp, theta);
    } else {
        cpu->rope_text(cpu, ref, stride, s, heads, D, pos, sections, theta);
        gpu->rope_text(gpu, dx, stride, s, heads, D, dp, sections, theta);
    }
    float *got = dev_read(what, dx, s * stride);
    /* compare the data elements; the padding must still be poison */
    int64_t n = s * heads * D, at = 0, padding_written = 0;
    float *g = calloc((size_t)n, sizeof(float)), *r = calloc((size_t)n, sizeof(float));
    double *tol = doubles(n);
    for (int64_t i = 0; i < s; i++) {
        for (int64_t j = 0; j < stride; j++) {
            int64_t e = i * stride + j;
            if (j >= (int64_t)heads * D) {
                padding_written += !isnan(got[e]);
                continue;
            }
            int64_t head0 = e - j % D, k = j % D % (D / 2);
            g[at] = got[e];
            r[at] = ref[e];
            tol[at] =
                BF16_U * fabs(ref[e]) + 0x1p-20 * (fabs(x[head0 + k]) + fabs(x[head0 + k + D / 2]));
            at++;
        }
    }
    compare(what, g, r, tol, n, MIN_EXACT);
    VT_CHECKF(padding_written == 0, "%s: %lld padding elements written", what,
              (long long)padding_written);
    gpu->mem_free(gpu, dx);
    gpu->mem_free(gpu, dp);
    free(x), free(pos), free(ref), free(got), free(g), free(r), free(tol);
}

static void test_rope(void) {
    printf("rotary\n");
    check_rope(0, 1, 28, 128, 28 * 128, 5000);    /* decode, q of Qwen2-VL-7B */
    check_rope(0, 17, 4, 128, 4 * 128 + 8, 5000); /* k heads, padded rows */
    check_rope(0, 300, 28, 128, 28 * 128, 30000); /* long-context positions */
    check_rope(1, 17, 16, 80, 16 * 80, 100);      /* vision */
    check_rope(1, 300, 16, 80, 3 * 16 * 80, 100); /* q inside a fused qkv row */
    /* tiny-odd (text D 16 in [q | k | v] rows of 80, vision D 20 in qkv rows of 120), other
     * head dims that are not multiples of 8, and the largest the kernels take (kernels.h) */
    check_rope(0, 48, 3, 16, 80, 2000);
    check_rope(1, 64, 2, 20, 120, 100);
    check_rope(0, 30, 5, 6, 5 * 6 + 2 * 6, 3000);
    check_rope(1, 40, 8, 4, 3 * 32, 100);
    check_rope(1, 40, 2, 36, 2 * 36 + 1, 100);
    check_rope(0, 5, 2, VL_CUDA_ROPE_MAX_HEAD_DIM, 2 * 512, 30000);
    check_rope(1, 5, 1, VL_CUDA_ROPE_MAX_HEAD_DIM, 3 * 512, 100);
}

/* ---- kv_append ------------------------------------------------------------------------------ */

/* Exact: written slots equal the source, every other slot keeps its poison. */
static void check_kv_append(int kv_heads, int D, int64_t max_ctx, int64_t s, int64_t pos0,
                            int64_t src_stride) {
    char what[96];
    snprintf(what, sizeof what, "kv_append heads=%d D=%d ctx=%lld s=%lld pos0=%lld stride=%lld",
             kv_heads, D, (long long)max_ctx, (long long)s, (long long)pos0, (long long)src_stride);
    const int64_t head_stride = max_ctx * D, n_cache = kv_heads * head_stride;
    float *src = bf16_random(s * src_stride, 0, 1);
    float *ref = malloc((size_t)n_cache * sizeof(float));
    for (int64_t i = 0; i < n_cache; i++) ref[i] = NAN;
    cpu->kv_append(cpu, ref, head_stride, src, src_stride, s, kv_heads, D, pos0, NULL);
    uint16_t *dc = dev_bf16(NULL, n_cache), *ds = dev_bf16(src, s * src_stride);
    gpu->kv_append(gpu, dc, head_stride, ds, src_stride, s, kv_heads, D, pos0, NULL);
    float *got = dev_read(what, dc, n_cache);
    int64_t wrong = 0, first = -1;
    for (int64_t i = 0; i < n_cache; i++) {
        int ok = isnan(ref[i]) ? isnan(got[i]) : got[i] == ref[i];
        if (!ok && first < 0) first = i;
        wrong += !ok;
    }
    printf("  %-52s %lld of %lld slots wrong\n", what, (long long)wrong, (long long)n_cache);
    VT_CHECKF(wrong == 0, "%s: %lld wrong; first [%lld] got %g want %g", what, (long long)wrong,
              (long long)first, first < 0 ? 0.0 : got[first], first < 0 ? 0.0 : ref[first]);
    gpu->mem_free(gpu, dc);
    gpu->mem_free(gpu, ds);
    free(src), free(ref), free(got);
}

static void test_kv_append(void) {
    printf("kv_append\n");
    check_kv_append(4, 128, 40, 3, 5, 4 * 128);
    check_kv_append(4, 128, 40, 1, 39, 4 * 128 + 8); /* the last slot */
    check_kv_append(4, 128, 40, 40, 0, 3 * 4 * 128); /* whole cache from a fused row */
    check_kv_append(2, 65, 10, 4, 2, 2 * 65);        /* odd head_dim: scalar path */
    check_kv_append(1, 6, 60, 1, 47, 5 * 6 + 2 * 6); /* a D 6 decode step from a fused row */
    check_kv_append(4, 20, 30, 7, 3, 4 * 20);
}

/* rope_kv_append against rope_text(q), rope_text(k), kv_append(k), kv_append(v) on the GPU:
 * the same bits in q, k and both caches (poisoned slots included). The separate ops are each
 * checked against their CPU twins above; the CPU twin of the fused op is their composition. */
static void check_rope_kv_append(int64_t s, int H, int G, int D, int fused_row, int64_t max_ctx,
                                 int64_t pos0, int pos_on_device) {
    char what[96];
    snprintf(what, sizeof what, "rope_kv_append s=%lld heads %d/%d D=%d%s pos0=%lld%s",
             (long long)s, H, G, D, fused_row ? " qkv row" : "", (long long)pos0,
             pos_on_device ? " (device)" : "");
    const int sections[3] = {D / 8, 3 * D / 16, 3 * D / 16};
    const int64_t HD = (int64_t)H * D, KD = (int64_t)G * D, head_stride = max_ctx * D;
    const int64_t row = fused_row ? HD + 2 * KD : 0, n_cache = G * head_stride;
    /* q, k, v: one [s, HD + 2 KD] buffer (fused) or three packed ones */
    const int64_t n_act = fused_row ? s * row : s * (HD + 2 * KD);
    float *act = bf16_random(n_act, 0, 1);
    int32_t *pos = ints_random(3 * s, 40000), p0 = (int32_t)pos0;
    uint16_t *d1 = dev_bf16(act, n_act), *d2 = dev_bf16(act, n_act);
    uint16_t *kc1 = dev_bf16(NULL, n_cache), *vc1 = dev_bf16(NULL, n_cache);
    uint16_t *kc2 = dev_bf16(NULL, n_cache), *vc2 = dev_bf16(NULL, n_cache);
    int32_t *dp = dev_i32(pos, 3 * s), *dp0 = dev_i32(&p0, 1);
    const int64_t q_stride = fused_row ? row : HD, kv_stride = fused_row ? row : KD;
    const int64_t k_at = fused_row ? HD : s * HD, v_at = fused_row ? HD + KD : s * (HD + KD);
    vl_rope_kv_params r = {0};
    r.q = d1;
    r.k = d1 + k_at;
    r.v = d1 + v_at;
    r.q_stride = q_stride;
    r.kv_stride = kv_stride;
    r.s = s;
    r.n_heads = H;
    r.n_kv_heads = G;
    r.head_dim = D;
    r.pos = dp;
    memcpy(r.sections, sections, sizeof sections);
    r.theta = 1000000.0f;
    r.k_cache = kc1;
    r.v_cache = vc1;
    r.head_stride = head_stride;
    r.pos0 = pos_on_device ? 0 : pos0;
    r.pos0_dev = pos_on_device ? dp0 : NULL;
    gpu->rope_kv_append(gpu, &r);
    gpu->rope_text(gpu, d2, q_stride, s, H, D, dp, sections, r.theta);
    gpu->rope_text(gpu, d2 + k_at, kv_stride, s, G, D, dp, sections, r.theta);
    gpu->kv_append(gpu, kc2, head_stride, d2 + k_at, kv_stride, s, G, D, pos0, NULL);
    gpu->kv_append(gpu, vc2, head_stride, d2 + v_at, kv_stride, s, G, D, pos0, NULL);
    check_same_bits(what, d1, d2, n_act);
    check_same_bits(what, kc1, kc2, n_cache);
    check_same_bits(what, vc1, vc2, n_cache);
    uint16_t *bufs[] = {d1, d2, kc1, vc1, kc2, vc2};
    for (int i = 0; i < 6; i++) gpu->mem_free(gpu, bufs[i]);
    gpu->mem_free(gpu, dp);
    gpu->mem_free(gpu, dp0);
    free(act), free(pos);
}

static void test_rope_kv_append(void) {
    printf("rope_kv_append\n");
    check_rope_kv_append(1, 28, 4, 128, 1, 64, 63, 1); /* decode step of Qwen2-VL-7B */
    check_rope_kv_append(1, 28, 4, 128, 1, 64, 17, 0);
    check_rope_kv_append(37, 28, 4, 128, 0, 64, 5, 0); /* prefill chunk, separate q/k/v */
    check_rope_kv_append(9, 6, 6, 16, 0, 12, 3, 0);    /* GQA 1, tiny head */
    check_rope_kv_append(5, 4, 1, 8, 1, 5, 0, 0);      /* one kv head, the whole cache */
    check_rope_kv_append(1, 3, 1, 16, 1, 60, 47, 1);   /* tiny-odd's decode step */
    check_rope_kv_append(1, 5, 1, 6, 1, 60, 47, 1);    /* head dims not multiples of 8 */
    check_rope_kv_append(7, 4, 2, 20, 0, 9, 2, 0);
}

/* ---- attention smoke ------------------------------------------------------------------------ */

/* One causal case per GPU path (prefill n_q = 5, decode n_q = 1), GQA 7, D = 128, keys in a
 * head-major cache whose unused slots are NaN (a kernel reading past n_kv fails). The GPU
 * rounds probabilities to bf16 before P.V: besides the output rounding, allow 2^-7 max|v|
 * (2^-8 for P, 2^-8 for its normalization). The attention test does the real work. */
static void check_attention(int64_t n_q, int64_t q_pos0) {
    char what[96];
    snprintf(what, sizeof what, "attention smoke causal n_q=%lld q_pos0=%lld GQA 14/2 D=128",
             (long long)n_q, (long long)q_pos0);
    const int H = 14, G = 2, D = 128;
    const int64_t max_ctx = 16, n_kv = q_pos0 + n_q, n_o = n_q * H * D;
    float *q = bf16_random(n_o, 0, 1);
    float *k = bf16_random(G * max_ctx * D, 0, 1), *v = bf16_random(G * max_ctx * D, 0, 1);
    for (int g = 0; g < G; g++)
        for (int64_t j = n_kv * D; j < max_ctx * D; j++)
            k[g * max_ctx * D + j] = v[g * max_ctx * D + j] = NAN;
    float *ref = malloc((size_t)n_o * sizeof(float));
    vl_attn_params p = {0};
    p.q_stride = H * D;
    p.kv_tok_stride = D;
    p.kv_head_stride = max_ctx * D;
    p.o_stride = H * D;
    p.n_q = n_q;
    p.n_kv = n_kv;
    p.n_heads = H;
    p.n_kv_heads = G;
    p.head_dim = D;
    p.scale = (float)(1 / sqrt((double)D));
    p.causal = 1;
    p.q_pos0 = q_pos0;
    vl_attn_params pc = p, pg = p;
    uint16_t *dq = dev_bf16(q, n_o), *dk = dev_bf16(k, G * max_ctx * D);
    uint16_t *dv = dev_bf16(v, G * max_ctx * D), *d_o = dev_bf16(NULL, n_o);
    pg.q = dq, pg.k = dk, pg.v = dv, pg.o = d_o;
    int supported = 1;
#ifdef VL_HAVE_CUDA
    supported = vl_cuda_attention_supported(&pg);
#endif
    if (!supported) {
        VT_SKIP("attention smoke: vl_cuda_attention_supported() says no (kernels not built?)");
        gpu->mem_free(gpu, dq);
        gpu->mem_free(gpu, dk);
        gpu->mem_free(gpu, dv);
        gpu->mem_free(gpu, d_o);
        free(q), free(k), free(v), free(ref);
        return;
    }
    pc.q = q, pc.k = k, pc.v = v, pc.o = ref;
    cpu->attention(cpu, &pc);
    gpu->attention(gpu, &pg);
    float *got = dev_read(what, d_o, n_o);
    double *tol = doubles(n_o);
    for (int64_t i = 0; i < n_q; i++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            double v_max = 0;
            for (int64_t j = 0; j < n_kv * D; j++)
                v_max = fmax(v_max, fabs(v[g * max_ctx * D + j]));
            for (int d = 0; d < D; d++) {
                int64_t e = i * H * D + h * D + d;
                tol[e] = BF16_U * fabs(ref[e]) + 0x1p-7 * v_max;
            }
        }
    compare(what, got, ref, tol, n_o, 0);
    gpu->mem_free(gpu, dq);
    gpu->mem_free(gpu, dk);
    gpu->mem_free(gpu, dv);
    gpu->mem_free(gpu, d_o);
    free(q), free(k), free(v), free(ref), free(got), free(tol);
}

int main(void) {
    vt_rng_state = 0x6b0e5eedULL;
    if (!(gpu = vt_gpu_or_skip())) return vt_finish();
    cpu = vl_backend_cpu();
    test_memory();
    test_convert();
    test_fill_random();
    test_linear();
    test_embed();
    test_elementwise();
    test_norms();
    test_add_rmsnorm();
    test_rope();
    test_kv_append();
    test_rope_kv_append();
    printf("attention (smoke)\n");
    check_attention(5, 3);
    check_attention(1, 7);
    return vt_finish();
}
