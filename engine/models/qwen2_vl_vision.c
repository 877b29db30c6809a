/* qwen2_vl_vision.c: Qwen2-VL's vision encoder and patch merger for one image (transformers'
 * Qwen2VisionTransformerPretrainedModel):
 * its weights, their names, its scratch and its forward pass.
 *
 *   pixels [P, C*T*p*p] -> patch embedding (Conv3d as a matmul) -> depth x pre-norm blocks
 *   (LayerNorm, fused qkv, 2-D rotary, attention block-diagonal per frame, proj; LayerNorm,
 *   fc1, QuickGELU, fc2) -> merger (LayerNorm, groups of merge^2 consecutive rows viewed as one
 *   row, fc1, exact GELU, fc2) -> [P / merge^2, E] rows for the decoder.
 *
 * Patch rows arrive in merge-window order (loader/preprocess.c), so a merge group is simply
 * merge^2 consecutive rows: the merger's reshape costs nothing. Videos are out of scope. */
#include "engine/models/models.h"

#include <stdlib.h>

/* One image's buffers (backend memory, act dtype unless said). */
typedef struct {
    int64_t max_patches;
    void *pix, *x, *xn, *qkv, *att, *fc; /* [P, C*T*p*p], [P, Ev] x2, [P, 3Ev], [P, Ev], [P, Fv] */
    int32_t *pos_dev, *seg_dev;          /* [2, P], [grid_t + 1] */
} vision_scratch;

static void *weights_new(const vl_config *c) {
    vl_qwen2_vl_vision_weights *w = calloc(1, sizeof *w);
    if (w) w->blocks = calloc((size_t)c->v_depth, sizeof *w->blocks);
    if (!w || !w->blocks) {
        free(w);
        vl_error_set("out of host memory");
        return NULL;
    }
    return w;
}

static void weights_free(void *p) {
    vl_qwen2_vl_vision_weights *w = p;
    if (w) free(w->blocks);
    free(w);
}

static int bind_block(vl_binder *b, const vl_config *c, int i, vl_qwen2_vl_vision_block *k) {
    char r[256];
    int64_t Ev = c->v_embed, Fv = c->v_mlp;
    const vl_name_part V = VL_PART_VISION;
#define VB(fmt) (snprintf(r, sizeof r, "blocks.%d." fmt, i), r)
    return vl_bind_vec(b, V, VB("norm1.weight"), Ev, &k->norm1_w) ||
           vl_bind_vec(b, V, VB("norm1.bias"), Ev, &k->norm1_b) ||
           vl_bind_vec(b, V, VB("norm2.weight"), Ev, &k->norm2_w) ||
           vl_bind_vec(b, V, VB("norm2.bias"), Ev, &k->norm2_b) ||
           vl_bind_matrix(b, V, VB("attn.qkv.weight"), 3 * Ev, Ev, &k->qkv) ||
           vl_bind_vec(b, V, VB("attn.qkv.bias"), 3 * Ev, &k->qkv_b) ||
           vl_bind_matrix(b, V, VB("attn.proj.weight"), Ev, Ev, &k->proj) ||
           vl_bind_vec(b, V, VB("attn.proj.bias"), Ev, &k->proj_b) ||
           vl_bind_matrix(b, V, VB("mlp.fc1.weight"), Fv, Ev, &k->fc1) ||
           vl_bind_vec(b, V, VB("mlp.fc1.bias"), Fv, &k->fc1_b) ||
           vl_bind_matrix(b, V, VB("mlp.fc2.weight"), Ev, Fv, &k->fc2) ||
           vl_bind_vec(b, V, VB("mlp.fc2.bias"), Ev, &k->fc2_b);
#undef VB
}

static int bind(vl_binder *b, const vl_config *c, void *p) {
    vl_qwen2_vl_vision_weights *w = p;
    int64_t Ev = c->v_embed, M4 = Ev * c->merge * c->merge;
    const vl_name_part V = VL_PART_VISION;
    const int64_t pe[5] = {c->v_embed, c->in_channels, c->temporal_patch, c->patch, c->patch};
    if (vl_bind_conv5(b, V, "patch_embed.proj.weight", pe, &w->patch_embed)) return -1;
    for (int i = 0; i < c->v_depth; i++)
        if (bind_block(b, c, i, &w->blocks[i])) return -1;
    return vl_bind_vec(b, V, "merger.ln_q.weight", Ev, &w->merger_ln_w) ||
                   vl_bind_vec(b, V, "merger.ln_q.bias", Ev, &w->merger_ln_b) ||
                   vl_bind_matrix(b, V, "merger.mlp.0.weight", M4, M4, &w->merger_fc1) ||
                   vl_bind_vec(b, V, "merger.mlp.0.bias", M4, &w->merger_fc1_b) ||
                   vl_bind_matrix(b, V, "merger.mlp.2.weight", c->v_out, M4, &w->merger_fc2) ||
                   vl_bind_vec(b, V, "merger.mlp.2.bias", c->v_out, &w->merger_fc2_b)
               ? -1
               : 0;
}

