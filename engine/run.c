/* run.c: the main job: images + prompt -> the answer, and the report.
 *
 *   parse options -> prompt text -> model (config, checked against the backend's kernels) ->
 *   backend -> decode and preprocess each distinct image once -> prompt -> session (KV cache
 *   sized for prompt + the most tokens the run may generate) -> prefill -> decode loop ->
 *   report on stderr, or one JSON object on stdout with --json.
 * When generation stops: without --max-tokens at the end-of-turn token (vl_model_is_eos) or at
 * the model's context limit; with --max-tokens N after exactly N tokens (the fixed-length
 * measurement), unless --stop-at-eos; --ignore-eos never stops at the end of turn (512 tokens
 * unless --max-tokens), nor does --random-weights (fixed length) unless --stop-at-eos. The text
 * ends at the first end-of-turn token in every case but --ignore-eos (vl_answer).
 * Generated text streams to stdout (not with --json or --quiet). */
#include "engine/chat.h"
#include "engine/engine.h"

#include <stdlib.h>
#include <unistd.h>

/* How many of the request's images (in order) fit `budget` under request q. */
static int images_that_fit(const vl_model *m, const vl_prompt *p, const vl_pixels *imgs, int n_imgs,
                           vl_plan_request q, size_t budget) {
    vl_plan_image *pi = malloc((size_t)n_imgs * sizeof *pi);
    if (!pi) return 0;
    int64_t text_tokens = p->n;
    for (int i = 0; i < n_imgs; i++) {
        vl_plan_image_of(&m->cfg, &imgs[i], &pi[i]);
        text_tokens -= pi[i].tokens + 2;
    }
    int fit = vl_plan_images_that_fit(&m->cfg, q, text_tokens, pi, n_imgs, n_imgs, budget);
    free(pi);
    return fit;
}

/* --mem-budget exceeded: one line with the breakdown, how many images would fit, and how many
 * with --quant nf4 and/or --kv int8 where the run does not use them already. */
static void refuse_budget(const vl_options *o, const vl_model *m, const vl_prompt *p,
                          const vl_pixels *imgs, int n_imgs, const vl_mem_plan *plan,
                          const vl_plan_request *rq) {
    const double gib = 1024.0 * 1024 * 1024;
    const size_t budget = (size_t)o->mem_budget;
    vl_plan_request q = *rq;
    q.shape.chunk = o->chunk;
    int fit = images_that_fit(m, p, imgs, n_imgs, q, budget);
    char alt[256] = "";
    size_t used = 0;
    for (int v = 1; v <= 3; v++) { /* 1: --quant nf4, 2: --kv int8, 3: both */
        int nf4 = v & 1, kv8 = v & 2;
        if ((nf4 && o->quant != VL_QUANT_BF16) || (kv8 && o->kv_int8)) continue;
        vl_plan_request a = q;
        if (nf4) {
            vl_options o2 = *o;
            o2.quant = VL_QUANT_NF4;
            vl_weight_plan_from_options(&a.weights, &o2);
        }
        if (kv8) a.shape.kv_int8 = 1;
        used += (size_t)snprintf(alt + used, sizeof alt - used, "; with %s: %d",
                                 v == 1   ? "--quant nf4"
                                 : v == 2 ? "--kv int8"
                                          : "both",
                                 images_that_fit(m, p, imgs, n_imgs, a, budget));
    }
    vl_error_set("predicted peak %.2f GiB (weights %.2f + kv_cache %.2f + activations %.2f + "
                 "workspace %.2f + cuda_context %.2f) exceeds --mem-budget %.2f GiB; %d of the "
                 "%d images would fit%s",
                 plan->total / gib, plan->weights / gib, plan->kv / gib, plan->act / gib,
                 plan->workspace / gib, plan->context / gib, (double)o->mem_budget / gib, fit,
                 n_imgs, alt);
}

/* The device cannot hold the plan: say so before allocating anything, with the breakdown (the
 * context and the backend's workspaces are already allocated, so they are not counted again). */
