/* config.c: config.json -> vl_config and preprocessor_config.json -> vl_preproc_config.
 *
 * Two layouts of config.json exist for the same model:
 *   flat    (Qwen's published files, transformers 4.x): decoder keys at the top level,
 *           rope_theta + rope_scaling {"type"/"rope_type", ...} and a vision_config;
 *   nested  (transformers 5): decoder keys in text_config, rope_parameters in text_config and
 *           vision_config.
 * This file reads what every architecture shares (the decoder's sizes, norm, rotary base, tied
 * embeddings, special token ids) and picks the architecture from model_type through a small
 * table (cfg_archs); that architecture's reader (loader/config_<model_type>.c, through
 * config_internal.h) reads the keys that differ (Qwen2-VL: mrope_section, vision_config;
 * Qwen2.5-VL: the same M-RoPE and another vision_config).
 * A decoder key is looked up in text_config first, then at the top level. Values are checked
 * for range and for the divisibility the kernels rely on; a failure names the file and the key.
 * Both files are parsed strictly (vl_json_parse: no trailing text, NUL byte or repeated key).
 * The sizes that decide how large an image's pixel buffer gets are held to what the Qwen-VL
 * family uses: patch_size 14 (16 in newer Qwen-VL), temporal_patch_size 2, merge size 2, and
 * max_pixels at most 12845056 (16384 * 28 * 28, Qwen2-VL-7B-Instruct's value), so a small image
 * cannot become a pixel buffer of many GB. Special token ids must lie inside the vocabulary,
 * including the Qwen2-VL ids (151643...) a file gets when it leaves a key out.
 * Leaves out: other model types (refused, naming the known ones), rope
 * scaling other than M-RoPE, sliding-window attention (Qwen2-VL never enables it), video. */
#include "loader/config_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_FILE   (16u << 20)
#define CFG_MAX_POS    (1 << 24)
#define CFG_MAX_PIXELS 12845056LL /* 16384 * 28 * 28, the largest max_pixels of the family */

/* The vision sizes the Qwen-VL family uses; anything else is refused (see the top). */
const int vl_cfg_patch_sizes[2] = {14, 16};
const int vl_cfg_two[1] = {2};

const cJSON *vl_cfg_item(const cJSON *obj, const char *key) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j; /* "key": null means "not set" in saved configs */
}

/* A decoder key: text_config wins over the top level. *label gets the key as the user would
 * look for it in the file. */
const cJSON *vl_cfg_dec(const vl_cfg_src *s, const char *key, char *label, size_t cap) {
    const cJSON *j = vl_cfg_item(s->text, key);
    if (j) {
        snprintf(label, cap, "text_config.%s", key);
        return j;
    }
    snprintf(label, cap, "%s", key);
    return vl_cfg_item(s->root, key);
}

void vl_cfg_describe(const cJSON *j, char *buf, size_t cap) {
    if (cJSON_IsNumber(j))
        snprintf(buf, cap, "%.17g", j->valuedouble);
    else if (cJSON_IsString(j))
        snprintf(buf, cap, "\"%.60s\"", j->valuestring);
    else if (cJSON_IsBool(j))
        snprintf(buf, cap, "%s", cJSON_IsTrue(j) ? "true" : "false");
    else if (cJSON_IsArray(j))
        snprintf(buf, cap, "a list");
    else if (cJSON_IsObject(j))
        snprintf(buf, cap, "an object");
    else
        snprintf(buf, cap, "nothing");
}

/* An integer in [lo, hi]; absent -> def. */
int vl_cfg_int_of(const char *name, const char *label, const cJSON *j, long long def, long long lo,
                  long long hi, long long *out) {
    if (!j) {
        *out = def;
        return 0;
    }
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi) {
        char got[96];
        vl_cfg_describe(j, got, sizeof got);
        return vl_error_set("%s: \"%s\" must be an integer in [%lld, %lld], got %s", name, label,
                            lo, hi, got);
    }
    *out = (long long)v;
    return 0;
}

/* An integer from allowed[0..n) (listed in the message); absent -> def. */
int vl_cfg_int_choice(const char *name, const char *label, const cJSON *j, int def,
                      const int *allowed, int n, const char *why, int *out) {
    if (!j) {
        *out = def;
        return 0;
    }
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    for (int k = 0; k < n; k++) {
        if (v == (double)allowed[k]) {
            *out = allowed[k];
            return 0;
        }
    }
    char got[96], list[64] = "";
    vl_cfg_describe(j, got, sizeof got);
    for (int k = 0, len = 0; k < n && len < (int)sizeof list; k++)
        len += snprintf(list + len, sizeof list - (size_t)len, "%s%d",
                        k == 0       ? ""
                        : k == n - 1 ? " or "
                                     : ", ",
                        allowed[k]);
    return vl_error_set("%s: \"%s\" must be %s (%s), got %s", name, label, list, why, got);
}

