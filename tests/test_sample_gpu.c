/* test_sample_gpu.c: sample_token on the GPU against its CPU twin, and graph replay.
 *
 * The logits are random bf16 values; the CPU twin sees the same values as float32, so both
 * must pick the same token at every step (greedy and Gumbel-max; the noise is evaluated in
 * double on both sides, see kernels/sample_score.h) and leave the same decode state.
 * Vocabularies of 1, 7, 1000, 4099 and 152064 (Qwen2-VL's) with ties planted on purpose.
 * Then the graph ops: one recorded sample_token call replayed 50 times must advance the state
 * 50 times, exactly like 50 eager calls (the recorded call reads the step from device memory).
 * sample_rows (vlrun serve's batched decode) against its twin: 3 to 64 rows, each with its own
 * temperature and key, a tie and a row of NaN.
 * Without a CUDA device the program exits 77 (skip). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

static vl_backend *cpu, *gpu;

static void check_vocab(int64_t V, float temperature, int steps) {
    float *x = malloc((size_t)V * sizeof *x);
    uint16_t *bits = malloc((size_t)V * 2);
    for (int64_t i = 0; i < V; i++) {
        x[i] = vl_round_bf16((float)(3.0 * vt_rng_normal()));
        bits[i] = vl_f32_to_bf16(x[i]);
    }
    if (V > 10) { /* a tie for the maximum: the lower index must win on both */
        float mx = -INFINITY;
        for (int64_t i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        x[V / 3] = x[V / 2] = mx;
        bits[V / 3] = bits[V / 2] = vl_f32_to_bf16(mx);
    }
    void *d_logits = gpu->mem_alloc(gpu, (size_t)V * 2);
    vl_decode_state *d_st = gpu->mem_alloc(gpu, sizeof(vl_decode_state));
    int32_t *d_tok = gpu->mem_alloc(gpu, (size_t)steps * sizeof(int32_t));
    gpu->upload(gpu, d_logits, bits, (size_t)V * 2);
    vl_decode_state st = {0}, got;
    st.n_past = 100;
    st.rope_delta = 7;
    gpu->upload(gpu, d_st, &st, sizeof st);
    int32_t *want = malloc((size_t)steps * sizeof *want),
            *have = malloc((size_t)steps * sizeof *have);
    for (int k = 0; k < steps; k++) {
        int adv = k % 2;
        cpu->sample_token(cpu, &st, want, x, V, temperature, 1234, adv);
        gpu->sample_token(gpu, d_st, d_tok, d_logits, V, temperature, 1234, adv);
    }
    gpu->download(gpu, have, d_tok, (size_t)steps * sizeof *have);
    gpu->download(gpu, &got, d_st, sizeof got);
    int same = 0;
    for (int k = 0; k < steps; k++) same += have[k] == want[k];
    printf("V=%lld T=%.2f: %d/%d tokens equal\n", (long long)V, temperature, same, steps);
    VT_CHECKF(same == steps, "V=%lld T=%.2f: %d of %d tokens differ", (long long)V, temperature,
              steps - same, steps);
    VT_CHECK_INT(got.token, st.token);
    VT_CHECK_INT(got.step, st.step);
    VT_CHECK_INT(got.n_past, st.n_past);
    for (int r = 0; r < 3; r++) VT_CHECK_INT(got.pos[r], st.pos[r]);
    gpu->mem_free(gpu, d_logits);
    gpu->mem_free(gpu, d_st);
    gpu->mem_free(gpu, d_tok);
    free(x);
    free(bits);
    free(want);
    free(have);
}

static void check_graph_replay(void) {
    enum { V = 5000, STEPS = 50 };
    float *x = malloc(V * sizeof *x);
    uint16_t *bits = malloc(V * 2);
    for (int i = 0; i < V; i++) {
        x[i] = vl_round_bf16((float)vt_rng_normal());
        bits[i] = vl_f32_to_bf16(x[i]);
    }
    void *d_logits = gpu->mem_alloc(gpu, V * 2);
    vl_decode_state *d_st = gpu->mem_alloc(gpu, sizeof(vl_decode_state));
    int32_t *d_tok = gpu->mem_alloc(gpu, STEPS * sizeof(int32_t));
    gpu->upload(gpu, d_logits, bits, V * 2);
    vl_decode_state st = {0}, got;
    gpu->upload(gpu, d_st, &st, sizeof st);
    int32_t want[STEPS], have[STEPS];
    VT_CHECK(gpu->graph_begin(gpu) == 0);
    gpu->sample_token(gpu, d_st, d_tok, d_logits, V, 0.8f, 77, 1);
    void *graph = gpu->graph_end(gpu);
    VT_CHECK(graph != NULL);
    /* recording runs nothing: the state is still untouched */
    gpu->download(gpu, &got, d_st, sizeof got);
    VT_CHECK_INT(got.step, 0);
    for (int k = 0; k < STEPS; k++) {
        gpu->graph_launch(gpu, graph);
        cpu->sample_token(cpu, &st, want, x, V, 0.8f, 77, 1);
    }
    gpu->download(gpu, have, d_tok, sizeof have);
    gpu->download(gpu, &got, d_st, sizeof got);
    int same = 0;
    for (int k = 0; k < STEPS; k++) same += have[k] == want[k];
    VT_CHECKF(same == STEPS, "graph replay: %d of %d tokens differ", STEPS - same, STEPS);
    VT_CHECK_INT(got.step, STEPS);
    VT_CHECK_INT(got.n_past, STEPS);
    gpu->graph_free(gpu, graph);
    gpu->mem_free(gpu, d_logits);
    gpu->mem_free(gpu, d_st);
    gpu->mem_free(gpu, d_tok);
    free(x);
    free(bits);
}

