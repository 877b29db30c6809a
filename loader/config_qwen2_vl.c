/* config_qwen2_vl.c: the config.json keys of Qwen2-VL (model_type "qwen2_vl") that another
 * architecture spells or uses differently: the decoder's M-RoPE sections, and the vision_config
 * block (a flat file may hold only {"in_chans", "model_type", "spatial_patch_size"}: every other
 * vision value is then the class default of Qwen2VLVisionConfig, as transformers drops keys
 * equal to the defaults when it saves). Like transformers, "spatial_patch_size" is ignored (only
 * patch_size counts) and "in_chans" is used only when "in_channels" is absent. The common keys
 * and the strict parsing are loader/config.c's. The readings Qwen2.5-VL spells the same way
 * (M-RoPE, the patch sizes, the head dim, the merger width, the vision rotary base) are shared
 * through config_internal.h (vl_cfg_mrope, vl_cfg_vis_*). */
#include "loader/config_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* mrope_section: in rope_parameters (transformers 5) or rope_scaling (4.x); twice its sum is
 * the head dim. config.c has checked that both are objects when present. */
int vl_cfg_mrope(const vl_cfg_src *s, vl_config *c) {
    char label[128], rp_label[64], rs_label[64];
    const cJSON *rp = vl_cfg_dec(s, "rope_parameters", rp_label, sizeof rp_label);
    const cJSON *rs = vl_cfg_dec(s, "rope_scaling", rs_label, sizeof rs_label);
    const cJSON *j = vl_cfg_item(rp, "mrope_section");
    if (j)
        snprintf(label, sizeof label, "%s.mrope_section", rp_label);
    else if ((j = vl_cfg_item(rs, "mrope_section")))
        snprintf(label, sizeof label, "%s.mrope_section", rs_label);
    c->mrope_section[0] = 16, c->mrope_section[1] = 24, c->mrope_section[2] = 24;
    if (j) {
        if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 3)
            return vl_error_set("%s: \"%s\" must be a list of 3 integers (temporal, height, "
                                "width)",
                                s->name, label);
        for (int k = 0; k < 3; k++) {
            long long v = 0;
            if (vl_cfg_int_of(s->name, label, cJSON_GetArrayItem(j, k), 0, 1, CFG_MAX_SIZE, &v))
                return -1;
            c->mrope_section[k] = (int)v;
        }
    }
    long long sum = (long long)c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2];
    if (sum * 2 != c->head_dim)
        return vl_error_set("%s: mrope_section [%d, %d, %d] covers %lld rotary dims but the head "
                            "dim is %d (expected twice the sum of mrope_section to equal it)",
                            s->name, c->mrope_section[0], c->mrope_section[1], c->mrope_section[2],
                            sum * 2, c->head_dim);
    return 0;
}

