/* models.h: the architectures (one file per part, vLLM-style) and what they share.
 *
 * An architecture is a row of the table in engine/models/registry.c, keyed by config.json's
 * model_type: {model_type, vision ops, text ops}. Each part owns its weight struct, its
 * tensor-name binding, the sizing of its scratch and its forward pass:
 *   qwen2_vl_vision.c  Qwen2-VL's vision tower and patch merger;
 *   qwen2_vl_text.c    Qwen2-VL's decoder (Qwen2 with M-RoPE) and its LM head;
 *   qwen2_5_vl_vision.c  Qwen2.5-VL's tower (RMSNorm, SwiGLU, window attention), whose decoder
 *                      is Qwen2-VL's;
 *   vision_common.c    what the towers share (patch positions, the self-attention).
 * Adding an architecture adds its files, a row here and a config reader in loader/. The
 * generic binding machinery (both checkpoint spellings, dtype/shape checks, bitsandbytes
 * weights, the visitor, fused views) is engine/models/bind.c; the prefill/decode loops that call
 * the ops are engine/forward.c. */
#ifndef VL_MODELS_H
#define VL_MODELS_H

#include "engine/engine.h"

/* ---- binding parameters by name (engine/models/bind.c)
 * ------------------------------------------- */

/* Which prefix a tensor's name takes: "model." (or "model.language_model."), "visual." (or
 * "model.visual."), none. */
typedef enum { VL_PART_TEXT, VL_PART_VISION, VL_PART_TOP } vl_name_part;

/* One walk over every parameter serves three modes:
 *   VL_BIND_CHECKPOINT  look each tensor up in the checkpoint, check dtype and shape, point at it;
 *   VL_BIND_SHAPES      no checkpoint (--random-weights, plans): shapes, bf16, no data yet;
 *   VL_BIND_VISIT       leave the fields as they are.
 * After binding, fn (if set) sees each parameter with its published name. */
typedef enum { VL_BIND_CHECKPOINT, VL_BIND_SHAPES, VL_BIND_VISIT } vl_bind_mode;

typedef struct {
    vl_bind_mode mode;
    const vl_checkpoint *ck;
    const char *where; /* checkpoint path for messages */
    size_t bytes;      /* of every parameter bound so far, in its dtype */
    vl_weight_fn fn;
    void *ctx;
} vl_binder;

int vl_bind_matrix(vl_binder *b, vl_name_part part, const char *rest, int64_t rows, int64_t cols,
                   vl_weight *w);
int vl_bind_vec(vl_binder *b, vl_name_part part, const char *rest, int64_t n, vl_vec *v);
/* A convolution weight of shape[0..5) used as a [shape[0], product of the rest] matrix. */
int vl_bind_conv5(vl_binder *b, vl_name_part part, const char *rest, const int64_t shape[5],
                  vl_weight *w);
/* Tied embeddings: when binding, *tied = tie and the checkpoint (if any) has no
 * lm_head.weight; when visiting, *tied is kept. Returns *tied. */
int vl_bind_tied(const vl_binder *b, int tie, int *tied);
/* Every parameter of an architecture: the vision tower's, then the decoder's. */
int vl_bind_all(vl_binder *b, const vl_arch *a, const vl_config *c, void *vision_w, void *text_w,
                int *lm_head_is_embed);
/* out = the matrices a[0..n) as one [sum rows, cols] weight when they lie back to back in the
 * same format (data and scales), with one bias vector when theirs do too (or none has one);
 * out->data NULL when they do not. */
void vl_weights_fuse(vl_weight *out, vl_vec *out_b, const vl_weight *const *a,
                     const vl_vec *const *b, int n);

/* ---- what the vision towers share (engine/models/vision_common.c) ------------------------- */

/* (h, w) of every patch, in the row order of the pixels (loader/preprocess.c): for each frame,
 * merge blocks row-major, and inside a block its merge x merge patches row-major. */
void vl_vision_patch_positions(const vl_pixels *px, int merge, int32_t *pos_h, int32_t *pos_w);

