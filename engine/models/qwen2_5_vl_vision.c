/* qwen2_5_vl_vision.c: Qwen2.5-VL's vision encoder and patch merger for one image (transformers'
 * Qwen2_5_VisionTransformerPretrainedModel): its weights, their names, its scratch and its
 * forward pass. The decoder is Qwen2-VL's (qwen2_vl_text.c).
 *
 *   pixels [P, C*T*p*p] -> patch embedding -> merge groups (merge^2 consecutive patch rows) put
 *   in window order -> depth x pre-norm blocks (RMSNorm, fused qkv, 2-D rotary, attention inside
 *   each window, or over the whole frame in the blocks of fullatt_block_indexes, proj; RMSNorm,
 *   SwiGLU with biases) -> merger (RMSNorm, merge^2 rows as one, fc1, exact GELU, fc2) -> merged
 *   tokens put back in raster order -> [P / merge^2, E] rows for the decoder.
 *
 * Windows are segments of the attention kernels (cu_seqlens), so a windowed block costs
 * O(P * window) instead of O(P^2). Both reorders are the gather_rows op, with the window index
 * and its inverse made on the host. Videos are out of scope. */
#include "engine/models/models.h"

#include <stdlib.h>

/* One image's buffers (backend memory, act dtype unless said). */
typedef struct {
    int64_t max_patches;
    void *pix, *x, *xn, *qkv,
        *att;                    /* [P, C*T*p*p], [P, Ev] x2, [P, 3Ev] (also [P/m2, E]), [P, Ev] */
    void *gate, *up;             /* [P, max(Fv, Ev)], [P, Fv] */
    int32_t *pos_dev;            /* [2, P], in window order */
    int32_t *seg_full, *seg_win; /* frame and window boundaries: [P + 1] each */
    int32_t *order_dev, *raster_dev; /* [P/m2]: the window index and its inverse */
} vision_scratch;

static void *weights_new(const vl_config *c) {
    vl_qwen2_5_vl_vision_weights *w = calloc(1, sizeof *w);
    if (w) w->blocks = calloc((size_t)c->v_depth, sizeof *w->blocks);
    if (!w || !w->blocks) {
        free(w);
        vl_error_set("out of host memory");
        return NULL;
    }
    return w;
}

static void weights_free(void *p) {
    vl_qwen2_5_vl_vision_weights *w = p;
    if (w) free(w->blocks);
    free(w);
}

static int bind_block(vl_binder *b, const vl_config *c, int i, vl_qwen2_5_vl_vision_block *k) {
    char r[256];
    int64_t Ev = c->v_embed, Fv = c->v_mlp;
    const vl_name_part V = VL_PART_VISION;
#define VB(fmt) (snprintf(r, sizeof r, "blocks.%d." fmt, i), r)
    return vl_bind_vec(b, V, VB("norm1.weight"), Ev, &k->norm1) ||
           vl_bind_vec(b, V, VB("norm2.weight"), Ev, &k->norm2) ||
           vl_bind_matrix(b, V, VB("attn.qkv.weight"), 3 * Ev, Ev, &k->qkv) ||
           vl_bind_vec(b, V, VB("attn.qkv.bias"), 3 * Ev, &k->qkv_b) ||
           vl_bind_matrix(b, V, VB("attn.proj.weight"), Ev, Ev, &k->proj) ||
           vl_bind_vec(b, V, VB("attn.proj.bias"), Ev, &k->proj_b) ||
           vl_bind_matrix(b, V, VB("mlp.gate_proj.weight"), Fv, Ev, &k->gate) ||
           vl_bind_vec(b, V, VB("mlp.gate_proj.bias"), Fv, &k->gate_b) ||
           vl_bind_matrix(b, V, VB("mlp.up_proj.weight"), Fv, Ev, &k->up) ||
           vl_bind_vec(b, V, VB("mlp.up_proj.bias"), Fv, &k->up_b) ||
           vl_bind_matrix(b, V, VB("mlp.down_proj.weight"), Ev, Fv, &k->down) ||
           vl_bind_vec(b, V, VB("mlp.down_proj.bias"), Ev, &k->down_b);
#undef VB
}

