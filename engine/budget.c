/* budget.c: a request refused before anything is allocated for it, in one line: over the
 * engine's memory budget (with how many of its images would fit, and with which options more
 * would), or over what the device has free. */
#include "engine/engine.h"

#include <stdlib.h>

/* How many of the request's images (in order) fit `budget` under plan request q. */
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

int vl_refuse_budget(const vl_engine *e, const vl_prompt *p, const vl_pixels *imgs, int n_imgs,
                     const vl_mem_plan *plan, const vl_plan_request *rq) {
    const vl_engine_config *cfg = &e->cfg;
    const size_t budget = (size_t)cfg->mem_budget;
    vl_plan_request q = *rq;
    q.shape.chunk = cfg->chunk; /* auto: its smallest */
    q.shape.kv_int8_copy = 0;   /* the most that fit: without the copy (vl_plan_choose) */
    int fit = images_that_fit(&e->m, p, imgs, n_imgs, q, budget);
    char alt[256] = "";
    size_t used = 0;
    for (int v = 1; v <= 3; v++) { /* 1: --quant nf4, 2: --kv int8, 3: both */
        int nf4 = v & 1, kv8 = v & 2;
        if ((nf4 && cfg->quant != VL_QUANT_BF16) || (kv8 && cfg->kv_int8)) continue;
        vl_plan_request a = q;
        if (nf4) {
            vl_engine_config c2 = *cfg;
            c2.quant = VL_QUANT_NF4;
            vl_weight_plan_of(&a.weights, &c2);
            a.weights_bytes = 0; /* from the config, not the bound checkpoint */
        }
        if (kv8) a.shape.kv_int8 = 1;
        used += (size_t)snprintf(alt + used, sizeof alt - used, "; with %s: %d",
                                 v == 1   ? "--quant nf4"
                                 : v == 2 ? "--kv int8"
                                          : "both",
                                 images_that_fit(&e->m, p, imgs, n_imgs, a, budget));
    }
    char advice[320];
    snprintf(advice, sizeof advice, "%d of the %d images would fit%s", fit, n_imgs, alt);
    return vl_budget_error(plan, cfg->mem_budget, advice);
}

int vl_budget_error(const vl_mem_plan *plan, int64_t budget, const char *advice) {
    const double gib = 1024.0 * 1024 * 1024;
    return vl_error_set("predicted peak %.2f GiB (weights %.2f + kv_cache %.2f + activations "
                        "%.2f + workspace %.2f + cuda_context %.2f) exceeds --mem-budget %.2f "
                        "GiB; %s",
                        plan->total / gib, plan->weights / gib, plan->kv / gib, plan->act / gib,
                        plan->workspace / gib, plan->context / gib, (double)budget / gib, advice);
}

/* What of a plan with this context and weights the engine holds already: the context and the
 * backend's workspaces are allocated, and so are the weights after the engine's first request. */
static size_t held_of(const vl_engine *e, size_t context_bytes, size_t weights_bytes) {
    return context_bytes + e->be->workspace_bytes + (e->weights_loaded ? weights_bytes : 0);
}

/* What the plan needs beyond that. */
static size_t device_need(const vl_engine *e, const vl_mem_plan *plan) {
    size_t held = held_of(e, plan->context, plan->weights);
    return plan->total > held ? plan->total - held : 0;
}

size_t vl_plan_room(const vl_engine *e, const vl_plan_request *q) {
    size_t room = e->cfg.mem_budget > 0 ? (size_t)e->cfg.mem_budget : 0;
    if (e->be->mem_info) {
        size_t free_b = 0, total_b = 0;
        e->be->mem_info(e->be, &free_b, &total_b);
        const size_t device =
            free_b + held_of(e, q->context_bytes, vl_plan_weights_bytes(&e->m.cfg, q));
        if (room == 0 || device < room) room = device;
    }
    return room;
}

int vl_refuse_device_memory(const vl_engine *e, const vl_mem_plan *plan) {
    vl_backend *be = e->be;
    if (!be->mem_info) return 0;
    size_t free_b = 0, total_b = 0;
    be->mem_info(be, &free_b, &total_b);
    size_t need = device_need(e, plan);
    if (need <= free_b) return 0;
    const double gib = 1024.0 * 1024 * 1024;
    return vl_error_set("out of %s memory: this run needs %.2f GiB more (weights %.2f + kv_cache "
                        "%.2f + activations %.2f + workspace %.2f) and the device has %.2f GiB "
                        "free of %.2f; use fewer images or --max-tokens, --quant nf4, --kv int8 "
                        "or --attn flash",
                        be->device_name ? be->device_name : be->name, need / gib,
                        e->weights_loaded ? 0.0 : plan->weights / gib, plan->kv / gib,
                        plan->act / gib, (plan->workspace - be->workspace_bytes) / gib,
                        free_b / gib, total_b / gib);
}
