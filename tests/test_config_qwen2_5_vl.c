/* test_config_qwen2_5_vl.c: Qwen2.5-VL's config.json (loader/config_qwen2_5_vl.c).
 *
 * A flat config (the published layout: vision hidden_size / out_hidden_size / in_chans,
 * rope_scaling with mrope_section) and a nested one (transformers 5: text_config,
 * rope_parameters, in_channels) with values that differ from every default parse to the values
 * written here; a vision_config left empty takes Qwen2_5_VLVisionConfig's class defaults
 * (transformers); then a table of damaged vision_configs, each of which must fail naming the
 * file and the key and leave the output untouched.
 * The four published configs in examples/ parse to the model cards' sizes, and every
 * .json file in examples/ parses.
 * Leaves out: the decoder keys shared with Qwen2-VL (tests/test_config.c). */
#include "loader/loader.h"
#include "vltest.h"

#include <cJSON.h>

#include <dirent.h>

/* decoder hidden 128 (head dim 32 = 2 * (4 + 6 + 6)); vision width 96 with 3 heads (head dim
 * 32), MLP 200, windows of 56 pixels, full attention in blocks 0 and 3 of 4. */
static const char flat_text[] =
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\","
    " \"hidden_act\": \"silu\", \"hidden_size\": 128, \"intermediate_size\": 256,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"vocab_size\": 4096, \"rms_norm_eps\": 1e-06, \"max_position_embeddings\": 128000,"
    " \"rope_theta\": 1000000.0, \"sliding_window\": 32768, \"use_sliding_window\": false,"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [4, 6, 6]},"
    " \"tie_word_embeddings\": true, \"bos_token_id\": 4064, \"eos_token_id\": 4066,"
    " \"vision_start_token_id\": 4073, \"vision_end_token_id\": 4074, \"vision_token_id\": 4075,"
    " \"image_token_id\": 4076, \"video_token_id\": 4077,"
    " \"vision_config\": {\"depth\": 4, \"hidden_act\": \"silu\", \"hidden_size\": 96,"
    " \"intermediate_size\": 200, \"num_heads\": 3, \"in_chans\": 3, \"out_hidden_size\": 128,"
    " \"patch_size\": 14, \"spatial_merge_size\": 2, \"spatial_patch_size\": 14,"
    " \"window_size\": 56, \"fullatt_block_indexes\": [0, 3], \"tokens_per_second\": 2,"
    " \"temporal_patch_size\": 2}}";

/* transformers 5: decoder keys in text_config; the vision rotary base given explicitly. */
static const char nested_text[] =
    "{\"model_type\": \"qwen2_5_vl\", \"image_token_id\": 4076, \"video_token_id\": 4077,"
    " \"vision_start_token_id\": 4073, \"vision_end_token_id\": 4074,"
    " \"text_config\": {\"model_type\": \"qwen2_5_vl_text\", \"hidden_size\": 160,"
    " \"intermediate_size\": 320, \"num_hidden_layers\": 3, \"num_attention_heads\": 5,"
    " \"num_key_value_heads\": 1, \"vocab_size\": 4096, \"rms_norm_eps\": 1e-05,"
    " \"max_position_embeddings\": 4096, \"tie_word_embeddings\": false,"
    " \"bos_token_id\": 4064, \"eos_token_id\": [4066, 4064], \"vision_token_id\": 4075,"
    " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0,"
    " \"mrope_section\": [2, 7, 7]}},"
    " \"vision_config\": {\"model_type\": \"qwen2_5_vl\", \"depth\": 3, \"hidden_size\": 48,"
    " \"num_heads\": 2, \"intermediate_size\": 72, \"in_channels\": 3, \"out_hidden_size\": 160,"
    " \"window_size\": 28, \"fullatt_block_indexes\": [], \"rope_theta\": 20000.0,"
    " \"tokens_per_second\": 4, \"initializer_range\": 0.02}}";

/* What a config must parse to (the fields this architecture sets). */
typedef struct {
    const char *what;
    int hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    float rope_theta, rms_eps;
    int mrope[3], max_positions, tie;
    int v_depth, v_embed, v_heads, v_head_dim, v_mlp, v_out, in_channels;
    float v_rope_theta;
    int v_window, v_n_fullatt, v_fullatt[4];
    int ids[7]; /* bos, eos, vision start, end, pad, image, video */
} want_cfg;

