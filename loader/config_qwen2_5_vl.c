/* config_qwen2_5_vl.c: the config.json keys of Qwen2.5-VL (model_type "qwen2_5_vl"). The decoder
 * is Qwen2-VL's (its M-RoPE sections are read by the shared vl_cfg_mrope); the vision_config
 * describes another tower: vision "hidden_size" is the tower's width (Qwen2-VL calls it
 * embed_dim), "out_hidden_size" the merger's output (the decoder's hidden size),
 * "intermediate_size" the SwiGLU MLP width, "window_size" the side in pixels of the attention
 * windows and "fullatt_block_indexes" the blocks that attend over the whole image. A key left
 * out takes the class default of transformers' Qwen2_5_VLVisionConfig (note its hidden_size
 * default is 3584, not the published towers' 1280). "tokens_per_second" is only for video
 * positions and is ignored, like Qwen2-VL's "embed_dim" and "mlp_ratio", which this tower does
 * not use. */
#include "loader/config_internal.h"

#include <stdio.h>
#include <string.h>

/* Qwen2_5_VLVisionConfig's fullatt_block_indexes. */
static const int cfg_fullatt_default[] = {7, 15, 23, 31};
#define CFG_N_FULLATT_DEFAULT ((int)(sizeof cfg_fullatt_default / sizeof cfg_fullatt_default[0]))

/* hidden_act: the tower's MLP is SwiGLU with SiLU; nothing else is implemented. */
static int cfg_act(const vl_cfg_src *s, vl_config *c) {
    const cJSON *act = vl_cfg_item(s->vision, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0)) {
        char got[96];
        vl_cfg_describe(act, got, sizeof got);
        return vl_error_set("%s: \"vision_config.hidden_act\" is %s; the Qwen2.5-VL vision tower "
                            "supports \"silu\" only",
                            s->name, got);
    }
    c->v_act_quick_gelu = 0;
    return 0;
}

/* window_size: whole merged tokens per window side, so a window never splits a merged token. */
static int cfg_window(const vl_cfg_src *s, vl_config *c) {
    if (vl_cfg_vis_int(s, "window_size", 112, 1, CFG_MAX_SIZE, &c->v_window)) return -1;
    int unit = c->patch * c->merge;
    if (c->v_window % unit != 0)
        return vl_error_set("%s: \"vision_config.window_size\" is %d; it must be a multiple of "
                            "patch_size * spatial_merge_size = %d (the pixels of one merged "
                            "token's side)",
                            s->name, c->v_window, unit);
    return 0;
}

/* One entry of fullatt_block_indexes: a block of the tower, above the one before it. */
static int cfg_fullatt_at(const vl_cfg_src *s, vl_config *c, const cJSON *e, int k) {
    char label[96];
    snprintf(label, sizeof label, "vision_config.fullatt_block_indexes[%d]", k);
    if (k >= VL_MAX_FULLATT)
        return vl_error_set("%s: \"vision_config.fullatt_block_indexes\" lists more than %d "
                            "blocks",
                            s->name, VL_MAX_FULLATT);
    long long v = 0;
    if (vl_cfg_int_of(s->name, label, e, 0, 0, CFG_MAX_SIZE, &v)) return -1;
    if (v >= c->v_depth)
        return vl_error_set("%s: \"%s\" is %lld, but the tower has vision_config.depth = %d "
                            "blocks (0 to %d)",
                            s->name, label, v, c->v_depth, c->v_depth - 1);
    if (k > 0 && v <= c->v_fullatt[k - 1])
        return vl_error_set("%s: \"%s\" is %lld after %d; the list must be strictly ascending",
                            s->name, label, v, c->v_fullatt[k - 1]);
    c->v_fullatt[k] = (int)v;
    return 0;
}

/* fullatt_block_indexes: ascending block indexes, each below depth; an empty list (windows
 * everywhere) is allowed. */
static int cfg_fullatt(const vl_cfg_src *s, vl_config *c) {
    const cJSON *j = vl_cfg_item(s->vision, "fullatt_block_indexes");
    if (!j) {
        int last = cfg_fullatt_default[CFG_N_FULLATT_DEFAULT - 1];
        if (last >= c->v_depth)
            return vl_error_set("%s: \"vision_config.fullatt_block_indexes\" is not set, and its "
                                "default [7, 15, 23, 31] names block %d of a tower of "
                                "vision_config.depth = %d blocks; set it",
                                s->name, last, c->v_depth);
        memcpy(c->v_fullatt, cfg_fullatt_default, sizeof cfg_fullatt_default);
        c->v_n_fullatt = CFG_N_FULLATT_DEFAULT;
        return 0;
    }
    if (!cJSON_IsArray(j))
        return vl_error_set("%s: \"vision_config.fullatt_block_indexes\" must be a list of block "
                            "indexes",
                            s->name);
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) /* linear: no GetArrayItem(k) */
        if (cfg_fullatt_at(s, c, e, k)) return -1;
    c->v_n_fullatt = k;
    return 0;
}

static int cfg_vision(const vl_cfg_src *s, vl_config *c) {
    if (s->vision && !cJSON_IsObject(s->vision))
        return vl_error_set("%s: \"vision_config\" must be an object", s->name);
    /* defaults: Qwen2_5_VLVisionConfig */
    if (vl_cfg_vis_int(s, "depth", 32, 1, CFG_MAX_SIZE, &c->v_depth) ||
        vl_cfg_vis_int(s, "hidden_size", 3584, 1, CFG_MAX_SIZE, &c->v_embed) ||
        vl_cfg_vis_int(s, "num_heads", 16, 1, CFG_MAX_SIZE, &c->v_heads) ||
        vl_cfg_vis_int(s, "intermediate_size", 3420, 1, CFG_MAX_SIZE, &c->v_mlp) ||
        vl_cfg_vis_int(s, "out_hidden_size", 3584, 1, CFG_MAX_SIZE, &c->v_out) ||
        vl_cfg_vis_patching(s, c) || vl_cfg_vis_head_dim(s, c, "hidden_size") ||
        vl_cfg_vis_out(s, c, "out_hidden_size", 3584) || cfg_act(s, c) || cfg_window(s, c) ||
        cfg_fullatt(s, c))
        return -1;
    return vl_cfg_vis_rope_theta(s, c);
}

int vl_cfg_read_qwen2_5_vl(const vl_cfg_src *s, vl_config *c) {
    return vl_cfg_mrope(s, c) || cfg_vision(s, c) ? -1 : 0;
}
