/* chat.c: a multi-turn conversation over one session whose KV cache is kept between turns.
 *
 * The conversation is the Qwen2-VL chat template applied to all messages so far, as ids:
 *   system turn, user turn 1, "<|im_start|>assistant\n" answer 1 "<|im_end|>\n", user turn 2 ...
 * The cache holds a prefix of it; a turn prefills what is not cached yet (the last answer's final
 * token, the closing "<|im_end|>\n", the new user turn) at n_past, with M-RoPE positions going on
 * from the running counter (n_past + rope_delta), which is what get_rope_index gives for the
 * whole conversation. The answer's tokens stay as sampled (never re-tokenized text): the model
 * sees exactly what a fresh run over the conversation's ids would see. */
#include "engine/engine.h"

#include <stdlib.h>

static vl_shape session_shape(const vl_engine *e, const vl_chat_shape *sh, const vl_request *rq) {
    /* an answer never holds more tokens than the cache (it fills it at most, plus one token) */
    int64_t tokens = sh->max_answer > 0 && sh->max_answer < sh->ctx ? sh->max_answer : sh->ctx;
    vl_shape ss = {0};
    ss.prompt_tokens = sh->ctx; /* a turn prefills at most the whole context */
    ss.max_tokens = (int)tokens;
    ss.ctx = sh->ctx;
    ss.chunk = sh->chunk;
    ss.max_patches = sh->max_patches;
    ss.kv_int8 = e->cfg.kv_int8;
    ss.kv_int8_copy = e->cfg.kv_int8; /* a conversation is planned once, with the faster path */
    ss.rep_penalty =
        vl_model_repetition_penalty(&e->m, e->cfg.random_weights, rq->repetition_penalty);
    return ss;
}

void vl_chat_plan(vl_engine *e, const vl_request *rq, const vl_chat_shape *sh, vl_mem_plan *out) {
    vl_plan_request prq;
    vl_plan_request_init(&prq, &e->cfg, e->be->caps, sh->ctx, 0, sh->chunk, sh->max_patches);
    vl_shape ss = session_shape(e, sh, rq);
    vl_plan_session(&e->m.cfg, e->be->act, &ss, vl_model_weights_bytes(&e->m, &prq.weights),
                    prq.workspace_bytes, prq.context_bytes, out);
}

static int conv_append(vl_chat *c, const int32_t *ids, int n) {
    if (n > INT32_MAX / 2 - c->n_conv) return vl_error_set("the conversation is too long");
    if (c->n_conv + n > c->cap_conv) {
        int cap = (c->n_conv + n) * 2 + 256;
        int32_t *t = realloc(c->conv, (size_t)cap * sizeof *t);
        if (!t) return vl_error_set("out of host memory");
        c->conv = t;
        c->cap_conv = cap;
    }
    memcpy(c->conv + c->n_conv, ids, (size_t)n * sizeof *ids);
    c->n_conv += n;
    return 0;
}

int vl_chat_start(vl_chat *c, vl_engine *e, const vl_request *o, const vl_chat_shape *sh) {
    vl_model *m = &e->m;
    memset(c, 0, sizeof *c);
    c->m = m;
    c->shape = *sh;
    c->system = o->system; /* --system */
    c->sampling = *o;
    c->sampling.images = NULL; /* not ours */
    c->sampling.n_images = 0;
    c->host_sampling = !o->greedy && (o->top_k > 0 || o->top_p < 1.0f);
    if (!m->tok)
        return vl_error_set("--chat needs a tokenizer: %s has no tokenizer.json; pass --tokenizer "
                            "FILE",
                            m->model_path[0] ? m->model_path : "the model");
    if (vl_tokenizer_encode(m->tok, "<|im_end|>\n", &c->closing, &c->n_closing)) return -1;
    c->logits = malloc((size_t)m->cfg.vocab * sizeof *c->logits);
    if (!c->logits) return vl_error_set("out of host memory");
    vl_shape ss = session_shape(e, sh, o);
    return vl_session_start(&c->s, m, &ss);
}

void vl_chat_clear(vl_chat *c) {
    vl_sequence_reset(&c->s.seq);
    c->n_conv = 0;
    c->turns = 0;
}

void vl_chat_free(vl_chat *c) {
    vl_session_free(&c->s);
    free(c->logits);
    free(c->conv);
    free(c->closing);
    memset(c, 0, sizeof *c);
}

/* Put the new tokens conv[n_past ..) in the cache: 0, 1 (does not fit: conversation restored to
 * n_keep tokens) or -1. */
