/* sample.c: choosing the next token on the host from float32 logits: greedy (argmax, first
 * index on ties, as torch.argmax), or temperature / top-k / top-p sampling with a seeded
 * xorshift generator so that a run is repeatable with --seed; and the host twins of the
 * backend's sample_token and repetition penalty (a batch's sampling). */
#include "engine/engine.h"
#include "kernels/sample_score.h"

#include <math.h>
#include <stdlib.h>

int32_t vl_argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void vl_sampler_init(vl_sampler *s, const vl_request *o) {
    s->greedy = o->greedy || o->temperature <= 0.0f;
    s->temperature = o->temperature;
    s->top_k = o->top_k;
    s->top_p = o->top_p;
    /* splitmix64 of the seed so that seed 0 is a valid xorshift state */
    uint64_t z = o->seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->state = (z ^ (z >> 31)) | 1;
}

static double next_uniform(vl_sampler *s) {
    uint64_t x = s->state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->state = x;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct {
    float p;
    int32_t id;
} prob_id;

static int by_prob_desc(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : 1;
}

int32_t vl_sample(vl_sampler *s, const float *logits, int n) {
    if (s->greedy) return vl_argmax(logits, n);
    prob_id *c = malloc((size_t)n * sizeof *c);
    if (!c) return vl_argmax(logits, n);
    float mx = logits[vl_argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((logits[i] - mx) / s->temperature);
        c[i].id = i;
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
    qsort(c, (size_t)n, sizeof *c, by_prob_desc);
    int keep = n;
    if (s->top_k > 0 && s->top_k < keep) keep = s->top_k;
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < keep; i++) {
            cum += c[i].p;
            if (cum >= s->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double total = 0.0;
    for (int i = 0; i < keep; i++) total += c[i].p;
    double r = next_uniform(s) * total, acc = 0.0;
    int32_t pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        acc += c[i].p;
        if (r < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(c);
    return pick;
}

/* The host twin of the backends' sample_token (kernels/sample_score.h's score, the first best
 * index, NaN never chosen): a batch samples on the host and gives the tokens a request run
 * alone gets from the backend, greedy and seeded temperature sampling alike. */
int32_t vl_sample_token_host(const float *logits, int n, float temperature, uint64_t seed,
                             int step) {
    return vl_sample_best_host(logits, n, temperature, vl_sample_key(seed, step));
}

void vl_penalize_host(float *logits, const uint8_t *seen, int n, float penalty) {
    for (int i = 0; i < n; i++)
        if (seen[i]) logits[i] = vl_penalize_logit(logits[i], penalty);
}
