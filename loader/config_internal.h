/* config_internal.h: what loader/config.c shares with the readers of each architecture's own
 * config.json keys (loader/config_<model_type>.c): the parsed file, the strict typed getters
 * (every message names the file and the key as the user finds it) and the architecture table's
 * row type. Not part of the public loader.h. */
#ifndef VL_CONFIG_INTERNAL_H
#define VL_CONFIG_INTERNAL_H

#include "loader/loader.h"

#include <cJSON.h>

#define CFG_MAX_SIZE (1 << 20) /* bound of every width, count and id */

/* config.json as parsed: the top level, text_config and vision_config (NULL when absent). */
typedef struct {
    const char *name; /* file name for messages */
    const cJSON *root, *text, *vision;
} vl_cfg_src;

/* obj[key]; NULL when absent or null ("key": null means "not set" in saved configs). */
const cJSON *vl_cfg_item(const cJSON *obj, const char *key);
/* A decoder key: text_config wins over the top level; *label gets the key as the user would
 * look for it in the file. */
const cJSON *vl_cfg_dec(const vl_cfg_src *s, const char *key, char *label, size_t cap);
/* j as shown in messages: 7, "text", true, a list, an object. */
void vl_cfg_describe(const cJSON *j, char *buf, size_t cap);
/* An integer in [lo, hi]; absent -> def. */
int vl_cfg_int_of(const char *name, const char *label, const cJSON *j, long long def, long long lo,
                  long long hi, long long *out);
/* An integer from allowed[0..n) (listed in the message with `why`); absent -> def. */
int vl_cfg_int_choice(const char *name, const char *label, const cJSON *j, int def,
                      const int *allowed, int n, const char *why, int *out);
/* A finite number in (lo, hi] (tested as the float kept); absent -> def. */
int vl_cfg_float_of(const char *name, const char *label, const cJSON *j, double def, double lo,
                    double hi, float *out);

/* The vision sizes the Qwen-VL family uses (patch 14 or 16; temporal patch and merge 2). */
extern const int vl_cfg_patch_sizes[2];
extern const int vl_cfg_two[1];

/* One row of config.c's architecture table: model_type, the name messages use, and the reader
 * of the keys that differ by architecture (called after the common decoder keys are read). */
typedef struct {
    const char *model_type;
    const char *name;
    int (*read)(const vl_cfg_src *s, vl_config *c);
} vl_cfg_arch;

int vl_cfg_read_qwen2_vl(const vl_cfg_src *s, vl_config *c);   /* loader/config_qwen2_vl.c */
int vl_cfg_read_qwen2_5_vl(const vl_cfg_src *s, vl_config *c); /* loader/config_qwen2_5_vl.c */

/* Qwen2-VL's readings that Qwen2.5-VL spells the same way (loader/config_qwen2_vl.c). */
/* The decoder's mrope_section (rope_parameters or rope_scaling; default [16, 24, 24]); twice
 * its sum must be head_dim. */
int vl_cfg_mrope(const vl_cfg_src *s, vl_config *c);
/* vision_config[key], an integer in [lo, hi]; absent -> def. */
int vl_cfg_vis_int(const vl_cfg_src *s, const char *key, int def, int lo, int hi, int *out);
/* patch_size, temporal_patch_size, spatial_merge_size (the family's values) and in_channels
 * ("in_chans" when absent; RGB only). */
int vl_cfg_vis_patching(const vl_cfg_src *s, vl_config *c);
/* v_head_dim = v_embed / v_heads, a multiple of 4; width_key names v_embed's key. */
int vl_cfg_vis_head_dim(const vl_cfg_src *s, vl_config *c, const char *width_key);
/* The merger's width v_out (vision_config[key], default def) must be the decoder hidden. */
int vl_cfg_vis_out(const vl_cfg_src *s, const vl_config *c, const char *key, int def);
/* v_rope_theta: vision_config.rope_parameters.rope_theta or .rope_theta; default 10000. */
int vl_cfg_vis_rope_theta(const vl_cfg_src *s, vl_config *c);

#endif
