/* forward.c: prefill and decode of one sequence, whatever the architecture (its parts are
 * engine/models/: embed, layer, lm_head, the vision encoder).
 *
 * Prefill walks the prompt in chunks of at most `chunk` tokens. Before a chunk runs, every
 * image whose pad tokens fall in it is encoded into one features buffer and its rows are copied
 * over the pad rows' embeddings. A chunk attends to the whole KV cache before it (causal with a
 * query offset), so activation memory is bounded by one chunk and one image whatever the
 * number of images: only the KV cache grows with the prompt.
 *
 * The LM head runs on the last position only (as transformers' generate does with
 * logits_to_keep = 1), except when a test asks for the argmax at every position. */
#include "engine/models/models.h"

#include <stdlib.h>

/* Byte address of element `i` of an activation buffer. */
static inline void *act_at(const vl_context *cx, void *base, int64_t i) {
    return (uint8_t *)base + (size_t)i * vl_dtype_size(cx->m->be->act);
}

/* Device memory in use now (everything the process holds, CUDA context included). */
void vl_context_sample_memory(vl_context *cx) {
    vl_backend *be = cx->m->be;
    if (!be->mem_info) return;
    size_t free_b = 0, total_b = 0;
    be->mem_info(be, &free_b, &total_b);
    cx->stats->device_total = total_b;
    if (total_b - free_b > cx->stats->peak_device) cx->stats->peak_device = total_b - free_b;
}

/* Final norm and LM head on row `row` of the scratch: float32 cx->logits_host [V]. */
static void lm_head_row(vl_context *cx, int64_t row) {
    cx->m->arch->text->lm_head(cx, row, 1);
    cx->m->be->to_f32(cx->m->be, cx->logits_host, cx->scratch.logits, cx->m->cfg.vocab);
}

/* Upload ids[0..S) and the three position rows of the chunk (pos rows have stride `pstride`). */
static void upload_chunk(vl_context *cx, const int32_t *ids, const int32_t *pos, int64_t pstride,
                         int64_t S) {
    vl_backend *be = cx->m->be;
    be->upload(be, cx->scratch.ids_dev, ids, (size_t)S * sizeof(int32_t));
    for (int r = 0; r < 3; r++)
        be->upload(be, cx->scratch.pos_dev + r * S, pos + r * pstride, (size_t)S * sizeof(int32_t));
}

/* The features of every image whose pads fall in the chunk [c0, c0 + S) over those rows of x;
 * *cur_src: which image's features are in scratch.img_feats. */
/* Image i's nt merged tokens into the scratch's img_feats: from the context's vision cache when
 * it holds them (a batch; engine/vision_cache.c), else through the tower (then cached). */
static int encode_image(vl_context *cx, const vl_prompt *p, int i, int64_t nt) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const size_t bytes = (size_t)nt * (size_t)m->cfg.hidden * vl_dtype_size(be->act);
    vl_vision_cache *vc = p->image_key ? cx->vcache : NULL;
    const void *hit = vc ? vl_vision_cache_find(vc, p->image_key[i], nt) : NULL;
    if (hit) {
        be->copy(be, cx->scratch.img_feats, hit, bytes);
        return 0;
    }
    be->sync(be);
    double tv = vl_now_s();
    if (m->arch->vision->encode(cx, &p->images[i], cx->scratch.img_feats)) return -1;
    be->sync(be);
    cx->stats->t.vision_s += vl_now_s() - tv;
    void *slot = vc ? vl_vision_cache_put(vc, p->image_key[i], nt, bytes) : NULL;
    if (slot) be->copy(be, slot, cx->scratch.img_feats, bytes);
    return 0;
}

static int insert_images(vl_context *cx, const vl_prompt *p, int64_t c0, int64_t S, int *cur_src) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    for (int i = 0; i < p->n_images; i++) {
        int64_t nt = p->images[i].n_patches / ((int64_t)c->merge * c->merge);
        int64_t a = p->image_at[i], b = a + nt;
        int64_t lo = a > c0 ? a : c0, hi = b < c0 + S ? b : c0 + S;
        if (lo >= hi) continue;
        if (*cur_src != p->image_src[i]) {
            if (encode_image(cx, p, i, nt)) return -1;
            *cur_src = p->image_src[i];
        }
        vl_progress_images(m->progress, i + 1, p->n_images);
        size_t esz = vl_dtype_size(be->act);
        be->copy(be, act_at(cx, cx->scratch.x, (lo - c0) * c->hidden),
                 act_at(cx, cx->scratch.img_feats, (lo - a) * c->hidden),
                 (size_t)(hi - lo) * (size_t)c->hidden * esz);
    }
    return 0;
}