#define CHECK_FIELD(got, want)                                                                     \
    VT_CHECKF((got) == (want), "%s: %s is %g, expected %g", w->what, #got, (double)(got),          \
              (double)(want))

static void check_cfg(const vl_config *c, const want_cfg *w) {
    VT_CHECKF(strcmp(c->model_type, "qwen2_5_vl") == 0, "%s: %s", w->what, c->model_type);
    CHECK_FIELD(c->hidden, w->hidden);
    CHECK_FIELD(c->intermediate, w->intermediate);
    CHECK_FIELD(c->n_layers, w->n_layers);
    CHECK_FIELD(c->n_heads, w->n_heads);
    CHECK_FIELD(c->n_kv_heads, w->n_kv_heads);
    CHECK_FIELD(c->head_dim, w->head_dim);
    CHECK_FIELD(c->vocab, w->vocab);
    CHECK_FIELD(c->rope_theta, w->rope_theta);
    CHECK_FIELD(c->rms_eps, w->rms_eps);
    for (int k = 0; k < 3; k++) CHECK_FIELD(c->mrope_section[k], w->mrope[k]);
    CHECK_FIELD(c->max_positions, w->max_positions);
    CHECK_FIELD(c->tie_embeddings, w->tie);
    CHECK_FIELD(c->v_depth, w->v_depth);
    CHECK_FIELD(c->v_embed, w->v_embed);
    CHECK_FIELD(c->v_heads, w->v_heads);
    CHECK_FIELD(c->v_head_dim, w->v_head_dim);
    CHECK_FIELD(c->v_mlp, w->v_mlp);
    CHECK_FIELD(c->v_out, w->v_out);
    CHECK_FIELD(c->patch, 14);
    CHECK_FIELD(c->temporal_patch, 2);
    CHECK_FIELD(c->merge, 2);
    CHECK_FIELD(c->in_channels, w->in_channels);
    CHECK_FIELD(c->v_rope_theta, w->v_rope_theta);
    CHECK_FIELD(c->v_act_quick_gelu, 0);
    CHECK_FIELD(c->v_window, w->v_window);
    CHECK_FIELD(c->v_n_fullatt, w->v_n_fullatt);
    for (int k = 0; k < w->v_n_fullatt && k < 4; k++) CHECK_FIELD(c->v_fullatt[k], w->v_fullatt[k]);
    const int got_ids[7] = {c->bos_id,        c->eos_id,   c->vision_start_id, c->vision_end_id,
                            c->vision_pad_id, c->image_id, c->video_id};
    for (int k = 0; k < 7; k++) CHECK_FIELD(got_ids[k], w->ids[k]);
}

#define TINY_IDS                                                                                   \
    { 4064, 4066, 4073, 4074, 4075, 4076, 4077 }

static void test_layouts(void) {
    static const want_cfg flat = {"flat", 128,       256,      2,  4, 2,      32,      4096, 1e6f,
                                  1e-6f,  {4, 6, 6}, 128000,   1,  4, 96,     3,       32,   200,
                                  128,    3,         10000.0f, 56, 2, {0, 3}, TINY_IDS};
    static const want_cfg nested = {
        "nested", 160, 320, 3,  5,  1,   32, 4096,     500000.0f, 1e-5f, {2, 7, 7}, 4096,    0,
        3,        48,  2,   24, 72, 160, 3,  20000.0f, 28,        0,     {0},       TINY_IDS};
    vl_config c;
    VT_CHECKF(vl_config_parse(&c, flat_text, "flat/config.json") == 0, "%s", vl_error_get());
    check_cfg(&c, &flat);
    VT_CHECKF(vl_config_parse(&c, nested_text, "nested/config.json") == 0, "%s", vl_error_get());
    check_cfg(&c, &nested);
}

/* The published config.json of each size (examples/): the decoder of the model card, the same
 * tower (1280 wide, 32 blocks of 16 heads, windows of 112 pixels, full attention in blocks 7,
 * 15, 23 and 31) whose SwiGLU width is 3420 for 3B/7B and 3456 for 32B/72B, and a merger
 * that outputs the decoder width. The 32B file leaves the tower's defaults out. */
