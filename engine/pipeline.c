/* pipeline.c: the engine's one request pipeline (vlrun.h).
 *
 *   vl_engine_open: model (config checked against the backend's kernels, tokenizer, every
 *   tensor bound) -> backend. No weights yet: the first request's plan is checked against the
 *   budget and the device before anything is placed.
 *   vl_engine_run: images (each distinct file decoded once) -> prompt -> position check ->
 *   plan and budget -> weights (the first time) -> session (KV cache sized for prompt + the
 *   most tokens the request may generate) -> prefill -> decode loop -> result.
 *
 * When generation stops: with max_tokens N after exactly N tokens (the fixed-length
 * measurement) unless stop_at_eos; without, at the end-of-turn token (vl_model_is_eos) or at the
 * model's context limit; ignore_eos never stops at the end of turn (512 tokens unless
 * max_tokens), nor do random weights (fixed length) unless stop_at_eos. The text ends at the
 * first end-of-turn token in every case but ignore_eos (vl_answer). */
#include "engine/engine.h"

#include <stdlib.h>

/* Tokens generated without max_tokens where the end of turn does not stop generation. */
#define FIXED_LENGTH_DEFAULT 512

void vl_engine_config_default(vl_engine_config *c) {
    memset(c, 0, sizeof *c);
    c->backend = vl_build_has_cuda() ? VL_BACKEND_CUDA : VL_BACKEND_CPU; /* what the build has */
    vl_cuda_config_init(&c->cuda); /* the kernels' defaults, not zeros */
    c->quant = VL_QUANT_BF16;
    c->chunk = 0; /* the largest that fits (vl_plan_choose) */
}

void vl_request_default(vl_request *r) {
    memset(r, 0, sizeof *r);
    r->prompt = "Describe the images.";
    r->greedy = 1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
}

void vl_result_free(vl_result *r) {
    free(r->tokens);
    free(r->text);
    free(r->images);
    memset(r, 0, sizeof *r);
}

vl_engine *vl_engine_open(const vl_engine_config *cfg) {
    vl_engine *e = calloc(1, sizeof *e);
    if (!e) {
        vl_error_set("out of host memory");
        return NULL;
    }
    e->cfg = *cfg;
    /* The model is opened first: its config decides whether the backend can run it at all,
     * and that answer must not wait for, or depend on, a device. Nothing is loaded yet. */
    double t0 = vl_now_s();
    if (vl_model_open(&e->m, &e->cfg)) goto fail;
    e->open_s = vl_now_s() - t0; /* load time counts the open, not the device start */
    e->be = vl_backend_open(&e->cfg);
    if (!e->be) goto fail;
    if (cfg->attn_naive && !e->be->attention_naive) {
        vl_error_set("--attn naive is not available on the %s backend", e->be->name);
        goto fail;
    }
    /* What the process holds before any weight: the CUDA context and the backend's own
     * workspaces (the report compares it with the planner's constant). */
    if (e->be->mem_info) {
        size_t free_b = 0, total_b = 0;
        e->be->mem_info(e->be, &free_b, &total_b);
        e->device_base = total_b - free_b;
    }
    return e;
fail:
    vl_engine_close(e);
    return NULL;
}

void vl_engine_close(vl_engine *e) {
    if (!e) return;
    vl_model_free(&e->m);
    vl_backend_free(e->be); /* the CPU backend: nothing */
    free(e);
}

int vl_engine_place_weights(vl_engine *e) {
    if (e->weights_loaded) return 0;
    if (vl_model_load_weights(&e->m, &e->cfg, e->be)) return -1;
    e->weights_loaded = 1;
    e->weight_loads++;
    return 0;
}

/* How many tokens the request may generate, and whether the model's context is what bounds
 * it. room: tokens that fit the context after the prompt (the last one fed back sits at
 * position n - 1 + rope_delta + room < max_positions). */
int vl_generation_limit(const vl_engine *e, const vl_request *rq, const vl_prompt *p, int *limit,
                        int *by_context) {
    const vl_config *c = &e->m.cfg;
    int64_t room = (int64_t)c->max_positions - p->n - p->rope_delta;
    if (rq->max_tokens > 0 && rq->max_tokens > room)
        return vl_error_set("--max-tokens %d: the last position would be %lld, beyond the "
                            "model's context of %d positions; use fewer tokens or images",
                            rq->max_tokens, (long long)(p->n - 1 + p->rope_delta + rq->max_tokens),
                            c->max_positions);
    if (room < 1)
        return vl_error_set("the prompt (%d tokens, up to position %lld) fills the model's "
                            "context of %d positions; use fewer or smaller images",
                            p->n, (long long)(p->n - 1 + p->rope_delta), c->max_positions);
    int fixed = rq->ignore_eos || e->cfg.random_weights;
    *by_context = rq->max_tokens == 0 && !fixed;
    int64_t want = rq->max_tokens > 0 ? rq->max_tokens : fixed ? FIXED_LENGTH_DEFAULT : room;
    if (want >= room) {
        want = room;
        *by_context = rq->max_tokens == 0;
    }
    *limit = (int)want;
    return 0;
}

