/* test_quant.c: the NF4 / int8 weight formats (kernels/cpu_quant.c) and the reader of
 * pre-quantized bitsandbytes checkpoints (loader/bnb.c).
 *
 *   goldens   what bitsandbytes 0.50.2 made of four bf16 matrices (tests/fixtures/bnb_goldens:
 *             256x512, 100x70, 3x64, 64x4096), and what tests/reference/bnb_emulation.py (shown
 *             identical to it on those) made of matrices with in-features 40, 48 and 136
 *             (tests/fixtures/bnb_odd_goldens: NF4 blocks straddle rows, last blocks partial):
 *             NF4 packed bytes, absmax, double-quantization codes / nested absmax / offset /
 *             map, dequantized values and int8 CB / SCB must be identical, bit for bit (int8
 *             exact ties included: the scale is bitsandbytes' __fdividef, cpu_quant.c).
 *   formats   odd shapes (blocks straddling rows, an odd element count, an all-zero block)
 *             decoded against the layout written in kernels.h; vl_weight_rows_f32 on row
 *             ranges and plain dtypes; the backend's quantize / dequantize entries.
 *   linear    CPU linear and embed on quantized weights equal the same ops on the dequantized
 *             bf16 matrix, bit for bit.
 *   fixtures  tiny-bnb-nf4 / tiny-bnb-int8 (saved by transformers 5.17 + bitsandbytes 0.50.2):
 *             every quantized Linear is found with the shape of the bf16 twin, and quantizing
 *             the bf16 twin here gives the bytes stored in the file.
 *   errors    damaged copies written to a temporary directory: each gives -1 and a message
 *             naming the tensor.
 * Leaves out: GPU twins (tests/test_quant_gpu.c). */
#include "kernels/kernels.h"
#include "loader/loader.h"
#include "vltest.h"
#include "vltest_quant.h"

#include <cJSON.h>

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static void *read_fixture(const char *rel, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    if (vl_read_file(vt_fixture(rel), (size_t)64 << 20, &buf, &n) != 0) {
        fprintf(stderr, "cannot read fixture %s: %s\n", rel, vl_error_get());
        exit(2);
    }
    if (len) *len = n;
    return buf;
}

static const char *golden_dir = "bnb_goldens"; /* under tests/fixtures */

/* A golden file of golden_dir that must be exactly `bytes` long. */
static void *read_golden(const char *file, size_t bytes) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", golden_dir, file);
    size_t n;
    void *p = read_fixture(rel, &n);
    VT_CHECKF(n == bytes, "%s is %zu bytes, expected %zu", file, n, bytes);
    if (n != bytes) exit(2);
    return p;
}

static const char *json_file(const cJSON *obj, const char *key) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file");
    if (!cJSON_IsString(f)) {
        fprintf(stderr, "index.json: no file for %s\n", key);
        exit(2);
    }
    return f->valuestring;
}

static size_t count_equal_bytes(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += x[i] == y[i];
    return same;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Zeroed host memory, never NULL for 0 bytes. */
static void *host_zeroed(size_t bytes) {
    return calloc(1, bytes + 4);
}

static void qweight_alloc(qweight *q, vl_dtype fmt, int dq, int64_t rows, int64_t cols) {
    qweight_make(q, fmt, dq, rows, cols, host_zeroed);
}

static void qweight_free(qweight *q) {
    free((void *)q->w.data);
    free((void *)q->w.absmax);
    free((void *)q->w.absmax_code);
    free((void *)q->w.absmax_map);
}

static qweight quantized(vl_dtype fmt, int dq, int64_t rows, int64_t cols, const uint16_t *src) {
    qweight q;
    qweight_alloc(&q, fmt, dq, rows, cols);
    VT_CHECK(vl_quantize_cpu(&q.w, src, dq) == 0);
    return q;
}

/* The whole matrix through vl_weight_rows_f32, as bf16 bits (the values are bf16 already). */
static uint16_t *dequant_bf16(const vl_weight *w) {
    int64_t n = w->rows * w->cols;
    float *f = malloc((size_t)n * sizeof(float));
    uint16_t *h = malloc((size_t)n * sizeof(uint16_t));
    vl_weight_rows_f32(w, 0, w->rows, f);
    int64_t not_bf16 = 0;
    for (int64_t i = 0; i < n; i++) {
        h[i] = vl_f32_to_bf16(f[i]);
        not_bf16 += f32_bits(vl_bf16_to_f32(h[i])) != f32_bits(f[i]);
    }
    VT_CHECKF(not_bf16 == 0, "%lld dequantized values are not bf16 values", (long long)not_bf16);
    free(f);
    return h;
}

/* int8 codes: the number that differ from ref (each is a failure; the first few are printed). */
static int64_t compare_int8(const int8_t *ours, const int8_t *ref, int64_t rows, int64_t cols,
                            const char *what) {
    int64_t differ = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
        if (ours[i] == ref[i]) continue;
        if (differ++ < 5)
            fprintf(stderr, "%s: int8 [%lld, %lld] = %d, bitsandbytes %d\n", what,
                    (long long)(i / cols), (long long)(i % cols), ours[i], ref[i]);
    }
    VT_CHECKF(differ == 0, "%s: %lld int8 codes differ", what, (long long)differ);
    return differ;
}

