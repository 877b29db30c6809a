/* forward.c: the decoder side of a run: session memory (KV cache + one chunk of activations),
 * streamed prefill and single-token decode.
 *
 * Prefill walks the prompt in chunks of at most `chunk` tokens. Before a chunk runs, every
 * image whose pad tokens fall in it is encoded (vision.c) into one features buffer and its rows
 * are copied over the pad rows' embeddings. A chunk attends to the whole KV cache before it
 * (causal with a query offset), so activation memory is bounded by one chunk and one image
 * whatever the number of images: only the KV cache grows with the prompt.
 *
 * The LM head runs on the last position only (as transformers' generate does with
 * logits_to_keep = 1), except when a test asks for the argmax at every position. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

double vl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Byte address of element `i` of an activation buffer. */
static inline void *act_at(const vl_session *s, void *base, int64_t i) {
    return (uint8_t *)base + (size_t)i * vl_dtype_size(s->m->be->act);
}

/* A repetition penalty of 0 (not set) or 1 changes nothing: no set is kept, nothing runs. */
static int penalty_on(float p) {
    return p > 0.0f && p != 1.0f;
}

/* Every slice of the session, in one fixed order, so that sizing (a measuring arena) and
 * allocating cannot disagree. What lives the whole run comes first (KV cache, the residual
 * stream x, the current image's features, the decode state); then the decoder's per-chunk
 * scratch and the vision encoder's scratch share one region, because an image is encoded
 * between a chunk's embedding and its first layer, when the decoder scratch holds nothing. */
