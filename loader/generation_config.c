/* generation_config.c: a checkpoint's generation_config.json -> vl_generation_config.
 *
 * transformers' generate starts from this file when a model is loaded with from_pretrained, so
 * its repetition_penalty (1.05 for the Qwen2-VL Instruct models) and its eos_token_id list
 * ([151645, 151643]: <|im_end|>, <|endoftext|>) decide what a user of transformers gets. The
 * file is optional; when present it is parsed strictly (vl_json_parse) and every value vlrun
 * reads is checked the way transformers' processors would take it: repetition_penalty a finite
 * number > 0 (RepetitionPenaltyLogitsProcessor), eos_token_id an integer or a list of integers
 * inside the vocabulary, temperature a finite number >= 0, top_k an integer >= 0, top_p in
 * [0, 1], do_sample a boolean. "key": null means "not set", as in transformers' saved files.
 * Leaves out: every other key (bos/pad ids, max_length, transformers_version...), which vlrun
 * does not use; temperature, top_k, top_p and do_sample are validated but not applied (the
 * command line decides sampling). */
#include "loader/loader.h"

#include <cJSON.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define GEN_MAX_FILE (1u << 20)

void vl_generation_config_default(vl_generation_config *g) {
    memset(g, 0, sizeof *g);
    g->repetition_penalty = 1.0f;
    g->temperature = 1.0f;
    g->top_k = 50; /* transformers' GenerationConfig defaults */
    g->top_p = 1.0f;
}

static const cJSON *gen_item(const cJSON *root, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsNull(j) ? NULL : j;
}

/* A JSON number that is a whole value in [lo, hi]. */
static int is_int_in(const cJSON *j, double lo, double hi) {
    return cJSON_IsNumber(j) && j->valuedouble == floor(j->valuedouble) && j->valuedouble >= lo &&
           j->valuedouble <= hi;
}

/* A finite number in [lo, hi] (lo_open: > lo) into *out; `want` says so in the message. */
static int gen_number(const char *path, const cJSON *root, const char *key, double lo, int lo_open,
                      double hi, const char *want, float *out) {
    const cJSON *j = gen_item(root, key);
    if (!j) return 0;
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
        return vl_error_set("%s: \"%s\" must be %s; fix or delete the key", path, key, want);
    *out = (float)v;
    return 0;
}

static int gen_eos(const char *path, const cJSON *root, int vocab, vl_generation_config *g) {
    const cJSON *j = gen_item(root, "eos_token_id");
    if (!j) return 0;
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 1;
    if (n > VL_GEN_MAX_EOS)
        return vl_error_set("%s: \"eos_token_id\" lists %d ids; vlrun takes at most %d", path, n,
                            VL_GEN_MAX_EOS);
    const cJSON *it = cJSON_IsArray(j) ? j->child : j;
    for (int i = 0; i < n; i++, it = it->next) {
        if (!is_int_in(it, 0, (double)vocab - 1))
            return vl_error_set("%s: \"eos_token_id\" must be a token id or a list of token ids "
                                "in [0, %d) (the vocabulary of config.json)",
                                path, vocab);
        g->eos_ids[i] = (int32_t)it->valuedouble;
    }
    g->n_eos = n;
    return 0;
}

static int gen_fields(const char *path, const cJSON *root, int vocab, vl_generation_config *g) {
    if (!cJSON_IsObject(root)) return vl_error_set("%s: expected a JSON object", path);
    if (gen_number(path, root, "repetition_penalty", 0.0, 1, FLT_MAX, "a finite number > 0",
                   &g->repetition_penalty) ||
        gen_number(path, root, "temperature", 0.0, 0, FLT_MAX, "a finite number >= 0",
                   &g->temperature) ||
        gen_number(path, root, "top_p", 0.0, 0, 1.0, "a number in [0, 1]", &g->top_p) ||
        gen_eos(path, root, vocab, g))
        return -1;
    const cJSON *j = gen_item(root, "top_k");
    if (j && !is_int_in(j, 0, 2147483647.0))
        return vl_error_set("%s: \"top_k\" must be an integer >= 0; fix or delete the key", path);
    if (j) g->top_k = (int)j->valuedouble;
    j = gen_item(root, "do_sample");
    if (j && !cJSON_IsBool(j)) return vl_error_set("%s: \"do_sample\" must be true or false", path);
    if (j) g->do_sample = cJSON_IsTrue(j);
    return 0;
}

int vl_generation_config_parse(vl_generation_config *out, const char *text, size_t len,
                               const char *what, int vocab) {
    cJSON *root = NULL;
    if (vl_json_parse(text, len, what, &root) != 0) return -1;
    vl_generation_config g;
    vl_generation_config_default(&g);
    int rc = gen_fields(what, root, vocab, &g);
    cJSON_Delete(root);
    if (rc) return -1;
    g.present = 1;
    *out = g;
    return 0;
}

int vl_generation_config_load(vl_generation_config *out, const char *path, int vocab) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path, GEN_MAX_FILE, &text, &len) != 0) return -1; /* regular files only */
    int rc = vl_generation_config_parse(out, text, len, path, vocab);
    free(text);
    return rc;
}