/* 0 when an image fits the planned scratch and the patch embedding; else -1, the error set. */
int vl_vision_check_image(const vl_pixels *px, int64_t max_patches, const vl_weight *patch_embed);

/* One self-attention of a tower: its weights and the buffers it runs in. */
typedef struct {
    const vl_weight *w_qkv, *w_proj; /* [3 Ev, Ev], [Ev, Ev] */
    const vl_vec *b_qkv, *b_proj;
    void *qkv, *att;        /* [P, 3 Ev], [P, Ev] (act) */
    const int32_t *pos_dev; /* [2, P]: rows h, w */
    const int32_t *seg_dev; /* [n_seg + 1]: a token attends inside its segment */
    int n_seg;
} vl_vision_attn;

/* y[P, Ev] = proj(attention(2-D rotary(qkv(xn)))); y may be xn. */
void vl_vision_attention(vl_context *cx, const vl_vision_attn *a, void *y, const void *xn,
                         int64_t P);

/* ---- the parts of an architecture ------------------------------------------------------------ */

typedef struct {
    void *(*weights_new)(const vl_config *c); /* NULL with the error set */
    void (*weights_free)(void *w);
    int (*bind)(vl_binder *b, const vl_config *c, void *w);
    size_t scratch_size; /* bytes of its host struct in vl_scratch.vision */
    /* Its buffers for images of at most max_patches patches, into *scratch (NULL: count). */
    int (*layout)(vl_arena *a, const vl_config *c, size_t esz, int64_t max_patches, void *scratch);
    /* Encoder + merger for one image: out[tokens, E] (act dtype, backend memory). */
    int (*encode)(vl_context *cx, const vl_pixels *px, void *out);
} vl_vision_ops;

typedef struct {
    void *(*weights_new)(const vl_config *c);
    void (*weights_free)(void *w);
    int (*bind)(vl_binder *b, const vl_config *c, void *w, int *lm_head_is_embed);
    /* After the weights are placed: the tied LM head, fused views for decode. */
    void (*after_place)(const vl_config *c, void *w, int lm_head_is_embed);
    vl_dtype (*linear_dtype)(const void *w);
    size_t scratch_size; /* bytes of its host struct in vl_scratch.text */
    /* Its per-chunk buffers for chunks of `chunk` tokens, into *scratch (NULL: count). */
    int (*layout)(vl_arena *a, const vl_config *c, size_t esz, int64_t chunk, void *scratch);
    /* The embeddings of ids_dev[0..S) into scratch.x. */
    void (*embed)(vl_context *cx, const int32_t *ids_dev, int64_t S);
    /* Decoder layer li over the S tokens in scratch.x at positions pos_dev ([3, S]), appended to
     * the cache kv at kv->n_past (kv->n_past_dev: read on the device instead, a recorded step;
     * with kv->batch the S rows are S sequences' one new token each). */
    void (*layer)(vl_context *cx, const vl_kv_view *kv, int li, int64_t S, const int32_t *pos_dev);
    /* Final norm + LM head on rows row .. row+n-1 of scratch.x into scratch.logits [n, V]. */
    void (*lm_head)(vl_context *cx, int64_t row, int64_t n);
} vl_text_ops;

struct vl_arch {
    const char *model_type;
    const vl_vision_ops *vision;
    const vl_text_ops *text;
};

/* The row of model_type; NULL with the error set, naming the known ones. */
const vl_arch *vl_arch_find(const char *model_type);

/* ---- Qwen2-VL (model_type "qwen2_vl") ---------------------------------------------------------
 * Its weights, as vl_model.vision_w / text_w hold them (tests read them; the ops own them). */

typedef struct {
    vl_vec norm1_w, norm1_b, norm2_w, norm2_b; /* [Ev] */
    vl_weight qkv;                             /* [3 Ev, Ev] */
    vl_vec qkv_b;                              /* [3 Ev] */
    vl_weight proj;                            /* [Ev, Ev] */
    vl_vec proj_b;
    vl_weight fc1; /* [Fv, Ev] */
    vl_vec fc1_b;
    vl_weight fc2; /* [Ev, Fv] */
    vl_vec fc2_b;
} vl_qwen2_vl_vision_block;

