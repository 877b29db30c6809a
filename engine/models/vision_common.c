/* vision_common.c: what the vision towers of the Qwen-VL family share (Qwen2-VL's and
 * Qwen2.5-VL's): the (h, w) position of every patch, and one self-attention (fused qkv, 2-D
 * rotary, attention inside segments, output projection). Each tower's own file says how it
 * differs around them (norms, MLP, windows). */
#include "engine/models/models.h"

#include <math.h>

void vl_vision_patch_positions(const vl_pixels *px, int merge, int32_t *pos_h, int32_t *pos_w) {
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

int vl_vision_check_image(const vl_pixels *px, int64_t max_patches, const vl_weight *patch_embed) {
    if (px->n_patches > max_patches)
        return vl_error_set("internal: image of %lld patches exceeds the plan (%lld)",
                            (long long)px->n_patches, (long long)max_patches);
    if (px->patch_dim != patch_embed->cols)
        return vl_error_set("image patches have %d values; the model expects %lld", px->patch_dim,
                            (long long)patch_embed->cols);
    return 0;
}

static inline void *vat(vl_backend *be, void *base, int64_t i) {
    return (uint8_t *)base + (size_t)i * vl_dtype_size(be->act);
}

void vl_vision_attention(vl_context *cx, const vl_vision_attn *a, void *y, const void *xn,
                         int64_t P) {
    vl_backend *be = cx->m->be;
    const vl_config *c = &cx->m->cfg;
    int64_t Ev = c->v_embed;
    int H = c->v_heads, D = c->v_head_dim;
    be->linear(be, a->qkv, xn, P, a->w_qkv, a->b_qkv);
    be->rope_vision(be, a->qkv, 3 * Ev, P, H, D, a->pos_dev, c->v_rope_theta);
    be->rope_vision(be, vat(be, a->qkv, Ev), 3 * Ev, P, H, D, a->pos_dev, c->v_rope_theta);
    vl_attn_params p = {0};
    p.q = a->qkv;
    p.q_stride = 3 * Ev;
    p.k = vat(be, a->qkv, Ev);
    p.v = vat(be, a->qkv, 2 * Ev);
    p.kv_tok_stride = 3 * Ev;
    p.kv_head_stride = D;
    p.o = a->att;
    p.o_stride = Ev;
    p.n_q = p.n_kv = P;
    p.n_heads = p.n_kv_heads = H;
    p.head_dim = D;
    p.scale = 1.0f / sqrtf((float)D);
    p.causal = 0;
    p.seg_starts = a->seg_dev;
    p.n_seg = a->n_seg;
    if (cx->shape.attn_naive)
        be->attention_naive(be, &p, cx->scratch.scores);
    else
        be->attention(be, &p);
    be->linear(be, y, a->att, P, a->w_proj, a->b_proj);
}