static int cfg_dec_int(const vl_cfg_src *s, const char *key, int required, int def, int lo, int hi,
                       int *out) {
    char label[96];
    const cJSON *j = vl_cfg_dec(s, key, label, sizeof label);
    if (!j && required)
        return vl_error_set("%s: required key \"%s\" is missing (expected in text_config or at "
                            "the top level); is this a Qwen2-VL config.json?",
                            s->name, key);
    long long v = 0;
    if (vl_cfg_int_of(s->name, label, j, def, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

/* A finite number in (lo, hi]; absent -> def. The test is made on the float the engine keeps:
 * 1e-96 is above 0 as a double but 0 as a float. */
int vl_cfg_float_of(const char *name, const char *label, const cJSON *j, double def, double lo,
                    double hi, float *out) {
    double v = def;
    if (j) {
        v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
        if (!isfinite(v) || !((float)v > lo) || v > hi) {
            char got[96];
            vl_cfg_describe(j, got, sizeof got);
            return vl_error_set("%s: \"%s\" must be a number in (%g, %g], got %s", name, label, lo,
                                hi, got);
        }
    }
    *out = (float)v;
    return 0;
}

/* rope_scaling / rope_parameters may only describe plain or multimodal rotary embeddings. */
static int cfg_check_rope_kind(const vl_cfg_src *s, const cJSON *obj, const char *label) {
    static const char *const keys[] = {"type", "rope_type"};
    for (int k = 0; k < 2; k++) {
        const cJSON *j = vl_cfg_item(obj, keys[k]);
        if (!j) continue;
        if (!cJSON_IsString(j) ||
            (strcmp(j->valuestring, "mrope") != 0 && strcmp(j->valuestring, "default") != 0)) {
            char got[96];
            vl_cfg_describe(j, got, sizeof got);
            return vl_error_set("%s: \"%s.%s\" is %s; only M-RoPE (\"mrope\" or \"default\") is "
                                "supported",
                                s->name, label, keys[k], got);
        }
    }
    return 0;
}

static int cfg_decoder(const vl_cfg_src *s, vl_config *c) {
    char label[128];
    if (cfg_dec_int(s, "hidden_size", 1, 0, 1, CFG_MAX_SIZE, &c->hidden) ||
        cfg_dec_int(s, "intermediate_size", 1, 0, 1, CFG_MAX_SIZE, &c->intermediate) ||
        cfg_dec_int(s, "num_hidden_layers", 1, 0, 1, CFG_MAX_SIZE, &c->n_layers) ||
        cfg_dec_int(s, "num_attention_heads", 1, 0, 1, CFG_MAX_SIZE, &c->n_heads) ||
        cfg_dec_int(s, "vocab_size", 1, 0, 1, CFG_MAX_SIZE, &c->vocab) ||
        cfg_dec_int(s, "num_key_value_heads", 0, c->n_heads, 1, CFG_MAX_SIZE, &c->n_kv_heads) ||
        cfg_dec_int(s, "max_position_embeddings", 0, 32768, 1, CFG_MAX_POS, &c->max_positions))
        return -1;
    if (c->n_heads % c->n_kv_heads != 0)
        return vl_error_set("%s: num_attention_heads (%d) must be a multiple of "
                            "num_key_value_heads (%d)",
                            s->name, c->n_heads, c->n_kv_heads);
    if (vl_cfg_item(s->text, "head_dim") || vl_cfg_item(s->root, "head_dim")) {
        if (cfg_dec_int(s, "head_dim", 1, 0, 2, CFG_MAX_SIZE, &c->head_dim)) return -1;
    } else {
        if (c->hidden % c->n_heads != 0)
            return vl_error_set("%s: hidden_size (%d) must be a multiple of num_attention_heads "
                                "(%d)",
                                s->name, c->hidden, c->n_heads);
        c->head_dim = c->hidden / c->n_heads;
    }

    const cJSON *j = vl_cfg_dec(s, "rms_norm_eps", label, sizeof label);
    if (vl_cfg_float_of(s->name, label, j, 1e-6, 0.0, 0.1, &c->rms_eps)) return -1;

    const cJSON *tie = vl_cfg_dec(s, "tie_word_embeddings", label, sizeof label);
    if (tie && !cJSON_IsBool(tie))
        return vl_error_set("%s: \"%s\" must be true or false", s->name, label);
    c->tie_embeddings = tie ? cJSON_IsTrue(tie) : 0;

    /* rotary: transformers 5 writes rope_parameters, 4.x rope_theta + rope_scaling */
    char rp_label[64], rs_label[64];
    const cJSON *rp = vl_cfg_dec(s, "rope_parameters", rp_label, sizeof rp_label);
    const cJSON *rs = vl_cfg_dec(s, "rope_scaling", rs_label, sizeof rs_label);
    if (rp && !cJSON_IsObject(rp))
        return vl_error_set("%s: \"%s\" must be an object", s->name, rp_label);
    if (rs && !cJSON_IsObject(rs))
        return vl_error_set("%s: \"%s\" must be an object", s->name, rs_label);
    if (cfg_check_rope_kind(s, rp, rp_label) || cfg_check_rope_kind(s, rs, rs_label)) return -1;
    j = vl_cfg_item(rp, "rope_theta");
    if (j)
        snprintf(label, sizeof label, "%s.rope_theta", rp_label);
    else
        j = vl_cfg_dec(s, "rope_theta", label, sizeof label);
    if (vl_cfg_float_of(s->name, label, j, 1e6, 0.0, 1e12, &c->rope_theta)) return -1;

    return 0;
}

/* Special token ids, each inside the vocabulary; eos_token_id may be a list (the first ends a
 * turn; all must be ids). A key the file leaves out gets Qwen2-VL's id, which a small
 * vocabulary does not hold: refused here rather than when a prompt or the sampler meets it. */
static int cfg_token(const vl_cfg_src *s, const vl_config *c, const char *key, int def, int *out) {
    char label[96], item[112];
    const cJSON *j = vl_cfg_dec(s, key, label, sizeof label);
    if (!j) {
        if (def >= c->vocab)
            return vl_error_set("%s: \"%s\" is not set, and its Qwen2-VL default %d is not "
                                "below vocab_size %d; set it in the file",
                                s->name, key, def, c->vocab);
        *out = def;
        return 0;
    }
    long long v = 0;
    if (cJSON_IsArray(j) && !j->child)
        return vl_error_set("%s: \"%s\" is an empty list", s->name, label);
    if (!cJSON_IsArray(j)) {
        if (vl_cfg_int_of(s->name, label, j, def, 0, (long long)c->vocab - 1, &v)) return -1;
        *out = (int)v;
        return 0;
    }
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) { /* linear: no GetArrayItem(k) */
        snprintf(item, sizeof item, "%s[%d]", label, k);
        long long id = 0;
        if (vl_cfg_int_of(s->name, item, e, 0, 0, (long long)c->vocab - 1, &id)) return -1;
        if (k == 0) v = id;
    }
    *out = (int)v;
    return 0;
}

/* The architectures config.json may name (model_type), each with the reader of its own keys
 * (loader/config_<model_type>.c). A file without model_type is the first one's. */
static const vl_cfg_arch cfg_archs[] = {
    {"qwen2_vl", "Qwen2-VL", vl_cfg_read_qwen2_vl},
    {"qwen2_5_vl", "Qwen2.5-VL", vl_cfg_read_qwen2_5_vl},
};
#define CFG_N_ARCHS ((int)(sizeof cfg_archs / sizeof cfg_archs[0]))

/* The row of the file's model_type; NULL with the error set (naming the known ones). */
static const vl_cfg_arch *cfg_arch_of(const vl_cfg_src *s) {
    const cJSON *mt = vl_cfg_item(s->root, "model_type");
    if (!mt) return &cfg_archs[0];
    for (int k = 0; cJSON_IsString(mt) && k < CFG_N_ARCHS; k++)
        if (strcmp(mt->valuestring, cfg_archs[k].model_type) == 0) return &cfg_archs[k];
    char got[96], known[256] = "";
    vl_cfg_describe(mt, got, sizeof got);
    for (int k = 0, len = 0; k < CFG_N_ARCHS && len < (int)sizeof known; k++)
        len += snprintf(known + len, sizeof known - (size_t)len, "%s%s (\"%s\")", k ? ", " : "",
                        cfg_archs[k].name, cfg_archs[k].model_type);
    vl_error_set("%s: model_type is %s; vlrun runs %s only", s->name, got, known);
    return NULL;
}

/* config.json text[0, len) -> *out (untouched on failure). */
static int cfg_parse(vl_config *out, const char *text, size_t len, const char *name) {
    cJSON *root = NULL;
    if (vl_json_parse(text, len, name, &root) != 0) return -1;
    vl_config c;
    memset(&c, 0, sizeof c);
    vl_cfg_src s = {name, root, NULL, NULL};
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = vl_error_set("%s: expected a JSON object", name);
        goto done;
    }
    const vl_cfg_arch *arch = cfg_arch_of(&s);
    if (!arch) {
        rc = -1;
        goto done;
    }
    snprintf(c.model_type, sizeof c.model_type, "%s", arch->model_type);
    s.text = vl_cfg_item(root, "text_config");
    s.vision = vl_cfg_item(root, "vision_config");
    if (s.text && !cJSON_IsObject(s.text)) {
        rc = vl_error_set("%s: \"text_config\" must be an object", name);
        goto done;
    }
    if ((rc = cfg_decoder(&s, &c)) != 0 || (rc = arch->read(&s, &c)) != 0) goto done;
    /* Qwen2-VL's ids when a file leaves them out */
    if ((rc = cfg_token(&s, &c, "image_token_id", 151655, &c.image_id)) ||
        (rc = cfg_token(&s, &c, "video_token_id", 151656, &c.video_id)) ||
        (rc = cfg_token(&s, &c, "vision_start_token_id", 151652, &c.vision_start_id)) ||
        (rc = cfg_token(&s, &c, "vision_end_token_id", 151653, &c.vision_end_id)) ||
        (rc = cfg_token(&s, &c, "vision_token_id", 151654, &c.vision_pad_id)) ||
        (rc = cfg_token(&s, &c, "bos_token_id", 151643, &c.bos_id)) ||
        (rc = cfg_token(&s, &c, "eos_token_id", 151645, &c.eos_id)))
        goto done;
    *out = c;
done:
    cJSON_Delete(root);
    return rc;
}

int vl_config_parse(vl_config *out, const char *json_text, const char *name) {
    return cfg_parse(out, json_text, strlen(json_text), name);
}

int vl_config_load(vl_config *c, const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path, CFG_MAX_FILE, &text, &len) != 0) return -1; /* regular files only */
    int rc = cfg_parse(c, text, len, path); /* the file's length: a NUL inside is refused */
    free(text);
    return rc;
}

