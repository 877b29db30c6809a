/* test_penalty_gpu.c: the repetition penalty's CUDA kernels against their CPU twin.
 *
 * Random bf16 logits (zeros and negatives included) over vocabularies of 7, 4099 and 152064
 * (Qwen2-VL's); a prompt of ids with repeats and ids outside the vocabulary is marked on both
 * backends, then the masks must be equal and the float32 scores bit for bit equal for penalties
 * 1.05, 1.5 and 0.7 (the CPU twin sees the same bf16 values as float32); sample_token_f32 must
 * then pick the same tokens (greedy and Gumbel-max).
 * Then one decode step's penalty ops as the engine records them (mark the fed token, penalize,
 * sample from the scores) in a CUDA graph replayed 40 times against the same loop on the CPU:
 * equal tokens, so the seen set grows inside the graph with no host round trip.
 * Without a CUDA device the program exits 77 (skip). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

static vl_backend *cpu, *gpu;

typedef struct {
    int64_t V;
    float *x;       /* host float32 copy of the bf16 logits */
    uint8_t *seen;  /* host set */
    void *d_logits; /* bf16 */
    uint8_t *d_seen;
    float *d_scores;
} bench;

static void bench_init(bench *b, int64_t V) {
    b->V = V;
    b->x = malloc((size_t)V * sizeof *b->x);
    b->seen = calloc((size_t)V, 1);
    uint16_t *bits = malloc((size_t)V * 2);
    for (int64_t i = 0; i < V; i++) {
        b->x[i] = i % 17 == 3 ? 0.0f : vl_round_bf16((float)(3.0 * vt_rng_normal()));
        bits[i] = vl_f32_to_bf16(b->x[i]);
    }
    b->d_logits = vt_dev_alloc(gpu, (size_t)V * 2);
    b->d_seen = vt_dev_alloc(gpu, (size_t)V);
    b->d_scores = vt_dev_alloc(gpu, (size_t)V * sizeof(float));
    gpu->upload(gpu, b->d_logits, bits, (size_t)V * 2);
    gpu->upload(gpu, b->d_seen, b->seen, (size_t)V);
    free(bits);
}

static void bench_free(bench *b) {
    gpu->mem_free(gpu, b->d_logits);
    gpu->mem_free(gpu, b->d_seen);
    gpu->mem_free(gpu, b->d_scores);
    free(b->x);
    free(b->seen);
}

static void check_vocab(int64_t V) {
    bench b;
    bench_init(&b, V);
    enum { PROMPT = 1500 };
    int32_t ids[PROMPT];
    for (int i = 0; i < PROMPT; i++) /* repeats, and a few ids outside [0, V) */
        ids[i] = i % 97 == 5 ? (int32_t)(V + i) : i % 89 == 7 ? -i : (int32_t)(vt_rng_next() % V);
    int32_t *d_ids = vt_dev_alloc(gpu, sizeof ids);
    gpu->upload(gpu, d_ids, ids, sizeof ids);
    cpu->mark_seen(cpu, b.seen, V, ids, PROMPT);
    gpu->mark_seen(gpu, b.d_seen, V, d_ids, PROMPT);
    uint8_t *got_seen = malloc((size_t)V);
    gpu->download(gpu, got_seen, b.d_seen, (size_t)V);
    VT_CHECKF(memcmp(got_seen, b.seen, (size_t)V) == 0, "V=%lld: seen masks differ", (long long)V);
    const float pens[] = {1.05f, 1.5f, 0.7f};
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    for (int k = 0; k < 3; k++) {
        cpu->repetition_penalty(cpu, want, b.x, b.seen, V, pens[k]);
        gpu->repetition_penalty(gpu, b.d_scores, b.d_logits, b.d_seen, V, pens[k]);
        gpu->download(gpu, got, b.d_scores, (size_t)V * sizeof *got);
        int64_t diff = 0;
        for (int64_t i = 0; i < V; i++) diff += memcmp(&want[i], &got[i], sizeof *got) != 0;
        VT_CHECKF(diff == 0, "V=%lld p=%g: %lld scores differ", (long long)V, pens[k],
                  (long long)diff);
        for (int t = 0; t < 2; t++) { /* greedy, then Gumbel-max at temperature 0.7 */
            float T = t ? 0.7f : 0.0f;
            vl_decode_state st = {0}, *d_st = vt_dev_alloc(gpu, sizeof st);
            int32_t tok_cpu[4], tok_gpu[4], *d_tok = vt_dev_alloc(gpu, sizeof tok_gpu);
            gpu->upload(gpu, d_st, &st, sizeof st);
            for (int s = 0; s < 4; s++) {
                cpu->sample_token_f32(cpu, &st, tok_cpu, want, V, T, 99, 1);
                gpu->sample_token_f32(gpu, d_st, d_tok, b.d_scores, V, T, 99, 1);
            }
            gpu->download(gpu, tok_gpu, d_tok, sizeof tok_gpu);
            VT_CHECKF(memcmp(tok_cpu, tok_gpu, sizeof tok_gpu) == 0,
                      "V=%lld p=%g T=%g: tokens %d.. vs %d..", (long long)V, pens[k], T, tok_cpu[0],
                      tok_gpu[0]);
            gpu->mem_free(gpu, d_st);
            gpu->mem_free(gpu, d_tok);
        }
    }
    printf("V=%lld: masks and scores equal for 3 penalties\n", (long long)V);
    gpu->mem_free(gpu, d_ids);
    free(got_seen);
    free(want);
    free(got);
    bench_free(&b);
}

