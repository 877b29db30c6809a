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

/* Every slice of the session, in one fixed order, so that sizing (a measuring arena) and
 * allocating cannot disagree. */
typedef struct {
    int64_t max_ctx;
    int chunk;
    int64_t max_patches;
} session_shape;

static int session_carve(vl_session *s, const vl_config *c, size_t esz, session_shape sh) {
    vl_arena *a = &s->arena;
    int64_t S = sh.chunk, E = c->hidden, D = c->head_dim;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    size_t kv_bytes = (size_t)c->n_layers * 2 * (size_t)KD * (size_t)sh.max_ctx * esz;
    if (!(s->kv = vl_arena_alloc(a, kv_bytes, VL_MEM_KV))) return -1;
    struct {
        void **p;
        int64_t elems;
    } acts[] = {{&s->x, S * E},  {&s->xn, S * E}, {&s->q, S * HD},
                {&s->k, S * KD}, {&s->v, S * KD}, {&s->att, S * HD},
                {&s->gate, S * c->intermediate},  {&s->up, S * c->intermediate},
                {&s->logits, c->vocab}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!(*acts[i].p = vl_arena_alloc(a, (size_t)acts[i].elems * esz, VL_MEM_ACT))) return -1;
    if (!(s->ids_dev = vl_arena_alloc(a, (size_t)S * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->pos_dev = vl_arena_alloc(a, (size_t)S * 3 * sizeof(int32_t), VL_MEM_ACT))) return -1;
    return vl_vision_alloc(s, sh.max_patches);
}

size_t vl_session_plan(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                       int64_t max_patches, size_t group_bytes[VL_MEM_GROUPS]) {
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
    session_shape sh = {max_ctx, chunk, max_patches};
    session_carve(&s, c, vl_dtype_size(act), sh);
    if (group_bytes) memcpy(group_bytes, s.arena.peak, sizeof s.arena.peak);
    return s.arena.used;
}

size_t vl_session_bytes(const vl_config *c, vl_dtype act, int64_t max_ctx, int chunk,
                        int64_t max_patches) {
    return vl_session_plan(c, act, max_ctx, chunk, max_patches, NULL);
}

int vl_session_init(vl_session *s, vl_model *m, int64_t max_ctx, int chunk,
                    int64_t max_patches) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->max_ctx = max_ctx;
    s->chunk = chunk;
    const vl_config *c = &m->cfg;
    size_t bytes = vl_session_bytes(c, m->be->act, max_ctx, chunk, max_patches);
    if (vl_arena_init(&s->arena, m->be, bytes)) return -1;
    session_shape sh = {max_ctx, chunk, max_patches};
    if (session_carve(s, c, vl_dtype_size(m->be->act), sh)) return -1;
    s->logits_host = malloc((size_t)c->vocab * sizeof(float));
    if (!s->logits_host) return vl_error_set("out of host memory");
    return 0;
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
    vl_arena_free(&s->arena);
    free(s->logits_host);
    memset(s, 0, sizeof *s);
}

/* One decoder layer over the S tokens in s->x at absolute positions n_past .. n_past+S-1. */
static void decoder_layer(vl_session *s, int li, int64_t S) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_decoder_layer *L = &m->w.layers[li];
    int64_t E = c->hidden, D = c->head_dim, F = c->intermediate;
    int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
    int64_t head_stride = s->max_ctx * D;
    void *kc = act_at(s, s->kv, (int64_t)li * 2 * KD * s->max_ctx);
    void *vc = act_at(s, kc, KD * s->max_ctx);

    be->rmsnorm(be, s->xn, s->x, S, E, &L->in_norm, c->rms_eps);
    be->linear(be, s->q, s->xn, S, &L->q, &L->q_b);
    be->linear(be, s->k, s->xn, S, &L->k, &L->k_b);
    be->linear(be, s->v, s->xn, S, &L->v, &L->v_b);
    be->rope_text(be, s->q, HD, S, c->n_heads, (int)D, s->pos_dev, c->mrope_section,
                  c->rope_theta);
    be->rope_text(be, s->k, KD, S, c->n_kv_heads, (int)D, s->pos_dev, c->mrope_section,
                  c->rope_theta);
    be->kv_append(be, kc, head_stride, s->k, KD, S, c->n_kv_heads, (int)D, s->n_past);
    be->kv_append(be, vc, head_stride, s->v, KD, S, c->n_kv_heads, (int)D, s->n_past);

    vl_attn_params p = {0};
    p.q = s->q;
    p.q_stride = HD;
    p.k = kc;
    p.v = vc;
    p.kv_tok_stride = D;
    p.kv_head_stride = head_stride;
    p.o = s->att;
    p.o_stride = HD;
    p.n_q = S;
    p.n_kv = s->n_past + S;
    p.n_heads = c->n_heads;
    p.n_kv_heads = c->n_kv_heads;
    p.head_dim = (int)D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 1;
    p.q_pos0 = s->n_past;
    be->attention(be, &p);

    be->linear(be, s->xn, s->att, S, &L->o, NULL);
    be->add(be, s->x, s->xn, S * E);
    be->rmsnorm(be, s->xn, s->x, S, E, &L->post_norm, c->rms_eps);
    be->linear(be, s->gate, s->xn, S, &L->gate, NULL);
    be->linear(be, s->up, s->xn, S, &L->up, NULL);
    be->silu_mul(be, s->gate, s->gate, s->up, S * F);
    be->linear(be, s->xn, s->gate, S, &L->down, NULL);
    be->add(be, s->x, s->xn, S * E);
}

