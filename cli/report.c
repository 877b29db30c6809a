/* report.c: what a run tells at its end: the text report on stderr, or with --json one JSON
 * object on stdout. Both name vlrun's version, the model, the tokenizer, each image (file,
 * size as decoded, size after resizing, tokens), where and why the answer stopped, the times
 * (vision, prefill, decode, total) and memory by group, measured and predicted.
 * Times: prefill_s includes the vision encoder (it runs inside the prefill, just before the chunk
 * that holds the image's pads), vision_s is that part alone. */
#include "cli/cli.h"

#include <cJSON.h>
#include <stdlib.h>

/* ---- names and units ------------------------------------------------------------------------ */

/* Bytes in the largest binary unit that keeps the number >= 0.95 ("0.98 MiB", "1.37 GiB",
 * "24.00 KiB", "512 B"): never "0.00 GiB" for something small. */
static const char *fmt_bytes(char *buf, size_t cap, double bytes) {
    static const char *unit[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = -1;
    for (int k = 0; k < 4 && bytes >= 0.95 * (double)(1ULL << (10 * (k + 1))); k++) u = k;
    if (u < 0)
        snprintf(buf, cap, "%.0f B", bytes);
    else
        snprintf(buf, cap, "%.2f %s", bytes / (double)(1ULL << (10 * (u + 1))), unit[u]);
    return buf;
}

/* "1 image", "2 images" */
static const char *count(char *buf, size_t cap, long long n, const char *noun) {
    snprintf(buf, cap, "%lld %s%s", n, noun, n == 1 ? "" : "s");
    return buf;
}

/* The tokenizer file the model loaded (model.c's rule), or NULL when there is none. */
static const char *tokenizer_path(const vl_model *m, const vl_engine_config *o, char *buf,
                                  size_t cap) {
    if (!m->tok) return NULL;
    if (o->tokenizer_path) return o->tokenizer_path;
    snprintf(buf, cap, "%s/tokenizer.json", o->model_dir ? o->model_dir : ".");
    return buf;
}

/* The config file of --random-weights. */
static const char *config_path(const vl_engine_config *o, char *buf, size_t cap) {
    if (o->config_path) return o->config_path;
    snprintf(buf, cap, "%s/config.json", o->model_dir ? o->model_dir : ".");
    return buf;
}

static double rate(double n, double s) {
    return s > 0 ? n / s : 0.0;
}

/* ---- text ----------------------------------------------------------------------------------- */

static void text_stop(const vl_model *m, const vl_options *o, const vl_result *r) {
    char a[64], g[64];
    fprintf(stderr, "answer     %s", count(a, sizeof a, r->answer_tokens, "token"));
    if (strcmp(r->stop_reason, "eos") == 0) {
        fprintf(stderr, ", ended by the end-of-turn token");
        if (r->n_tokens > r->answer_tokens + 1)
            fprintf(stderr, "; generation ran on to %s (--max-tokens)",
                    count(g, sizeof g, r->n_tokens, "token"));
    } else if (strcmp(r->stop_reason, "context") == 0) {
        fprintf(stderr, ", cut at the model's context limit (%d positions)", m->cfg.max_positions);
    } else {
        fprintf(stderr, ", cut at %s (%s)", count(g, sizeof g, r->n_tokens, "token"),
                o->request.max_tokens > 0 ? "--max-tokens"
                : o->request.ignore_eos   ? "--ignore-eos without --max-tokens"
                                          : "--random-weights' fixed length");
        if (r->answer_tokens < r->n_tokens)
            fprintf(stderr, "; the end-of-turn token came at token %d (--ignore-eos)",
                    r->answer_tokens + 1);
    }
    fprintf(stderr, "\n");
}

static void text_inputs(const vl_model *m, const vl_options *o, const vl_result *r) {
    char buf[4200], c1[64], c2[64];
    if (o->engine.random_weights)
        fprintf(stderr, "model      random weights, shapes of %s (%s)\n",
                config_path(&o->engine, buf, sizeof buf), m->cfg.model_type);
    else
        fprintf(stderr, "model      %s (%s: %d layers, hidden %d, vocab %d)\n", m->model_path,
                m->cfg.model_type, m->cfg.n_layers, m->cfg.hidden, m->cfg.vocab);
    const char *tp = tokenizer_path(m, &o->engine, buf, sizeof buf);
    fprintf(stderr, "tokenizer  %s\n", tp ? tp : "none");
    fprintf(stderr, "images     %s, %s\n", count(c1, sizeof c1, r->n_images, "image"),
            count(c2, sizeof c2, r->image_tokens, "image token"));
    for (int i = 0; i < r->n_distinct_images; i++) {
        const vl_result_image *im = &r->images[i];
        fprintf(stderr, "  %d. %s: %dx%d -> %dx%d, %s", i + 1, im->path, im->width, im->height,
                im->resized_width, im->resized_height, count(c1, sizeof c1, im->tokens, "token"));
        if (im->repeat > 1) fprintf(stderr, ", x%d", im->repeat);
        fprintf(stderr, "\n");
    }
    fprintf(stderr, "prompt     %s; generated %s\n",
            count(c1, sizeof c1, r->prompt_tokens, "token"),
            count(c2, sizeof c2, r->n_tokens, "token"));
}

static void text_memory(const vl_backend *be, const vl_result *s) {
    char b[6][32];
    fprintf(stderr, "memory     weights %s", fmt_bytes(b[0], 32, (double)s->weights_bytes));
    if (s->host_weights_bytes)
        fprintf(stderr, " (+ %s pinned in host memory)",
                fmt_bytes(b[0], 32, (double)s->host_weights_bytes));
    for (int g = VL_MEM_KV; g < VL_MEM_GROUPS; g++)
        fprintf(stderr, " | %s %s", vl_mem_group_name((vl_mem_group)g),
                fmt_bytes(b[0], 32, (double)s->arena_peak[g]));
    fprintf(stderr, " | peak tracked %s\n",
            fmt_bytes(b[0], 32, (double)(s->weights_bytes + s->arena_peak_total)));
    const vl_mem_plan *p = &s->plan;
    fprintf(stderr, "predicted  peak %s = weights %s + kv_cache %s + activations %s + workspace %s",
            fmt_bytes(b[0], 32, (double)p->total), fmt_bytes(b[1], 32, (double)p->weights),
            fmt_bytes(b[2], 32, (double)p->kv), fmt_bytes(b[3], 32, (double)p->act),
            fmt_bytes(b[4], 32, (double)p->workspace));
    if (p->context) fprintf(stderr, " + cuda_context %s", fmt_bytes(b[5], 32, (double)p->context));
    fprintf(stderr, "\n");
    if (s->device_total)
        fprintf(stderr, "device     %s: peak used %s of %s (cudaMemGetInfo, context included)\n",
                be->device_name ? be->device_name : be->name,
                fmt_bytes(b[0], 32, (double)s->peak_device),
                fmt_bytes(b[1], 32, (double)s->device_total));
    if (s->device_base)
        fprintf(stderr,
                "           before the weights: %s (CUDA context + backend workspaces of %s)\n",
                fmt_bytes(b[0], 32, (double)s->device_base),
                fmt_bytes(b[1], 32, (double)s->backend_workspace_bytes));
}

void vl_report_text(const vl_engine *e, const vl_options *o, const vl_result *r) {
    const vl_model *m = &e->m;
    const vl_timings *t = &r->t;
    fprintf(stderr, "\n--- vlrun %s (%s) report, %s backend ---\n", vl_version(),
            vl_version_commit(), e->be->name);
    text_inputs(m, o, r);
    text_stop(m, o, r);
    fprintf(stderr,
            "time       total %.3f s | load %.3f s | vision %.3f s | prefill %.3f s (vision "
            "included, %.1f tok/s) | ttft %.3f s | decode %.3f s (%.1f tok/s)\n",
            r->total_s, t->load_s, t->vision_s, t->prefill_s,
            rate((double)t->prefill_tokens, t->prefill_s), t->ttft_s, t->decode_s,
            rate((double)t->decode_tokens, t->decode_s));
    text_memory(e->be, r);
    fprintf(stderr, "decode     %s\n", r->decode_graph ? "one CUDA graph per step" : "eager");
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void json_inputs(cJSON *j, const vl_model *m, const vl_engine_config *o,
                        const vl_result *r) {
    char buf[4200];
    cJSON_AddStringToObject(j, "version", vl_version());
    cJSON_AddStringToObject(j, "commit", vl_version_commit());
    cJSON *mo = cJSON_AddObjectToObject(j, "model");
    if (o->random_weights)
        cJSON_AddNullToObject(mo, "path");
    else
        cJSON_AddStringToObject(mo, "path", m->model_path);
    cJSON_AddStringToObject(mo, "model_type", m->cfg.model_type);
    if (o->random_weights) cJSON_AddStringToObject(mo, "config", config_path(o, buf, sizeof buf));
    const char *tp = tokenizer_path(m, o, buf, sizeof buf);
    if (tp)
        cJSON_AddStringToObject(j, "tokenizer", tp);
    else
        cJSON_AddNullToObject(j, "tokenizer");
    cJSON *list = cJSON_AddArrayToObject(j, "image_files");
    for (int i = 0; i < r->n_distinct_images; i++) {
        const vl_result_image *im = &r->images[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "file", im->path);
        cJSON_AddNumberToObject(e, "repeat", im->repeat);
        cJSON_AddNumberToObject(e, "width", im->width);
        cJSON_AddNumberToObject(e, "height", im->height);
        cJSON_AddNumberToObject(e, "resized_width", im->resized_width);
        cJSON_AddNumberToObject(e, "resized_height", im->resized_height);
        cJSON_AddNumberToObject(e, "tokens", (double)im->tokens);
        cJSON_AddItemToArray(list, e);
    }
}

static void json_memory(cJSON *j, const vl_result *s) {
    cJSON *mem = cJSON_AddObjectToObject(j, "memory");
    cJSON_AddNumberToObject(mem, "weights", (double)s->weights_bytes);
    cJSON_AddNumberToObject(mem, "host_weights", (double)s->host_weights_bytes);
    for (int g = VL_MEM_KV; g < VL_MEM_GROUPS; g++)
        cJSON_AddNumberToObject(mem, vl_mem_group_name((vl_mem_group)g), (double)s->arena_peak[g]);
    cJSON_AddNumberToObject(mem, "peak_tracked", (double)(s->weights_bytes + s->arena_peak_total));
    cJSON_AddNumberToObject(mem, "peak_device", (double)s->peak_device);
    cJSON_AddNumberToObject(mem, "predicted_peak", (double)s->plan.total);
    cJSON *pl = cJSON_AddObjectToObject(mem, "predicted");
    cJSON_AddNumberToObject(pl, "weights", (double)s->plan.weights);
    cJSON_AddNumberToObject(pl, "kv_cache", (double)s->plan.kv);
    cJSON_AddNumberToObject(pl, "activations", (double)s->plan.act);
    cJSON_AddNumberToObject(pl, "workspace", (double)s->plan.workspace);
    cJSON_AddNumberToObject(pl, "cuda_context", (double)s->plan.context);
    cJSON_AddNumberToObject(mem, "backend_workspace", (double)s->backend_workspace_bytes);
    cJSON_AddNumberToObject(mem, "device_used_before_load", (double)s->device_base);
    cJSON_AddNumberToObject(mem, "device_total", (double)s->device_total);
}

static void json_options(cJSON *j, const vl_engine *e, const vl_options *op_, const vl_result *s) {
    const vl_engine_config *o = &op_->engine;
    const vl_request *rq = &op_->request;
    cJSON *op = cJSON_AddObjectToObject(j, "options");
    cJSON_AddStringToObject(op, "backend", e->be->name);
    if (rq->max_tokens > 0)
        cJSON_AddNumberToObject(op, "max_tokens", rq->max_tokens);
    else
        cJSON_AddNullToObject(op, "max_tokens");
    cJSON_AddBoolToObject(op, "stop_at_eos", rq->stop_at_eos);
    cJSON_AddBoolToObject(op, "ignore_eos", rq->ignore_eos);
    cJSON_AddStringToObject(op, "quant",
                            o->quant == VL_QUANT_NF4    ? "nf4"
                            : o->quant == VL_QUANT_INT8 ? "int8"
                                                        : "bf16");
    cJSON_AddStringToObject(op, "kv", o->kv_int8 ? "int8" : "bf16");
    cJSON_AddStringToObject(op, "attn", o->attn_naive ? "naive" : "flash");
    cJSON_AddBoolToObject(op, "greedy", rq->greedy);
    cJSON_AddNumberToObject(op, "temperature", rq->temperature);
    cJSON_AddNumberToObject(op, "top_k", rq->top_k);
    cJSON_AddNumberToObject(op, "top_p", rq->top_p);
    cJSON_AddNumberToObject(op, "seed", (double)rq->seed);
    char pen[32]; /* the float as typed (1.05, not 1.0499999523) */
    snprintf(pen, sizeof pen, "%.7g", (double)s->repetition_penalty);
    cJSON_AddNumberToObject(op, "repetition_penalty", strtod(pen, NULL));
    cJSON_AddNumberToObject(op, "chunk", s->plan.chunk); /* the one the run took */
    cJSON_AddBoolToObject(op, "random_weights", o->random_weights);
    cJSON_AddBoolToObject(op, "decode_graph", s->decode_graph);
}

void vl_report_json(const vl_engine *e, const vl_options *o, const vl_result *r) {
    const vl_model *m = &e->m;
    const vl_timings *t = &r->t;
    cJSON *j = cJSON_CreateObject();
    json_inputs(j, m, &o->engine, r);
    cJSON_AddNumberToObject(j, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(j, "image_tokens", (double)r->image_tokens);
    cJSON_AddNumberToObject(j, "images", r->n_images);
    cJSON_AddNumberToObject(j, "generated_tokens", r->n_tokens);
    cJSON_AddNumberToObject(j, "answer_tokens", r->answer_tokens);
    cJSON_AddStringToObject(j, "stop_reason", r->stop_reason);
    cJSON_AddNumberToObject(j, "token_limit", r->token_limit);
    cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(r->tokens, r->n_tokens));
    /* cJSON strings end at a NUL byte: the text is escaped here from its length */
    char *lit = vl_json_string(r->text, r->text_len);
    cJSON_AddItemToObject(j, "text", lit ? cJSON_CreateRaw(lit) : cJSON_CreateNull());
    free(lit);
    cJSON *tm = cJSON_AddObjectToObject(j, "timings");
    cJSON_AddNumberToObject(tm, "load_s", t->load_s);
    cJSON_AddNumberToObject(tm, "vision_s", t->vision_s);
    cJSON_AddNumberToObject(tm, "prefill_s", t->prefill_s);
    cJSON_AddNumberToObject(tm, "ttft_s", t->ttft_s);
    cJSON_AddNumberToObject(tm, "decode_s", t->decode_s);
    cJSON_AddNumberToObject(tm, "total_s", r->total_s);
    cJSON_AddNumberToObject(tm, "prefill_tok_s", rate((double)t->prefill_tokens, t->prefill_s));
    cJSON_AddNumberToObject(tm, "decode_tok_s", rate((double)t->decode_tokens, t->decode_s));
    json_memory(j, r);
    cJSON_AddStringToObject(j, "device", e->be->device_name ? e->be->device_name : e->be->name);
    json_options(j, e, o, r);
    char *js = cJSON_PrintUnformatted(j);
    if (js) printf("%s\n", js);
    free(js);
    cJSON_Delete(j);
}