/* ---- goldens ------------------------------------------------------------------------------ */

static void test_tables(const cJSON *case0) {
    const cJSON *code =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(case0, "nf4"), "code");
    VT_CHECK_INT(cJSON_GetArraySize(code), 16);
    for (int i = 0; i < 16; i++)
        VT_CHECKF((float)cJSON_GetArrayItem(code, i)->valuedouble == vl_nf4_table[i],
                  "nf4 table entry %d", i);
    const cJSON *nested = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(case0, "nf4_double"), "nested_code");
    VT_CHECK_INT(cJSON_GetArraySize(nested), 256);
    float map[256];
    vl_dynamic_map(map);
    int same = 0;
    for (int i = 0; i < 256; i++)
        same += f32_bits((float)cJSON_GetArrayItem(nested, i)->valuedouble) == f32_bits(map[i]);
    printf("dynamic map: %d/256 entries identical to bitsandbytes' create_dynamic_map()\n", same);
    VT_CHECK_INT(same, 256);
}

static void test_golden_case(const cJSON *c) {
    const int64_t n = cJSON_GetObjectItemCaseSensitive(c, "n")->valueint;
    const int64_t k = cJSON_GetObjectItemCaseSensitive(c, "k")->valueint;
    const int64_t numel = n * k, n_blocks = (numel + 63) / 64;
    char what[64];
    snprintf(what, sizeof what, "%lldx%lld", (long long)n, (long long)k);
    const cJSON *nf4 = cJSON_GetObjectItemCaseSensitive(c, "nf4");
    const cJSON *dq = cJSON_GetObjectItemCaseSensitive(c, "nf4_double");
    const cJSON *i8 = cJSON_GetObjectItemCaseSensitive(c, "int8_rowwise");
    uint16_t *w = read_golden(json_file(c, "weight"), (size_t)numel * 2);

    /* NF4 without double quantization */
    qweight q = quantized(VL_DTYPE_NF4, 0, n, k, w);
    VT_CHECK_INT(q.sz.data, (numel + 1) / 2);
    VT_CHECK_INT(q.sz.absmax, n_blocks * 4);
    VT_CHECK_INT(q.sz.absmax_code + q.sz.absmax_map, 0);
    VT_CHECK_INT(q.sz.total, q.sz.data + q.sz.absmax);
    uint8_t *g_packed = read_golden(json_file(nf4, "packed"), q.sz.data);
    float *g_absmax = read_golden(json_file(nf4, "absmax"), q.sz.absmax);
    uint16_t *g_deq = read_golden(json_file(nf4, "dequant"), (size_t)numel * 2);
    size_t same_packed = count_equal_bytes(q.w.data, g_packed, q.sz.data);
    size_t same_absmax = count_equal_bytes(q.w.absmax, g_absmax, q.sz.absmax);
    uint16_t *deq = dequant_bf16(&q.w);
    size_t same_deq = count_equal_bytes(deq, g_deq, (size_t)numel * 2);
    printf("%-8s nf4:        packed %zu/%zu bytes, absmax %zu/%zu bytes, dequant %zu/%zu bytes "
           "identical\n",
           what, same_packed, q.sz.data, same_absmax, q.sz.absmax, same_deq, (size_t)numel * 2);
    VT_CHECK(same_packed == q.sz.data && same_absmax == q.sz.absmax);
    VT_CHECK(same_deq == (size_t)numel * 2);
    /* dequantizing bitsandbytes' own buffers gives its dequantization too */
    vl_weight theirs = {g_packed, VL_DTYPE_NF4, n, k, g_absmax, NULL, NULL, 0.0f};
    uint16_t *deq2 = dequant_bf16(&theirs);
    VT_CHECK(memcmp(deq2, g_deq, (size_t)numel * 2) == 0);
    free(deq);
    free(deq2);
    qweight_free(&q);

    /* NF4 with double quantization */
    q = quantized(VL_DTYPE_NF4, 1, n, k, w);
    const int64_t n_nested = (n_blocks + 255) / 256;
    VT_CHECK_INT(q.sz.absmax_code, n_blocks);
    VT_CHECK_INT(q.sz.absmax, n_nested * 4);
    VT_CHECK_INT(q.sz.absmax_map, 1024);
    VT_CHECK_INT(q.sz.total, q.sz.data + q.sz.absmax + q.sz.absmax_code + q.sz.absmax_map);
    uint8_t *g_packed2 = read_golden(json_file(dq, "packed"), q.sz.data);
    uint8_t *g_codes = read_golden(json_file(dq, "absmax_u8"), q.sz.absmax_code);
    float *g_nested = read_golden(json_file(dq, "nested_absmax"), q.sz.absmax);
    uint16_t *g_deq_dq = read_golden(json_file(dq, "dequant"), (size_t)numel * 2);
    float g_offset = (float)cJSON_GetObjectItemCaseSensitive(dq, "offset")->valuedouble;
    same_packed = count_equal_bytes(q.w.data, g_packed2, q.sz.data);
    size_t same_codes = count_equal_bytes(q.w.absmax_code, g_codes, q.sz.absmax_code);
    size_t same_nested = count_equal_bytes(q.w.absmax, g_nested, q.sz.absmax);
    deq = dequant_bf16(&q.w);
    same_deq = count_equal_bytes(deq, g_deq_dq, (size_t)numel * 2);
    printf("%-8s nf4 double: packed %zu/%zu, absmax codes %zu/%zu, nested absmax %zu/%zu bytes, "
           "offset %s, dequant %zu/%zu bytes identical\n",
           what, same_packed, q.sz.data, same_codes, q.sz.absmax_code, same_nested, q.sz.absmax,
           f32_bits(q.w.absmax_offset) == f32_bits(g_offset) ? "identical" : "DIFFERENT", same_deq,
           (size_t)numel * 2);
    VT_CHECK(same_packed == q.sz.data && same_codes == q.sz.absmax_code);
    VT_CHECK(same_nested == q.sz.absmax);
    VT_CHECKF(f32_bits(q.w.absmax_offset) == f32_bits(g_offset), "offset %.9g vs %.9g",
              (double)q.w.absmax_offset, (double)g_offset);
    VT_CHECK(same_deq == (size_t)numel * 2);
    free(deq);
    qweight_free(&q);

    /* int8 row-wise */
    q = quantized(VL_DTYPE_Q8ROW, 0, n, k, w);
    VT_CHECK_INT(q.sz.data, numel);
    VT_CHECK_INT(q.sz.absmax, n * 4);
    int8_t *g_cb = read_golden(json_file(i8, "CB"), q.sz.data);
    float *g_scb = read_golden(json_file(i8, "SCB"), q.sz.absmax);
    size_t same_scb = count_equal_bytes(q.w.absmax, g_scb, q.sz.absmax);
    int64_t differ = compare_int8(q.w.data, g_cb, n, k, what);
    printf("%-8s int8:       CB %lld/%lld values, SCB %zu/%zu bytes identical\n", what,
           (long long)(numel - differ), (long long)numel, same_scb, q.sz.absmax);
    VT_CHECK(same_scb == q.sz.absmax);
    /* the dequantized int8 weight is within half a step (absmax / 254) of the fp16 weight */
    float *row = malloc((size_t)k * sizeof(float));
    int64_t far = 0;
    for (int64_t r = 0; r < n; r++) {
        vl_weight_rows_f32(&q.w, r, 1, row);
        for (int64_t j = 0; j < k; j++) {
            float h = vl_f16_to_f32(vl_f32_to_f16(vl_bf16_to_f32(w[r * k + j])));
            double step = g_scb[r] / 127.0;
            far += fabs(row[j] - h) > 0.5 * step * (1 + 1e-6) + fabs(h) * (1.0 / 256.0);
        }
    }
    free(row);
    VT_CHECKF(far == 0, "%s: %lld dequantized int8 values off by more than half a step", what,
              (long long)far);
    qweight_free(&q);

    free(w);
    free(g_packed);
    free(g_absmax);
    free(g_deq);
    free(g_packed2);
    free(g_codes);
    free(g_nested);
    free(g_deq_dq);
    free(g_cb);
    free(g_scb);
}

