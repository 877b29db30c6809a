/* layout.c: the memory of a context, from the configuration and the shape alone: the shared
 * scratch and the sequence slots, carved from one arena in one fixed order. The planner runs it
 * on a counting arena and the context on the real one, so the plan and the allocation cannot
 * drift apart (tests/test_plan.c checks them byte for byte).
 *
 * Order: first what the scratch holds the whole run (with a paged pool, one layer's K/V of a
 * sequence gathered from its blocks, or with kv_int8_copy one layer dequantized; the residual
 * stream, the last logits, ids and positions, the current image's features, the naive
 * attention's scores); then the decoder's per-chunk buffers and the vision tower's share one
 * region, because an image is encoded between a chunk's embedding and its first layer, when the
 * decoder's buffers hold nothing; the region is then sealed at its larger size, and each slot
 * follows (KV cache and scales, decode state, sampled tokens, the penalty's seen set and
 * scores), or for a batch (engine/batch.c) the paged pool, its block tables and lengths, with
 * the buffers sized for max(chunk, decode rows) rows and the logits of every decode row. Every
 * slice is 256-byte aligned and padded, so the totals do not depend on the order. */
#include "engine/models/models.h"

#include <stdint.h>

int64_t vl_shape_ctx(const vl_shape *sh) {
    return sh->ctx > 0 ? sh->ctx : sh->prompt_tokens + sh->max_tokens;
}

int vl_shape_chunk(const vl_shape *sh) {
    const int chunk = sh->chunk > 0 ? sh->chunk : VL_CHUNK_SMALL;
    return chunk < sh->prompt_tokens ? chunk : (int)sh->prompt_tokens;
}

int vl_shape_sequences(const vl_shape *sh) {
    return sh->pool_blocks > 0 ? 0 : sh->n_sequences > 0 ? sh->n_sequences : 1;
}

/* Rows of the per-chunk buffers: a prefill chunk, or the decode rows of a batch. */
static int64_t shape_rows(const vl_shape *sh) {
    int64_t S = vl_shape_chunk(sh);
    return sh->batch_rows > S ? sh->batch_rows : S;
}

/* A repetition penalty of 0 (not set) or 1 changes nothing: no set is kept, nothing runs. */
static int penalty_on(float p) {
    return p > 0.0f && p != 1.0f;
}

