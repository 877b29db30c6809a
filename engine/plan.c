/* plan.c: the memory planner. A pure function of (config, prompt length, image sizes, max
 * tokens, chunk, activation dtype, kv dtype): what the run will hold on the device, by group,
 * before anything is allocated. The session's own layout function (forward.c) is run against a
 * counting arena, so the plan and the real allocation cannot drift apart.
 *
 * The CUDA context is not ours to size: VL_CUDA_CONTEXT_BYTES is what an H100 showed with
 * cuBLAS loaded (measured, see bench/), and the report prints the measured value beside it. */
#include "engine/engine.h"

void vl_plan_memory(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out) {
    memset(out, 0, sizeof *out);
    vl_session_shape sh;
    sh.max_ctx = rq->prompt_tokens + rq->max_tokens;
    sh.chunk = rq->chunk < rq->prompt_tokens ? rq->chunk : (int)rq->prompt_tokens;
    sh.max_patches = rq->max_patches;
    sh.max_tokens = rq->max_tokens;
    sh.attn_naive = rq->attn_naive;
    sh.kv_int8 = rq->kv_int8;
    sh.rep_penalty = rq->rep_penalty;
    size_t groups[VL_MEM_GROUPS];
    vl_session_plan_shape(c, rq->act, &sh, groups);
    out->weights = vl_weights_bytes(c, &rq->weights);
    out->kv = groups[VL_MEM_KV];
    out->act = groups[VL_MEM_ACT];
    out->workspace = groups[VL_MEM_WORKSPACE] + rq->workspace_bytes;
    out->context = rq->context_bytes;
    out->total = out->weights + out->kv + out->act + out->workspace + out->context;
}

void vl_plan_request_init(vl_plan_request *rq, const vl_options *o, const vl_backend *be,
                          int64_t prompt_tokens, int max_tokens, int chunk, int64_t max_patches) {
    memset(rq, 0, sizeof *rq);
    rq->act = be->act;
    rq->prompt_tokens = prompt_tokens;
    rq->max_tokens = max_tokens;
    rq->chunk = chunk;
    rq->max_patches = max_patches;
    rq->attn_naive = o->attn_naive;
    rq->kv_int8 = o->kv_int8;
    vl_weight_plan_from_options(&rq->weights, o);
    rq->workspace_bytes = be->workspace_bytes;
    rq->context_bytes = strcmp(be->name, "cpu") == 0 ? 0 : VL_CUDA_CONTEXT_BYTES;
}

void vl_plan_print(FILE *f, const vl_mem_plan *p) {
    const double gib = 1024.0 * 1024 * 1024;
    fprintf(f,
            "predicted peak %.3f GiB = weights %.3f + kv_cache %.3f + activations %.3f + "
            "workspace %.3f + cuda_context %.3f\n",
            p->total / gib, p->weights / gib, p->kv / gib, p->act / gib, p->workspace / gib,
            p->context / gib);
}