/* Every case of tests/fixtures/<dir>/index.json (n_cases of them). */
static void test_goldens(const char *dir, int n_cases) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/index.json", dir);
    golden_dir = dir;
    char *text = read_fixture(rel, NULL);
    cJSON *root = cJSON_Parse(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    VT_CHECK_INT(cJSON_GetArraySize(cases), n_cases);
    test_tables(cJSON_GetArrayItem(cases, 0));
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) test_golden_case(c);
    cJSON_Delete(root);
    free(text);
}

/* ---- formats on odd shapes ---------------------------------------------------------------- */

static uint16_t *random_bf16(int64_t n, double sigma) {
    uint16_t *w = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) w[i] = vl_f32_to_bf16((float)(sigma * vt_rng_normal()));
    return w;
}

/* Element e of an NF4 weight decoded from the layout kernels.h states. */
static float spec_nf4(const vl_weight *w, int64_t e) {
    const uint8_t *p = w->data;
    int code = e % 2 == 0 ? p[e / 2] >> 4 : p[e / 2] & 0x0f;
    int64_t b = e / VL_NF4_BLOCK;
    float a = w->absmax_code ? w->absmax_map[w->absmax_code[b]] * w->absmax[b / VL_NF4_DQ_BLOCK] +
                                   w->absmax_offset
                             : w->absmax[b];
    return vl_round_bf16(vl_nf4_table[code] * a);
}