/* ---- preprocessor_config.json ---------------------------------------------------------- */

void vl_preproc_config_default(vl_preproc_config *p) {
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}; /* OpenAI CLIP */
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memset(p, 0, sizeof *p);
    p->min_pixels = 3136;     /* 4 * 28^2 */
    p->max_pixels = 12845056; /* 16384 * 28^2, the 7B-Instruct file (class default: 1003520) */
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
    p->patch = 14;
    p->temporal_patch = 2;
    p->merge = 2;
}

/* A pixel count: a positive integer up to CFG_MAX_PIXELS. obj.a, else obj.b (the transformers-5
 * spelling), else unchanged. */
static int pp_pixels(const char *path, const cJSON *obj, const char *prefix, const char *a,
                     const char *b, int64_t *out) {
    const char *key = a;
    const cJSON *j = vl_cfg_item(obj, a);
    if (!j && b) j = vl_cfg_item(obj, key = b);
    if (!j) return 0;
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!isfinite(v) || v != floor(v) || v < 1 || v > (double)CFG_MAX_PIXELS) {
        char got[96];
        vl_cfg_describe(j, got, sizeof got);
        return vl_error_set("%s: \"%s%s\" must be an integer in [1, %lld] (16384 * 28 * 28, the "
                            "largest the Qwen2-VL family uses), got %s",
                            path, prefix, key, CFG_MAX_PIXELS, got);
    }
    *out = (int64_t)v;
    return 0;
}

