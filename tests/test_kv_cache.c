/* test_kv_cache.c: the int8 KV cache (--kv int8) on the CPU backend, the oracle of the CUDA one.
 *
 *   - vl_kv_quantize_row: a known row (ties to even, the absmax at +-127, zeros), a zero row,
 *     and on random rows: |q| <= 127, the largest |x| coded +-127, |x - q s| <= s / 2;
 *   - rope_kv_append with scales = rope_kv_append into an fp32 cache followed by
 *     vl_kv_quantize_row of each appended row: codes and scales identical, q and k rotated the
 *     same, nothing written outside the appended rows (also with pos0 from pos0_dev);
 *   - attention over the int8 cache (k_scale set) = attention over its dequantized copy (code *
 *     scale in fp32, built here on the host), bit for bit: for a decode query, and for causal
 *     prefill chunks of several queries at the end of the cache (the engine passes a chunk the
 *     int8 cache itself): the first chunk (no offset), and chunks after a prefix; GQA 7 and 1;
 *   - and close to attention over the unquantized rows (v ~ N(0, 1), k with a channel biased
 *     by 8): |err| <= 0.02, a few quantization steps of v (a wrong scale or a row mix-up moves
 *     outputs by 0.1 and more), where every query sees 50 keys or more; the first chunk's
 *     queries see 1 to 64 keys, where one key's score error (k's step is ~11/127, about 0.03 on
 *     a score) moves the output directly and nothing averages out: |err| <= 0.1 there.
 */
#include "kernels/kernels.h"
#include "vltest.h"

#include <math.h>

static float *random_rows(int64_t n, double spread) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(vt_rng_normal() * spread);
    return p;
}

static void test_quantize_row(void) {
    /* amax 2: inv = 63.5; 1 -> 63.5 -> 64 (even), -0.5 -> -31.75 -> -32, 0.25 -> 15.875 -> 16 */
    const float x[6] = {1.0f, -0.5f, 0.25f, 0.0f, -2.0f, 2.0f};
    const int8_t want[6] = {64, -32, 16, 0, -127, 127};
    int8_t q[6];
    float s = vl_kv_quantize_row(x, 6, q);
    VT_CHECKF(s == 2.0f / 127.0f, "scale %g", (double)s);
    for (int i = 0; i < 6; i++)
        VT_CHECKF(q[i] == want[i], "code %d: %d, want %d", i, q[i], want[i]);
    const float zeros[4] = {0, 0, 0, 0};
    int8_t qz[4] = {1, 1, 1, 1};
    VT_CHECK(vl_kv_quantize_row(zeros, 4, qz) == 0.0f && !qz[0] && !qz[1] && !qz[2] && !qz[3]);

    vt_rng_state = 11;
    int bad = 0;
    for (int r = 0; r < 200; r++) {
        const int n = 8 + r % 121;
        float *row = random_rows(n, r % 7 == 0 ? 300.0 : 1.0);
        if (r % 5 == 0) row[r % n] *= 40.0f; /* an outlier channel */
        int8_t c[128];
        float sc = vl_kv_quantize_row(row, n, c);
        float amax = 0;
        int at_max = 0;
        for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(row[i]));
        for (int i = 0; i < n; i++) {
            if (fabsf(row[i]) == amax) at_max += c[i] == (row[i] > 0 ? 127 : -127);
            const float err = fabsf(row[i] - (float)c[i] * sc);
            bad += c[i] == -128 || !(err <= 0.5f * sc * (1.0f + 1e-5f));
        }
        bad += at_max == 0 || sc != amax / 127.0f;
        free(row);
    }
    VT_CHECKF(bad == 0, "random rows: %d bad codes or scales", bad);
}