static int refuse_device_memory(vl_backend *be, const vl_mem_plan *plan) {
    if (!be->mem_info) return 0;
    size_t free_b = 0, total_b = 0;
    be->mem_info(be, &free_b, &total_b);
    size_t held = plan->context + be->workspace_bytes;
    size_t need = plan->total > held ? plan->total - held : 0;
    if (need <= free_b) return 0;
    const double gib = 1024.0 * 1024 * 1024;
    return vl_error_set("out of %s memory: this run needs %.2f GiB more (weights %.2f + kv_cache "
                        "%.2f + activations %.2f + workspace %.2f) and the device has %.2f GiB "
                        "free of %.2f; use fewer images or --max-tokens, --quant nf4, --kv int8 "
                        "or --attn flash",
                        be->device_name ? be->device_name : be->name, need / gib,
                        plan->weights / gib, plan->kv / gib, plan->act / gib,
                        (plan->workspace - be->workspace_bytes) / gib, free_b / gib, total_b / gib);
}

/* How many tokens the run may generate, and whether the model's context is what bounds it.
 * room: tokens that fit the context after the prompt (the last one fed back sits at position
 * n - 1 + rope_delta + room < max_positions). */
static int generation_limit(const vl_options *o, const vl_model *m, const vl_prompt *p, int *limit,
                            int *by_context) {
    int64_t room = (int64_t)m->cfg.max_positions - p->n - p->rope_delta;
    if (o->max_tokens_set && o->max_tokens > room)
        return vl_error_set("--max-tokens %d: the last position would be %lld, beyond the "
                            "model's context of %d positions; use fewer tokens or images",
                            o->max_tokens, (long long)(p->n - 1 + p->rope_delta + o->max_tokens),
                            m->cfg.max_positions);
    if (room < 1)
        return vl_error_set("the prompt (%d tokens, up to position %lld) fills the model's "
                            "context of %d positions; use fewer or smaller images",
                            p->n, (long long)(p->n - 1 + p->rope_delta), m->cfg.max_positions);
    /* fixed length without --max-tokens: --ignore-eos, --random-weights (o->max_tokens: 512) */
    *by_context = !o->max_tokens_set && !o->ignore_eos && !o->random_weights;
    int64_t want = *by_context ? room : o->max_tokens;
    if (want >= room) {
        want = room;
        *by_context = !o->max_tokens_set;
    }
    *limit = (int)want;
    return 0;
}

