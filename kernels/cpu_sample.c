/* cpu_sample.c: the CPU twin of sample_token (pick the next token from the logits and advance
 * the decode state) and of sample_rows (the same rule for many rows, no state; kernels.h). The
 * state lives in backend memory, which on the CPU backend is host memory, so the engine's decode
 * loop is the same code on both backends. Leaves out: top-k / top-p (the engine samples those on
 * the host, engine/sample.c). */
#include "kernels/cpu_internal.h"
#include "kernels/sample_score.h"

void vl_cpu_sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens, const void *logits,
                         int64_t n, float temperature, uint64_t seed, int advance) {
    (void)b;
    VL_CPU_REQUIRE(n > 0 && n <= INT32_MAX, "sample_token over %lld logits", (long long)n);
    const int32_t tok = vl_sample_best_host(logits, n, temperature, vl_sample_key(seed, st->step));
    st->token = tok;
    tokens[st->step] = tok;
    st->step += 1;
    if (advance) {
        st->n_past += 1;
        for (int r = 0; r < 3; r++) st->pos[r] = st->n_past + st->rope_delta;
    }
}

void vl_cpu_sample_rows(vl_backend *b, int32_t *tokens, const void *logits, int64_t n_rows,
                        int64_t n, const float *temperature, const uint64_t *keys) {
    (void)b;
    VL_CPU_REQUIRE(n > 0 && n <= INT32_MAX && n_rows >= 0, "sample_rows over %lld rows of %lld",
                   (long long)n_rows, (long long)n);
    const float *x = logits;
    for (int64_t r = 0; r < n_rows; r++)
        tokens[r] = vl_sample_best_host(x + r * n, n, temperature[r], keys[r]);
}

/* The CPU backend's activations are float32: the float32 entry is the same op. */
void vl_cpu_sample_token_f32(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                             const float *logits, int64_t n, float temperature, uint64_t seed,
                             int advance) {
    vl_cpu_sample_token(b, st, tokens, logits, n, temperature, seed, advance);
}