static int bind(vl_binder *b, const vl_config *c, void *p) {
    vl_qwen2_5_vl_vision_weights *w = p;
    int64_t M4 = (int64_t)c->v_embed * c->merge * c->merge;
    const vl_name_part V = VL_PART_VISION;
    const int64_t pe[5] = {c->v_embed, c->in_channels, c->temporal_patch, c->patch, c->patch};
    if (vl_bind_conv5(b, V, "patch_embed.proj.weight", pe, &w->patch_embed)) return -1;
    for (int i = 0; i < c->v_depth; i++)
        if (bind_block(b, c, i, &w->blocks[i])) return -1;
    return vl_bind_vec(b, V, "merger.ln_q.weight", c->v_embed, &w->merger_ln) ||
                   vl_bind_matrix(b, V, "merger.mlp.0.weight", M4, M4, &w->merger_fc1) ||
                   vl_bind_vec(b, V, "merger.mlp.0.bias", M4, &w->merger_fc1_b) ||
                   vl_bind_matrix(b, V, "merger.mlp.2.weight", c->v_out, M4, &w->merger_fc2) ||
                   vl_bind_vec(b, V, "merger.mlp.2.bias", c->v_out, &w->merger_fc2_b)
               ? -1
               : 0;
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
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
    } bufs[] = {{&s->pix, P * pd},     {&s->x, P * Ev},
                {&s->xn, P * Ev},      {&s->qkv, max64(P * 3 * Ev, P / m2 * c->v_out)},
                {&s->att, P * Ev},     {&s->gate, P * max64(c->v_mlp, Ev)},
                {&s->up, P * c->v_mlp}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = vl_arena_alloc(a, (size_t)bufs[i].elems * esz, VL_MEM_ACT))) return -1;
    struct {
        int32_t **p;
        int64_t n;
    } ints[] = {{&s->pos_dev, 2 * P},
                {&s->seg_full, P + 1},
                {&s->seg_win, P + 1},
                {&s->order_dev, P / m2 + 1},
                {&s->raster_dev, P / m2 + 1}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!(*ints[i].p = vl_arena_alloc(a, (size_t)ints[i].n * sizeof(int32_t), VL_MEM_ACT)))
            return -1;
    return 0;
}

void vl_qwen2_5_vl_windows(const vl_config *c, int grid_t, int grid_h, int grid_w, int32_t *index,
                           int32_t *seg, int *n_seg) {
    int mh = grid_h / c->merge, mw = grid_w / c->merge, m2 = c->merge * c->merge;
    int w = c->v_window / (c->patch * c->merge); /* merged tokens per window side */
    int64_t k = 0;
    int n = 0;
    seg[0] = 0;
    for (int t = 0; t < grid_t; t++)
        for (int y0 = 0; y0 < mh; y0 += w)
            for (int x0 = 0; x0 < mw; x0 += w) {
                for (int y = y0; y < mh && y < y0 + w; y++)
                    for (int x = x0; x < mw && x < x0 + w; x++)
                        index[k++] = (int32_t)(((int64_t)t * mh + y) * mw + x);
                seg[n + 1] = (int32_t)(k * m2);
                n++;
            }
    *n_seg = n;
}

/* Window order, positions, boundaries and pixels onto the backend; *n_win = windows. */
static int upload_image(vl_backend *be, const vl_config *c, vision_scratch *s, const vl_pixels *px,
                        int *n_win) {
    int64_t P = px->n_patches, m2 = (int64_t)c->merge * c->merge, T = P / m2;
    int32_t *host = malloc((size_t)(5 * P + 2 * T + px->grid_t + 3) * sizeof(int32_t));
    if (!host) return vl_error_set("out of host memory");
    int32_t *raster_pos = host, *pos = host + 2 * P, *order = pos + 2 * P, *raster = order + T;
    int32_t *seg_win = raster + T, *seg_full = seg_win + P + 1;
    vl_vision_patch_positions(px, c->merge, raster_pos, raster_pos + P);
    vl_qwen2_5_vl_windows(c, px->grid_t, px->grid_h, px->grid_w, order, seg_win, n_win);
    for (int64_t j = 0; j < T; j++) {
        raster[order[j]] = (int32_t)j;
        for (int64_t i = 0; i < m2; i++) { /* the rotary positions follow their patches */
            pos[j * m2 + i] = raster_pos[order[j] * m2 + i];
            pos[P + j * m2 + i] = raster_pos[P + order[j] * m2 + i];
        }
    }
    int64_t frame = (int64_t)px->grid_h * px->grid_w;
    for (int t = 0; t <= px->grid_t; t++) seg_full[t] = (int32_t)(t * frame);
    be->upload(be, s->pos_dev, pos, (size_t)P * 2 * sizeof(int32_t));
    be->upload(be, s->order_dev, order, (size_t)T * sizeof(int32_t));
    be->upload(be, s->raster_dev, raster, (size_t)T * sizeof(int32_t));
    be->upload(be, s->seg_win, seg_win, (size_t)(*n_win + 1) * sizeof(int32_t));
    be->upload(be, s->seg_full, seg_full, (size_t)(px->grid_t + 1) * sizeof(int32_t));
    be->from_f32(be, s->pix, px->pixels, P * px->patch_dim);
    be->sync(be);
    free(host);
    return 0;
}

