/* sequence.c: contexts and sequences. A context is the memory every sequence on a model shares:
 * one arena (engine/layout.c) holding the scratch and a fixed number of sequence slots; a
 * sequence takes a free slot and holds one request's state in it (KV cache, positions, decode
 * state, the penalty's seen set). vl_session bundles one context with one sequence for the
 * callers that run one request at a time. */
#include "engine/models/models.h"

#include <stdlib.h>

/* The architecture's host structs for the scratch (their buffers are laid out in the arena). */
static int scratch_structs(vl_context *cx) {
    const vl_arch *a = cx->m->arch;
    cx->scratch.text = calloc(1, a->text->scratch_size);
    cx->scratch.vision = calloc(1, a->vision->scratch_size);
    size_t rows = (size_t)(cx->shape.batch_rows > 1 ? cx->shape.batch_rows : 1);
    cx->logits_host = malloc(rows * (size_t)cx->m->cfg.vocab * sizeof(float)); /* [rows, V] */
    cx->n_slots = vl_shape_sequences(&cx->shape);
    cx->slots = calloc((size_t)(cx->n_slots > 0 ? cx->n_slots : 1), sizeof *cx->slots);
    cx->slot_used = calloc((size_t)(cx->n_slots > 0 ? cx->n_slots : 1), 1);
    if (!cx->scratch.text || !cx->scratch.vision || !cx->logits_host || !cx->slots ||
        !cx->slot_used)
        return vl_error_set("out of host memory");
    return 0;
}

int vl_context_start(vl_context *cx, vl_model *m, const vl_shape *sh, vl_run_stats *stats) {
    memset(cx, 0, sizeof *cx);
    cx->m = m;
    cx->shape = *sh;
    cx->max_ctx = vl_shape_ctx(sh);
    cx->chunk = vl_shape_chunk(sh);
    cx->stats = stats ? stats : &cx->own_stats;
    cx->no_graph = !m->be->graph_begin; /* a backend without graphs: --cuda-opt no_graphs=1 */
    if (scratch_structs(cx)) return -1;
    const vl_config *c = &m->cfg;
    size_t bytes = vl_layout_plan(c, m->be->act, sh, NULL);
    if (vl_arena_init(&cx->arena, m->be, bytes)) return -1;
    if (vl_layout(&cx->arena, c, m->be->act, sh, &cx->scratch, cx->slots, &cx->pool)) return -1;
    memcpy(cx->stats->arena_peak, cx->arena.peak, sizeof cx->arena.peak);
    cx->stats->arena_peak_total = cx->arena.peak_total;
    return 0;
}

void vl_context_free(vl_context *cx) {
    vl_arena_free(&cx->arena);
    free(cx->scratch.text);
    free(cx->scratch.vision);
    free(cx->logits_host);
    free(cx->slots);
    free(cx->slot_used);
    memset(cx, 0, sizeof *cx);
}

int vl_sequence_open(vl_sequence *s, vl_context *cx) {
    memset(s, 0, sizeof *s);
    s->slot = -1;
    for (int i = 0; i < cx->n_slots && s->slot < 0; i++)
        if (!cx->slot_used[i]) s->slot = i;
    if (s->slot < 0)
        return vl_error_set("internal: all %d sequence slots of the context are taken",
                            cx->n_slots);
    cx->slot_used[s->slot] = 1;
    s->cx = cx;
    s->mem = cx->slots[s->slot];
    s->max_ctx = cx->max_ctx;
    s->max_tokens = cx->shape.max_tokens > 0 ? cx->shape.max_tokens : 1;
    s->rep_penalty = s->mem.seen ? cx->shape.rep_penalty : 1.0f;
    return vl_sequence_reset(s);
}

vl_kv_view vl_sequence_kv(const vl_sequence *s, const int32_t *n_past_dev) {
    const vl_context *cx = s->cx;
    const vl_config *c = &cx->m->cfg;
    int64_t KD = (int64_t)c->n_kv_heads * c->head_dim, T = s->max_ctx;
    size_t kv_esz = cx->shape.kv_int8 ? 1 : vl_dtype_size(cx->m->be->act);
    vl_kv_view kv = {0};
    kv.kv = s->mem.kv;
    kv.kv_scale = s->mem.kv_scale;
    kv.v_offset = (size_t)(KD * T) * kv_esz;
    kv.layer_bytes = 2 * kv.v_offset;
    kv.v_scale_offset = (size_t)c->n_kv_heads * (size_t)T;
    kv.layer_scales = 2 * kv.v_scale_offset;
    kv.head_stride = T * c->head_dim;
    kv.scale_head_stride = T;
    kv.n_past = s->n_past;
    kv.n_past_dev = n_past_dev;
    kv.bound = T;
    return kv;
}

int vl_sequence_reset(vl_sequence *s) {
    s->n_past = 0;
    s->rope_delta = 0;
    if (s->mem.seen) { /* the set starts empty; prefill and decode add to it on the backend */
        vl_backend *be = s->cx->m->be;
        const int vocab = s->cx->m->cfg.vocab;
        uint8_t *zero = calloc((size_t)vocab, 1);
        if (!zero) return vl_error_set("out of host memory");
        be->upload(be, s->mem.seen, zero, (size_t)vocab);
        free(zero);
    }
    return 0;
}

void vl_sequence_close(vl_sequence *s) {
    vl_context *cx = s->cx;
    if (cx) {
        vl_backend *be = cx->m->be;
        if (s->graph && be->graph_free) be->graph_free(be, s->graph);
        if (s->slot >= 0 && s->slot < cx->n_slots) cx->slot_used[s->slot] = 0;
    }
    memset(s, 0, sizeof *s);
}

int vl_session_start(vl_session *s, vl_model *m, const vl_shape *sh) {
    memset(s, 0, sizeof *s);
    if (vl_context_start(&s->cx, m, sh, &s->stats)) return -1;
    return vl_sequence_open(&s->seq, &s->cx);
}

int vl_session_init(vl_session *s, vl_model *m, int64_t max_ctx, int chunk, int64_t max_patches) {
    vl_shape sh = {0};
    sh.prompt_tokens = max_ctx;
    sh.max_tokens = (int)max_ctx;
    sh.ctx = max_ctx;
    sh.chunk = chunk;
    sh.max_patches = max_patches;
    return vl_session_start(s, m, &sh);
}

void vl_session_free(vl_session *s) {
    vl_sequence_close(&s->seq);
    vl_context_free(&s->cx);
    memset(s, 0, sizeof *s);
}
