/* qwen2_vl_text.c: Qwen2-VL's decoder (Qwen2 blocks with M-RoPE) and its LM head: the weights,
 * their names, the per-chunk scratch and the forward pass of one layer.
 *
 * A layer runs over S tokens at absolute positions n_past .. n_past+S-1 of one sequence,
 * appending their K and V to its cache ([layers][2][Hkv][max_ctx][D], engine/layout.c) and
 * attending to the whole cache before them (causal with a query offset); or over the one new
 * token of S sequences of a batch, through their block tables in the paged pool (vl_kv_view). The
 * residual adds go with the norm that follows them (add_rmsnorm). The LM head runs on one row (as
 * transformers' generate does with logits_to_keep = 1). */
#include "engine/models/models.h"

#include <math.h>
#include <stdlib.h>

/* One chunk's buffers (backend memory, act dtype). */
typedef struct {
    void *xn, *q, *k, *v, *att, *gate, *up;
} text_scratch;

static void *weights_new(const vl_config *c) {
    vl_qwen2_vl_text_weights *w = calloc(1, sizeof *w);
    if (w) w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w || !w->layers) {
        free(w);
        vl_error_set("out of host memory");
        return NULL;
    }
    return w;
}

static void weights_free(void *p) {
    vl_qwen2_vl_text_weights *w = p;
    if (w) free(w->layers);
    free(w);
}

static int bind_layer(vl_binder *b, const vl_config *c, int i, vl_qwen2_vl_decoder_layer *L) {
    char r[256];
    int64_t E = c->hidden, F = c->intermediate, D = c->head_dim;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    const vl_name_part T = VL_PART_TEXT;
#define DL(fmt) (snprintf(r, sizeof r, "layers.%d." fmt, i), r)
    return vl_bind_vec(b, T, DL("input_layernorm.weight"), E, &L->in_norm) ||
           vl_bind_vec(b, T, DL("post_attention_layernorm.weight"), E, &L->post_norm) ||
           vl_bind_matrix(b, T, DL("self_attn.q_proj.weight"), HD, E, &L->q) ||
           vl_bind_vec(b, T, DL("self_attn.q_proj.bias"), HD, &L->q_b) ||
           vl_bind_matrix(b, T, DL("self_attn.k_proj.weight"), KD, E, &L->k) ||
           vl_bind_vec(b, T, DL("self_attn.k_proj.bias"), KD, &L->k_b) ||
           vl_bind_matrix(b, T, DL("self_attn.v_proj.weight"), KD, E, &L->v) ||
           vl_bind_vec(b, T, DL("self_attn.v_proj.bias"), KD, &L->v_b) ||
           vl_bind_matrix(b, T, DL("self_attn.o_proj.weight"), E, HD, &L->o) ||
           vl_bind_matrix(b, T, DL("mlp.gate_proj.weight"), F, E, &L->gate) ||
           vl_bind_matrix(b, T, DL("mlp.up_proj.weight"), F, E, &L->up) ||
           vl_bind_matrix(b, T, DL("mlp.down_proj.weight"), E, F, &L->down);
#undef DL
}

static int bind(vl_binder *b, const vl_config *c, void *p, int *lm_head_is_embed) {
    vl_qwen2_vl_text_weights *w = p;
    if (vl_bind_matrix(b, VL_PART_TEXT, "embed_tokens.weight", c->vocab, c->hidden, &w->embed))
        return -1;
    for (int i = 0; i < c->n_layers; i++)
        if (bind_layer(b, c, i, &w->layers[i])) return -1;
    if (vl_bind_vec(b, VL_PART_TEXT, "norm.weight", c->hidden, &w->final_norm)) return -1;
    if (vl_bind_tied(b, c->tie_embeddings, lm_head_is_embed)) {
        w->lm_head = w->embed;
        return 0;
    }
    return vl_bind_matrix(b, VL_PART_TOP, "lm_head.weight", c->vocab, c->hidden, &w->lm_head);
}

static void after_place(const vl_config *c, void *p, int lm_head_is_embed) {
    vl_qwen2_vl_text_weights *w = p;
    if (lm_head_is_embed) w->lm_head = w->embed;
    for (int i = 0; i < c->n_layers; i++) {
        vl_qwen2_vl_decoder_layer *L = &w->layers[i];
        const vl_weight *qkv[3] = {&L->q, &L->k, &L->v};
        const vl_vec *qkv_b[3] = {&L->q_b, &L->k_b, &L->v_b};
        vl_weights_fuse(&L->qkv, &L->qkv_b, qkv, qkv_b, 3);
        const vl_weight *gu[2] = {&L->gate, &L->up};
        vl_weights_fuse(&L->gate_up, NULL, gu, NULL, 2);
    }
}

static vl_dtype linear_dtype(const void *p) {
    return ((const vl_qwen2_vl_text_weights *)p)->layers[0].q.dtype;
}