/* Final norm + LM head on row `row` of s->x; float32 logits into s->logits_host. */
static void lm_head_row(vl_session *s, int64_t row) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    be->rmsnorm(be, s->xn, act_at(s, s->x, row * c->hidden), 1, c->hidden, &m->w.final_norm,
                c->rms_eps);
    be->linear(be, s->logits, s->xn, 1, &m->w.lm_head, NULL);
    be->to_f32(be, s->logits_host, s->logits, c->vocab);
}

/* Upload ids[0..S) and the three position rows of the chunk (pos rows have stride `pstride`). */
static void upload_chunk(vl_session *s, const int32_t *ids, const int32_t *pos, int64_t pstride,
                         int64_t S) {
    vl_backend *be = s->m->be;
    be->upload(be, s->ids_dev, ids, (size_t)S * sizeof(int32_t));
    for (int r = 0; r < 3; r++)
        be->upload(be, s->pos_dev + r * S, pos + r * pstride, (size_t)S * sizeof(int32_t));
}

int vl_prefill(vl_session *s, const vl_prompt *p, float *logits_last, int32_t *argmax_all) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    if (s->n_past + p->n > s->max_ctx)
        return vl_error_set("prompt of %d tokens does not fit the context of %lld tokens", p->n,
                            (long long)s->max_ctx);
    double t0 = vl_now_s();
    int cur_src = -1; /* which image's features are in s->img_feats */
    for (int64_t c0 = 0; c0 < p->n; c0 += s->chunk) {
        int64_t S = p->n - c0 < s->chunk ? p->n - c0 : s->chunk;
        upload_chunk(s, p->ids + c0, p->pos + c0, p->n, S);
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
            size_t esz = vl_dtype_size(be->act);
            be->copy(be, act_at(s, s->x, (lo - c0) * c->hidden),
                     act_at(s, s->img_feats, (lo - a) * c->hidden),
                     (size_t)(hi - lo) * (size_t)c->hidden * esz);
        }
        for (int li = 0; li < c->n_layers; li++) decoder_layer(s, li, S);
        if (argmax_all)
            for (int64_t r = 0; r < S; r++) {
                lm_head_row(s, r);
                argmax_all[c0 + r] = vl_argmax(s->logits_host, c->vocab);
            }
        s->n_past += S;
        sample_device_memory(s);
        if (c0 + S == p->n) {
            lm_head_row(s, S - 1);
            if (logits_last) memcpy(logits_last, s->logits_host, (size_t)c->vocab * sizeof(float));
        }
    }
    be->sync(be);
    s->rope_delta = p->rope_delta;
    s->t.prefill_s += vl_now_s() - t0;
    s->t.prefill_tokens += p->n;
    return 0;
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
    m->be->embed(m->be, s->x, &m->w.embed, s->ids_dev, 1);
    for (int li = 0; li < c->n_layers; li++) decoder_layer(s, li, 1);
    s->n_past += 1;
    lm_head_row(s, 0);
    if (logits) memcpy(logits, s->logits_host, (size_t)c->vocab * sizeof(float));
    return 0;
}