/* The decode step's penalty ops, recorded once and replayed: mark st->token, penalize, sample. */
static void check_graph_replay(void) {
    enum { V = 6000, STEPS = 40 };
    bench b;
    bench_init(&b, V);
    vl_decode_state st = {0}, got;
    st.token = 17; /* the first sample, fed by the first step */
    vl_decode_state *d_st = vt_dev_alloc(gpu, sizeof st);
    int32_t *d_tok = vt_dev_alloc(gpu, STEPS * sizeof(int32_t));
    gpu->upload(gpu, d_st, &st, sizeof st);
    VT_CHECK(gpu->graph_begin(gpu) == 0);
    gpu->mark_seen(gpu, b.d_seen, V, &d_st->token, 1);
    gpu->repetition_penalty(gpu, b.d_scores, b.d_logits, b.d_seen, V, 3.0f);
    gpu->sample_token_f32(gpu, d_st, d_tok, b.d_scores, V, 0.5f, 5, 1);
    void *graph = gpu->graph_end(gpu);
    VT_CHECK(graph != NULL);
    if (!graph) return;
    int32_t want[STEPS], have[STEPS];
    float *scores = malloc(V * sizeof *scores);
    for (int k = 0; k < STEPS; k++) {
        gpu->graph_launch(gpu, graph);
        cpu->mark_seen(cpu, b.seen, V, &st.token, 1);
        cpu->repetition_penalty(cpu, scores, b.x, b.seen, V, 3.0f);
        cpu->sample_token_f32(cpu, &st, want, scores, V, 0.5f, 5, 1);
    }
    gpu->download(gpu, have, d_tok, sizeof have);
    gpu->download(gpu, &got, d_st, sizeof got);
    int same = 0, distinct = 0;
    for (int k = 0; k < STEPS; k++) same += have[k] == want[k];
    for (int i = 0; i < V; i++) distinct += b.seen[i];
    printf("graph replay: %d/%d tokens equal, %d distinct ids seen\n", same, STEPS, distinct);
    VT_CHECKF(same == STEPS, "graph replay: %d of %d tokens differ", STEPS - same, STEPS);
    VT_CHECK_INT(got.step, STEPS);
    gpu->graph_free(gpu, graph);
    gpu->mem_free(gpu, d_st);
    gpu->mem_free(gpu, d_tok);
    free(scores);
    bench_free(&b);
}

int main(void) {
    vt_rng_state = 0x9e11;
    if (!(gpu = vt_gpu_or_skip())) return vt_finish();
    cpu = vl_backend_cpu();
    const int64_t vocabs[] = {7, 4099, 152064};
    for (int i = 0; i < 3; i++) check_vocab(vocabs[i]);
    check_graph_replay();
    return vt_finish();
}