static int run(const vl_options *o) {
    int rc = -1;
    vl_model m;
    vl_session s;
    vl_prompt p;
    vl_image_set is;
    memset(&is, 0, sizeof is);
    int n_gen = 0;
    int32_t *gen = NULL;
    float *logits = NULL;
    char *user_text = NULL;
    vl_answer ans;
    memset(&ans, 0, sizeof ans);
    vl_progress progress;
    memset(&m, 0, sizeof m);
    memset(&s, 0, sizeof s);
    memset(&p, 0, sizeof p);

    /* The model is opened first: its config decides whether the chosen backend can run it at
     * all (vl_model_open refuses shapes the CUDA kernels lack), and that answer must not wait
     * for, or depend on, a device. Opening maps the checkpoint but loads nothing. */
    const double t_start = vl_now_s();
    if (vl_prompt_text_read(o, &user_text)) goto done;
    /* a --dump-logits path that will be refused is refused now, not after the run */
    if (o->dump_logits && vl_output_target_check(o->dump_logits, "--dump-logits")) goto done;
    double t0 = vl_now_s();
    if (vl_model_open(&m, o)) goto done;
    m.progress = vl_progress_open(&progress, o); /* NULL unless stderr is a terminal */
    const double open_s = vl_now_s() - t0; /* load time counts the open, not the device start */
    vl_backend *be = vl_backend_open(o);
    if (!be) goto done;
    if (o->attn_naive && !be->attention_naive) {
        vl_error_set("--attn naive is not available on the %s backend", be->name);
        goto done;
    }

    /* What the process holds before any weight: the CUDA context and the backend's own
     * workspaces (the report compares it with the planner's constant). */
    size_t device_base = 0;
    if (be->mem_info) {
        size_t free_b = 0, total_b = 0;
        be->mem_info(be, &free_b, &total_b);
        device_base = total_b - free_b;
    }
    t0 = vl_now_s() - open_s;
    if (vl_image_set_load(&is, o, &m.pre)) goto done;
    const vl_pixels *imgs = is.list;
    const int n_imgs = is.n_list;
    if (vl_prompt_build_system(&p, &m, o->system, user_text, is.list, is.src, is.n_list)) goto done;
    /* The model's context limit is on rotary positions, and M-RoPE gives an image of H x W
     * merged tokens only max(H, W) positions: 28 pages of 1364 tokens reach position ~1.3k
     * while the KV cache holds 38k tokens. The KV length is bounded by memory alone. */
    int limit = 0, by_context = 0;
    if (generation_limit(o, &m, &p, &limit, &by_context)) goto done;
    int64_t max_patches = 0, img_tokens = 0;
    for (int i = 0; i < n_imgs; i++) {
        if (imgs[i].n_patches > max_patches) max_patches = imgs[i].n_patches;
        img_tokens += imgs[i].n_patches / ((int64_t)m.cfg.merge * m.cfg.merge);
    }
    vl_plan_request rq;
    vl_plan_request_init(&rq, o, be, p.n, limit, o->chunk, max_patches);
    rq.shape.rep_penalty = vl_model_repetition_penalty(&m, o);
    vl_mem_plan plan;
    vl_plan_memory(&m.cfg, &rq, &plan);
    /* the plan's weights from the bound model: pre-quantized checkpoints have their own size */
    size_t wbytes = vl_model_weights_bytes(&m, &rq.weights);
    plan.total += wbytes - plan.weights;
    plan.weights = wbytes;
    if (o->mem_budget > 0 && plan.total > (size_t)o->mem_budget) {
        refuse_budget(o, &m, &p, imgs, n_imgs, &plan, &rq);
        goto done;
    }
    if (refuse_device_memory(be, &plan)) goto done;
    if (vl_model_load_weights(&m, o, be)) goto done;
    double load_s = vl_now_s() - t0;
    if (vl_session_start(&s, &m, &rq.shape)) goto done;
    s.stats.t.load_s = load_s;
    s.stats.device_base = device_base;
    s.stats.predicted_peak = plan.total;
    s.stats.plan = plan;

    logits = malloc((size_t)m.cfg.vocab * sizeof *logits);
    gen = malloc((size_t)limit * sizeof *gen);
    if (!logits || !gen) {
        vl_error_set("out of host memory");
        goto done;
    }
    /* Sampling runs on the backend (greedy, or temperature through Gumbel-max) unless top-k /
     * top-p ask for the host sampler. */
    int host_sampling = !o->greedy && (o->top_k > 0 || o->top_p < 1.0f);
    float temperature = o->greedy ? 0.0f : o->temperature;
    vl_sampler smp;
    vl_sampler_init(&smp, o);
    double tp = vl_now_s();
    if (vl_prefill(&s.seq, &p, logits, NULL)) goto done;
    if (o->dump_logits && vl_write_whole_file(o->dump_logits, "--dump-logits", logits,
                                              (size_t)m.cfg.vocab * sizeof(float)))
        goto done;
    if (host_sampling) {
        vl_penalize_logits(&s.seq, logits); /* after --dump-logits: the dump is the model's own */
        gen[n_gen++] = vl_sample(&smp, logits, m.cfg.vocab);
    } else {
        if (vl_decode_begin(&s.seq, temperature, o->seed)) goto done;
        gen[n_gen++] = vl_decode_token(&s.seq, 0);
    }
    s.stats.t.ttft_s = vl_now_s() - tp;

    /* Tokens are read back as they come only when someone looks at them (streamed text, stop
     * at EOS); otherwise the steps run back to back and the tokens are read once at the end. */
    const int eos_stops =
        !o->ignore_eos && (o->stop_at_eos || (!o->max_tokens_set && !o->random_weights));
    const int stream = !o->json && !o->quiet;
    int read_each = host_sampling || eos_stops || stream;
    vl_answer_init(&ans, &m, stream, o->ignore_eos);
    /* decode progress only where no streamed text goes to the terminal */
    vl_progress *dprog = o->json || !isatty(STDOUT_FILENO) ? m.progress : NULL;
    vl_progress_begin(dprog, "decode", "tokens", limit);
    double td = vl_now_s();
    for (int shown = 0;;) {
        vl_progress_update(dprog, n_gen);
        for (; shown < n_gen; shown++)
            if (vl_answer_add(&ans, gen[shown])) goto done;
        int32_t last = gen[n_gen - 1];
        if (n_gen == limit || (eos_stops && ans.eos_at >= 0)) break;
        if (host_sampling) {
            if (vl_decode_step(&s.seq, last, logits)) goto done;
            vl_penalize_logits(&s.seq, logits);
            gen[n_gen++] = vl_sample(&smp, logits, m.cfg.vocab);
        } else if (read_each) {
            if (vl_decode_next(&s.seq)) goto done;
            gen[n_gen] = vl_decode_token(&s.seq, n_gen);
            n_gen++;
        } else {
            while (n_gen < limit) {
                if (vl_decode_next(&s.seq)) goto done;
                vl_progress_update(dprog, ++n_gen);
            }
            vl_decode_tokens(&s.seq, gen, n_gen);
        }
    }
    s.stats.t.decode_s = vl_now_s() - td;
    vl_progress_end(dprog);
    s.stats.t.decode_tokens = n_gen - 1;
    if (vl_answer_finish(&ans)) goto done;
    if (stream) printf("\n");
    if (o->random_weights)
        fprintf(stderr, "note: --random-weights: the generated text means nothing\n");
    vl_run_result res = {.o = o,
                         .p = &p,
                         .is = &is,
                         .img_tokens = img_tokens,
                         .gen = gen,
                         .n_gen = n_gen,
                         .token_limit = limit,
                         .text = ans.text,
                         .text_len = ans.len,
                         .total_s = vl_now_s() - t_start};
    res.answer_tokens = ans.eos_at >= 0 ? ans.eos_at : n_gen;
    res.stop_reason = ans.eos_at >= 0 && !o->ignore_eos ? "eos"
                      : by_context && n_gen == limit    ? "context"
                                                        : "max_tokens";
    if (o->json)
        vl_report_json(&s, &m, &res);
    else
        vl_report_text(&s, &m, &res);
    rc = 0;
done:
    vl_progress_end(m.progress); /* an error message starts at column 0 */
    vl_answer_free(&ans);
    free(user_text);
    free(gen);
    free(logits);
    vl_session_free(&s);
    vl_prompt_free(&p);
    vl_image_set_free(&is);
    vl_model_free(&m);
    return rc;
}

int vl_cmd_run(int argc, char **argv) {
    vl_options o;
    vl_options_default(&o);
    if (vl_options_parse(&o, argc, argv)) {
        vl_options_free(&o);
        return -1;
    }
    if (o.show_help || o.show_version) {
        o.show_help ? vl_usage(stdout) : vl_version_print(stdout);
        vl_options_free(&o);
        return 0;
    }
    if (o.chat) { /* the chat parses again with its own defaults (no --max-tokens: no cap) */
        vl_options_free(&o);
        return vl_cmd_chat(argc, argv);
    }
    if (o.n_image_args == 0) {
        vl_options_free(&o);
        return vl_error_set("no image given: vlrun [OPTIONS] IMAGE [xN] ... (see vlrun --help)");
    }
    int rc = run(&o);
    vl_options_free(&o);
    return rc;
}