static int pp_triple(const char *path, const cJSON *root, const char *key, int positive,
                     float out[3]) {
    const cJSON *j = vl_cfg_item(root, key);
    if (!j) return 0;
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 3)
        return vl_error_set("%s: \"%s\" must be a list of 3 numbers (R, G, B)", path, key);
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetArrayItem(j, k);
        /* a std below 1e-3 (the family's are about 0.27) would turn pixels into infinities */
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
            (positive && !(v->valuedouble >= 1e-3)) || fabs(v->valuedouble) > 1e6)
            return vl_error_set("%s: \"%s\"[%d] must be a number %s", path, key, k,
                                positive ? "in [0.001, 1e6]" : "in [-1e6, 1e6]");
        out[k] = (float)v->valuedouble;
    }
    return 0;
}

/* Options vl_preproc_config cannot express must keep the values the pipeline implements. */
static int pp_check_fixed(const char *path, const cJSON *root) {
    static const char *const on[] = {"do_resize", "do_rescale", "do_normalize"};
    for (int k = 0; k < 3; k++) {
        const cJSON *j = vl_cfg_item(root, on[k]);
        if (j && !cJSON_IsTrue(j))
            return vl_error_set("%s: \"%s\" must be true (vlrun always does it)", path, on[k]);
    }
    const cJSON *j = vl_cfg_item(root, "resample");
    if (j && !(cJSON_IsNumber(j) && j->valuedouble == 3))
        return vl_error_set("%s: \"resample\" must be 3 (bicubic, the only filter vlrun has)",
                            path);
    j = vl_cfg_item(root, "rescale_factor");
    if (j && !(cJSON_IsNumber(j) && fabs(j->valuedouble * 255.0 - 1.0) < 1e-6))
        return vl_error_set("%s: \"rescale_factor\" must be 1/255 (0.00392156862745098)", path);
    return 0;
}