/* rope_kv_append with scales against the fp32 cache + vl_kv_quantize_row */
static void test_rope_append(int pos_on_dev) {
    vl_backend *cpu = vl_backend_cpu();
    const int64_t S = 5, cap = 12, pos0 = 6;
    const int H = 4, G = 2, D = 16;
    const int64_t row = (int64_t)(H + 2 * G) * D;
    vt_rng_state = 21;
    float *qkv = random_rows(S * row, 2.0), *qkv2 = malloc((size_t)(S * row) * sizeof(float));
    memcpy(qkv2, qkv, (size_t)(S * row) * sizeof(float));
    int32_t pos[3 * 5];
    for (int i = 0; i < 3 * S; i++) pos[i] = 100 + 3 * i;
    float *kc = calloc((size_t)(G * cap * D), sizeof(float)),
          *vc = calloc((size_t)(G * cap * D), sizeof(float));
    int8_t *kq = malloc((size_t)(G * cap * D)), *vq = malloc((size_t)(G * cap * D));
    float *ks = malloc((size_t)(G * cap) * sizeof(float)),
          *vs = malloc((size_t)(G * cap) * sizeof(float));
    memset(kq, 0x55, (size_t)(G * cap * D));
    memset(vq, 0x55, (size_t)(G * cap * D));
    for (int64_t i = 0; i < G * cap; i++) ks[i] = vs[i] = -1.0f;
    const int32_t pos0_dev = (int32_t)pos0;
    vl_rope_kv_params r = {0};
    r.q = qkv;
    r.k = qkv + H * D;
    r.v = qkv + (H + G) * D;
    r.q_stride = r.kv_stride = row;
    r.s = S;
    r.n_heads = H;
    r.n_kv_heads = G;
    r.head_dim = D;
    r.pos = pos;
    r.sections[0] = 2, r.sections[1] = 3, r.sections[2] = 3;
    r.theta = 10000.0f;
    r.k_cache = kc;
    r.v_cache = vc;
    r.head_stride = cap * D;
    r.pos0 = pos0;
    cpu->rope_kv_append(cpu, &r); /* the fp32 reference */
    vl_rope_kv_params r8 = r;
    r8.q = qkv2;
    r8.k = qkv2 + H * D;
    r8.v = qkv2 + (H + G) * D;
    r8.k_cache = kq;
    r8.v_cache = vq;
    r8.k_scale = ks;
    r8.v_scale = vs;
    r8.scale_head_stride = cap;
    if (pos_on_dev) {
        r8.pos0 = 999; /* ignored */
        r8.pos0_dev = &pos0_dev;
    }
    cpu->rope_kv_append(cpu, &r8);
    VT_CHECKF(memcmp(qkv, qkv2, (size_t)(S * row) * sizeof(float)) == 0,
              "rope of q and k differs with an int8 cache");
    int bad = 0, outside = 0;
    for (int g = 0; g < G; g++)
        for (int64_t t = 0; t < cap; t++) {
            const int64_t at = (g * cap + t) * D;
            if (t < pos0 || t >= pos0 + S) {
                for (int d = 0; d < D; d++) outside += kq[at + d] != 0x55 || vq[at + d] != 0x55;
                outside += ks[g * cap + t] != -1.0f || vs[g * cap + t] != -1.0f;
                continue;
            }
            int8_t want[16];
            float sk = vl_kv_quantize_row(kc + at, D, want);
            bad += memcmp(want, kq + at, (size_t)D) != 0 || sk != ks[g * cap + t];
            float sv = vl_kv_quantize_row(vc + at, D, want);
            bad += memcmp(want, vq + at, (size_t)D) != 0 || sv != vs[g * cap + t];
        }
    VT_CHECKF(bad == 0 && outside == 0,
              "int8 rope_kv_append (pos0%s): %d rows differ, %d "
              "outside writes",
              pos_on_dev ? "_dev" : "", bad, outside);
    free(qkv), free(qkv2), free(kc), free(vc), free(kq), free(vq), free(ks), free(vs);
}

/* rows of D codes with one scale each -> their values code * scale in fp32 (what the attention
 * reads an int8 cache as, kernels.h) */
static float *dequantized(const int8_t *codes, const float *scales, int64_t n_rows, int D) {
    float *out = malloc((size_t)(n_rows * D) * sizeof(float));
    for (int64_t r = 0; r < n_rows; r++)
        for (int d = 0; d < D; d++) out[r * D + d] = (float)codes[r * D + d] * scales[r];
    return out;
}