#define PUBLISHED(what, hidden, inter, layers, heads, kv, vocab, tie, v_mlp)                       \
    {                                                                                              \
        what, hidden, inter, layers, heads, kv, 128, vocab, 1e6f, 1e-6f, {16, 24, 24}, 128000,     \
            tie, 32, 1280, 16, 80, v_mlp, hidden, 3, 10000.0f, 112, 4, {7, 15, 23, 31}, {          \
            151643, 151645, 151652, 151653, 151654, 151655, 151656                                 \
        }                                                                                          \
    }

static void test_published(void) {
    static const want_cfg sizes[] = {
        PUBLISHED("qwen2.5-vl-3b-instruct.json", 2048, 11008, 36, 16, 2, 151936, 1, 3420),
        PUBLISHED("qwen2.5-vl-7b-instruct.json", 3584, 18944, 28, 28, 4, 152064, 0, 3420),
        PUBLISHED("qwen2.5-vl-32b-instruct.json", 5120, 27648, 64, 40, 8, 152064, 0, 3456),
        PUBLISHED("qwen2.5-vl-72b-instruct.json", 8192, 29568, 80, 64, 8, 152064, 0, 3456),
    };
    for (int i = 0; i < 4; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "../../examples/%s", sizes[i].what);
        vl_config c;
        VT_CHECKF(vl_config_load(&c, vt_fixture(rel)) == 0, "%s", vl_error_get());
        check_cfg(&c, &sizes[i]);
    }
}

/* Every .json file in examples/ parses (the Qwen2-VL ones as qwen2_vl). */
static void test_all_examples(void) {
    const char *dir = vt_fixture("../../examples");
    DIR *d = opendir(dir);
    VT_CHECKF(d != NULL, "cannot open %s", dir);
    int n = 0, n25 = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        vl_config c;
        VT_CHECKF(vl_config_load(&c, path) == 0, "%s", vl_error_get());
        int is25 = strncmp(e->d_name, "qwen2.5-vl-", 11) == 0;
        VT_CHECKF(strcmp(c.model_type, is25 ? "qwen2_5_vl" : "qwen2_vl") == 0, "%s: %s", e->d_name,
                  c.model_type);
        n++, n25 += is25;
    }
    if (d) closedir(d);
    VT_CHECK(n >= 6);
    VT_CHECK_INT(n25, 4);
}

/* flat_text with vision_config replaced by `vision` (JSON text) and the decoder width set. */
static int parse_with_vision(const char *vision, int hidden, vl_config *c) {
    cJSON *doc = cJSON_Parse(flat_text);
    cJSON *v = cJSON_Parse(vision);
    if (!doc || !v) exit(2);
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "vision_config", v);
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "hidden_size", cJSON_CreateNumber(hidden));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "num_attention_heads",
                                           cJSON_CreateNumber(hidden / 32));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "num_key_value_heads", cJSON_CreateNumber(1));
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    vl_error_clear();
    int rc = vl_config_parse(c, text, "edited/config.json");
    free(text);
    return rc;
}

/* A vision_config that sets nothing but the merger width: Qwen2_5_VLVisionConfig's defaults. */
static void test_defaults(void) {
    vl_config c;
    VT_CHECKF(parse_with_vision("{\"in_chans\": 3}", 3584, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.v_depth, 32);
    VT_CHECK_INT(c.v_embed, 3584); /* the class default, not the published 1280 */
    VT_CHECK_INT(c.v_heads, 16);
    VT_CHECK_INT(c.v_head_dim, 224);
    VT_CHECK_INT(c.v_mlp, 3420);
    VT_CHECK_INT(c.v_out, 3584);
    VT_CHECK_INT(c.patch, 14);
    VT_CHECK_INT(c.temporal_patch, 2);
    VT_CHECK_INT(c.merge, 2);
    VT_CHECK_INT(c.in_channels, 3);
    VT_CHECK(c.v_rope_theta == 10000.0f);
    VT_CHECK_INT(c.v_act_quick_gelu, 0);
    VT_CHECK_INT(c.v_window, 112);
    VT_CHECK_INT(c.v_n_fullatt, 4);
    VT_CHECK(c.v_fullatt[0] == 7 && c.v_fullatt[1] == 15 && c.v_fullatt[2] == 23 &&
             c.v_fullatt[3] == 31);
    /* no vision_config at all: the same */
    memset(&c, 0, sizeof c);
    cJSON *doc = cJSON_Parse(flat_text);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "vision_config");
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "hidden_size", cJSON_CreateNumber(3584));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "num_attention_heads", cJSON_CreateNumber(112));
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    VT_CHECKF(vl_config_parse(&c, text, "bare/config.json") == 0, "%s", vl_error_get());
    free(text);
    VT_CHECK(c.v_depth == 32 && c.v_embed == 3584 && c.v_mlp == 3420 && c.v_window == 112);
    VT_CHECK(c.v_n_fullatt == 4 && c.v_fullatt[3] == 31);
    /* patch 16 and a window of whole merged tokens (32 pixels each) */
    VT_CHECKF(parse_with_vision("{\"depth\": 2, \"hidden_size\": 64, \"num_heads\": 2, "
                                "\"out_hidden_size\": 128, \"patch_size\": 16, \"window_size\": 64,"
                                " \"fullatt_block_indexes\": [1]}",
                                128, &c) == 0,
              "%s", vl_error_get());
    VT_CHECK(c.patch == 16 && c.v_window == 64 && c.v_n_fullatt == 1 && c.v_fullatt[0] == 1);
}

