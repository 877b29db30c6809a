/* test_sample.c: the CPU twin of sample_token (kernels.h) and the decode state it advances.
 *
 *   - greedy picks the first maximum, never a NaN, and writes token, tokens[step], step;
 *   - `advance` moves n_past and the three position rows, no advance leaves them;
 *   - Gumbel-max sampling draws from softmax(logits / T): over 20000 draws on a 6-token
 *     vocabulary every frequency is within 4.5 standard errors of its probability, and a chi-
 *     square statistic stays below the 0.1% critical value; a lower temperature concentrates;
 *   - the same seed and step give the same token, another step another draw;
 *   - sample_rows: each row picks what sample_token picks at that row's key and temperature.
 * The GPU kernel is compared with this twin in test_sample_gpu.c. */
#include "kernels/kernels.h"
#include "vltest.h"

static vl_backend *cpu;

static void test_greedy(void) {
    float x[8] = {0.5f, 2.0f, -1.0f, 2.0f, NAN, 1.9f, -INFINITY, 0.0f};
    int32_t tokens[4] = {-1, -1, -1, -1};
    vl_decode_state st = {0};
    st.n_past = 10;
    st.rope_delta = -3;
    cpu->sample_token(cpu, &st, tokens, x, 8, 0.0f, 7, 0);
    VT_CHECK_INT(st.token, 1); /* first of the two maxima */
    VT_CHECK_INT(tokens[0], 1);
    VT_CHECK_INT(st.step, 1);
    VT_CHECK_INT(st.n_past, 10); /* no advance */
    x[4] = 5.0f;                 /* now the NaN slot holds the max */
    cpu->sample_token(cpu, &st, tokens, x, 8, 0.0f, 7, 1);
    VT_CHECK_INT(st.token, 4);
    VT_CHECK_INT(tokens[1], 4);
    VT_CHECK_INT(st.step, 2);
    VT_CHECK_INT(st.n_past, 11);
    for (int r = 0; r < 3; r++) VT_CHECK_INT(st.pos[r], 8);
    float nan_first[3] = {NAN, -5.0f, -4.0f};
    cpu->sample_token(cpu, &st, tokens, nan_first, 3, 0.0f, 7, 1);
    VT_CHECK_INT(st.token, 2);
}

static void test_distribution(float temperature) {
    enum { V = 6, DRAWS = 20000 };
    const float logits[V] = {1.0f, 0.0f, 2.0f, -1.0f, 1.5f, 0.5f};
    double p[V], z = 0;
    for (int i = 0; i < V; i++) z += p[i] = exp((double)logits[i] / temperature);
    for (int i = 0; i < V; i++) p[i] /= z;
    int count[V] = {0};
    int32_t *tokens = malloc(DRAWS * sizeof *tokens);
    vl_decode_state st = {0};
    for (int k = 0; k < DRAWS; k++)
        cpu->sample_token(cpu, &st, tokens, logits, V, temperature, 42, 1);
    for (int k = 0; k < DRAWS; k++) count[tokens[k]]++;
    double chi2 = 0;
    int within = 1;
    for (int i = 0; i < V; i++) {
        double e = p[i] * DRAWS, se = sqrt(DRAWS * p[i] * (1 - p[i]));
        chi2 += (count[i] - e) * (count[i] - e) / e;
        if (fabs(count[i] - e) > 4.5 * se) within = 0;
    }
    printf("T=%.2f: counts %d %d %d %d %d %d, chi2 %.2f\n", temperature, count[0], count[1],
           count[2], count[3], count[4], count[5], chi2);
    VT_CHECKF(within, "T=%.2f: a frequency is more than 4.5 standard errors off", temperature);
    VT_CHECKF(chi2 < 20.52, "T=%.2f: chi-square %.2f above the 0.1%% critical value (5 dof)",
              temperature, chi2);
    VT_CHECK_INT(st.step, DRAWS);
    VT_CHECK_INT(st.n_past, DRAWS);
    free(tokens);
}

static void test_repeatable(void) {
    enum { V = 1000 };
    float *x = malloc(V * sizeof *x);
    vt_rng_state = 5;
    for (int i = 0; i < V; i++) x[i] = (float)vt_rng_normal();
    int32_t t1[64], t2[64];
    vl_decode_state a = {0}, b = {0};
    int differ = 0;
    for (int k = 0; k < 64; k++) {
        cpu->sample_token(cpu, &a, t1, x, V, 1.0f, 99, 0);
        cpu->sample_token(cpu, &b, t2, x, V, 1.0f, 99, 0);
        VT_CHECK_INT(t1[k], t2[k]);
        differ += k > 0 && t1[k] != t1[k - 1];
    }
    /* the logits never change, yet each step is a new draw from a flat-ish distribution */
    VT_CHECKF(differ > 32, "only %d of 63 consecutive draws differ", differ);
    vl_decode_state c = {0};
    int32_t t3[64];
    int same = 0;
    for (int k = 0; k < 64; k++) {
        cpu->sample_token(cpu, &c, t3, x, V, 1.0f, 100, 0);
        same += t3[k] == t1[k];
    }
    VT_CHECKF(same < 16, "seeds 99 and 100 agree on %d of 64 draws", same);
    free(x);
}

/* sample_rows: row r picks what sample_token picks at row r's seed and step (its key), with its
 * temperature; a row of NaN picks 0. */
static void test_rows(void) {
    enum { V = 500, ROWS = 6 };
    float *x = malloc((size_t)V * ROWS * sizeof *x);
    vt_rng_state = 11;
    for (int i = 0; i < V * ROWS; i++) x[i] = (float)(2.0 * vt_rng_normal());
    for (int i = 0; i < V; i++) x[3 * V + i] = NAN;
    const float temperature[ROWS] = {0.0f, 1.0f, 0.7f, 1.0f, 0.0f, 2.0f};
    const uint64_t seeds[ROWS] = {1, 2, 3, 4, 5, 2};
    const int32_t steps[ROWS] = {0, 5, 17, 1, 3, 6};
    uint64_t keys[ROWS];
    int32_t got[ROWS], want[ROWS];
    for (int r = 0; r < ROWS; r++) {
        keys[r] = vl_sample_key(seeds[r], steps[r]);
        vl_decode_state st = {0};
        st.step = steps[r];
        int32_t *tokens = calloc((size_t)steps[r] + 1, sizeof *tokens);
        cpu->sample_token(cpu, &st, tokens, x + (size_t)r * V, V, temperature[r], seeds[r], 0);
        want[r] = tokens[steps[r]];
        free(tokens);
    }
    cpu->sample_rows(cpu, got, x, ROWS, V, temperature, keys);
    for (int r = 0; r < ROWS; r++) VT_CHECK_INT(got[r], want[r]);
    VT_CHECK_INT(got[3], 0); /* all NaN */
    /* rows 1 and 5 share a seed, not a step: different draws over the same flat-ish row */
    cpu->sample_rows(cpu, got, x + V, 1, V, temperature + 1, keys + 5);
    VT_CHECKF(got[0] != want[1], "seed 2 at steps 5 and 6 drew the same token %d", got[0]);
    free(x);
}

int main(void) {
    cpu = vl_backend_cpu();
    test_greedy();
    test_distribution(1.0f);
    test_distribution(0.5f);
    test_repeatable();
    test_rows();
    return vt_finish();
}