/* attention over an int8 cache vs over its dequantized copy (exact) and the original rows */
static void test_attention(int H, int G, int64_t n_q, int64_t n_kv, int64_t q_pos0, double tol) {
    vl_backend *cpu = vl_backend_cpu();
    const int D = 64;
    char what[128];
    snprintf(what, sizeof what, "attention %d/%d heads, %lld queries at %lld over %lld keys", H, G,
             (long long)n_q, (long long)q_pos0, (long long)n_kv);
    vt_rng_state = 31 + (uint64_t)n_kv;
    float *q = random_rows(n_q * H * D, 1.0), *k = random_rows(G * n_kv * D, 1.0),
          *v = random_rows(G * n_kv * D, 1.0);
    for (int64_t t = 0; t < G * n_kv; t++) k[t * D + 3] += 8.0f; /* a biased channel, as Qwen2 */
    int8_t *kq = malloc((size_t)(G * n_kv * D)), *vq = malloc((size_t)(G * n_kv * D));
    float *ks = malloc((size_t)(G * n_kv) * sizeof(float)),
          *vs = malloc((size_t)(G * n_kv) * sizeof(float));
    for (int64_t t = 0; t < G * n_kv; t++) {
        ks[t] = vl_kv_quantize_row(k + t * D, D, kq + t * D);
        vs[t] = vl_kv_quantize_row(v + t * D, D, vq + t * D);
    }
    float *kd = dequantized(kq, ks, G * n_kv, D), *vd = dequantized(vq, vs, G * n_kv, D);
    float *o8 = malloc((size_t)(n_q * H * D) * sizeof(float)),
          *od = malloc((size_t)(n_q * H * D) * sizeof(float)),
          *of = malloc((size_t)(n_q * H * D) * sizeof(float));
    vl_attn_params p = {0};
    p.q = q;
    p.q_stride = (int64_t)H * D;
    p.kv_tok_stride = D;
    p.kv_head_stride = n_kv * D;
    p.o_stride = (int64_t)H * D;
    p.n_q = n_q;
    p.n_kv = n_kv;
    p.n_heads = H;
    p.n_kv_heads = G;
    p.head_dim = D;
    p.scale = 1.0f / 8.0f;
    p.causal = 1;
    p.q_pos0 = q_pos0;
    vl_attn_params p8 = p, pd = p, pf = p;
    p8.k = kq, p8.v = vq, p8.o = o8;
    p8.k_scale = ks, p8.v_scale = vs, p8.kv_scale_head_stride = n_kv;
    pd.k = kd, pd.v = vd, pd.o = od;
    pf.k = k, pf.v = v, pf.o = of;
    cpu->attention(cpu, &p8);
    cpu->attention(cpu, &pd);
    cpu->attention(cpu, &pf);
    VT_CHECKF(memcmp(o8, od, (size_t)(n_q * H * D) * sizeof(float)) == 0,
              "%s: int8 cache and its dequantized copy differ", what);
    double worst = 0; /* v ~ N(0, 1): the error in units of v's spread */
    for (int64_t e = 0; e < n_q * H * D; e++) worst = fmax(worst, fabs(o8[e] - of[e]));
    printf("%s: int8 vs unquantized, max |err| %.4f\n", what, worst);
    VT_CHECKF(worst <= tol, "%s: int8 cache off by %.4f (at most %g)", what, worst, tol);
    free(q), free(k), free(v), free(kq), free(vq), free(ks), free(vs), free(kd), free(vd);
    free(o8), free(od), free(of);
}

int main(void) {
    test_quantize_row();
    test_rope_append(0);
    test_rope_append(1);
    test_attention(28, 4, 1, 700, 699, 0.02);   /* a decode step of Qwen2-VL-7B's heads */
    test_attention(28, 4, 64, 64, 0, 0.1);      /* a first prefill chunk: the whole cache */
    test_attention(28, 4, 100, 612, 512, 0.02); /* a prefill chunk after 512 cached tokens */
    test_attention(7, 1, 9, 300, 291, 0.02);    /* a chunk after a prefix */
    test_attention(3, 3, 1, 50, 49, 0.02);      /* GQA ratio 1 */
    test_attention(3, 3, 17, 300, 283, 0.02);   /* a chunk, GQA ratio 1 */
    return vt_finish();
}