static void test_odd_shapes(void) {
    vt_rng_state = 11;
    const int64_t rows = 37, cols = 45, n = rows * cols; /* 1665: odd, blocks straddle rows */
    uint16_t *w = random_bf16(n, 0.05);
    for (int64_t i = 64; i < 128; i++) w[i] = (i & 1) ? 0x8000 : 0x0000; /* an all-zero block */
    float *all = malloc((size_t)n * sizeof(float));
    float *part = malloc((size_t)n * sizeof(float));
    for (int dq = 0; dq <= 1; dq++) {
        qweight q = quantized(VL_DTYPE_NF4, dq, rows, cols, w);
        VT_CHECK_INT(q.sz.data, 833);
        vl_weight_rows_f32(&q.w, 0, rows, all);
        int64_t bad = 0;
        for (int64_t e = 0; e < n; e++) bad += f32_bits(all[e]) != f32_bits(spec_nf4(&q.w, e));
        VT_CHECKF(bad == 0, "dq=%d: %lld elements differ from the documented layout", dq,
                  (long long)bad);
        /* the zero block: code 0 (-1.0) everywhere (bitsandbytes' kernel: 0 * (1 / 0) is NaN
         * and NaN fails every test of the tree); with a plain scale of 0 that is -0.0, with
         * double quantization the scale is whatever the 8-bit code of (0 - offset) gives */
        const uint8_t *p = q.w.data;
        for (int64_t j = 32; j < 64; j++) VT_CHECK_INT(p[j], 0);
        if (!dq) {
            VT_CHECK(q.w.absmax[1] == 0.0f);
            VT_CHECK(f32_bits(all[64]) == 0x80000000u && f32_bits(all[127]) == 0x80000000u);
        }
        /* the padding nibble of the last byte holds the code of 0 * scale (7: 0.0) */
        VT_CHECK_INT(p[832] & 0x0f, 7);
        /* row ranges give the same values as the whole matrix */
        for (int64_t r0 = 0; r0 < rows; r0 += 5) {
            int64_t nr = r0 + 7 <= rows ? 7 : rows - r0;
            vl_weight_rows_f32(&q.w, r0, nr, part);
            VT_CHECK(memcmp(part, all + r0 * cols, (size_t)(nr * cols) * sizeof(float)) == 0);
        }
        /* quantization error: within the widest half-gap of the table (0.152 of absmax, between
         * -1 and -0.696) plus bf16 rounding, and the error of the 8-bit scales */
        int64_t far = 0;
        for (int64_t e = 0; e < n; e++) {
            if (e >= 64 && e < 128) continue; /* the zero block */
            int64_t b0 = e / 64 * 64, b1 = b0 + 64 < n ? b0 + 64 : n;
            float a = 0;
            for (int64_t i = b0; i < b1; i++) a = fmaxf(a, fabsf(vl_bf16_to_f32(w[i])));
            far += fabsf(all[e] - vl_bf16_to_f32(w[e])) > (dq ? 0.17f : 0.156f) * a;
        }
        VT_CHECKF(far == 0, "dq=%d: %lld values far from the weight", dq, (long long)far);
        qweight_free(&q);
    }
    /* Q8ROW: a zero row gives SCB 0 and codes 0 */
    for (int64_t c = 0; c < cols; c++) w[2 * cols + c] = 0;
    qweight q = quantized(VL_DTYPE_Q8ROW, 0, rows, cols, w);
    VT_CHECK(q.w.absmax[2] == 0.0f);
    const int8_t *cb = q.w.data;
    int nonzero = 0;
    for (int64_t c = 0; c < cols; c++) nonzero += cb[2 * cols + c] != 0;
    VT_CHECK_INT(nonzero, 0);
    vl_weight_rows_f32(&q.w, 0, rows, all);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            float want = vl_round_bf16((float)cb[r * cols + c] * q.w.absmax[r] * (1.0f / 127.0f));
            if (f32_bits(all[r * cols + c]) != f32_bits(want)) {
                VT_CHECKF(0, "Q8ROW [%lld, %lld]", (long long)r, (long long)c);
                r = rows;
                break;
            }
        }
    }
    qweight_free(&q);

    /* plain dtypes through vl_weight_rows_f32 */
    float f32[6] = {1.5f, -2.0f, 0.1f, -0.0f, 3e-39f, 65504.0f};
    uint16_t f16[6], bf16[6];
    for (int i = 0; i < 6; i++) {
        f16[i] = vl_f32_to_f16(f32[i]);
        bf16[i] = vl_f32_to_bf16(f32[i]);
    }
    vl_weight pw[3] = {{f32, VL_DTYPE_F32, 2, 3, NULL, NULL, NULL, 0},
                       {f16, VL_DTYPE_F16, 2, 3, NULL, NULL, NULL, 0},
                       {bf16, VL_DTYPE_BF16, 2, 3, NULL, NULL, NULL, 0}};
    for (int t = 0; t < 3; t++) {
        float out[3];
        vl_weight_rows_f32(&pw[t], 1, 1, out);
        for (int i = 0; i < 3; i++) {
            float want = t == 0   ? f32[3 + i]
                         : t == 1 ? vl_f16_to_f32(f16[3 + i])
                                  : vl_bf16_to_f32(bf16[3 + i]);
            VT_CHECKF(f32_bits(out[i]) == f32_bits(want), "%s element %d",
                      vl_dtype_name(pw[t].dtype), i);
        }
        vl_quant_sizes sz;
        vl_quant_sizes_of(pw[t].dtype, 0, 2, 3, &sz);
        VT_CHECK_INT(sz.total, 6 * vl_dtype_size(pw[t].dtype));
    }
    VT_CHECK(strcmp(vl_dtype_name(VL_DTYPE_NF4), "NF4") == 0);
    VT_CHECK(strcmp(vl_dtype_name(VL_DTYPE_Q8ROW), "Q8ROW") == 0);
    VT_CHECK_INT(vl_dtype_size(VL_DTYPE_NF4) + vl_dtype_size(VL_DTYPE_Q8ROW), 0);
    free(all);
    free(part);
    free(w);
}