typedef struct {
    vl_weight patch_embed;            /* [Ev, C*T*P*P] (Conv3d weight viewed as a matrix) */
    vl_qwen2_vl_vision_block *blocks; /* [depth] */
    vl_vec merger_ln_w, merger_ln_b;  /* [Ev] */
    vl_weight merger_fc1;             /* [4 Ev, 4 Ev] */
    vl_vec merger_fc1_b;
    vl_weight merger_fc2; /* [E, 4 Ev] */
    vl_vec merger_fc2_b;
} vl_qwen2_vl_vision_weights;

typedef struct {
    vl_vec in_norm, post_norm; /* [E] */
    vl_weight q, k, v, o;      /* [H D, E], [Hkv D, E] x2, [E, H D] */
    vl_vec q_b, k_b, v_b;
    vl_weight gate, up, down; /* [F, E] x2, [E, F] */
    /* Views set after placing when q/k/v (gate/up) lie back to back on the backend: one
     * [HD + 2 KD, E] (and [2F, E]) GEMV per decode step instead of three (two). data NULL: no. */
    vl_weight qkv, gate_up;
    vl_vec qkv_b;
} vl_qwen2_vl_decoder_layer;

typedef struct {
    vl_weight embed; /* [V, E] */
    vl_qwen2_vl_decoder_layer *layers;
    vl_vec final_norm;
    vl_weight lm_head; /* [V, E] (the embedding table when tied) */
} vl_qwen2_vl_text_weights;

/* engine/models/qwen2_vl_vision.c, engine/models/qwen2_vl_text.c */
extern const vl_vision_ops vl_qwen2_vl_vision;
extern const vl_text_ops vl_qwen2_vl_text;

/* ---- Qwen2.5-VL (model_type "qwen2_5_vl"): Qwen2-VL's decoder, its own vision tower ---------- */

typedef struct {
    vl_vec norm1, norm2; /* [Ev] (RMSNorm) */
    vl_weight qkv;       /* [3 Ev, Ev] */
    vl_vec qkv_b;        /* [3 Ev] */
    vl_weight proj;      /* [Ev, Ev] */
    vl_vec proj_b;
    vl_weight gate, up; /* [Fv, Ev] */
    vl_vec gate_b, up_b;
    vl_weight down; /* [Ev, Fv] */
    vl_vec down_b;
} vl_qwen2_5_vl_vision_block;

typedef struct {
    vl_weight patch_embed; /* [Ev, C*T*P*P] */
    vl_qwen2_5_vl_vision_block *blocks;
    vl_vec merger_ln;     /* [Ev] (RMSNorm) */
    vl_weight merger_fc1; /* [4 Ev, 4 Ev] */
    vl_vec merger_fc1_b;
    vl_weight merger_fc2; /* [E, 4 Ev] */
    vl_vec merger_fc2_b;
} vl_qwen2_5_vl_vision_weights;

/* The window order of one image's merged tokens (transformers' get_window_index): for each frame,
 * windows of w x w merged tokens (w = window_size / (patch * merge); smaller at the right and
 * bottom edges) row-major, and inside a window its tokens row-major. index[j] (j < tokens) is the
 * raster index of the j-th token in window order; seg[0..*n_seg] the windows' boundaries in
 * patches (merge^2 per token), cumulative from 0. index holds grid_t * (grid_h / merge) *
 * (grid_w / merge) entries and seg one more than that (a window has a token at least). */
void vl_qwen2_5_vl_windows(const vl_config *c, int grid_t, int grid_h, int grid_w, int32_t *index,
                           int32_t *seg, int *n_seg);

/* engine/models/qwen2_5_vl_vision.c (the decoder is vl_qwen2_vl_text) */
extern const vl_vision_ops vl_qwen2_5_vl_vision;

#endif