/* patch_size, temporal_patch_size, merge_size: the family's values only (see the top). */
static int pp_sizes(const char *path, const cJSON *root, vl_preproc_config *p) {
    static const char why[] = "the values of the Qwen-VL family";
    return vl_cfg_int_choice(path, "patch_size", vl_cfg_item(root, "patch_size"), p->patch,
                             vl_cfg_patch_sizes, 2, why, &p->patch) ||
           vl_cfg_int_choice(path, "temporal_patch_size", vl_cfg_item(root, "temporal_patch_size"),
                             p->temporal_patch, vl_cfg_two, 1, why, &p->temporal_patch) ||
           vl_cfg_int_choice(path, "merge_size", vl_cfg_item(root, "merge_size"), p->merge,
                             vl_cfg_two, 1, why, &p->merge);
}

int vl_preproc_config_load(vl_preproc_config *out, const char *path) {
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    if (vl_read_file(path, CFG_MAX_FILE, &text, &len) != 0) return -1; /* regular files only */
    int rc = vl_json_parse(text, len, path, &root);
    free(text);
    if (rc != 0) return -1;
    vl_preproc_config p;
    vl_preproc_config_default(&p);
    if (!cJSON_IsObject(root)) {
        rc = vl_error_set("%s: expected a JSON object", path);
        goto done;
    }
    /* transformers 5 writes size {shortest_edge, longest_edge}; explicit min/max_pixels at
     * the top level override it, as in the image processor */
    const cJSON *size = vl_cfg_item(root, "size");
    if (size && !cJSON_IsObject(size)) {
        rc = vl_error_set("%s: \"size\" must be an object", path);
        goto done;
    }
    if ((rc = pp_pixels(path, size, "size.", "min_pixels", "shortest_edge", &p.min_pixels)) ||
        (rc = pp_pixels(path, size, "size.", "max_pixels", "longest_edge", &p.max_pixels)) ||
        (rc = pp_pixels(path, root, "", "min_pixels", NULL, &p.min_pixels)) ||
        (rc = pp_pixels(path, root, "", "max_pixels", NULL, &p.max_pixels)) ||
        (rc = pp_triple(path, root, "image_mean", 0, p.mean)) ||
        (rc = pp_triple(path, root, "image_std", 1, p.std)) || (rc = pp_check_fixed(path, root)) ||
        (rc = pp_sizes(path, root, &p)))
        goto done;
    if (p.min_pixels > p.max_pixels) {
        rc = vl_error_set("%s: min_pixels (%lld) is larger than max_pixels (%lld); expected "
                          "min_pixels <= max_pixels",
                          path, (long long)p.min_pixels, (long long)p.max_pixels);
        goto done;
    }
    *out = p;
done:
    cJSON_Delete(root);
    return rc;
}

int vl_preproc_config_check(const vl_preproc_config *p, const vl_config *c, const char *path) {
    static const char *const keys[3][2] = {{"patch_size", "patch_size"},
                                           {"temporal_patch_size", "temporal_patch_size"},
                                           {"merge_size", "spatial_merge_size"}};
    const int pre[3] = {p->patch, p->temporal_patch, p->merge};
    const int model[3] = {c->patch, c->temporal_patch, c->merge};
    for (int k = 0; k < 3; k++)
        if (pre[k] != model[k])
            return vl_error_set("%s: %s is %d but config.json's vision_config.%s is %d; the "
                                "image processor and the vision tower must agree (the pixels "
                                "would not fit the patch embedding or the merger): fix one file",
                                path, keys[k][0], pre[k], keys[k][1], model[k]);
    return 0;
}