/* ---- linear and embed on quantized weights ------------------------------------------------ */

static void test_linear(int64_t rows, int64_t cols, int64_t m) {
    vl_backend *b = vl_backend_cpu();
    vt_rng_state = (uint64_t)(rows * 1000 + cols);
    uint16_t *w = random_bf16(rows * cols, 0.03);
    float *x = malloc((size_t)(m * cols) * sizeof(float));
    for (int64_t i = 0; i < m * cols; i++) x[i] = (float)vt_rng_normal();
    uint16_t *bias = random_bf16(rows, 0.1);
    vl_vec bv = {bias, VL_DTYPE_BF16, rows};
    int64_t y_n = m * rows > 4 * cols ? m * rows : 4 * cols; /* linear or 4 embedded rows */
    float *y_q = malloc((size_t)y_n * sizeof(float));
    float *y_d = malloc((size_t)y_n * sizeof(float));
    float *deq = malloc((size_t)(rows * cols) * sizeof(float));
    uint16_t *deq_bf16 = malloc((size_t)(rows * cols) * 2);
    static const struct {
        vl_dtype fmt;
        int dq;
    } kinds[3] = {{VL_DTYPE_NF4, 0}, {VL_DTYPE_NF4, 1}, {VL_DTYPE_Q8ROW, 0}};
    for (int t = 0; t < 3; t++) {
        qweight q;
        qweight_alloc(&q, kinds[t].fmt, kinds[t].dq, rows, cols);
        VT_CHECK(b->quantize != NULL && b->dequantize != NULL);
        if (!b->quantize || !b->dequantize) break;
        b->quantize(b, &q.w, w, kinds[t].dq);
        qweight ref = quantized(kinds[t].fmt, kinds[t].dq, rows, cols, w);
        VT_CHECK(memcmp(q.w.data, ref.w.data, q.sz.data) == 0);
        VT_CHECK(memcmp(q.w.absmax, ref.w.absmax, q.sz.absmax) == 0);
        qweight_free(&ref);
        b->dequantize(b, deq, &q.w);
        for (int64_t i = 0; i < rows * cols; i++) deq_bf16[i] = vl_f32_to_bf16(deq[i]);
        vl_weight plain = {deq_bf16, VL_DTYPE_BF16, rows, cols, NULL, NULL, NULL, 0};
        b->linear(b, y_q, x, m, &q.w, &bv);
        b->linear(b, y_d, x, m, &plain, &bv);
        VT_CHECKF(memcmp(y_q, y_d, (size_t)(m * rows) * sizeof(float)) == 0,
                  "linear %s dq=%d [%lld x %lld] m=%lld differs from the dequantized linear",
                  vl_dtype_name(kinds[t].fmt), kinds[t].dq, (long long)rows, (long long)cols,
                  (long long)m);
        int32_t ids[4] = {0, (int32_t)(rows - 1), (int32_t)(rows / 2), 0};
        b->embed(b, y_q, &q.w, ids, 4);
        b->embed(b, y_d, &plain, ids, 4);
        VT_CHECK(memcmp(y_q, y_d, (size_t)(4 * cols) * sizeof(float)) == 0);
        qweight_free(&q);
    }
    free(w);
    free(x);
    free(bias);
    free(y_q);
    free(y_d);
    free(deq);
    free(deq_bf16);
}

/* ---- the tiny bitsandbytes checkpoints ---------------------------------------------------- */

static int is_unquantized(const char *name) {
    return strcmp(name, "lm_head.weight") == 0 || strcmp(name, "model.embed_tokens.weight") == 0;
}

