/* plan.c: the memory planner. A pure function of (config, shape, activation dtype, weight
 * formats): what the run will hold on the device, by group, before anything is allocated. The
 * context's own layout (engine/layout.c) is run against a counting arena, so the plan and the
 * real allocation cannot drift apart; it prices any number of sequences held at once.
 *
 * The CUDA context is not ours to size: VL_CUDA_CONTEXT_BYTES is what an H100 showed with
 * cuBLAS loaded (measured, see bench/), and the report prints the measured value beside it. */
#include "engine/engine.h"

size_t vl_plan_weights_bytes(const vl_config *c, const vl_plan_request *rq) {
    return rq->weights_bytes > 0 ? rq->weights_bytes : vl_weights_bytes(c, &rq->weights);
}

void vl_plan_memory(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out) {
    vl_plan_session(c, rq->act, &rq->shape, vl_plan_weights_bytes(c, rq), rq->workspace_bytes,
                    rq->context_bytes, out);
}

int vl_plan_choose(const vl_config *c, vl_plan_request *q, size_t room, vl_mem_plan *out) {
    const int auto_chunk = q->shape.chunk <= 0;
    const int first_chunk = !auto_chunk                        ? q->shape.chunk
                            : room > 0 && !q->shape.attn_naive ? VL_CHUNK_LARGE
                                                               : VL_CHUNK_SMALL;
    vl_plan_request t = *q;
    for (int copy = q->shape.kv_int8 && q->shape.kv_int8_copy; copy >= 0; copy--) {
        t.shape.kv_int8_copy = copy;
        for (int chunk = first_chunk;; chunk /= 2) {
            t.shape.chunk = chunk;
            vl_plan_memory(c, &t, out);
            if (room == 0 || out->total <= room) {
                *q = t;
                return 1;
            }
            if (!auto_chunk || chunk / 2 < VL_CHUNK_SMALL) break;
        }
    }
    *q = t;
    return 0;
}

void vl_plan_add_sequence(const vl_config *c, const vl_plan_request *rq, vl_mem_plan *out) {
    vl_plan_request more = *rq;
    more.shape.n_sequences = vl_shape_sequences(&rq->shape) + 1;
    vl_plan_memory(c, &more, out);
}

void vl_plan_session(const vl_config *c, vl_dtype act, const vl_shape *sh, size_t weights_bytes,
                     size_t backend_workspace_bytes, size_t context_bytes, vl_mem_plan *out) {
    size_t groups[VL_MEM_GROUPS];
    vl_layout_plan(c, act, sh, groups);
    memset(out, 0, sizeof *out);
    out->weights = weights_bytes;
    out->kv = groups[VL_MEM_KV];
    out->act = groups[VL_MEM_ACT];
    out->workspace = groups[VL_MEM_WORKSPACE] + backend_workspace_bytes;
    out->context = context_bytes;
    out->total = out->weights + out->kv + out->act + out->workspace + out->context;
    out->chunk = vl_shape_chunk(sh);
}

void vl_plan_request_init(vl_plan_request *rq, const vl_engine_config *o, const vl_backend_caps *be,
                          int64_t prompt_tokens, int max_tokens, int chunk, int64_t max_patches) {
    memset(rq, 0, sizeof *rq);
    rq->act = be->act;
    rq->shape.prompt_tokens = prompt_tokens;
    rq->shape.max_tokens = max_tokens;
    rq->shape.chunk = chunk;
    rq->shape.max_patches = max_patches;
    rq->shape.attn_naive = o->attn_naive;
    rq->shape.kv_int8 = o->kv_int8;
    rq->shape.kv_int8_copy = o->kv_int8; /* the faster layout; vl_plan_choose drops it if short */
    vl_weight_plan_of(&rq->weights, o);
    rq->workspace_bytes = be->workspace_bytes;
    rq->context_bytes = be->kind == VL_BACKEND_CPU ? 0 : VL_CUDA_CONTEXT_BYTES;
}

void vl_plan_print(FILE *f, const vl_mem_plan *p) {
    const double gib = 1024.0 * 1024 * 1024;
    fprintf(f,
            "predicted peak %.3f GiB = weights %.3f + kv_cache %.3f + activations %.3f + "
            "workspace %.3f + cuda_context %.3f\n",
            p->total / gib, p->weights / gib, p->kv / gib, p->act / gib, p->workspace / gib,
            p->context / gib);
}

void vl_plan_image_of(const vl_config *c, const vl_pixels *px, vl_plan_image *out) {
    const int64_t h = px->grid_h / c->merge, w = px->grid_w / c->merge;
    out->patches = px->n_patches;
    out->tokens = px->n_patches / ((int64_t)c->merge * c->merge);
    out->positions = h > w ? h : w;
    if (px->grid_t > out->positions) out->positions = px->grid_t;
}

/* Image i of a request: the list's, then its last one repeated. */
static const vl_plan_image *nth_image(const vl_plan_image *imgs, int n, int i) {
    return &imgs[i < n ? i : n - 1];
}

void vl_plan_request_set_images(vl_plan_request *q, int64_t text_tokens, const vl_plan_image *imgs,
                                int n, int k) {
    int64_t tokens = text_tokens, max_patches = 0;
    for (int i = 0; i < k; i++) {
        const vl_plan_image *im = nth_image(imgs, n, i);
        tokens += im->tokens + 2; /* <|vision_start|> pads <|vision_end|> */
        if (im->patches > max_patches) max_patches = im->patches;
    }
    q->shape.prompt_tokens = tokens;
    q->shape.max_patches = max_patches;
}

/* The plan of the first k images. */
static size_t plan_first(const vl_config *c, vl_plan_request q, int64_t text_tokens,
                         const vl_plan_image *imgs, int n, int k) {
    vl_plan_request_set_images(&q, text_tokens, imgs, n, k);
    vl_mem_plan mp;
    vl_plan_memory(c, &q, &mp);
    return mp.total;
}

int vl_plan_images_that_fit(const vl_config *c, vl_plan_request q, int64_t text_tokens,
                            const vl_plan_image *imgs, int n, int max_images, size_t budget) {
    if (n < 1 || max_images < 1) return 0;
    /* The plan grows with every image (KV cache, chunk, largest image): bisect. */
    int lo = 0, hi = max_images; /* lo fits (0 images trivially), the answer is in [lo, hi] */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (plan_first(c, q, text_tokens, imgs, n, mid) <= budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int vl_plan_images_within_context(const vl_config *c, int64_t text_tokens,
                                  const vl_plan_image *imgs, int n, int max_tokens,
                                  int max_images) {
    /* positions: one per text token, max(t, h, w) per image plus its two marker tokens; the
     * last generated token must stay below the model's max_position_embeddings */
    int64_t pos = text_tokens + max_tokens - 1;
    if (pos >= c->max_positions) return 0;
    int k = 0;
    for (; k < max_images; k++) {
        pos += nth_image(imgs, n, k)->positions + 2;
        if (pos >= c->max_positions) break;
    }
    return k;
}