static int is_full_attention(const vl_config *c, int block) {
    for (int i = 0; i < c->v_n_fullatt; i++)
        if (c->v_fullatt[i] == block) return 1;
    return 0;
}

/* One pre-norm block over the P patch rows in x (t: a buffer of the same size). */
static void block(vl_context *cx, vision_scratch *s, const vl_qwen2_5_vl_vision_block *k, void *x,
                  void *t, int64_t P, const int32_t *seg, int n_seg) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    int64_t Ev = c->v_embed, Fv = c->v_mlp;
    vl_vision_attn at = {&k->qkv, &k->proj,   &k->qkv_b, &k->proj_b, s->qkv,
                         s->att,  s->pos_dev, seg,       n_seg};
    be->rmsnorm(be, t, x, P, Ev, &k->norm1, 1e-6f);
    vl_vision_attention(cx, &at, t, t, P);
    be->add_rmsnorm(be, t, x, t, P, Ev, &k->norm2, 1e-6f); /* x += attention; t = norm2(x) */
    be->linear(be, s->gate, t, P, &k->gate, &k->gate_b);
    be->linear(be, s->up, t, P, &k->up, &k->up_b);
    be->silu_mul(be, s->gate, s->gate, s->up, P * Fv);
    be->linear(be, t, s->gate, P, &k->down, &k->down_b);
    be->add(be, x, t, P * Ev);
}

static int encode(vl_context *cx, const vl_pixels *px, void *out) {
    vl_model *m = cx->m;
    vl_backend *be = m->be;
    const vl_config *c = &m->cfg;
    const vl_qwen2_5_vl_vision_weights *w = m->vision_w;
    vision_scratch *s = cx->scratch.vision;
    int64_t P = px->n_patches, Ev = c->v_embed, m2 = (int64_t)c->merge * c->merge;
    if (vl_vision_check_image(px, s->max_patches, &w->patch_embed)) return -1;
    int n_win = 0;
    if (upload_image(be, c, s, px, &n_win)) return -1;
    be->linear(be, s->xn, s->pix, P, &w->patch_embed, NULL);
    be->gather_rows(be, s->x, s->xn, s->order_dev, P / m2, m2 * Ev); /* into window order */
    for (int bi = 0; bi < c->v_depth; bi++) {
        int full = is_full_attention(c, bi);
        block(cx, s, &w->blocks[bi], s->x, s->xn, P, full ? s->seg_full : s->seg_win,
              full ? px->grid_t : n_win);
        vl_progress_tick(m->progress); /* a large image on the CPU takes minutes */
    }
    /* merger: [P, Ev] normalized rows are [P/m2, m2*Ev] rows as they lie in memory */
    be->rmsnorm(be, s->xn, s->x, P, Ev, &w->merger_ln, 1e-6f);
    be->linear(be, s->gate, s->xn, P / m2, &w->merger_fc1, &w->merger_fc1_b);
    be->gelu(be, s->gate, P / m2 * m2 * Ev);
    be->linear(be, s->qkv, s->gate, P / m2, &w->merger_fc2, &w->merger_fc2_b);
    be->gather_rows(be, out, s->qkv, s->raster_dev, P / m2, c->v_out); /* back to raster order */
    return 0;
}

const vl_vision_ops vl_qwen2_5_vl_vision = {
    .weights_new = weights_new,
    .weights_free = weights_free,
    .bind = bind,
    .scratch_size = sizeof(vision_scratch),
    .layout = layout,
    .encode = encode,
};