/* The prefill-only request (logits): its last position must lie inside the context. */
static int check_prompt_positions(const vl_engine *e, const vl_prompt *p) {
    int64_t last_pos = (int64_t)p->n - 1 + p->rope_delta;
    if (last_pos < e->m.cfg.max_positions) return 0;
    return vl_error_set("vlrun logits: the last position would be %lld, beyond the model's "
                        "context of %d positions; use fewer images",
                        (long long)last_pos, e->m.cfg.max_positions);
}

/* Image pad tokens of one image: its patches, merged merge x merge. */
static int64_t image_tokens(const vl_config *c, const vl_pixels *px) {
    return px->n_patches / ((int64_t)c->merge * c->merge);
}

/* Everything one request holds while it runs. */
typedef struct {
    vl_image_set is;
    vl_prompt p;
    vl_session s;
    vl_answer ans;
    float *logits; /* host [V] */
    int32_t *gen;  /* [limit] */
    int n_gen, limit, by_context;
    int64_t max_patches;
    vl_mem_plan plan;
    vl_plan_request prq;
} job;

static void job_free(job *j) {
    vl_answer_free(&j->ans);
    free(j->gen);
    free(j->logits);
    vl_session_free(&j->s);
    vl_prompt_free(&j->p);
    vl_image_set_free(&j->is);
}

int vl_request_prompt(vl_engine *e, const vl_request *rq, const vl_callbacks *cb, vl_image_set *is,
                      vl_prompt *p) {
    vl_model *m = &e->m;
    if (vl_image_set_load(is, rq->images, rq->n_images, &m->pre, cb)) return -1;
    const char *answer = rq->assistant_prefix;
    return rq->messages ? vl_prompt_build_messages(p, m, rq->messages, rq->n_messages, answer,
                                                   is->list, is->src, is->n_list)
                        : vl_prompt_build_system(p, m, rq->system, rq->prompt, answer, is->list,
                                                 is->src, is->n_list);
}

/* images -> prompt -> positions: what the request asks for, in tokens. */
static int build_prompt(vl_engine *e, job *j, const vl_request *rq, const vl_callbacks *cb) {
    if (vl_request_prompt(e, rq, cb, &j->is, &j->p)) return -1;
    if (cb->on_prompt && cb->on_prompt(cb->ctx, j->p.ids, j->p.n)) return -1;
    for (int i = 0; i < j->is.n_list; i++) {
        const vl_pixels *px = &j->is.list[i];
        if (px->n_patches > j->max_patches) j->max_patches = px->n_patches;
    }
    /* The model's context limit is on rotary positions, and M-RoPE gives an image of H x W
     * merged tokens only max(H, W) positions: 28 pages of 1364 tokens reach position ~1.3k
     * while the KV cache holds 38k tokens. The KV length is bounded by memory alone. */
    if (rq->prefill_only) return check_prompt_positions(e, &j->p);
    return vl_generation_limit(e, rq, &j->p, &j->limit, &j->by_context);
}

/* The plan of the request, with the weights of the bound model (pre-quantized checkpoints have
 * their own size), in the fastest layout that fits (vl_plan_choose: the largest prefill chunk
 * unless one is given; with --kv int8, the dequantized copy of a layer unless only the layout
 * without it fits, whose prefill runs slower: 1.5x the attention time on the H100,
 * bench/RESULTS.md), checked against the budget and the device before anything is allocated. */
static int plan_request(vl_engine *e, job *j, float rep_penalty) {
    vl_plan_request_init(&j->prq, &e->cfg, e->be->caps, j->p.n, j->limit, e->cfg.chunk,
                         j->max_patches);
    j->prq.shape.rep_penalty = rep_penalty;
    j->prq.weights_bytes = vl_model_weights_bytes(&e->m, &j->prq.weights);
    vl_plan_choose(&e->m.cfg, &j->prq, vl_plan_room(e, &j->prq), &j->plan);
    if (e->cfg.mem_budget > 0 && j->plan.total > (size_t)e->cfg.mem_budget)
        return vl_refuse_budget(e, &j->p, j->is.list, j->is.n_list, &j->plan, &j->prq);
    return vl_refuse_device_memory(e, &j->plan);
}