static size_t ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void test_fixtures(void) {
    vl_checkpoint bf, nf, i8;
    vl_error_clear();
    int ok = vl_checkpoint_open(&bf, vt_fixture("tiny-qwen2vl/tiny-bf16")) == 0 &&
             vl_checkpoint_open(&nf, vt_fixture("tiny-qwen2vl/tiny-bnb-nf4")) == 0 &&
             vl_checkpoint_open(&i8, vt_fixture("tiny-qwen2vl/tiny-bnb-int8")) == 0;
    VT_CHECKF(ok, "%s", vl_error_get());
    if (!ok) return;
    int found_nf4 = 0, found_i8 = 0, exact_nf4 = 0, exact_scb = 0;
    int64_t i8_values = 0, i8_differ = 0;
    for (int i = 0; i < bf.n_tensors; i++) {
        const vl_tensor *t = &bf.tensors[i];
        if (t->ndim != 2 || !ends_with(t->name, ".weight")) continue;
        const int64_t rows = t->shape[0], cols = t->shape[1], n = rows * cols;
        uint16_t *w = malloc((size_t)n * 2); /* aligned copy of the bf16 twin */
        memcpy(w, t->data, (size_t)n * 2);
        vl_weight qn, qi;
        vl_error_clear();
        int rn = vl_bnb_weight(&nf, t->name, rows, cols, &qn);
        int ri = vl_bnb_weight(&i8, t->name, rows, cols, &qi);
        int want = is_unquantized(t->name) ? 0 : 1;
        VT_CHECKF(rn == want && ri == want, "%s: nf4 %d, int8 %d, expected %d (%s)", t->name, rn,
                  ri, want, vl_error_get());
        if (rn == 1) {
            found_nf4++;
            VT_CHECK(qn.dtype == VL_DTYPE_NF4 && qn.rows == rows && qn.cols == cols);
            VT_CHECK(qn.absmax_code && qn.absmax_map && qn.absmax);
            qweight q = quantized(VL_DTYPE_NF4, 1, rows, cols, w);
            int same = memcmp(q.w.data, qn.data, q.sz.data) == 0 &&
                       memcmp(q.w.absmax_code, qn.absmax_code, q.sz.absmax_code) == 0 &&
                       memcmp(q.w.absmax, qn.absmax, q.sz.absmax) == 0 &&
                       memcmp(q.w.absmax_map, qn.absmax_map, q.sz.absmax_map) == 0 &&
                       f32_bits(q.w.absmax_offset) == f32_bits(qn.absmax_offset);
            VT_CHECKF(same, "%s: quantizing the bf16 twin does not give the stored NF4 bytes",
                      t->name);
            exact_nf4 += same;
            /* the dequantized checkpoint weight: finite and near the bf16 weight */
            float *deq = malloc((size_t)n * sizeof(float));
            vl_weight_rows_f32(&qn, 0, rows, deq);
            int64_t bad = 0;
            for (int64_t e = 0; e < n; e++) {
                int64_t b0 = e / 64 * 64, b1 = b0 + 64 < n ? b0 + 64 : n;
                float a = 0;
                for (int64_t k = b0; k < b1; k++) a = fmaxf(a, fabsf(vl_bf16_to_f32(w[k])));
                bad += !isfinite(deq[e]) || fabsf(deq[e] - vl_bf16_to_f32(w[e])) > 0.17f * a;
            }
            VT_CHECKF(bad == 0, "%s: %lld dequantized values wrong", t->name, (long long)bad);
            free(deq);
            qweight_free(&q);
        }
        if (ri == 1) {
            found_i8++;
            VT_CHECK(qi.dtype == VL_DTYPE_Q8ROW && qi.rows == rows && qi.cols == cols);
            VT_CHECK(qi.absmax_code == NULL && qi.absmax_map == NULL && qi.absmax_offset == 0.0f);
            char scb_name[256];
            snprintf(scb_name, sizeof scb_name, "%.*s.SCB", (int)(strlen(t->name) - 7), t->name);
            const vl_tensor *scb = vl_checkpoint_find(&i8, scb_name);
            const vl_tensor *cb = vl_checkpoint_find(&i8, t->name);
            VT_CHECK(scb && cb && (const void *)qi.absmax == scb->data && qi.data == cb->data);
            qweight q = quantized(VL_DTYPE_Q8ROW, 0, rows, cols, w);
            float *scb_aligned = malloc((size_t)rows * 4);
            memcpy(scb_aligned, qi.absmax, (size_t)rows * 4);
            exact_scb += memcmp(q.w.absmax, scb_aligned, (size_t)rows * 4) == 0;
            i8_differ += compare_int8(q.w.data, qi.data, rows, cols, t->name);
            i8_values += n;
            free(scb_aligned);
            qweight_free(&q);
        }
        free(w);
    }
    printf("tiny-bnb-nf4:  %d quantized Linears found, %d identical to quantizing the bf16 twin "
           "here\n",
           found_nf4, exact_nf4);
    printf("tiny-bnb-int8: %d quantized Linears found, SCB identical in %d, CB %lld/%lld values "
           "identical\n",
           found_i8, exact_scb, (long long)(i8_values - i8_differ), (long long)i8_values);
    /* 2 layers x 7 + 2 vision blocks x 4 + merger 2 */
    VT_CHECK_INT(found_nf4, 24);
    VT_CHECK_INT(found_i8, 24);
    VT_CHECK_INT(exact_nf4, 24);
    VT_CHECK_INT(exact_scb, 24);
    /* plain tensors and absent names are not bitsandbytes tensors */
    vl_weight dummy;
    VT_CHECK_INT(vl_bnb_weight(&bf, "model.layers.0.self_attn.q_proj.weight", 128, 128, &dummy), 0);
    VT_CHECK_INT(vl_bnb_weight(&nf, "no.such.weight", 4, 4, &dummy), 0);
    VT_CHECK_INT(vl_bnb_weight(&nf, "model.embed_tokens.weight", 2048, 128, &dummy), 0);
    vl_checkpoint_close(&bf);
    vl_checkpoint_close(&nf);
    vl_checkpoint_close(&i8);
}