static int session_carve(vl_session *s, const vl_config *c, size_t esz,
                         const vl_session_shape *sh) {
    vl_arena *a = &s->arena;
    int64_t S = sh->chunk, E = c->hidden, D = c->head_dim;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    /* --kv int8: one byte per element and one fp32 scale per cached row (token, kv head) */
    size_t kv_esz = sh->kv_int8 ? 1 : esz, rows = (size_t)c->n_layers * 2 * c->n_kv_heads;
    size_t kv_bytes = rows * (size_t)D * (size_t)sh->max_ctx * kv_esz;
    int64_t m2 = (int64_t)c->merge * c->merge;
    if (!(s->kv = vl_arena_alloc(a, kv_bytes, VL_MEM_KV))) return -1;
    s->kv_scale = NULL;
    s->kv_tmp = NULL;
    if (sh->kv_int8) {
        size_t scale_bytes = rows * (size_t)sh->max_ctx * sizeof(float);
        if (!(s->kv_scale = vl_arena_alloc(a, scale_bytes, VL_MEM_KV))) return -1;
        /* a prefill chunk attends through one layer's K and V dequantized: 1/L of a bf16 cache */
        size_t tmp_bytes = 2 * (size_t)KD * (size_t)sh->max_ctx * esz;
        if (!(s->kv_tmp = vl_arena_alloc(a, tmp_bytes, VL_MEM_WORKSPACE))) return -1;
    }
    if (!(s->x = vl_arena_alloc(a, (size_t)(S * E) * esz, VL_MEM_ACT))) return -1;
    if (!(s->logits = vl_arena_alloc(a, (size_t)c->vocab * esz, VL_MEM_ACT))) return -1;
    if (!(s->ids_dev = vl_arena_alloc(a, (size_t)S * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->pos_dev = vl_arena_alloc(a, (size_t)S * 3 * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->st_dev = vl_arena_alloc(a, sizeof(vl_decode_state), VL_MEM_ACT))) return -1;
    int n_tok = sh->max_tokens > 0 ? sh->max_tokens : 1;
    if (!(s->tokens_dev = vl_arena_alloc(a, (size_t)n_tok * sizeof(int32_t), VL_MEM_ACT)))
        return -1;
    s->seen = NULL;
    s->pen_scores = NULL;
    if (penalty_on(sh->rep_penalty)) { /* the seen-token set and the float32 scores */
        if (!(s->seen = vl_arena_alloc(a, (size_t)c->vocab, VL_MEM_ACT))) return -1;
        if (!(s->pen_scores = vl_arena_alloc(a, (size_t)c->vocab * sizeof(float), VL_MEM_ACT)))
            return -1;
    }
    s->img_feats = NULL;
    if (sh->max_patches > 0 &&
        !(s->img_feats = vl_arena_alloc(a, (size_t)(sh->max_patches / m2 * E) * esz, VL_MEM_ACT)))
        return -1;
    if (sh->attn_naive) {
        /* --attn naive: the score matrix of the largest attention call, fp32 */
        int64_t text = (int64_t)c->n_heads * S * sh->max_ctx;
        int64_t vision = (int64_t)c->v_heads * sh->max_patches * sh->max_patches;
        int64_t n = text > vision ? text : vision;
        if (!(s->scores = vl_arena_alloc(a, (size_t)n * sizeof(float), VL_MEM_WORKSPACE)))
            return -1;
    }
    vl_arena_mark shared = vl_arena_get_mark(a);
    struct {
        void **p;
        int64_t elems;
    } acts[] = {{&s->xn, S * E},
                {&s->q, S * HD},
                {&s->k, S * KD},
                {&s->v, S * KD},
                {&s->att, S * HD},
                {&s->gate, S * c->intermediate},
                {&s->up, S * c->intermediate}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!(*acts[i].p = vl_arena_alloc(a, (size_t)acts[i].elems * esz, VL_MEM_ACT))) return -1;
    vl_arena_release(a, shared);
    return vl_vision_alloc(s, sh->max_patches);
}

size_t vl_session_plan_shape(const vl_config *c, vl_dtype act, const vl_session_shape *sh,
                             size_t group_bytes[VL_MEM_GROUPS]) {
    vl_session s;
    vl_model m;
    memset(&s, 0, sizeof s);
    memset(&m, 0, sizeof m);
    static vl_backend measure_be;
    measure_be.act = act;
    m.cfg = *c;
    m.be = &measure_be;
    s.m = &m;
    s.arena.cap = SIZE_MAX; /* base NULL + cap MAX: the arena only counts */
    session_carve(&s, c, vl_dtype_size(act), sh);
    if (group_bytes) memcpy(group_bytes, s.arena.peak, sizeof s.arena.peak);
    return s.arena.peak_total;
}

size_t vl_session_plan(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                       int64_t max_patches, size_t group_bytes[VL_MEM_GROUPS]) {
    vl_session_shape sh = {max_ctx, chunk, max_patches, (int)max_ctx, 0, 0, 0.0f};
    return vl_session_plan_shape(c, act, &sh, group_bytes);
}

size_t vl_session_bytes(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                        int64_t max_patches) {
    return vl_session_plan(c, act, max_ctx, chunk, max_patches, NULL);
}

int vl_session_start(vl_session *s, vl_model *m, const vl_session_shape *sh) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->max_ctx = sh->max_ctx;
    s->chunk = sh->chunk;
    s->max_tokens = sh->max_tokens > 0 ? sh->max_tokens : 1;
    s->attn_naive = sh->attn_naive;
    s->kv_int8 = sh->kv_int8;
    s->no_graph = !m->be->graph_begin; /* the backend's no_graphs option leaves it NULL */
    const vl_config *c = &m->cfg;
    size_t bytes = vl_session_plan_shape(c, m->be->act, sh, NULL);
    if (vl_arena_init(&s->arena, m->be, bytes)) return -1;
    if (session_carve(s, c, vl_dtype_size(m->be->act), sh)) return -1;
    s->logits_host = malloc((size_t)c->vocab * sizeof(float));
    if (!s->logits_host) return vl_error_set("out of host memory");
    s->rep_penalty = s->seen ? sh->rep_penalty : 1.0f;
    return vl_session_reset(s);
}

int vl_session_reset(vl_session *s) {
    s->n_past = 0;
    s->rope_delta = 0;
    if (s->seen) { /* the set starts empty; prefill and decode add to it on the backend */
        const int vocab = s->m->cfg.vocab;
        uint8_t *zero = calloc((size_t)vocab, 1);
        if (!zero) return vl_error_set("out of host memory");
        s->m->be->upload(s->m->be, s->seen, zero, (size_t)vocab);
        free(zero);
    }
    return 0;
}

int vl_session_init(vl_session *s, vl_model *m, int64_t max_ctx, int chunk, int64_t max_patches) {
    vl_session_shape sh = {max_ctx, chunk, max_patches, (int)max_ctx, 0, 0, 0.0f};
    return vl_session_start(s, m, &sh);
}

/* Device memory in use now (everything the process holds, CUDA context included). */
static void sample_device_memory(vl_session *s) {
    vl_backend *be = s->m->be;
    if (!be->mem_info) return;
    size_t free_b = 0, total_b = 0;
    be->mem_info(be, &free_b, &total_b);
    s->device_total = total_b;
    if (total_b - free_b > s->peak_device) s->peak_device = total_b - free_b;
}

void vl_session_free(vl_session *s) {
    if (s->graph && s->m && s->m->be->graph_free) s->m->be->graph_free(s->m->be, s->graph);
    vl_arena_free(&s->arena);
    free(s->logits_host);
    memset(s, 0, sizeof *s);
}

/* One decoder layer over the S tokens in s->x at absolute positions n_past .. n_past+S-1.
 * With n_past_dev (a recorded decode step) the cache length is read on the device instead.
 * The residual adds go with the norm that follows them (add_rmsnorm): on entry s->xn already
 * holds this layer's input norm of s->x, except for layer 0, which computes it; the last layer
 * leaves the final norm to the LM head, which takes one row. */
static void decoder_layer(vl_session *s, int li, int64_t S, const int32_t *n_past_dev) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_decoder_layer *L = &m->w.layers[li];
    int64_t E = c->hidden, D = c->head_dim, F = c->intermediate;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    int64_t head_stride = s->max_ctx * D;
    size_t kv_esz = s->kv_int8 ? 1 : vl_dtype_size(be->act);
    uint8_t *kc = (uint8_t *)s->kv + (size_t)li * 2 * (size_t)(KD * s->max_ctx) * kv_esz;
    uint8_t *vc = kc + (size_t)(KD * s->max_ctx) * kv_esz;
    /* --kv int8: this layer's scales, [2][Hkv][max_ctx] */
    float *ksc = s->kv_int8 ? s->kv_scale + (size_t)li * 2 * c->n_kv_heads * s->max_ctx : NULL;
    float *vsc = s->kv_int8 ? ksc + (size_t)c->n_kv_heads * s->max_ctx : NULL;

    /* One token (decode) with q/k/v back to back on the backend: one GEMV writes [q | k | v]
     * into s->q, which holds a chunk of queries (chunk >= 2 tokens, so room for it). */
    int fused = S == 1 && L->qkv.data && s->chunk >= 2;
    void *q = s->q, *k = s->k, *v = s->v;
    if (li == 0) be->rmsnorm(be, s->xn, s->x, S, E, &L->in_norm, c->rms_eps);
    if (fused) {
        be->linear(be, s->q, s->xn, 1, &L->qkv, &L->qkv_b);
        k = act_at(s, s->q, HD);
        v = act_at(s, s->q, HD + KD);
    } else {
        be->linear(be, s->q, s->xn, S, &L->q, &L->q_b);
        be->linear(be, s->k, s->xn, S, &L->k, &L->k_b);
        be->linear(be, s->v, s->xn, S, &L->v, &L->v_b);
    }
    /* rows of q are HD apart; k and v rows: KD apart, or HD + 2 KD inside one [q | k | v] row */
    int64_t q_stride = fused ? HD + 2 * KD : HD, kv_stride = fused ? HD + 2 * KD : KD;
    vl_rope_kv_params r = {0};
    r.q = q;
    r.k = k;
    r.v = v;
    r.q_stride = q_stride;
    r.kv_stride = kv_stride;
    r.s = S;
    r.n_heads = c->n_heads;
    r.n_kv_heads = c->n_kv_heads;
    r.head_dim = (int)D;
    r.pos = s->pos_dev;
    memcpy(r.sections, c->mrope_section, sizeof r.sections);
    r.theta = c->rope_theta;
    r.k_cache = kc;
    r.v_cache = vc;
    r.head_stride = head_stride;
    r.pos0 = n_past_dev ? 0 : s->n_past;
    r.pos0_dev = n_past_dev;
    r.k_scale = ksc;
    r.v_scale = vsc;
    r.scale_head_stride = s->max_ctx;
    be->rope_kv_append(be, &r);

    vl_attn_params p = {0};
    p.q = q;
    p.q_stride = q_stride;
    p.k = kc;
    p.v = vc;
    p.kv_tok_stride = D;
    p.kv_head_stride = head_stride;
    p.o = s->att;
    p.o_stride = HD;
    p.n_q = S;
    p.n_kv = n_past_dev ? s->max_ctx : s->n_past + S; /* with n_past_dev: the bound */
    p.n_heads = c->n_heads;
    p.n_kv_heads = c->n_kv_heads;
    p.head_dim = (int)D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 1;
    p.q_pos0 = n_past_dev ? 0 : s->n_past;
    p.n_past_dev = n_past_dev;
    if (s->kv_int8 && S > 1) {
        /* a prefill chunk (eager: the length is known): the flash kernel reads bf16, so this
         * layer's cache up to the chunk's end is dequantized first (the decode kernel reads the
         * int8 cache itself, where the bytes matter) */
        void *kt = s->kv_tmp, *vt = act_at(s, s->kv_tmp, KD * s->max_ctx);
        be->kv_dequant(be, kt, (const int8_t *)kc, ksc, head_stride, s->max_ctx, c->n_kv_heads,
                       s->n_past + S, (int)D);
        be->kv_dequant(be, vt, (const int8_t *)vc, vsc, head_stride, s->max_ctx, c->n_kv_heads,
                       s->n_past + S, (int)D);
        p.k = kt;
        p.v = vt;
    } else if (s->kv_int8) {
        p.k_scale = ksc;
        p.v_scale = vsc;
        p.kv_scale_head_stride = s->max_ctx;
    }
    if (s->attn_naive)
        be->attention_naive(be, &p, s->scores);
    else
        be->attention(be, &p);

    be->linear(be, s->xn, s->att, S, &L->o, NULL);
    be->add_rmsnorm(be, s->xn, s->x, s->xn, S, E, &L->post_norm, c->rms_eps);
    if (S == 1 && L->gate_up.data && s->chunk >= 2) {
        /* [gate | up] from one GEMV into s->gate (room for a chunk of gate rows) */
        be->linear(be, s->gate, s->xn, 1, &L->gate_up, NULL);
        be->silu_mul(be, s->gate, s->gate, act_at(s, s->gate, F), F);
    } else {
        be->linear(be, s->gate, s->xn, S, &L->gate, NULL);
        be->linear(be, s->up, s->xn, S, &L->up, NULL);
        be->silu_mul(be, s->gate, s->gate, s->up, S * F);
    }
    be->linear(be, s->xn, s->gate, S, &L->down, NULL);
    if (li + 1 < c->n_layers)
        be->add_rmsnorm(be, s->xn, s->x, s->xn, S, E, &m->w.layers[li + 1].in_norm, c->rms_eps);
    else
        be->add(be, s->x, s->xn, S * E);
}