/* One damaged vision_config (on top of a valid 4-block tower of width 96) and what the message
 * must hold besides the file name. */
typedef struct {
    const char *vision_keys; /* JSON members added to the valid base */
    const char *needle[3];
} bad_vision;

static const bad_vision bad_visions[] = {
    {"\"out_hidden_size\": 3584", {"vision_config.out_hidden_size (3584", "hidden_size (128)"}},
    {"\"out_hidden_size\": null", {"vision_config.out_hidden_size", "default 3584, set it"}},
    {"\"window_size\": 100", {"\"vision_config.window_size\"", "100", "multiple of"}},
    {"\"window_size\": 0", {"\"vision_config.window_size\"", "got 0"}},
    {"\"window_size\": 112, \"patch_size\": 16", {"\"vision_config.window_size\"", "= 32"}},
    {"\"fullatt_block_indexes\": [0, 4]", {"fullatt_block_indexes[1]\"", "depth = 4"}},
    {"\"fullatt_block_indexes\": [3, 1]", {"fullatt_block_indexes[1]\"", "ascending"}},
    {"\"fullatt_block_indexes\": [2, 2]", {"fullatt_block_indexes[1]\"", "ascending"}},
    {"\"fullatt_block_indexes\": [-1]", {"fullatt_block_indexes[0]\"", "got -1"}},
    {"\"fullatt_block_indexes\": [1.5]", {"fullatt_block_indexes[0]\"", "1.5"}},
    {"\"fullatt_block_indexes\": 3", {"\"vision_config.fullatt_block_indexes\"", "a list"}},
    {"\"fullatt_block_indexes\": null",
     {"\"vision_config.fullatt_block_indexes\"", "not set", "[7, 15, 23, 31]"}},
    {"\"hidden_act\": \"gelu\"", {"\"vision_config.hidden_act\"", "\"gelu\"", "\"silu\""}},
    {"\"hidden_act\": \"quick_gelu\"", {"\"vision_config.hidden_act\"", "quick_gelu"}},
    {"\"hidden_act\": 1", {"\"vision_config.hidden_act\"", "is 1"}},
    {"\"hidden_size\": 100", {"vision_config.hidden_size (100)", "num_heads (3)"}},
    {"\"hidden_size\": 90", {"hidden_size / num_heads = 30", "multiple of 4"}},
    {"\"intermediate_size\": 0", {"\"vision_config.intermediate_size\"", "got 0"}},
    {"\"depth\": \"4\"", {"\"vision_config.depth\"", "\"4\""}},
    {"\"in_chans\": 4", {"\"vision_config.in_chans\"", "only RGB"}},
    {"\"spatial_merge_size\": 1", {"\"vision_config.spatial_merge_size\"", "got 1"}},
};