/* ---- damaged checkpoints ------------------------------------------------------------------ */

static char tmp_dir[256];
#define QN "model.layers.0.self_attn.k_proj.weight" /* [64, 128]: rows != cols */
#define QP "model.layers.0.self_attn.k_proj"

/* The pieces of k_proj in one checkpoint, as vl_tensor_out entries (pointers into ck). */
typedef struct {
    vl_tensor_out t[8];
    char names[8][128];
    int n;
} piece_set;

static void pieces_of(const vl_checkpoint *ck, piece_set *p) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < ck->n_tensors; i++) {
        const vl_tensor *t = &ck->tensors[i];
        if (strncmp(t->name, QP ".", strlen(QP) + 1) != 0 || strstr(t->name, ".bias")) continue;
        if (p->n == 8) break;
        snprintf(p->names[p->n], 128, "%s", t->name);
        vl_tensor_out *o = &p->t[p->n++];
        o->name = p->names[p->n - 1];
        o->dtype = t->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->data = t->data;
    }
}

/* p = a copy of base whose names are its own */
static void reset(piece_set *p, const piece_set *base) {
    *p = *base;
    for (int k = 0; k < p->n; k++) p->t[k].name = p->names[k];
}

static vl_tensor_out *piece(piece_set *p, const char *suffix) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", QP, suffix);
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->names[i], name) == 0) return &p->t[i];
    fprintf(stderr, "fixture has no %s\n", name);
    exit(2);
}

static void drop(piece_set *p, const char *suffix) {
    vl_tensor_out *t = piece(p, suffix);
    int i = (int)(t - p->t);
    memmove(&p->t[i], &p->t[i + 1], (size_t)(p->n - i - 1) * sizeof p->t[0]);
    memmove(p->names[i], p->names[i + 1], (size_t)(p->n - i - 1) * sizeof p->names[0]);
    p->n--;
    for (int k = 0; k < p->n; k++) p->t[k].name = p->names[k];
}

static void rename_piece(piece_set *p, const char *suffix, const char *new_suffix) {
    vl_tensor_out *t = piece(p, suffix);
    snprintf(p->names[t - p->t], 128, "%s%s", QP, new_suffix);
}

/* Write the set, open it, and ask for QN as [rows, cols]: the result must be `want`; for -1
 * the message must name the tensor and contain `needle`. */
static void expect_bnb(int line, const piece_set *p, int64_t rows, int64_t cols, int want,
                       const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/case%d.safetensors", tmp_dir, line);
    vl_error_clear();
    if (vl_safetensors_write(path, p->t, p->n) != 0) {
        VT_CHECKF(0, "line %d: cannot write %s: %s", line, path, vl_error_get());
        return;
    }
    vl_checkpoint ck;
    if (vl_checkpoint_open(&ck, path) != 0) {
        VT_CHECKF(0, "line %d: cannot open %s: %s", line, path, vl_error_get());
        unlink(path);
        return;
    }
    vl_weight w;
    int rc = vl_bnb_weight(&ck, QN, rows, cols, &w);
    const char *msg = vl_error_get();
    VT_CHECKF(rc == want, "line %d: vl_bnb_weight gave %d, expected %d (%s)", line, rc, want, msg);
    if (want == -1) {
        VT_CHECKF(strstr(msg, QP) != NULL, "line %d: message \"%s\" does not name the tensor", line,
                  msg);
        VT_CHECKF(!needle || strstr(msg, needle), "line %d: message \"%s\" lacks \"%s\"", line, msg,
                  needle);
    }
    vl_checkpoint_close(&ck);
    unlink(path);
}
#define EXPECT_BNB(p, rows, cols, want, needle) expect_bnb(__LINE__, p, rows, cols, want, needle)

/* A copy of the quant-state JSON (of ck, or `prev` when not NULL) with `from` replaced by `to`
 * (static buffers). */