/* Final norm + LM head on row `row` of s->x into s->logits (backend memory). */
static void lm_head_device(vl_session *s, int64_t row) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    be->rmsnorm(be, s->xn, act_at(s, s->x, row * c->hidden), 1, c->hidden, &m->w.final_norm,
                c->rms_eps);
    be->linear(be, s->logits, s->xn, 1, &m->w.lm_head, NULL);
}

/* The same, with the float32 logits copied into s->logits_host. */
static void lm_head_row(vl_session *s, int64_t row) {
    lm_head_device(s, row);
    s->m->be->to_f32(s->m->be, s->logits_host, s->logits, s->m->cfg.vocab);
}

/* Upload ids[0..S) and the three position rows of the chunk (pos rows have stride `pstride`). */
static void upload_chunk(vl_session *s, const int32_t *ids, const int32_t *pos, int64_t pstride,
                         int64_t S) {
    vl_backend *be = s->m->be;
    be->upload(be, s->ids_dev, ids, (size_t)S * sizeof(int32_t));
    for (int r = 0; r < 3; r++)
        be->upload(be, s->pos_dev + r * S, pos + r * pstride, (size_t)S * sizeof(int32_t));
}

static int prefill(vl_session *s, const vl_prompt *p, float *logits_last, vl_logits_fn each,
                   void *each_ctx) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    if (s->n_past + p->n > s->max_ctx)
        return vl_error_set("prompt of %d tokens does not fit the context of %lld tokens", p->n,
                            (long long)s->max_ctx);
    double t0 = vl_now_s();
    vl_progress_begin(m->progress, "prefill", "tokens", p->n);
    vl_progress_images(m->progress, 0, p->n_images);
    int cur_src = -1; /* which image's features are in s->img_feats */
    for (int64_t c0 = 0; c0 < p->n; c0 += s->chunk) {
        int64_t S = p->n - c0 < s->chunk ? p->n - c0 : s->chunk;
        upload_chunk(s, p->ids + c0, p->pos + c0, p->n, S);
        if (s->seen) be->mark_seen(be, s->seen, c->vocab, s->ids_dev, S);
        be->embed(be, s->x, &m->w.embed, s->ids_dev, S);
        for (int i = 0; i < p->n_images; i++) {
            int64_t nt = p->images[i].n_patches / ((int64_t)c->merge * c->merge);
            int64_t a = p->image_at[i], b = a + nt;
            int64_t lo = a > c0 ? a : c0, hi = b < c0 + S ? b : c0 + S;
            if (lo >= hi) continue;
            if (cur_src != p->image_src[i]) {
                be->sync(be);
                double tv = vl_now_s();
                if (vl_vision_encode(s, &p->images[i], s->img_feats)) return -1;
                be->sync(be);
                s->t.vision_s += vl_now_s() - tv;
                cur_src = p->image_src[i];
            }
            vl_progress_images(m->progress, i + 1, p->n_images);
            size_t esz = vl_dtype_size(be->act);
            be->copy(be, act_at(s, s->x, (lo - c0) * c->hidden),
                     act_at(s, s->img_feats, (lo - a) * c->hidden),
                     (size_t)(hi - lo) * (size_t)c->hidden * esz);
        }
        for (int li = 0; li < c->n_layers; li++) {
            decoder_layer(s, li, S, NULL);
            vl_progress_update(m->progress, c0 + (double)S * (li + 1) / c->n_layers);
        }
        if (each)
            for (int64_t r = 0; r < S; r++) {
                lm_head_row(s, r);
                if (each(each_ctx, c0 + r, s->logits_host, c->vocab)) return -1;
            }
        s->n_past += S;
        sample_device_memory(s);
        if (c0 + S == p->n) {
            lm_head_row(s, S - 1);
            if (logits_last) memcpy(logits_last, s->logits_host, (size_t)c->vocab * sizeof(float));
        }
    }
    be->sync(be);
    vl_progress_end(m->progress);
    s->rope_delta = p->rope_delta;
    s->t.prefill_s += vl_now_s() - t0;
    s->t.prefill_tokens += p->n;
    return 0;
}

