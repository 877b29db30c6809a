/* vision.c: the Qwen2-VL vision encoder and patch merger for one image (spec section 3).
 *
 *   pixels [P, C*T*p*p] -> patch embedding (Conv3d as a matmul) -> depth x pre-norm blocks
 *   (LayerNorm, fused qkv, 2-D rotary, attention block-diagonal per frame, proj; LayerNorm,
 *   fc1, QuickGELU, fc2) -> merger (LayerNorm, groups of merge^2 consecutive rows viewed as one
 *   row, fc1, exact GELU, fc2) -> [P / merge^2, E] rows for the decoder.
 *
 * Patch rows arrive in merge-window order (loader/preprocess.c), so a merge group is simply
 * merge^2 consecutive rows: the merger's reshape costs nothing. Videos are out of scope. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>

static inline void *vat(const vl_session *s, void *base, int64_t i) {
    return (uint8_t *)base + (size_t)i * vl_dtype_size(s->m->be->act);
}

/* Carve the vision scratch for images of at most max_patches patches (called by the session's
 * plan, in the same order for sizing and allocating; the features buffer is the session's). */
int vl_vision_alloc(vl_session *s, int64_t max_patches) {
    const vl_config *c = &s->m->cfg;
    vl_arena *a = &s->arena;
    size_t esz = vl_dtype_size(s->m->be->act);
    int64_t P = max_patches, Ev = c->v_embed, m2 = (int64_t)c->merge * c->merge;
    int64_t pd = (int64_t)c->in_channels * c->temporal_patch * c->patch * c->patch;
    s->max_patches = max_patches;
    if (P <= 0) return 0;
    struct {
        void **p;
        int64_t elems;
    } bufs[] = {{&s->vpix, P * pd}, {&s->vx, P * Ev},
                {&s->vxn, P * Ev},  {&s->vqkv, P * 3 * Ev},
                {&s->vatt, P * Ev}, {&s->vfc, P * (c->v_mlp > Ev * m2 ? c->v_mlp : Ev * m2)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = vl_arena_alloc(a, (size_t)bufs[i].elems * esz, VL_MEM_ACT))) return -1;
    if (!(s->vpos_dev = vl_arena_alloc(a, (size_t)P * 2 * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->vseg_dev = vl_arena_alloc(a, (size_t)(P + 1) * sizeof(int32_t), VL_MEM_ACT)))
        return -1;
    return 0;
}

/* (h, w) of every patch, in the row order of the pixels: for each frame, merge blocks
 * row-major, and inside a block its merge x merge patches row-major. */
static void patch_positions(const vl_pixels *px, int merge, int32_t *pos_h, int32_t *pos_w) {
    int64_t i = 0;
    for (int t = 0; t < px->grid_t; t++)
        for (int bh = 0; bh < px->grid_h / merge; bh++)
            for (int bw = 0; bw < px->grid_w / merge; bw++)
                for (int mh = 0; mh < merge; mh++)
                    for (int mw = 0; mw < merge; mw++, i++) {
                        pos_h[i] = bh * merge + mh;
                        pos_w[i] = bw * merge + mw;
                    }
}

int vl_vision_encode(vl_session *s, const vl_pixels *px, void *out) {
    vl_model *m = s->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_weights *w = &m->w;
    int64_t P = px->n_patches, Ev = c->v_embed, m2 = (int64_t)c->merge * c->merge;
    int H = c->v_heads, D = c->v_head_dim;
    if (P > s->max_patches)
        return vl_error_set("internal: image of %lld patches exceeds the plan (%lld)", (long long)P,
                            (long long)s->max_patches);
    if (px->patch_dim != w->patch_embed.cols)
        return vl_error_set("image patches have %d values; the model expects %lld", px->patch_dim,
                            (long long)w->patch_embed.cols);

    int32_t *host = malloc((size_t)(2 * P + px->grid_t + 1) * sizeof(int32_t));
    if (!host) return vl_error_set("out of host memory");
    patch_positions(px, c->merge, host, host + P);
    int32_t *seg = host + 2 * P;
    int64_t frame = (int64_t)px->grid_h * px->grid_w;
    for (int t = 0; t <= px->grid_t; t++) seg[t] = (int32_t)(t * frame);
    be->upload(be, s->vpos_dev, host, (size_t)P * 2 * sizeof(int32_t));
    be->upload(be, s->vseg_dev, seg, (size_t)(px->grid_t + 1) * sizeof(int32_t));
    be->from_f32(be, s->vpix, px->pixels, P * px->patch_dim);
    be->sync(be);
    free(host);

    be->linear(be, s->vx, s->vpix, P, &w->patch_embed, NULL);
    for (int bi = 0; bi < c->v_depth; bi++) {
        const vl_vision_block *k = &w->blocks[bi];
        be->layernorm(be, s->vxn, s->vx, P, Ev, &k->norm1_w, &k->norm1_b, 1e-6f);
        be->linear(be, s->vqkv, s->vxn, P, &k->qkv, &k->qkv_b);
        be->rope_vision(be, s->vqkv, 3 * Ev, P, H, D, s->vpos_dev, c->v_rope_theta);
        be->rope_vision(be, vat(s, s->vqkv, Ev), 3 * Ev, P, H, D, s->vpos_dev, c->v_rope_theta);
        vl_attn_params p = {0};
        p.q = s->vqkv;
        p.q_stride = 3 * Ev;
        p.k = vat(s, s->vqkv, Ev);
        p.v = vat(s, s->vqkv, 2 * Ev);
        p.kv_tok_stride = 3 * Ev;
        p.kv_head_stride = D;
        p.o = s->vatt;
        p.o_stride = Ev;
        p.n_q = p.n_kv = P;
        p.n_heads = p.n_kv_heads = H;
        p.head_dim = D;
        p.scale = 1.0f / sqrtf((float)D);
        p.causal = 0;
        p.seg_starts = s->vseg_dev;
        p.n_seg = px->grid_t;
        if (s->attn_naive)
            be->attention_naive(be, &p, s->scores);
        else
            be->attention(be, &p);
        be->linear(be, s->vxn, s->vatt, P, &k->proj, &k->proj_b);
        be->add(be, s->vx, s->vxn, P * Ev);
        be->layernorm(be, s->vxn, s->vx, P, Ev, &k->norm2_w, &k->norm2_b, 1e-6f);
        be->linear(be, s->vfc, s->vxn, P, &k->fc1, &k->fc1_b);
        if (c->v_act_quick_gelu)
            be->quick_gelu(be, s->vfc, P * c->v_mlp);
        else
            be->gelu(be, s->vfc, P * c->v_mlp);
        be->linear(be, s->vxn, s->vfc, P, &k->fc2, &k->fc2_b);
        be->add(be, s->vx, s->vxn, P * Ev);
        vl_progress_tick(m->progress); /* a large image on the CPU takes minutes */
    }
    /* merger: [P, Ev] normalized rows are [P/m2, m2*Ev] rows as they lie in memory */
    be->layernorm(be, s->vxn, s->vx, P, Ev, &w->merger_ln_w, &w->merger_ln_b, 1e-6f);
    be->linear(be, s->vfc, s->vxn, P / m2, &w->merger_fc1, &w->merger_fc1_b);
    be->gelu(be, s->vfc, P / m2 * m2 * Ev);
    be->linear(be, out, s->vfc, P / m2, &w->merger_fc2, &w->merger_fc2_b);
    return 0;
}