int vl_prefill_chunk(vl_context *cx, const vl_kv_view *kv, const vl_prompt *p, int64_t c0,
                     int64_t S, uint8_t *seen, int *cur_src) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_text_ops *text = m->arch->text;
    upload_chunk(cx, p->ids + c0, p->pos + c0, p->n, S);
    if (seen) be->mark_seen(be, seen, c->vocab, cx->scratch.ids_dev, S);
    text->embed(cx, cx->scratch.ids_dev, S);
    if (insert_images(cx, p, c0, S, cur_src)) return -1;
    for (int li = 0; li < c->n_layers; li++) {
        text->layer(cx, kv, li, S, cx->scratch.pos_dev);
        vl_progress_update(m->progress, c0 + (double)S * (li + 1) / c->n_layers);
    }
    return 0;
}

static int prefill(vl_sequence *s, const vl_prompt *p, float *logits_last, vl_logits_fn each,
                   void *each_ctx) {
    vl_context *cx = s->cx;
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    if (s->n_past + p->n > s->max_ctx)
        return vl_error_set("prompt of %d tokens does not fit the context of %lld tokens", p->n,
                            (long long)s->max_ctx);
    double t0 = vl_now_s();
    vl_progress_begin(m->progress, "prefill", "tokens", p->n);
    vl_progress_images(m->progress, 0, p->n_images);
    int cur_src = -1;
    for (int64_t c0 = 0; c0 < p->n; c0 += cx->chunk) {
        int64_t S = p->n - c0 < cx->chunk ? p->n - c0 : cx->chunk;
        vl_kv_view kv = vl_sequence_kv(s, NULL);
        if (vl_prefill_chunk(cx, &kv, p, c0, S, s->mem.seen, &cur_src)) return -1;
        if (each)
            for (int64_t r = 0; r < S; r++) {
                lm_head_row(cx, r);
                if (each(each_ctx, c0 + r, cx->logits_host, c->vocab)) return -1;
            }
        s->n_past += S;
        vl_context_sample_memory(cx);
        if (c0 + S == p->n) {
            lm_head_row(cx, S - 1);
            if (logits_last) memcpy(logits_last, cx->logits_host, (size_t)c->vocab * sizeof(float));
        }
    }
    be->sync(be);
    vl_progress_end(m->progress);
    s->rope_delta = p->rope_delta;
    cx->stats->t.prefill_s += vl_now_s() - t0;
    cx->stats->t.prefill_tokens += p->n;
    return 0;
}

static int store_argmax(void *ctx, int64_t pos, const float *logits, int n) {
    ((int32_t *)ctx)[pos] = vl_argmax(logits, n);
    return 0;
}

int vl_prefill(vl_sequence *s, const vl_prompt *p, float *logits_last, int32_t *argmax_all) {
    return prefill(s, p, logits_last, argmax_all ? store_argmax : NULL, argmax_all);
}

int vl_prefill_each(vl_sequence *s, const vl_prompt *p, vl_logits_fn fn, void *ctx) {
    return prefill(s, p, NULL, fn, ctx);
}

int vl_decode_step(vl_sequence *s, int32_t token, float *logits) {
    vl_context *cx = s->cx;
    vl_model *m = cx->m;
    const vl_config *c = &m->cfg;
    if (s->n_past + 1 > s->max_ctx)
        return vl_error_set("the context of %lld tokens is full", (long long)s->max_ctx);
    if (token < 0 || token >= c->vocab)
        return vl_error_set("token id %d is outside the vocabulary of %d", token, c->vocab);
    int32_t pos[3];
    pos[0] = pos[1] = pos[2] = (int32_t)(s->n_past + s->rope_delta);
    upload_chunk(cx, &token, pos, 1, 1);
    if (s->mem.seen) m->be->mark_seen(m->be, s->mem.seen, c->vocab, cx->scratch.ids_dev, 1);
    m->arch->text->embed(cx, cx->scratch.ids_dev, 1);
    vl_kv_view kv = vl_sequence_kv(s, NULL);
    for (int li = 0; li < c->n_layers; li++)
        m->arch->text->layer(cx, &kv, li, 1, cx->scratch.pos_dev);
    s->n_past += 1;
    lm_head_row(cx, 0);
    if (logits) memcpy(logits, cx->logits_host, (size_t)c->vocab * sizeof(float));
    return 0;
}

void vl_penalize_logits(vl_sequence *s, float *logits) {
    if (!s->mem.seen) return;
    vl_backend *be = s->cx->m->be;
    const int64_t V = s->cx->m->cfg.vocab;
    be->repetition_penalty(be, s->mem.pen_scores, s->cx->scratch.logits, s->mem.seen, V,
                           s->rep_penalty);
    be->download(be, logits, s->mem.pen_scores, (size_t)V * sizeof(float));
}