/* What the scratch holds the whole run. */
static int layout_persistent(vl_arena *a, const vl_config *c, size_t esz, const vl_shape *sh,
                             vl_scratch *s) {
    int64_t S = shape_rows(sh), max_ctx = vl_shape_ctx(sh), E = c->hidden;
    int64_t KD = (int64_t)c->n_kv_heads * c->head_dim, m2 = (int64_t)c->merge * c->merge;
    int64_t n_logits = sh->batch_rows > 1 ? sh->batch_rows : 1;
    s->kv_tmp = NULL;
    if (sh->pool_blocks > 0 || (sh->kv_int8 && sh->kv_int8_copy)) {
        /* a prefill chunk over the pool attends through one layer's K and V of its sequence
         * gathered from the blocks (and dequantized, with --kv int8), and one over an int8 slot
         * through its layer dequantized when kv_int8_copy: one layer of an act-dtype cache of
         * max_ctx tokens. Otherwise none: attention reads the slot's cache, int8 too. */
        size_t tmp_bytes = 2 * (size_t)KD * (size_t)max_ctx * esz;
        if (!(s->kv_tmp = vl_arena_alloc(a, tmp_bytes, VL_MEM_WORKSPACE))) return -1;
    }
    if (!(s->x = vl_arena_alloc(a, (size_t)(S * E) * esz, VL_MEM_ACT))) return -1;
    if (!(s->logits = vl_arena_alloc(a, (size_t)(n_logits * c->vocab) * esz, VL_MEM_ACT)))
        return -1;
    if (!(s->ids_dev = vl_arena_alloc(a, (size_t)S * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->pos_dev = vl_arena_alloc(a, (size_t)S * 3 * sizeof(int32_t), VL_MEM_ACT))) return -1;
    s->img_feats = NULL;
    if (sh->max_patches > 0 &&
        !(s->img_feats = vl_arena_alloc(a, (size_t)(sh->max_patches / m2 * E) * esz, VL_MEM_ACT)))
        return -1;
    s->scores = NULL;
    if (sh->attn_naive) {
        /* --attn naive: the score matrix of the largest attention call, fp32 */
        int64_t text = (int64_t)c->n_heads * S * max_ctx;
        int64_t vision = (int64_t)c->v_heads * sh->max_patches * sh->max_patches;
        int64_t n = text > vision ? text : vision;
        if (!(s->scores = vl_arena_alloc(a, (size_t)n * sizeof(float), VL_MEM_WORKSPACE)))
            return -1;
    }
    return 0;
}

/* One sequence slot. */
static int layout_slot(vl_arena *a, const vl_config *c, size_t esz, const vl_shape *sh,
                       vl_sequence_mem *q) {
    int64_t max_ctx = vl_shape_ctx(sh);
    /* --kv int8: one byte per element and one fp32 scale per cached row (token, kv head) */
    size_t kv_esz = sh->kv_int8 ? 1 : esz, rows = (size_t)c->n_layers * 2 * c->n_kv_heads;
    size_t kv_bytes = rows * (size_t)c->head_dim * (size_t)max_ctx * kv_esz;
    if (!(q->kv = vl_arena_alloc(a, kv_bytes, VL_MEM_KV))) return -1;
    q->kv_scale = NULL;
    if (sh->kv_int8 &&
        !(q->kv_scale = vl_arena_alloc(a, rows * (size_t)max_ctx * sizeof(float), VL_MEM_KV)))
        return -1;
    if (!(q->st_dev = vl_arena_alloc(a, sizeof(vl_decode_state), VL_MEM_ACT))) return -1;
    int n_tok = sh->max_tokens > 0 ? sh->max_tokens : 1;
    if (!(q->tokens_dev = vl_arena_alloc(a, (size_t)n_tok * sizeof(int32_t), VL_MEM_ACT)))
        return -1;
    q->seen = NULL;
    q->pen_scores = NULL;
    if (penalty_on(sh->rep_penalty)) { /* the seen-token set and the float32 scores */
        if (!(q->seen = vl_arena_alloc(a, (size_t)c->vocab, VL_MEM_ACT))) return -1;
        if (!(q->pen_scores = vl_arena_alloc(a, (size_t)c->vocab * sizeof(float), VL_MEM_ACT)))
            return -1;
    }
    return 0;
}

/* A batch's pool of blocks (kv and scales as a slot's, blocks instead of one sequence), the
 * decode rows' block tables and a prefill's, the rows' cached lengths and their sampling, and
 * the vision cache's block. */
static int layout_pool(vl_arena *a, const vl_config *c, size_t esz, const vl_shape *sh,
                       vl_pool_mem *q) {
    size_t kv_esz = sh->kv_int8 ? 1 : esz, rows = (size_t)c->n_layers * 2 * c->n_kv_heads;
    size_t pool_rows = rows * (size_t)sh->pool_blocks * (size_t)sh->block_tokens;
    if (!(q->kv = vl_arena_alloc(a, pool_rows * (size_t)c->head_dim * kv_esz, VL_MEM_KV)))
        return -1;
    q->kv_scale = NULL;
    if (sh->kv_int8 && !(q->kv_scale = vl_arena_alloc(a, pool_rows * sizeof(float), VL_MEM_KV)))
        return -1;
    size_t n_rows = (size_t)(sh->batch_rows > 1 ? sh->batch_rows : 1);
    size_t tables = (n_rows + 1) * (size_t)sh->pool_blocks * sizeof(int32_t);
    if (!(q->tables = vl_arena_alloc(a, tables, VL_MEM_ACT))) return -1;
    if (!(q->n_past_dev = vl_arena_alloc(a, n_rows * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(q->tokens_dev = vl_arena_alloc(a, n_rows * sizeof(int32_t), VL_MEM_ACT)) ||
        !(q->temperature_dev = vl_arena_alloc(a, n_rows * sizeof(float), VL_MEM_ACT)) ||
        !(q->keys_dev = vl_arena_alloc(a, n_rows * sizeof(uint64_t), VL_MEM_ACT)))
        return -1;
    q->vision_cache = NULL;
    if (sh->vision_cache_bytes > 0 &&
        !(q->vision_cache = vl_arena_alloc(a, sh->vision_cache_bytes, VL_MEM_ACT)))
        return -1;
    return 0;
}

int vl_layout(vl_arena *a, const vl_config *c, vl_dtype act, const vl_shape *sh,
              vl_scratch *scratch, vl_sequence_mem *slots, vl_pool_mem *pool) {
    const vl_arch *arch = vl_arch_find(c->model_type);
    if (!arch) return -1;
    size_t esz = vl_dtype_size(act);
    vl_scratch local;
    vl_scratch *s = scratch ? scratch : &local;
    if (!scratch) s->text = s->vision = NULL;
    if (layout_persistent(a, c, esz, sh, s)) return -1;
    vl_arena_mark shared = vl_arena_get_mark(a);
    if (arch->text->layout(a, c, esz, shape_rows(sh), s->text)) return -1;
    vl_arena_release(a, shared);
    if (arch->vision->layout(a, c, esz, sh->max_patches, s->vision)) return -1;
    vl_arena_seal(a);
    for (int i = 0; i < vl_shape_sequences(sh); i++) {
        vl_sequence_mem q;
        if (layout_slot(a, c, esz, sh, slots ? &slots[i] : &q)) return -1;
    }
    vl_pool_mem local_pool;
    if (sh->pool_blocks > 0 && layout_pool(a, c, esz, sh, pool ? pool : &local_pool)) return -1;
    return 0;
}

size_t vl_layout_plan(const vl_config *c, vl_dtype act, const vl_shape *sh,
                      size_t group_bytes[VL_MEM_GROUPS]) {
    vl_arena a;
    memset(&a, 0, sizeof a);
    a.cap = SIZE_MAX; /* base NULL + cap MAX: the arena only counts */
    if (vl_layout(&a, c, act, sh, NULL, NULL, NULL)) return 0;
    if (group_bytes) memcpy(group_bytes, a.peak, sizeof a.peak);
    return a.peak_total;
}
