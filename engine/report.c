/* report.c: what a run tells at its end: the text report on stderr, or with --json one JSON
 * object on stdout (timings, memory by group measured and predicted, the options). */
#include "engine/engine.h"

#include <cJSON.h>
#include <stdlib.h>

void vl_report_text(const vl_session *s, const vl_model *m, const vl_prompt *p, int64_t img_tokens,
                    int generated) {
    const vl_timings *t = &s->t;
    fprintf(stderr, "\n--- vlrun report (%s backend) ---\n", m->be->name);
    fprintf(stderr, "prompt %d tokens (%lld image tokens, %d images), generated %d tokens\n", p->n,
            (long long)img_tokens, p->n_images, generated);
    fprintf(stderr,
            "load %.3f s | vision %.3f s | prefill %.3f s (%.1f tok/s) | ttft %.3f s | "
            "decode %.1f tok/s\n",
            t->load_s, t->vision_s, t->prefill_s,
            t->prefill_s > 0 ? (double)t->prefill_tokens / t->prefill_s : 0.0, t->ttft_s,
            t->decode_s > 0 ? (double)t->decode_tokens / t->decode_s : 0.0);
    fprintf(stderr, "memory: weights %.3f GiB", (double)m->weights_bytes / (1 << 30));
    if (m->host_weights_bytes)
        fprintf(stderr, " (+ %.3f GiB pinned in host memory)",
                (double)m->host_weights_bytes / (1 << 30));
    for (int g = VL_MEM_KV; g < VL_MEM_GROUPS; g++)
        fprintf(stderr, " | %s %.3f GiB", vl_mem_group_name((vl_mem_group)g),
                (double)s->arena.peak[g] / (1 << 30));
    fprintf(stderr, " | peak tracked %.3f GiB\n",
            (double)(m->weights_bytes + s->arena.peak_total) / (1 << 30));
    if (s->device_total)
        fprintf(stderr,
                "device %s: peak used %.3f GiB of %.3f GiB (cudaMemGetInfo, context "
                "included)\n",
                m->be->device_name ? m->be->device_name : m->be->name,
                (double)s->peak_device / (1 << 30), (double)s->device_total / (1 << 30));
    vl_plan_print(stderr, &s->plan);
    if (s->device_base)
        fprintf(stderr,
                "device memory before the weights (CUDA context + backend workspaces "
                "%.3f GiB): %.3f GiB\n",
                (double)m->be->workspace_bytes / (1 << 30), (double)s->device_base / (1 << 30));
    fprintf(stderr, "decode: %s\n", s->graph ? "one CUDA graph per step" : "eager");
}

void vl_report_json(const vl_session *s, const vl_model *m, const vl_options *o, const vl_prompt *p,
                    int64_t img_tokens, const int32_t *gen, int n_gen, const char *text) {
    const vl_timings *t = &s->t;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "prompt_tokens", p->n);
    cJSON_AddNumberToObject(r, "image_tokens", (double)img_tokens);
    cJSON_AddNumberToObject(r, "images", p->n_images);
    cJSON_AddNumberToObject(r, "generated_tokens", n_gen);
    cJSON_AddItemToObject(r, "tokens", cJSON_CreateIntArray(gen, n_gen));
    cJSON_AddStringToObject(r, "text", text);
    cJSON *tm = cJSON_AddObjectToObject(r, "timings");
    cJSON_AddNumberToObject(tm, "load_s", t->load_s);
    cJSON_AddNumberToObject(tm, "vision_s", t->vision_s);
    cJSON_AddNumberToObject(tm, "prefill_s", t->prefill_s);
    cJSON_AddNumberToObject(tm, "ttft_s", t->ttft_s);
    cJSON_AddNumberToObject(tm, "prefill_tok_s",
                            t->prefill_s > 0 ? (double)t->prefill_tokens / t->prefill_s : 0.0);
    cJSON_AddNumberToObject(tm, "decode_tok_s",
                            t->decode_s > 0 ? (double)t->decode_tokens / t->decode_s : 0.0);
    cJSON *mem = cJSON_AddObjectToObject(r, "memory");
    cJSON_AddNumberToObject(mem, "weights", (double)m->weights_bytes);
    cJSON_AddNumberToObject(mem, "host_weights", (double)m->host_weights_bytes);
    for (int g = VL_MEM_KV; g < VL_MEM_GROUPS; g++)
        cJSON_AddNumberToObject(mem, vl_mem_group_name((vl_mem_group)g), (double)s->arena.peak[g]);
    cJSON_AddNumberToObject(mem, "peak_tracked", (double)(m->weights_bytes + s->arena.peak_total));
    cJSON_AddNumberToObject(mem, "peak_device", (double)s->peak_device);
    cJSON_AddNumberToObject(mem, "predicted_peak", (double)s->predicted_peak);
    cJSON *pl = cJSON_AddObjectToObject(mem, "predicted");
    cJSON_AddNumberToObject(pl, "weights", (double)s->plan.weights);
    cJSON_AddNumberToObject(pl, "kv_cache", (double)s->plan.kv);
    cJSON_AddNumberToObject(pl, "activations", (double)s->plan.act);
    cJSON_AddNumberToObject(pl, "workspace", (double)s->plan.workspace);
    cJSON_AddNumberToObject(pl, "cuda_context", (double)s->plan.context);
    cJSON_AddNumberToObject(mem, "backend_workspace", (double)m->be->workspace_bytes);
    cJSON_AddNumberToObject(mem, "device_used_before_load", (double)s->device_base);
    cJSON_AddNumberToObject(mem, "device_total", (double)s->device_total);
    cJSON_AddStringToObject(r, "device", m->be->device_name ? m->be->device_name : m->be->name);
    cJSON *op = cJSON_AddObjectToObject(r, "options");
    cJSON_AddStringToObject(op, "backend", m->be->name);
    cJSON_AddNumberToObject(op, "max_tokens", o->max_tokens);
    cJSON_AddStringToObject(op, "quant",
                            o->quant == VL_QUANT_NF4    ? "nf4"
                            : o->quant == VL_QUANT_INT8 ? "int8"
                                                        : "bf16");
    cJSON_AddStringToObject(op, "kv", o->kv_int8 ? "int8" : "bf16");
    cJSON_AddStringToObject(op, "attn", o->attn_naive ? "naive" : "flash");
    cJSON_AddBoolToObject(op, "greedy", o->greedy);
    cJSON_AddNumberToObject(op, "temperature", o->temperature);
    cJSON_AddNumberToObject(op, "top_k", o->top_k);
    cJSON_AddNumberToObject(op, "top_p", o->top_p);
    cJSON_AddNumberToObject(op, "seed", (double)o->seed);
    char pen[32]; /* the float as typed (1.05, not 1.0499999523) */
    snprintf(pen, sizeof pen, "%.7g", (double)s->rep_penalty);
    cJSON_AddNumberToObject(op, "repetition_penalty", strtod(pen, NULL));
    cJSON_AddNumberToObject(op, "chunk", o->chunk);
    cJSON_AddBoolToObject(op, "random_weights", o->random_weights);
    cJSON_AddBoolToObject(op, "decode_graph", s->graph != NULL);
    char *js = cJSON_PrintUnformatted(r);
    if (js) printf("%s\n", js);
    free(js);
    cJSON_Delete(r);
}