int vl_cfg_vis_int(const vl_cfg_src *s, const char *key, int def, int lo, int hi, int *out) {
    char label[96];
    snprintf(label, sizeof label, "vision_config.%s", key);
    long long v = 0;
    if (vl_cfg_int_of(s->name, label, vl_cfg_item(s->vision, key), def, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int cfg_vis_choice(const vl_cfg_src *s, const char *key, int def, const int *allowed, int n,
                          int *out) {
    char label[96];
    snprintf(label, sizeof label, "vision_config.%s", key);
    return vl_cfg_int_choice(s->name, label, vl_cfg_item(s->vision, key), def, allowed, n,
                             "the values of the Qwen-VL family", out);
}

int vl_cfg_vis_patching(const vl_cfg_src *s, vl_config *c) {
    if (cfg_vis_choice(s, "patch_size", 14, vl_cfg_patch_sizes, 2, &c->patch) ||
        cfg_vis_choice(s, "temporal_patch_size", 2, vl_cfg_two, 1, &c->temporal_patch) ||
        cfg_vis_choice(s, "spatial_merge_size", 2, vl_cfg_two, 1, &c->merge))
        return -1;
    const char *ch_key = vl_cfg_item(s->vision, "in_channels") ? "in_channels" : "in_chans";
    if (vl_cfg_vis_int(s, ch_key, 3, 1, 1024, &c->in_channels)) return -1;
    if (c->in_channels != 3)
        return vl_error_set("%s: \"vision_config.%s\" is %d; only RGB input (3) is supported",
                            s->name, ch_key, c->in_channels);
    return 0;
}

int vl_cfg_vis_head_dim(const vl_cfg_src *s, vl_config *c, const char *width_key) {
    if (c->v_embed % c->v_heads != 0)
        return vl_error_set("%s: vision_config.%s (%d) must be a multiple of "
                            "vision_config.num_heads (%d)",
                            s->name, width_key, c->v_embed, c->v_heads);
    c->v_head_dim = c->v_embed / c->v_heads;
    if (c->v_head_dim % 4 != 0) /* rotary halves split again into height and width */
        return vl_error_set("%s: vision head dim %s / num_heads = %d must be a multiple of 4",
                            s->name, width_key, c->v_head_dim);
    return 0;
}

int vl_cfg_vis_out(const vl_cfg_src *s, const vl_config *c, const char *key, int def) {
    if (c->v_out == c->hidden) return 0;
    char unset[96] = "";
    if (!vl_cfg_item(s->vision, key))
        snprintf(unset, sizeof unset, "; the file leaves it at the default %d, set it", def);
    return vl_error_set("%s: vision_config.%s (%d, the merger output) must equal the decoder "
                        "hidden_size (%d)%s",
                        s->name, key, c->v_out, c->hidden, unset);
}

int vl_cfg_vis_rope_theta(const vl_cfg_src *s, vl_config *c) {
    const cJSON *vrp = vl_cfg_item(s->vision, "rope_parameters");
    const cJSON *j = vl_cfg_item(vrp, "rope_theta");
    const char *label = "vision_config.rope_parameters.rope_theta";
    if (!j) {
        j = vl_cfg_item(s->vision, "rope_theta");
        label = "vision_config.rope_theta";
    }
    return vl_cfg_float_of(s->name, label, j, 10000.0, 0.0, 1e12, &c->v_rope_theta);
}

/* hidden_act: quick_gelu (the default) or exact gelu. */
static int cfg_vis_act(const vl_cfg_src *s, vl_config *c) {
    const cJSON *act = vl_cfg_item(s->vision, "hidden_act");
    if (!act || (cJSON_IsString(act) && strcmp(act->valuestring, "quick_gelu") == 0))
        c->v_act_quick_gelu = 1;
    else if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu") == 0)
        c->v_act_quick_gelu = 0;
    else {
        char got[96];
        vl_cfg_describe(act, got, sizeof got);
        return vl_error_set("%s: \"vision_config.hidden_act\" is %s (expected \"quick_gelu\" or "
                            "\"gelu\")",
                            s->name, got);
    }
    return 0;
}

static int cfg_vision(const vl_cfg_src *s, vl_config *c) {
    if (s->vision && !cJSON_IsObject(s->vision))
        return vl_error_set("%s: \"vision_config\" must be an object", s->name);
    /* defaults: Qwen2VLVisionConfig (the 7B tower) */
    if (vl_cfg_vis_int(s, "depth", 32, 1, CFG_MAX_SIZE, &c->v_depth) ||
        vl_cfg_vis_int(s, "embed_dim", 1280, 1, CFG_MAX_SIZE, &c->v_embed) ||
        vl_cfg_vis_int(s, "num_heads", 16, 1, CFG_MAX_SIZE, &c->v_heads) ||
        vl_cfg_vis_int(s, "hidden_size", 3584, 1, CFG_MAX_SIZE, &c->v_out) ||
        vl_cfg_vis_patching(s, c))
        return -1;

    float ratio = 0.0f;
    if (vl_cfg_float_of(s->name, "vision_config.mlp_ratio", vl_cfg_item(s->vision, "mlp_ratio"),
                        4.0, 0.0, 64.0, &ratio))
        return -1;
    double mlp = floor((double)c->v_embed * ratio); /* python int() of a positive float */
    if (mlp < 1 || mlp > CFG_MAX_SIZE)
        return vl_error_set("%s: vision MLP width embed_dim * mlp_ratio = %.0f is out of range",
                            s->name, mlp);
    c->v_mlp = (int)mlp;

    if (vl_cfg_vis_head_dim(s, c, "embed_dim") || vl_cfg_vis_out(s, c, "hidden_size", 3584) ||
        cfg_vis_act(s, c))
        return -1;
    return vl_cfg_vis_rope_theta(s, c);
}

int vl_cfg_read_qwen2_vl(const vl_cfg_src *s, vl_config *c) {
    return vl_cfg_mrope(s, c) || cfg_vision(s, c) ? -1 : 0;
}