/* Prefill, then sample until the limit or the end of turn. */
static int generate(vl_engine *e, job *j, const vl_request *rq, const vl_callbacks *cb) {
    vl_sequence *s = &j->s.seq;
    vl_timings *t = &j->s.stats.t;
    const int vocab = e->m.cfg.vocab;
    /* Sampling runs on the backend (greedy, or temperature through Gumbel-max) unless top-k /
     * top-p ask for the host sampler. */
    int host_sampling = !rq->greedy && (rq->top_k > 0 || rq->top_p < 1.0f);
    float temperature = rq->greedy ? 0.0f : rq->temperature;
    vl_sampler smp;
    vl_sampler_init(&smp, rq);
    double tp = vl_now_s();
    if (vl_prefill(s, &j->p, j->logits, NULL)) return -1;
    if (cb->on_last_logits && cb->on_last_logits(cb->ctx, j->p.n - 1, j->logits, vocab)) return -1;
    if (host_sampling) {
        vl_penalize_logits(s, j->logits); /* after on_last_logits: that is the model's own */
        j->gen[j->n_gen++] = vl_sample(&smp, j->logits, vocab);
    } else {
        if (vl_decode_begin(s, temperature, rq->seed)) return -1;
        j->gen[j->n_gen++] = vl_decode_token(s, 0);
    }
    t->ttft_s = vl_now_s() - tp;

    /* Tokens are read back as they come only when someone looks at them (streamed text, stop
     * at EOS); otherwise the steps run back to back and the tokens are read once at the end. */
    const int eos_stops = vl_eos_stops(e, rq);
    int read_each = host_sampling || eos_stops || cb->on_text;
    vl_progress *dprog = cb->no_decode_progress ? NULL : cb->progress;
    vl_progress_begin(dprog, "decode", "tokens", j->limit);
    double td = vl_now_s();
    for (int shown = 0;;) {
        vl_progress_update(dprog, j->n_gen);
        for (; shown < j->n_gen; shown++)
            if (vl_answer_add(&j->ans, j->gen[shown])) return -1;
        int32_t last = j->gen[j->n_gen - 1];
        if (j->n_gen == j->limit || (eos_stops && j->ans.eos_at >= 0)) break;
        if (host_sampling) {
            if (vl_decode_step(s, last, j->logits)) return -1;
            vl_penalize_logits(s, j->logits);
            j->gen[j->n_gen++] = vl_sample(&smp, j->logits, vocab);
        } else if (read_each) {
            if (vl_decode_next(s)) return -1;
            j->gen[j->n_gen] = vl_decode_token(s, j->n_gen);
            j->n_gen++;
        } else {
            while (j->n_gen < j->limit) {
                if (vl_decode_next(s)) return -1;
                vl_progress_update(dprog, ++j->n_gen);
            }
            vl_decode_tokens(s, j->gen, j->n_gen);
        }
    }
    t->decode_s = vl_now_s() - td;
    vl_progress_end(dprog);
    t->decode_tokens = j->n_gen - 1;
    return vl_answer_finish(&j->ans);
}

int vl_eos_stops(const vl_engine *e, const vl_request *rq) {
    return !rq->ignore_eos && (rq->stop_at_eos || (rq->max_tokens == 0 && !e->cfg.random_weights));
}

void vl_result_set_answer(vl_result *out, const vl_request *rq, int32_t **gen, int n_gen, int limit,
                          int by_context, vl_answer *ans) {
    out->tokens = *gen;
    *gen = NULL;
    out->n_tokens = n_gen;
    out->token_limit = limit;
    out->text = ans->text;
    out->text_len = ans->len;
    ans->text = NULL;
    out->answer_tokens = ans->eos_at >= 0 ? ans->eos_at : n_gen;
    if (!rq->prefill_only)
        out->stop_reason = ans->eos_at >= 0 && !rq->ignore_eos ? "eos"
                           : by_context && n_gen == limit      ? "context"
                                                               : "max_tokens";
}