static int store_argmax(void *ctx, int64_t pos, const float *logits, int n) {
    ((int32_t *)ctx)[pos] = vl_argmax(logits, n);
    return 0;
}

int vl_prefill(vl_session *s, const vl_prompt *p, float *logits_last, int32_t *argmax_all) {
    return prefill(s, p, logits_last, argmax_all ? store_argmax : NULL, argmax_all);
}

int vl_prefill_each(vl_session *s, const vl_prompt *p, vl_logits_fn fn, void *ctx) {
    return prefill(s, p, NULL, fn, ctx);
}

int vl_decode_step(vl_session *s, int32_t token, float *logits) {
    vl_model *m = s->m;
    const vl_config *c = &m->cfg;
    if (s->n_past + 1 > s->max_ctx)
        return vl_error_set("the context of %lld tokens is full", (long long)s->max_ctx);
    if (token < 0 || token >= c->vocab)
        return vl_error_set("token id %d is outside the vocabulary of %d", token, c->vocab);
    int32_t pos[3];
    pos[0] = pos[1] = pos[2] = (int32_t)(s->n_past + s->rope_delta);
    upload_chunk(s, &token, pos, 1, 1);
    if (s->seen) m->be->mark_seen(m->be, s->seen, c->vocab, s->ids_dev, 1);
    m->be->embed(m->be, s->x, &m->w.embed, s->ids_dev, 1);
    for (int li = 0; li < c->n_layers; li++) decoder_layer(s, li, 1, NULL);
    s->n_past += 1;
    lm_head_row(s, 0);
    if (logits) memcpy(logits, s->logits_host, (size_t)c->vocab * sizeof(float));
    return 0;
}