static int layout(vl_arena *a, const vl_config *c, size_t esz, int64_t max_patches, void *out) {
    vision_scratch local, *s = out ? out : &local;
    int64_t P = max_patches, Ev = c->v_embed, m2 = (int64_t)c->merge * c->merge;
    int64_t pd = (int64_t)c->in_channels * c->temporal_patch * c->patch * c->patch;
    s->max_patches = max_patches;
    if (P <= 0) return 0;
    struct {
        void **p;
        int64_t elems;
    } bufs[] = {{&s->pix, P * pd}, {&s->x, P * Ev},
                {&s->xn, P * Ev},  {&s->qkv, P * 3 * Ev},
                {&s->att, P * Ev}, {&s->fc, P * (c->v_mlp > Ev * m2 ? c->v_mlp : Ev * m2)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = vl_arena_alloc(a, (size_t)bufs[i].elems * esz, VL_MEM_ACT))) return -1;
    if (!(s->pos_dev = vl_arena_alloc(a, (size_t)P * 2 * sizeof(int32_t), VL_MEM_ACT))) return -1;
    if (!(s->seg_dev = vl_arena_alloc(a, (size_t)(P + 1) * sizeof(int32_t), VL_MEM_ACT))) return -1;
    return 0;
}

/* Pixels, patch positions and frame starts onto the backend. */
static int upload_image(vl_backend *be, const vl_config *c, vision_scratch *s,
                        const vl_pixels *px) {
    int64_t P = px->n_patches;
    int32_t *host = malloc((size_t)(2 * P + px->grid_t + 1) * sizeof(int32_t));
    if (!host) return vl_error_set("out of host memory");
    vl_vision_patch_positions(px, c->merge, host, host + P);
    int32_t *seg = host + 2 * P;
    int64_t frame = (int64_t)px->grid_h * px->grid_w;
    for (int t = 0; t <= px->grid_t; t++) seg[t] = (int32_t)(t * frame);
    be->upload(be, s->pos_dev, host, (size_t)P * 2 * sizeof(int32_t));
    be->upload(be, s->seg_dev, seg, (size_t)(px->grid_t + 1) * sizeof(int32_t));
    be->from_f32(be, s->pix, px->pixels, P * px->patch_dim);
    be->sync(be);
    free(host);
    return 0;
}

/* One pre-norm block over the P patch rows in s->x. */
static void block(vl_context *cx, vision_scratch *s, const vl_qwen2_vl_vision_block *k, int64_t P,
                  int n_seg) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    int64_t Ev = c->v_embed;
    vl_vision_attn at = {&k->qkv, &k->proj,   &k->qkv_b,  &k->proj_b, s->qkv,
                         s->att,  s->pos_dev, s->seg_dev, n_seg};
    be->layernorm(be, s->xn, s->x, P, Ev, &k->norm1_w, &k->norm1_b, 1e-6f);
    vl_vision_attention(cx, &at, s->xn, s->xn, P);
    be->add(be, s->x, s->xn, P * Ev);
    be->layernorm(be, s->xn, s->x, P, Ev, &k->norm2_w, &k->norm2_b, 1e-6f);
    be->linear(be, s->fc, s->xn, P, &k->fc1, &k->fc1_b);
    if (c->v_act_quick_gelu)
        be->quick_gelu(be, s->fc, P * c->v_mlp);
    else
        be->gelu(be, s->fc, P * c->v_mlp);
    be->linear(be, s->xn, s->fc, P, &k->fc2, &k->fc2_b);
    be->add(be, s->x, s->xn, P * Ev);
}

static int encode(vl_context *cx, const vl_pixels *px, void *out) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_qwen2_vl_vision_weights *w = m->vision_w;
    vision_scratch *s = cx->scratch.vision;
    int64_t P = px->n_patches, Ev = c->v_embed, m2 = (int64_t)c->merge * c->merge;
    if (vl_vision_check_image(px, s->max_patches, &w->patch_embed)) return -1;
    if (upload_image(be, c, s, px)) return -1;
    be->linear(be, s->x, s->pix, P, &w->patch_embed, NULL);
    for (int bi = 0; bi < c->v_depth; bi++) {
        block(cx, s, &w->blocks[bi], P, px->grid_t);
        vl_progress_tick(m->progress); /* a large image on the CPU takes minutes */
    }
    /* merger: [P, Ev] normalized rows are [P/m2, m2*Ev] rows as they lie in memory */
    be->layernorm(be, s->xn, s->x, P, Ev, &w->merger_ln_w, &w->merger_ln_b, 1e-6f);
    be->linear(be, s->fc, s->xn, P / m2, &w->merger_fc1, &w->merger_fc1_b);
    be->gelu(be, s->fc, P / m2 * m2 * Ev);
    be->linear(be, out, s->fc, P / m2, &w->merger_fc2, &w->merger_fc2_b);
    return 0;
}

const vl_vision_ops vl_qwen2_vl_vision = {
    .weights_new = weights_new,
    .weights_free = weights_free,
    .bind = bind,
    .scratch_size = sizeof(vision_scratch),
    .layout = layout,
    .encode = encode,
};