static int layout(vl_arena *a, const vl_config *c, size_t esz, int64_t S, void *out) {
    text_scratch local, *t = out ? out : &local;
    int64_t E = c->hidden, D = c->head_dim;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    struct {
        void **p;
        int64_t elems;
    } acts[] = {{&t->xn, S * E},
                {&t->q, S * HD},
                {&t->k, S * KD},
                {&t->v, S * KD},
                {&t->att, S * HD},
                {&t->gate, S * c->intermediate},
                {&t->up, S * c->intermediate}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!(*acts[i].p = vl_arena_alloc(a, (size_t)acts[i].elems * esz, VL_MEM_ACT))) return -1;
    return 0;
}

static void embed(vl_context *cx, const int32_t *ids_dev, int64_t S) {
    vl_backend *be = cx->m->be;
    const vl_qwen2_vl_text_weights *w = cx->m->text_w;
    be->embed(be, cx->scratch.x, &w->embed, ids_dev, S);
}

/* Byte address of element `i` of an activation buffer. */
static inline void *act_at(vl_backend *be, void *base, int64_t i) {
    return (uint8_t *)base + (size_t)i * vl_dtype_size(be->act);
}

/* Layer li's K and V (and, with --kv int8, their scales; NULL otherwise) in the view's cache. */
typedef struct {
    uint8_t *k, *v;
    float *k_scale, *v_scale;
} layer_cache;

static layer_cache cache_of(const vl_kv_view *kv, int li) {
    layer_cache lc = {0};
    lc.k = (uint8_t *)kv->kv + (size_t)li * kv->layer_bytes;
    lc.v = lc.k + kv->v_offset;
    if (kv->kv_scale) {
        lc.k_scale = kv->kv_scale + (size_t)li * kv->layer_scales;
        lc.v_scale = lc.k_scale + kv->v_scale_offset;
    }
    return lc;
}

/* One prefill chunk's keys and values as contiguous act rows in the scratch's workspace
 * (cx->max_ctx rows per head), which the chunk's attention then reads: a paged pool's blocks of
 * the sequence gathered (an int8 pool dequantized on the way), or an int8 slot dequantized
 * (kv_int8_copy: the codes converted once, not by every query block of the attention).
 * Everything else is read in place by the attention (attend): a slot's cache (int8 too without
 * the copy) and a batch's decode rows through their block tables. */
static void chunk_kv(vl_context *cx, const vl_kv_view *kv, const layer_cache *lc, int64_t n_tok,
                     vl_attn_params *p) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    int64_t D = c->head_dim, ws = cx->max_ctx * D;
    void *kt = cx->scratch.kv_tmp, *vt = act_at(be, cx->scratch.kv_tmp, c->n_kv_heads * ws);
    be->kv_gather(be, kt, ws, lc->k, lc->k_scale, &kv->pages, kv->head_stride,
                  kv->scale_head_stride, c->n_kv_heads, n_tok, (int)D);
    be->kv_gather(be, vt, ws, lc->v, lc->v_scale, &kv->pages, kv->head_stride,
                  kv->scale_head_stride, c->n_kv_heads, n_tok, (int)D);
    p->k = kt;
    p->v = vt;
    p->kv_head_stride = ws;
}

/* The attention of S queries (rows q_stride apart) over layer li of the cache, into t->att. */
static void attend(vl_context *cx, const vl_kv_view *kv, int li, int64_t S, void *q,
                   int64_t q_stride) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    text_scratch *t = cx->scratch.text;
    int64_t D = c->head_dim;
    layer_cache lc = cache_of(kv, li);
    vl_attn_params p = {0};
    p.q = q;
    p.q_stride = q_stride;
    p.k = lc.k;
    p.v = lc.v;
    p.kv_tok_stride = D;
    p.kv_head_stride = kv->head_stride;
    p.o = t->att;
    p.o_stride = (int64_t)c->n_heads * D;
    p.n_q = S;
    p.n_kv = kv->n_past_dev ? kv->bound : kv->n_past + S; /* with n_past_dev: the bound */
    p.n_heads = c->n_heads;
    p.n_kv_heads = c->n_kv_heads;
    p.head_dim = (int)D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 1;
    p.q_pos0 = kv->n_past_dev ? 0 : kv->n_past;
    p.n_past_dev = kv->n_past_dev;
    if (!kv->batch && (kv->pages.table || (kv->kv_scale && S > 1 && cx->scratch.kv_tmp))) {
        chunk_kv(cx, kv, &lc, kv->n_past + S, &p);
    } else {
        p.k_scale = lc.k_scale;
        p.v_scale = lc.v_scale;
        p.kv_scale_head_stride = lc.k_scale ? kv->scale_head_stride : 0;
        p.pages = kv->pages;
        p.batch = kv->batch;
    }
    if (cx->shape.attn_naive)
        be->attention_naive(be, &p, cx->scratch.scores);
    else
        be->attention(be, &p);
}