int vl_result_set_prompt(vl_result *out, const vl_engine *e, const vl_prompt *p,
                         const vl_image_set *is, const vl_image_arg *args) {
    out->prompt_tokens = p->n;
    out->image_tokens = 0;
    for (int i = 0; i < is->n_list; i++) out->image_tokens += image_tokens(&e->m.cfg, &is->list[i]);
    out->n_images = p->n_images;
    out->n_distinct_images = is->n_uniq;
    out->images = calloc((size_t)(is->n_uniq > 0 ? is->n_uniq : 1), sizeof *out->images);
    if (!out->images) return vl_error_set("out of host memory");
    for (int i = 0; i < is->n_uniq; i++) {
        const vl_pixels *px = &is->uniq[i];
        out->images[i] = (vl_result_image){args ? args[i].path : NULL,
                                           args ? args[i].repeat : 1,
                                           is->orig_w[i],
                                           is->orig_h[i],
                                           px->resized_w,
                                           px->resized_h,
                                           image_tokens(&e->m.cfg, px)};
    }
    out->weights_bytes = e->m.weights_bytes;
    out->host_weights_bytes = e->m.host_weights_bytes;
    out->backend_workspace_bytes = e->be->workspace_bytes;
    out->device_base = e->device_base;
    out->weight_loads = e->weight_loads;
    return 0;
}

/* The result of a finished job (its buffers move into out). */
static int fill_result(vl_engine *e, job *j, const vl_request *rq, vl_result *out) {
    const vl_run_stats *st = &j->s.stats;
    vl_result_set_answer(out, rq, &j->gen, j->n_gen, j->limit, j->by_context, &j->ans);
    if (vl_result_set_prompt(out, e, &j->p, &j->is, rq->images)) return -1;
    out->repetition_penalty = j->s.seq.rep_penalty;
    out->decode_graph = j->s.seq.graph != NULL;
    out->t = st->t;
    out->plan = st->plan;
    memcpy(out->arena_peak, st->arena_peak, sizeof out->arena_peak);
    out->arena_peak_total = st->arena_peak_total;
    out->peak_device = st->peak_device;
    out->device_total = st->device_total;
    return 0;
}

static int run_job(vl_engine *e, job *j, const vl_request *rq, const vl_callbacks *cb,
                   vl_result *out, double t_start) {
    vl_model *m = &e->m;
    double t0 = vl_now_s();
    if (build_prompt(e, j, rq, cb)) return -1;
    const float rep_penalty =
        rq->prefill_only
            ? 0.0f
            : vl_model_repetition_penalty(m, e->cfg.random_weights, rq->repetition_penalty);
    if (plan_request(e, j, rep_penalty)) return -1;
    double load_s = vl_now_s() - t0, opened_s = 0.0;
    if (!e->weights_loaded) { /* once per engine: the first request places them */
        t0 = vl_now_s();
        if (vl_engine_place_weights(e)) return -1;
        opened_s = e->open_s; /* the first request's load and total count the model's open */
        load_s += vl_now_s() - t0 + opened_s;
    }
    if (vl_session_start(&j->s, m, &j->prq.shape)) return -1;
    j->s.stats.t.load_s = load_s;
    j->s.stats.plan = j->plan;
    if (rq->prefill_only) {
        double tp = vl_now_s();
        if (cb->on_each_logits && vl_prefill_each(&j->s.seq, &j->p, cb->on_each_logits, cb->ctx))
            return -1;
        j->s.stats.t.prefill_s = vl_now_s() - tp;
    } else {
        j->logits = malloc((size_t)m->cfg.vocab * sizeof *j->logits);
        j->gen = malloc((size_t)j->limit * sizeof *j->gen);
        if (!j->logits || !j->gen) return vl_error_set("out of host memory");
        vl_answer_init(&j->ans, m, rq->ignore_eos, cb->on_text, cb->ctx);
        if (generate(e, j, rq, cb)) return -1;
    }
    out->total_s = vl_now_s() - t_start + opened_s;
    return fill_result(e, j, rq, out);
}

int vl_engine_run(vl_engine *e, const vl_request *rq, const vl_callbacks *cb_in, vl_result *out) {
    const double t_start = vl_now_s();
    static const vl_callbacks none;
    const vl_callbacks *cb = cb_in ? cb_in : &none;
    memset(out, 0, sizeof *out);
    job j;
    memset(&j, 0, sizeof j);
    /* the progress line keeps moving while a CPU op runs (tens of seconds for a 7B layer) */
    e->m.progress = cb->progress;
    e->be->heartbeat = cb->progress ? vl_progress_heartbeat : NULL;
    e->be->heartbeat_ctx = cb->progress;
    int rc = run_job(e, &j, rq, cb, out, t_start);
    vl_progress_end(cb->progress); /* an error message starts at column 0 */
    e->m.progress = NULL;
    e->be->heartbeat = NULL;
    e->be->heartbeat_ctx = NULL;
    job_free(&j);
    if (rc) vl_result_free(out);
    return rc;
}