void vl_penalize_logits(vl_session *s, float *logits) {
    if (!s->seen) return;
    vl_backend *be = s->m->be;
    const int64_t V = s->m->cfg.vocab;
    be->repetition_penalty(be, s->pen_scores, s->logits, s->seen, V, s->rep_penalty);
    be->download(be, logits, s->pen_scores, (size_t)V * sizeof(float));
}

/* ---- decode on the backend ---------------------------------------------------------------
 * The state (token, positions, cache length) lives in backend memory and sample_token advances
 * it, so one step is a fixed sequence of ops with no host value in it: it is recorded once as a
 * CUDA graph and replayed for every token. A backend without graphs (--cuda-opt no_graphs=1)
 * runs the same ops eagerly (for comparison). With a repetition penalty the seen-token set is
 * backend memory too: prefill marks the prompt's ids, each step marks the token it feeds, and the
 * penalty turns the logits into float32 scores right before sample_token reads them. */

/* Sample from s->logits into the decode state: through the repetition penalty's float32 scores
 * when the session has one (transformers applies it before temperature and argmax). */
static void sample_next(vl_session *s, int advance) {
    vl_backend *be = s->m->be;
    const int64_t V = s->m->cfg.vocab;
    if (!s->seen) {
        be->sample_token(be, s->st_dev, s->tokens_dev, s->logits, V, s->temperature, s->seed,
                         advance);
        return;
    }
    be->repetition_penalty(be, s->pen_scores, s->logits, s->seen, V, s->rep_penalty);
    be->sample_token_f32(be, s->st_dev, s->tokens_dev, s->pen_scores, V, s->temperature, s->seed,
                         advance);
}