/* sample_rows on n_rows rows of V logits (temperatures 0, 1, 0.3 in turn, one NaN row, a tie in
 * row 0) against the CPU twin on the same values. */
static void check_rows(int64_t V, int n_rows) {
    const size_t n = (size_t)V * (size_t)n_rows;
    float *x = malloc(n * sizeof *x);
    uint16_t *bits = malloc(n * 2);
    for (size_t i = 0; i < n; i++) x[i] = vl_round_bf16((float)(3.0 * vt_rng_normal()));
    if (V > 10) x[V / 3] = x[V / 2] = 100.0f;
    if (n_rows > 2)
        for (int64_t i = 0; i < V; i++) x[2 * V + i] = NAN;
    for (size_t i = 0; i < n; i++) bits[i] = vl_f32_to_bf16(x[i]);
    float *temperature = malloc((size_t)n_rows * sizeof *temperature);
    uint64_t *keys = malloc((size_t)n_rows * sizeof *keys);
    int32_t *want = malloc((size_t)n_rows * sizeof *want), *have = malloc((size_t)n_rows * 4);
    for (int r = 0; r < n_rows; r++) {
        temperature[r] = r % 3 == 0 ? 0.0f : r % 3 == 1 ? 1.0f : 0.3f;
        keys[r] = vl_sample_key(1000 + (uint64_t)r, r * 7);
    }
    void *d_logits = gpu->mem_alloc(gpu, n * 2);
    float *d_temp = gpu->mem_alloc(gpu, (size_t)n_rows * sizeof *temperature);
    uint64_t *d_keys = gpu->mem_alloc(gpu, (size_t)n_rows * sizeof *keys);
    int32_t *d_tok = gpu->mem_alloc(gpu, (size_t)n_rows * sizeof *have);
    gpu->upload(gpu, d_logits, bits, n * 2);
    gpu->upload(gpu, d_temp, temperature, (size_t)n_rows * sizeof *temperature);
    gpu->upload(gpu, d_keys, keys, (size_t)n_rows * sizeof *keys);
    cpu->sample_rows(cpu, want, x, n_rows, V, temperature, keys);
    gpu->sample_rows(gpu, d_tok, d_logits, n_rows, V, d_temp, d_keys);
    gpu->download(gpu, have, d_tok, (size_t)n_rows * sizeof *have);
    int same = 0;
    for (int r = 0; r < n_rows; r++) same += have[r] == want[r];
    printf("sample_rows V=%lld rows=%d: %d/%d tokens equal\n", (long long)V, n_rows, same, n_rows);
    VT_CHECKF(same == n_rows, "sample_rows V=%lld: %d of %d rows differ", (long long)V,
              n_rows - same, n_rows);
    if (V > 10) VT_CHECK_INT(have[0], (int32_t)(V / 3)); /* greedy row: the first of the tie */
    if (n_rows > 2) VT_CHECK_INT(have[2], 0);            /* the NaN row */
    gpu->mem_free(gpu, d_logits);
    gpu->mem_free(gpu, d_temp);
    gpu->mem_free(gpu, d_keys);
    gpu->mem_free(gpu, d_tok);
    free(x), free(bits), free(temperature), free(keys), free(want), free(have);
}

int main(void) {
    vt_rng_state = 0x5a3b1e;
    if (!(gpu = vt_gpu_or_skip())) return vt_finish();
    cpu = vl_backend_cpu();
    const int64_t vocabs[] = {1, 7, 1000, 4099, 152064};
    for (int i = 0; i < 5; i++) {
        check_vocab(vocabs[i], 0.0f, 8);
        check_vocab(vocabs[i], 1.0f, 16);
        check_vocab(vocabs[i], 0.3f, 16);
    }
    check_graph_replay();
    check_rows(7, 3);
    check_rows(4099, 5);
    check_rows(152064, 16);
    check_rows(152064, 64);
    return vt_finish();
}