static int prefill_turn(vl_chat *c, int n_keep, vl_pixels *images, const int *image_src,
                        int n_images) {
    vl_sequence *s = &c->s.seq;
    const vl_config *cfg = &c->m->cfg;
    int64_t n_past = s->n_past, n_new = c->n_conv - n_past;
    if (n_past + n_new > s->max_ctx) {
        c->n_conv = n_keep;
        vl_error_set("the conversation is full: this message needs %lld tokens and %lld of the "
                     "context's %lld are left; /clear starts over (or use a larger --ctx)",
                     (long long)n_new, (long long)(s->max_ctx - n_past), (long long)s->max_ctx);
        return 1;
    }
    vl_prompt p;
    if (vl_prompt_continue(&p, cfg, c->conv + n_past, (int)n_new, images, image_src, n_images,
                           n_past, n_past + s->rope_delta)) {
        c->n_conv = n_keep;
        return 1;
    }
    /* the counter after the new tokens: the next position to use */
    int64_t next_pos = n_past + n_new + p.rope_delta;
    if (next_pos >= cfg->max_positions) {
        vl_prompt_free(&p);
        c->n_conv = n_keep;
        vl_error_set("the conversation is full: this message would reach position %lld, beyond "
                     "the model's %d; /clear starts over",
                     (long long)next_pos, cfg->max_positions);
        return 1;
    }
    int rc = vl_prefill(s, &p, c->logits, NULL);
    vl_prompt_free(&p);
    return rc ? -1 : 0;
}

/* Sample the answer from the prefilled turn: at most `limit` tokens, stopping at end of turn.
 * Every token but the last sampled one is fed to the cache. */
static int answer(vl_chat *c, int64_t limit, vl_chat_token_fn fn, void *fn_ctx, vl_chat_stats *st) {
    vl_sequence *s = &c->s.seq;
    const int V = c->m->cfg.vocab;
    const vl_request *o = &c->sampling;
    /* each turn samples with its own seed (seed + turn index): the first turn matches a one-shot
     * run with the same --seed (greedy: the seed plays no part, and the recorded step stays) */
    float temperature = o->greedy ? 0.0f : o->temperature;
    uint64_t seed = o->seed + (temperature > 0.0f ? (uint64_t)c->turns : 0);
    vl_sampler smp;
    vl_request turn_o = *o;
    turn_o.seed = seed;
    vl_sampler_init(&smp, &turn_o);
    int32_t tok;
    if (c->host_sampling) {
        tok = vl_sample(&smp, c->logits, V);
    } else {
        /* the recorded decode step holds the sampling seed: record it again for a new one */
        if (s->graph && s->seed != seed && s->cx->m->be->graph_free) {
            s->cx->m->be->graph_free(s->cx->m->be, s->graph);
            s->graph = NULL;
        }
        if (vl_decode_begin(s, temperature, seed)) return -1;
        tok = vl_decode_token(s, 0);
    }
    int n = 0;
    for (;;) {
        if (vl_model_is_eos(c->m, tok)) {
            st->stop = VL_CHAT_STOP_EOS;
            break;
        }
        if (conv_append(c, &tok, 1)) return -1;
        n++;
        if (fn && fn(fn_ctx, tok)) return -1;
        if (n == limit) break;
        if (c->host_sampling) {
            if (vl_decode_step(s, tok, c->logits)) return -1;
            tok = vl_sample(&smp, c->logits, V);
        } else {
            if (vl_decode_next(s)) return -1;
            tok = vl_decode_token(s, n);
        }
    }
    st->answer_tokens = n;
    return 0;
}

int vl_chat_turn(vl_chat *c, const char *text, vl_pixels *images, const int *image_src,
                 int n_images, vl_chat_token_fn fn, void *fn_ctx, vl_chat_stats *st) {
    memset(st, 0, sizeof *st);
    vl_sequence *s = &c->s.seq;
    for (int i = 0; i < n_images; i++)
        if (images[i].n_patches > c->shape.max_patches) {
            vl_error_set("image %d has %lld patches, more than the %lld the session was planned "
                         "for",
                         i + 1, (long long)images[i].n_patches, (long long)c->shape.max_patches);
            return 1;
        }
    int32_t *seg = NULL;
    int n_seg = 0;
    if (vl_prompt_user_turn(c->m, c->turns == 0, c->system, text, images, n_images, &seg, &n_seg))
        return 1;
    int n_keep = c->n_conv;
    int rc = conv_append(c, seg, n_seg);
    free(seg);
    if (rc) return -1;
    st->prefill_tokens = c->n_conv - (int)s->n_past;
    double t0 = vl_now_s(), v0 = s->cx->stats->t.vision_s;
    if ((rc = prefill_turn(c, n_keep, images, image_src, n_images)) != 0) return rc;
    st->prefill_s = vl_now_s() - t0;
    st->vision_s = s->cx->stats->t.vision_s - v0;

    /* room: tokens the cache and the position limit still take, plus the last sampled token */
    int64_t room = s->max_ctx - s->n_past;
    int64_t pos_room = c->m->cfg.max_positions - (s->n_past + s->rope_delta);
    if (pos_room < room) room = pos_room;
    int64_t limit = room + 1;
    st->stop = VL_CHAT_STOP_CONTEXT;
    if (c->shape.max_answer > 0 && c->shape.max_answer < limit) {
        limit = c->shape.max_answer;
        st->stop = VL_CHAT_STOP_MAX_TOKENS;
    }
    t0 = vl_now_s();
    if (answer(c, limit, fn, fn_ctx, st)) return -1;
    st->decode_s = vl_now_s() - t0;
    /* the template's closing tokens (the model's own <|im_end|> is the same id) */
    if (conv_append(c, c->closing, c->n_closing)) return -1;
    c->turns++;
    return 0;
}