static void decode_step_ops(vl_session *s) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    vl_decode_state *st = s->st_dev;
    /* the token fed now (the last sample) joins the sequence the penalty looks at */
    if (s->seen) be->mark_seen(be, s->seen, c->vocab, &st->token, 1);
    be->embed(be, s->x, &m->w.embed, &st->token, 1);
    /* rope reads rows t, h, w of a one-token chunk: pos[0], pos[1], pos[2] */
    int32_t *saved_pos = s->pos_dev;
    s->pos_dev = st->pos;
    for (int li = 0; li < c->n_layers; li++) decoder_layer(s, li, 1, &st->n_past);
    s->pos_dev = saved_pos;
    lm_head_device(s, 0);
    sample_next(s, 1);
}

int vl_decode_begin(vl_session *s, float temperature, uint64_t seed) {
    vl_backend *be = s->m->be;
    s->temperature = temperature;
    s->seed = seed;
    s->n_sampled = 0;
    vl_decode_state st = {0};
    st.n_past = (int32_t)s->n_past;
    st.rope_delta = (int32_t)s->rope_delta;
    for (int r = 0; r < 3; r++) st.pos[r] = st.n_past + st.rope_delta;
    be->upload(be, s->st_dev, &st, sizeof st);
    /* the first token comes from the last prompt position's logits, still in s->logits; the
     * seen set holds the prompt (prefill marked it) */
    sample_next(s, 0);
    s->n_sampled = 1;
    return 0;
}

int vl_decode_next(vl_session *s) {
    vl_backend *be = s->m->be;
    if (s->n_past + 1 > s->max_ctx)
        return vl_error_set("the context of %lld tokens is full", (long long)s->max_ctx);
    if (s->n_sampled >= s->max_tokens)
        return vl_error_set("internal: more than the %d planned tokens", s->max_tokens);
    if (!s->no_graph && be->graph_begin && !s->graph) {
        be->sync(be);
        if (be->graph_begin(be)) return -1;
        decode_step_ops(s);
        s->graph = be->graph_end(be);
        if (!s->graph) return -1;
    }
    if (s->graph)
        be->graph_launch(be, s->graph);
    else
        decode_step_ops(s);
    s->n_past += 1;
    s->n_sampled += 1;
    return 0;
}

int32_t vl_decode_token(vl_session *s, int i) {
    int32_t tok = -1;
    if (i >= 0 && i < s->n_sampled)
        s->m->be->download(s->m->be, &tok, s->tokens_dev + i, sizeof tok);
    return tok;
}

void vl_decode_tokens(vl_session *s, int32_t *out, int n) {
    if (n > s->n_sampled) n = s->n_sampled;
    if (n > 0) s->m->be->download(s->m->be, out, s->tokens_dev, (size_t)n * sizeof *out);
}