/* Rotary on q and k of the S tokens, and k, v appended to layer li's cache. */
static void rope_append(vl_context *cx, const vl_kv_view *kv, int li, int64_t S, void *q, void *k,
                        void *v, int64_t q_stride, int64_t kv_stride, const int32_t *pos_dev) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    layer_cache lc = cache_of(kv, li);
    vl_rope_kv_params r = {0};
    r.q = q;
    r.k = k;
    r.v = v;
    r.q_stride = q_stride;
    r.kv_stride = kv_stride;
    r.s = S;
    r.n_heads = c->n_heads;
    r.n_kv_heads = c->n_kv_heads;
    r.head_dim = c->head_dim;
    r.pos = pos_dev;
    memcpy(r.sections, c->mrope_section, sizeof r.sections);
    r.theta = c->rope_theta;
    r.k_cache = lc.k;
    r.v_cache = lc.v;
    r.head_stride = kv->head_stride;
    r.pos0 = kv->n_past_dev ? 0 : kv->n_past;
    r.pos0_dev = kv->n_past_dev;
    r.k_scale = lc.k_scale;
    r.v_scale = lc.v_scale;
    r.scale_head_stride = kv->scale_head_stride;
    r.pages = kv->pages;
    r.batch = kv->batch;
    be->rope_kv_append(be, &r);
}

/* On entry t->xn holds this layer's input norm of x, except for layer 0, which computes it;
 * the last layer leaves the final norm to the LM head, which takes one row. */
static void layer(vl_context *cx, const vl_kv_view *kv, int li, int64_t S, const int32_t *pos_dev) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_qwen2_vl_text_weights *w = m->text_w;
    const vl_qwen2_vl_decoder_layer *L = &w->layers[li];
    text_scratch *t = cx->scratch.text;
    void *x = cx->scratch.x;
    int64_t E = c->hidden, D = c->head_dim, F = c->intermediate;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;

    /* Decode (one token, or one per sequence of a batch) with q/k/v back to back on the
     * backend: one product writes S rows of [q | k | v] into t->q, which holds a chunk of query
     * rows, so room for them while S (HD + 2 KD) <= chunk HD. One launch instead of three: the
     * k and v products alone (N = KD) are too small to fill the GPU. */
    int fused = (S == 1 || kv->batch) && L->qkv.data && S * (HD + 2 * KD) <= cx->chunk * HD;
    void *q = t->q, *k = t->k, *v = t->v;
    if (li == 0) be->rmsnorm(be, t->xn, x, S, E, &L->in_norm, c->rms_eps);
    if (fused) {
        be->linear(be, t->q, t->xn, S, &L->qkv, &L->qkv_b);
        k = act_at(be, t->q, HD);
        v = act_at(be, t->q, HD + KD);
    } else {
        be->linear(be, t->q, t->xn, S, &L->q, &L->q_b);
        be->linear(be, t->k, t->xn, S, &L->k, &L->k_b);
        be->linear(be, t->v, t->xn, S, &L->v, &L->v_b);
    }
    /* rows of q are HD apart; k and v rows: KD apart, or HD + 2 KD inside one [q | k | v] row */
    int64_t q_stride = fused ? HD + 2 * KD : HD, kv_stride = fused ? HD + 2 * KD : KD;
    rope_append(cx, kv, li, S, q, k, v, q_stride, kv_stride, pos_dev);
    attend(cx, kv, li, S, q, q_stride);

    be->linear(be, t->xn, t->att, S, &L->o, NULL);
    be->add_rmsnorm(be, t->xn, x, t->xn, S, E, &L->post_norm, c->rms_eps);
    /* Decode: S rows of [gate | up] from one product into t->gate (room for a chunk of gate
     * rows, so for S rows of both while 2 S <= chunk), their SwiGLU into t->up; one launch
     * instead of two, as q/k/v. Prefill keeps two products (the same GEMMs as always). */
    void *act = t->gate;
    if ((S == 1 || kv->batch) && L->gate_up.data && 2 * S <= cx->chunk) {
        be->linear(be, t->gate, t->xn, S, &L->gate_up, NULL);
        be->silu_mul_rows(be, t->up, t->gate, S, F);
        act = t->up;
    } else {
        be->linear(be, t->gate, t->xn, S, &L->gate, NULL);
        be->linear(be, t->up, t->xn, S, &L->up, NULL);
        be->silu_mul(be, t->gate, t->gate, t->up, S * F);
    }
    be->linear(be, t->xn, act, S, &L->down, NULL);
    if (li + 1 < c->n_layers)
        be->add_rmsnorm(be, t->xn, x, t->xn, S, E, &w->layers[li + 1].in_norm, c->rms_eps);
    else
        be->add(be, x, t->xn, S * E);
}

static void lm_head(vl_context *cx, int64_t row, int64_t n) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_qwen2_vl_text_weights *w = m->text_w;
    text_scratch *t = cx->scratch.text;
    be->rmsnorm(be, t->xn, act_at(be, cx->scratch.x, row * c->hidden), n, c->hidden, &w->final_norm,
                c->rms_eps);
    be->linear(be, cx->scratch.logits, t->xn, n, &w->lm_head, NULL);
}

const vl_text_ops vl_qwen2_vl_text = {
    .weights_new = weights_new,
    .weights_free = weights_free,
    .bind = bind,
    .after_place = after_place,
    .linear_dtype = linear_dtype,
    .scratch_size = sizeof(text_scratch),
    .layout = layout,
    .embed = embed,
    .layer = layer,
    .lm_head = lm_head,
};
