/* decode.c: decode on the backend. The state (token, positions, cache length) lives in the
 * sequence's backend memory and sample_token advances it, so one step is a fixed sequence of
 * ops with no host value in it: it is recorded once per sequence as a CUDA graph and replayed
 * for every token. A backend without graphs (--cuda-opt no_graphs=1) runs the same ops eagerly (for
 * comparison). With a repetition penalty the seen-token set is backend memory too: prefill marks
 * the prompt's ids, each step marks the token it feeds, and the penalty turns the logits into
 * float32 scores right before sample_token reads them. */
#include "engine/models/models.h"

/* Sample from the scratch's logits into the decode state: through the repetition penalty's
 * float32 scores when the sequence has one (transformers applies it before temperature and
 * argmax). */
static void sample_next(vl_sequence *s, int advance) {
    vl_backend *be = s->cx->m->be;
    const int64_t V = s->cx->m->cfg.vocab;
    void *logits = s->cx->scratch.logits;
    if (!s->mem.seen) {
        be->sample_token(be, s->mem.st_dev, s->mem.tokens_dev, logits, V, s->temperature, s->seed,
                         advance);
        return;
    }
    be->repetition_penalty(be, s->mem.pen_scores, logits, s->mem.seen, V, s->rep_penalty);
    be->sample_token_f32(be, s->mem.st_dev, s->mem.tokens_dev, s->mem.pen_scores, V, s->temperature,
                         s->seed, advance);
}

static void decode_step_ops(vl_sequence *s) {
    vl_context *cx = s->cx;
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    vl_decode_state *st = s->mem.st_dev;
    /* the token fed now (the last sample) joins the sequence the penalty looks at */
    if (s->mem.seen) be->mark_seen(be, s->mem.seen, c->vocab, &st->token, 1);
    m->arch->text->embed(cx, &st->token, 1);
    /* rope reads rows t, h, w of a one-token chunk: pos[0], pos[1], pos[2] */
    vl_kv_view kv = vl_sequence_kv(s, &st->n_past);
    for (int li = 0; li < c->n_layers; li++) m->arch->text->layer(cx, &kv, li, 1, st->pos);
    m->arch->text->lm_head(cx, 0, 1);
    sample_next(s, 1);
}

int vl_decode_begin(vl_sequence *s, float temperature, uint64_t seed) {
    vl_backend *be = s->cx->m->be;
    s->temperature = temperature;
    s->seed = seed;
    s->n_sampled = 0;
    vl_decode_state st = {0};
    st.n_past = (int32_t)s->n_past;
    st.rope_delta = (int32_t)s->rope_delta;
    for (int r = 0; r < 3; r++) st.pos[r] = st.n_past + st.rope_delta;
    be->upload(be, s->mem.st_dev, &st, sizeof st);
    /* the first token comes from the last prompt position's logits, still in the scratch's
     * logits; the seen set holds the prompt (prefill marked it) */
    sample_next(s, 0);
    s->n_sampled = 1;
    return 0;
}

int vl_decode_next(vl_sequence *s) {
    vl_backend *be = s->cx->m->be;
    if (s->n_past + 1 > s->max_ctx)
        return vl_error_set("the context of %lld tokens is full", (long long)s->max_ctx);
    if (s->n_sampled >= s->max_tokens)
        return vl_error_set("internal: more than the %d planned tokens", s->max_tokens);
    if (!s->cx->no_graph && be->graph_begin && !s->graph) {
        be->sync(be);
        if (be->graph_begin(be)) return -1;
        decode_step_ops(s);
        s->graph = be->graph_end(be);
        if (!s->graph) return -1;
    }
    if (s->graph)
        be->graph_launch(be, s->graph);
    else
        decode_step_ops(s);
    s->n_past += 1;
    s->n_sampled += 1;
    return 0;
}

int32_t vl_decode_token(vl_sequence *s, int i) {
    int32_t tok = -1;
    vl_backend *be = s->cx->m->be;
    if (i >= 0 && i < s->n_sampled) be->download(be, &tok, s->mem.tokens_dev + i, sizeof tok);
    return tok;
}

void vl_decode_tokens(vl_sequence *s, int32_t *out, int n) {
    vl_backend *be = s->cx->m->be;
    if (n > s->n_sampled) n = s->n_sampled;
    if (n > 0) be->download(be, out, s->mem.tokens_dev, (size_t)n * sizeof *out);
}