static const char *qs_edit(const vl_checkpoint *ck, const char *prev, const char *from,
                           const char *to) {
    static char buf[4][1024];
    static int slot;
    char *out = buf[slot++ & 3];
    const vl_tensor *t = vl_checkpoint_find(ck, QN ".quant_state.bitsandbytes__nf4");
    char text[1024];
    if (prev)
        snprintf(text, sizeof text, "%s", prev);
    else
        snprintf(text, sizeof text, "%.*s", (int)t->nbytes, (const char *)t->data);
    const char *at = strstr(text, from);
    if (!at) {
        fprintf(stderr, "quant state lacks %s\n", from);
        exit(2);
    }
    snprintf(out, 1024, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

static void set_qs(piece_set *p, const char *json) {
    vl_tensor_out *t = piece(p, ".weight.quant_state.bitsandbytes__nf4");
    t->data = json;
    t->ndim = 1;
    t->shape[0] = (int64_t)strlen(json);
}

static void test_errors(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/vl_test_quant_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    vl_checkpoint nf, i8;
    if (vl_checkpoint_open(&nf, vt_fixture("tiny-qwen2vl/tiny-bnb-nf4")) != 0 ||
        vl_checkpoint_open(&i8, vt_fixture("tiny-qwen2vl/tiny-bnb-int8")) != 0) {
        VT_CHECKF(0, "%s", vl_error_get());
        return;
    }
    piece_set base, p;
    pieces_of(&nf, &base);
    VT_CHECK_INT(base.n, 6);

    reset(&p, &base); /* the unchanged pieces are accepted */
    EXPECT_BNB(&p, 64, 128, 1, NULL);
    reset(&p, &base); /* the config expects another shape */
    EXPECT_BNB(&p, 128, 64, -1, "[64, 128]");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "\"nf4\"", "\"fp4\""));
    EXPECT_BNB(&p, 64, 128, -1, "fp4 checkpoints are not supported; use an nf4 one");
    reset(&p, &base);
    rename_piece(&p, ".weight.quant_state.bitsandbytes__nf4",
                 ".weight.quant_state.bitsandbytes__fp4");
    EXPECT_BNB(&p, 64, 128, -1, "fp4 checkpoints are not supported");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "\"nf4\"", "\"int4\""));
    EXPECT_BNB(&p, 64, 128, -1, "quant_type");
    reset(&p, &base);
    drop(&p, ".weight.absmax");
    EXPECT_BNB(&p, 64, 128, -1, ".absmax");
    reset(&p, &base);
    piece(&p, ".weight.absmax")->shape[0] = 127; /* one code short */
    EXPECT_BNB(&p, 64, 128, -1, ".absmax");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "\"blocksize\": 64,", "\"blocksize\": 64"));
    EXPECT_BNB(&p, 64, 128, -1, "JSON");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "[64, 128]", "[128, 64]"));
    EXPECT_BNB(&p, 64, 128, -1, "shape");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "\"blocksize\": 64", "\"blocksize\": 128"));
    EXPECT_BNB(&p, 64, 128, -1, "blocksize");
    reset(&p, &base);
    set_qs(&p, qs_edit(&nf, NULL, "\"nested_blocksize\": 256", "\"nested_blocksize\": 128"));
    EXPECT_BNB(&p, 64, 128, -1, "nested_blocksize");
    reset(&p, &base); /* nested scales stored without the nested offset in the state */
    set_qs(&p, qs_edit(&nf, qs_edit(&nf, NULL, "nested_blocksize", "unused_blocksize"),
                       "nested_offset", "unused_offset"));
    EXPECT_BNB(&p, 64, 128, -1, "nested");
    reset(&p, &base); /* text after the JSON object */
    set_qs(&p, qs_edit(&nf, NULL, "}", "} {}"));
    EXPECT_BNB(&p, 64, 128, -1, "JSON");
    reset(&p, &base);
    drop(&p, ".weight.nested_absmax");
    EXPECT_BNB(&p, 64, 128, -1, ".nested_absmax");
    reset(&p, &base);
    drop(&p, ".weight.quant_state.bitsandbytes__nf4");
    EXPECT_BNB(&p, 64, 128, -1, "quant_state");
    reset(&p, &base);
    piece(&p, ".weight")->shape[0] = 4095; /* packed bytes one short */
    EXPECT_BNB(&p, 64, 128, -1, "bytes");
    float qmap[16], nabs[1] = {NAN};
    memcpy(qmap, vl_nf4_table, sizeof qmap);
    qmap[3] = 0.25f;
    reset(&p, &base);
    piece(&p, ".weight.quant_map")->data = qmap;
    EXPECT_BNB(&p, 64, 128, -1, "quant_map");
    reset(&p, &base);
    piece(&p, ".weight.nested_absmax")->data = nabs;
    EXPECT_BNB(&p, 64, 128, -1, "nested_absmax");

    /* 8-bit */
    pieces_of(&i8, &base);
    VT_CHECK_INT(base.n, 3);
    reset(&p, &base);
    EXPECT_BNB(&p, 64, 128, 1, NULL);
    reset(&p, &base);
    EXPECT_BNB(&p, 64, 64, -1, "[64, 128]");
    reset(&p, &base);
    drop(&p, ".SCB");
    EXPECT_BNB(&p, 64, 128, -1, "SCB");
    reset(&p, &base);
    piece(&p, ".SCB")->shape[0] = 32;
    EXPECT_BNB(&p, 64, 128, -1, ".SCB");
    uint8_t fmt = 2;
    reset(&p, &base);
    piece(&p, ".weight_format")->data = &fmt;
    EXPECT_BNB(&p, 64, 128, -1, "weight format 2");
    reset(&p, &base);
    piece(&p, ".weight")->dtype = VL_DTYPE_U8;
    EXPECT_BNB(&p, 64, 128, -1, "dtype U8");

    vl_checkpoint_close(&nf);
    vl_checkpoint_close(&i8);
    rmdir(tmp_dir);
}

int main(void) {
    test_goldens("bnb_goldens", 4);
    test_goldens("bnb_odd_goldens", 6);
    test_odd_shapes();
    test_linear(37, 45, 5);
    test_linear(64, 4096, 64); /* large enough for the threaded split */
    test_fixtures();
    test_errors();
    return vt_finish();
}