static void expect_bad_vision(const bad_vision *b) {
    char vision[512];
    /* the edit goes first; a base key it repeats is dropped (the parser refuses repeats) */
    snprintf(
        vision, sizeof vision,
        "{%s, \"depth\": 4, \"hidden_size\": 96, \"num_heads\": 3, \"intermediate_size\": "
        "200, \"out_hidden_size\": 128, \"window_size\": 56, \"fullatt_block_indexes\": [0, 3]}",
        b->vision_keys);
    cJSON *edit = cJSON_Parse(vision), *clean = cJSON_CreateObject();
    for (const cJSON *e = edit ? edit->child : NULL; e; e = e->next)
        if (!cJSON_GetObjectItemCaseSensitive(clean, e->string))
            cJSON_AddItemToObject(clean, e->string, cJSON_Duplicate(e, 1));
    char *text = cJSON_PrintUnformatted(clean);
    cJSON_Delete(edit);
    cJSON_Delete(clean);
    vl_config c;
    memset(&c, 0x5a, sizeof c);
    int rc = parse_with_vision(text, 128, &c);
    const char *msg = vl_error_get();
    VT_CHECKF(rc != 0, "%s: parsed but should not", text);
    VT_CHECKF(strstr(msg, "edited/config.json") != NULL, "%s: \"%s\" lacks the name", text, msg);
    for (int k = 0; k < 3 && b->needle[k]; k++)
        VT_CHECKF(strstr(msg, b->needle[k]) != NULL, "%s: \"%s\" lacks \"%s\"", text, msg,
                  b->needle[k]);
    VT_CHECKF(c.hidden == 0x5a5a5a5a && c.v_window == 0x5a5a5a5a, "%s: output modified", text);
    free(text);
}

/* A vision_config of 100 blocks listing blocks 0..n-1 for full attention. */
static void fullatt_list(int n, char *buf, size_t cap) {
    int len = snprintf(buf, cap,
                       "{\"depth\": 100, \"hidden_size\": 96, \"num_heads\": 3, "
                       "\"out_hidden_size\": 128, \"fullatt_block_indexes\": [0");
    for (int k = 1; k < n; k++) len += snprintf(buf + len, cap - (size_t)len, ", %d", k);
    snprintf(buf + len, cap - (size_t)len, "]}");
}

static void test_bad_vision(void) {
    for (size_t i = 0; i < sizeof bad_visions / sizeof bad_visions[0]; i++)
        expect_bad_vision(&bad_visions[i]);

    /* as many full-attention blocks as vl_config holds, then one more */
    vl_config c;
    char vision[1024];
    fullatt_list(VL_MAX_FULLATT, vision, sizeof vision);
    VT_CHECKF(parse_with_vision(vision, 128, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.v_n_fullatt, VL_MAX_FULLATT);
    VT_CHECK_INT(c.v_fullatt[VL_MAX_FULLATT - 1], VL_MAX_FULLATT - 1);
    fullatt_list(VL_MAX_FULLATT + 1, vision, sizeof vision);
    VT_CHECK(parse_with_vision(vision, 128, &c) != 0);
    VT_CHECKF(strstr(vl_error_get(), "edited/config.json") &&
                  strstr(vl_error_get(), "\"vision_config.fullatt_block_indexes\" lists more "
                                         "than 64"),
              "%s", vl_error_get());
}

/* The decoder's M-RoPE sections are read and checked as for Qwen2-VL. */
static void test_mrope(void) {
    static const char *const edits[][3] = {
        {"[2, 7, 8]", "mrope_section [2, 7, 8]", "head dim is 32"},
        {"[2, 7]", "\"text_config.rope_parameters.mrope_section\"", "3 integers"},
    };
    for (int i = 0; i < 2; i++) {
        char text[sizeof nested_text + 16];
        const char *at = strstr(nested_text, "[2, 7, 7]");
        int head = (int)(at - nested_text);
        snprintf(text, sizeof text, "%.*s%s%s", head, nested_text, edits[i][0], at + 9);
        vl_config c;
        vl_error_clear();
        VT_CHECK(vl_config_parse(&c, text, "edited/config.json") != 0);
        const char *msg = vl_error_get();
        VT_CHECKF(strstr(msg, "edited/config.json") && strstr(msg, edits[i][1]) &&
                      strstr(msg, edits[i][2]),
                  "%s", msg);
    }
}

int main(void) {
    test_layouts();
    test_published();
    test_all_examples();
    test_defaults();
    test_bad_vision();
    test_mrope();
    return vt_finish();
}
