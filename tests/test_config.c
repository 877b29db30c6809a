/* test_config.c: config.json and preprocessor_config.json parsing (loader/config.c).
 *
 * Checks the tiny transformers-5 fixture (nested layout), the published 7B and 2B configs in
 * examples/ (flat layout, vision values from the class defaults) against the values of the
 * spec and the model cards, the older full-vision_config layout, and a list of damaged configs
 * made by editing those files with cJSON: each must fail naming the key. Also: token ids
 * (given or defaulted) inside the vocabulary, the Qwen-VL family's vision sizes, strict JSON
 * (repeated keys, trailing text, NUL bytes), FIFOs refused without blocking (under a
 * watchdog). Preprocessor configs are written to a temporary directory: the caps on the sizes
 * that make the pixel buffer, and the agreement check with config.json.
 * Leaves out: configs of other model families beyond the model_type refusal. */
#include "loader/loader.h"
#include "vltest.h"
#include "vltest_fs.h"

#include <cJSON.h>

#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

static cJSON *load_json(const char *path) {
    char *text = NULL;
    if (vl_read_file(path, 1 << 20, &text, NULL) != 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, vl_error_get());
        exit(2);
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) exit(2);
    return j;
}

static const char *path_7b(void) {
    return vt_fixture("../../examples/qwen2-vl-7b-instruct.json");
}
static const char *path_2b(void) {
    return vt_fixture("../../examples/qwen2-vl-2b-instruct.json");
}
static const char *path_tiny(void) {
    return vt_fixture("tiny-qwen2vl/tiny-bf16/config.json");
}

/* vl_config_parse of an edited document. */
static int parse_doc(const cJSON *doc, vl_config *c) {
    char *text = cJSON_PrintUnformatted(doc);
    vl_error_clear();
    int rc = vl_config_parse(c, text, "edited/config.json");
    free(text);
    return rc;
}

static void set_num(cJSON *obj, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddNumberToObject(obj, key, v);
}

static cJSON *obj_of(cJSON *doc, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(doc, key);
}

static void check_special_ids(const vl_config *c, int bos, int eos, int vstart, int vend, int vpad,
                              int image, int video) {
    VT_CHECK_INT(c->bos_id, bos);
    VT_CHECK_INT(c->eos_id, eos);
    VT_CHECK_INT(c->vision_start_id, vstart);
    VT_CHECK_INT(c->vision_end_id, vend);
    VT_CHECK_INT(c->vision_pad_id, vpad);
    VT_CHECK_INT(c->image_id, image);
    VT_CHECK_INT(c->video_id, video);
}

/* The Qwen2VLVisionConfig defaults (transformers), shared by 7B and 2B. */
static void check_vision_defaults(const vl_config *c) {
    VT_CHECK_INT(c->v_depth, 32);
    VT_CHECK_INT(c->v_embed, 1280);
    VT_CHECK_INT(c->v_heads, 16);
    VT_CHECK_INT(c->v_head_dim, 80);
    VT_CHECK_INT(c->v_mlp, 5120);
    VT_CHECK_INT(c->patch, 14);
    VT_CHECK_INT(c->temporal_patch, 2);
    VT_CHECK_INT(c->merge, 2);
    VT_CHECK_INT(c->in_channels, 3);
    VT_CHECK(c->v_rope_theta == 10000.0f);
    VT_CHECK_INT(c->v_act_quick_gelu, 1);
}

static void check_7b(const vl_config *c) {
    VT_CHECK_INT(c->hidden, 3584);
    VT_CHECK_INT(c->intermediate, 18944);
    VT_CHECK_INT(c->n_layers, 28);
    VT_CHECK_INT(c->n_heads, 28);
    VT_CHECK_INT(c->n_kv_heads, 4);
    VT_CHECK_INT(c->head_dim, 128);
    VT_CHECK_INT(c->vocab, 152064);
    VT_CHECK(c->rope_theta == 1000000.0f);
    VT_CHECK(c->rms_eps == 1e-6f);
    VT_CHECK_INT(c->mrope_section[0], 16);
    VT_CHECK_INT(c->mrope_section[1], 24);
    VT_CHECK_INT(c->mrope_section[2], 24);
    VT_CHECK_INT(c->max_positions, 32768);
    VT_CHECK_INT(c->tie_embeddings, 0);
    check_vision_defaults(c);
    VT_CHECK_INT(c->v_out, 3584);
    check_special_ids(c, 151643, 151645, 151652, 151653, 151654, 151655, 151656);
}

static void test_published(void) {
    vl_config c;
    VT_CHECKF(vl_config_load(&c, path_7b()) == 0, "%s", vl_error_get());
    check_7b(&c);

    VT_CHECKF(vl_config_load(&c, path_2b()) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.hidden, 1536);
    VT_CHECK_INT(c.intermediate, 8960);
    VT_CHECK_INT(c.n_layers, 28);
    VT_CHECK_INT(c.n_heads, 12);
    VT_CHECK_INT(c.n_kv_heads, 2);
    VT_CHECK_INT(c.head_dim, 128);
    VT_CHECK_INT(c.vocab, 151936);
    VT_CHECK_INT(c.tie_embeddings, 1);
    VT_CHECK_INT(c.mrope_section[0] + c.mrope_section[1] + c.mrope_section[2], 64);
    check_vision_defaults(&c);
    VT_CHECK_INT(c.v_out, 1536);
    check_special_ids(&c, 151643, 151645, 151652, 151653, 151654, 151655, 151656);

    /* the initial-commit layout spells the vision tower out: same result */
    cJSON *doc = load_json(path_7b());
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "vision_config");
    cJSON *v = cJSON_AddObjectToObject(doc, "vision_config");
    set_num(v, "depth", 32);
    set_num(v, "embed_dim", 1280);
    set_num(v, "mlp_ratio", 4);
    set_num(v, "num_heads", 16);
    set_num(v, "in_chans", 3);
    set_num(v, "hidden_size", 3584);
    set_num(v, "patch_size", 14);
    set_num(v, "spatial_merge_size", 2);
    set_num(v, "spatial_patch_size", 14);
    set_num(v, "temporal_patch_size", 2);
    memset(&c, 0, sizeof c);
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    check_7b(&c);
    /* no vision_config at all: the class defaults */
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "vision_config");
    memset(&c, 0, sizeof c);
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    check_7b(&c);
    cJSON_Delete(doc);
}

static void test_tiny_nested(void) {
    vl_config c;
    VT_CHECKF(vl_config_load(&c, path_tiny()) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.hidden, 128);
    VT_CHECK_INT(c.intermediate, 256);
    VT_CHECK_INT(c.n_layers, 2);
    VT_CHECK_INT(c.n_heads, 4);
    VT_CHECK_INT(c.n_kv_heads, 2);
    VT_CHECK_INT(c.head_dim, 32);
    VT_CHECK_INT(c.vocab, 2048);
    VT_CHECK(c.rope_theta == 1000000.0f);
    VT_CHECK(c.rms_eps == 1e-6f);
    VT_CHECK_INT(c.mrope_section[0], 4);
    VT_CHECK_INT(c.mrope_section[1], 6);
    VT_CHECK_INT(c.mrope_section[2], 6);
    VT_CHECK_INT(c.max_positions, 32768);
    VT_CHECK_INT(c.tie_embeddings, 0);
    VT_CHECK_INT(c.v_depth, 2);
    VT_CHECK_INT(c.v_embed, 64);
    VT_CHECK_INT(c.v_heads, 4);
    VT_CHECK_INT(c.v_head_dim, 16);
    VT_CHECK_INT(c.v_mlp, 256);
    VT_CHECK_INT(c.v_out, 128);
    VT_CHECK_INT(c.patch, 14);
    VT_CHECK_INT(c.temporal_patch, 2);
    VT_CHECK_INT(c.merge, 2);
    VT_CHECK_INT(c.in_channels, 3);
    VT_CHECK(c.v_rope_theta == 10000.0f);
    VT_CHECK_INT(c.v_act_quick_gelu, 1);
    check_special_ids(&c, 2040, 2041, 2042, 2043, 2044, 2045, 2046);

    /* the quantized fixtures add a quantization_config the parser reads past */
    static const char *const quantized[] = {"tiny-qwen2vl/tiny-bnb-nf4/config.json",
                                            "tiny-qwen2vl/tiny-bnb-int8/config.json"};
    for (int i = 0; i < 2; i++) {
        vl_config q;
        VT_CHECKF(vl_config_load(&q, vt_fixture(quantized[i])) == 0, "%s", vl_error_get());
        VT_CHECK(q.hidden == 128 && q.n_layers == 2 && q.v_depth == 2 && q.image_id == 2045);
    }

    /* text_config wins over the top level; rope_parameters are read where TF5 puts them */
    cJSON *doc = load_json(path_tiny());
    cJSON *text = obj_of(doc, "text_config");
    set_num(doc, "hidden_size", 999);
    set_num(doc, "rope_theta", 1234);
    set_num(obj_of(text, "rope_parameters"), "rope_theta", 500000);
    set_num(obj_of(obj_of(doc, "vision_config"), "rope_parameters"), "rope_theta", 20000);
    cJSON *ms = obj_of(obj_of(text, "rope_parameters"), "mrope_section");
    cJSON_ReplaceItemInArray(ms, 0, cJSON_CreateNumber(2));
    cJSON_ReplaceItemInArray(ms, 1, cJSON_CreateNumber(8));
    cJSON_DeleteItemFromObjectCaseSensitive(text, "num_key_value_heads");
    cJSON *eos = cJSON_CreateArray();
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(2047));
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(2041));
    cJSON_ReplaceItemInObjectCaseSensitive(text, "eos_token_id", eos);
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.hidden, 128);
    VT_CHECK(c.rope_theta == 500000.0f);
    VT_CHECK(c.v_rope_theta == 20000.0f);
    VT_CHECK_INT(c.mrope_section[0], 2);
    VT_CHECK_INT(c.mrope_section[1], 8);
    VT_CHECK_INT(c.n_kv_heads, 4); /* defaults to the number of heads */
    VT_CHECK_INT(c.eos_id, 2047);
    /* exact gelu and a fractional mlp_ratio */
    cJSON *v = obj_of(doc, "vision_config");
    cJSON_ReplaceItemInObjectCaseSensitive(v, "hidden_act", cJSON_CreateString("gelu"));
    set_num(v, "mlp_ratio", 2.5);
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.v_act_quick_gelu, 0);
    VT_CHECK_INT(c.v_mlp, 160);
    cJSON_Delete(doc);
}

static void test_flat_variants(void) {
    vl_config c;
    cJSON *doc = load_json(path_7b());
    /* explicit values are read, not defaulted */
    static const char *const ids[] = {
        "bos_token_id",    "eos_token_id",   "vision_start_token_id", "vision_end_token_id",
        "vision_token_id", "image_token_id", "video_token_id"};
    for (int i = 0; i < 7; i++) set_num(doc, ids[i], 1000 + i);
    set_num(doc, "rope_theta", 2e6);
    set_num(doc, "rms_norm_eps", 1e-5);
    set_num(doc, "max_position_embeddings", 128000);
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "tie_word_embeddings", cJSON_CreateTrue());
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    check_special_ids(&c, 1000, 1001, 1002, 1003, 1004, 1005, 1006);
    VT_CHECK(c.rope_theta == 2e6f);
    VT_CHECK(c.rms_eps == 1e-5f);
    VT_CHECK_INT(c.max_positions, 128000);
    VT_CHECK_INT(c.tie_embeddings, 1);
    /* absent optional keys take the Qwen2-VL defaults */
    for (int i = 0; i < 7; i++) cJSON_DeleteItemFromObjectCaseSensitive(doc, ids[i]);
    static const char *const optional[] = {"rope_theta",          "rms_norm_eps",
                                           "rope_scaling",        "max_position_embeddings",
                                           "tie_word_embeddings", "num_key_value_heads"};
    for (int i = 0; i < 6; i++) cJSON_DeleteItemFromObjectCaseSensitive(doc, optional[i]);
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    check_special_ids(&c, 151643, 151645, 151652, 151653, 151654, 151655, 151656);
    VT_CHECK(c.rope_theta == 1e6f);
    VT_CHECK(c.rms_eps == 1e-6f);
    VT_CHECK_INT(c.mrope_section[0], 16);
    VT_CHECK_INT(c.mrope_section[2], 24);
    VT_CHECK_INT(c.max_positions, 32768);
    VT_CHECK_INT(c.tie_embeddings, 0);
    VT_CHECK_INT(c.n_kv_heads, 28);
    /* an explicit head_dim consistent with mrope; null counts as absent */
    set_num(doc, "head_dim", 128);
    cJSON_AddNullToObject(doc, "bos_token_id");
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.head_dim, 128);
    VT_CHECK_INT(c.bos_id, 151643);
    cJSON_Delete(doc);
}

/* Edit a fresh copy of `base` with `edit`, parse it: must fail naming each needle, and leave
 * the output untouched. */
typedef void (*edit_fn)(cJSON *doc);
#define EXPECT_CONFIG_FAIL(base, edit, ...)                                                        \
    expect_config_fail(__LINE__, base, edit, __VA_ARGS__, (char *)NULL)
static void expect_config_fail(int line, const char *base, edit_fn edit, ...) {
    cJSON *doc = load_json(base);
    edit(doc);
    vl_config c;
    memset(&c, 0x5a, sizeof c);
    int rc = parse_doc(doc, &c);
    cJSON_Delete(doc);
    const char *msg = vl_error_get();
    VT_CHECKF(rc != 0, "line %d: parsed but should not", line);
    VT_CHECKF(strstr(msg, "edited/config.json") != NULL, "line %d: \"%s\" lacks the name", line,
              msg);
    va_list ap;
    va_start(ap, edit);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        VT_CHECKF(strstr(msg, needle) != NULL, "line %d: \"%s\" lacks \"%s\"", line, msg, needle);
    va_end(ap);
    VT_CHECKF(c.hidden == 0x5a5a5a5a && c.v_depth == 0x5a5a5a5a, "line %d: output modified", line);
}

static void del_hidden(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "hidden_size");
}
static void del_layers(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "num_hidden_layers");
}
static void del_heads(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "num_attention_heads");
}
static void del_vocab(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "vocab_size");
}
static void del_inter(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "intermediate_size");
}
static void del_text_hidden(cJSON *d) {
    del_hidden(obj_of(d, "text_config"));
}
static void del_text_vocab(cJSON *d) {
    del_vocab(obj_of(d, "text_config"));
}
static void kv5(cJSON *d) {
    set_num(d, "num_key_value_heads", 5);
}
static void hidden_odd(cJSON *d) {
    set_num(d, "hidden_size", 3585);
}
static void hidden_neg(cJSON *d) {
    set_num(d, "hidden_size", -5);
}
static void hidden_zero(cJSON *d) {
    set_num(d, "hidden_size", 0);
}
static void hidden_frac(cJSON *d) {
    set_num(d, "hidden_size", 3584.5);
}
static void hidden_huge(cJSON *d) {
    set_num(d, "hidden_size", 1 << 21);
}
static void hidden_str(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(d, "hidden_size", cJSON_CreateString("3584"));
}
static void layers_huge(cJSON *d) {
    set_num(d, "num_hidden_layers", 1e30);
}
static void mrope_bad(cJSON *d) {
    cJSON *ms = obj_of(obj_of(d, "rope_scaling"), "mrope_section");
    cJSON_ReplaceItemInArray(ms, 2, cJSON_CreateNumber(25));
}
static void mrope_two(cJSON *d) {
    cJSON_DeleteItemFromArray(obj_of(obj_of(d, "rope_scaling"), "mrope_section"), 2);
}
static void rope_yarn(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(obj_of(d, "rope_scaling"), "type",
                                           cJSON_CreateString("yarn"));
}
static void head_dim_64(cJSON *d) {
    set_num(d, "head_dim", 64);
}
static void eps_zero(cJSON *d) {
    set_num(d, "rms_norm_eps", 0);
}
static void eps_float_zero(cJSON *d) { /* found by fuzzing: > 0 as a double, 0 as a float */
    set_num(d, "rms_norm_eps", 1e-96);
}
static void theta_neg(cJSON *d) {
    set_num(d, "rope_theta", -1);
}
static void tie_str(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(d, "tie_word_embeddings", cJSON_CreateString("yes"));
}
static void v_embed_odd(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "embed_dim", 1281);
}
static void v_head_dim_odd(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "embed_dim", 1296);
}
static void v_act_bad(cJSON *d) {
    cJSON_AddStringToObject(obj_of(d, "vision_config"), "hidden_act", "gelu_pytorch_tanh");
}
static void v_channels(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "in_chans", 4);
}
static void v_hidden_del(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj_of(d, "vision_config"), "hidden_size");
}
static void v_not_obj(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(d, "vision_config", cJSON_CreateNumber(1));
}
static void model_unknown(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(d, "model_type", cJSON_CreateString("qwen3_vl"));
}
static void image_id_big(cJSON *d) {
    set_num(d, "image_token_id", 152064);
}
static void eos_empty(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(d, "eos_token_id", cJSON_CreateArray());
}
static void text_kv3(cJSON *d) {
    set_num(obj_of(d, "text_config"), "num_key_value_heads", 3);
}
static void text_rope_type(cJSON *d) {
    cJSON *rp = obj_of(obj_of(d, "text_config"), "rope_parameters");
    cJSON_ReplaceItemInObjectCaseSensitive(rp, "rope_type", cJSON_CreateString("linear"));
}

static void test_bad_configs(void) {
    const char *b7 = path_7b(), *b2 = path_2b(), *tiny = path_tiny();
    EXPECT_CONFIG_FAIL(b7, del_hidden, "\"hidden_size\"", "missing");
    EXPECT_CONFIG_FAIL(b7, del_layers, "\"num_hidden_layers\"", "missing");
    EXPECT_CONFIG_FAIL(b7, del_heads, "\"num_attention_heads\"", "missing");
    EXPECT_CONFIG_FAIL(b7, del_vocab, "\"vocab_size\"", "missing");
    EXPECT_CONFIG_FAIL(b7, del_inter, "\"intermediate_size\"", "missing");
    EXPECT_CONFIG_FAIL(tiny, del_text_hidden, "hidden_size");
    EXPECT_CONFIG_FAIL(tiny, del_text_vocab, "\"vocab_size\"", "missing");
    EXPECT_CONFIG_FAIL(b7, kv5, "num_key_value_heads (5)", "num_attention_heads (28)");
    EXPECT_CONFIG_FAIL(b7, hidden_odd, "hidden_size (3585)", "num_attention_heads");
    EXPECT_CONFIG_FAIL(b7, hidden_neg, "\"hidden_size\"", "got -5");
    EXPECT_CONFIG_FAIL(b7, hidden_zero, "\"hidden_size\"", "got 0");
    EXPECT_CONFIG_FAIL(b7, hidden_frac, "\"hidden_size\"", "3584.5");
    EXPECT_CONFIG_FAIL(b7, hidden_huge, "\"hidden_size\"", "2097152");
    EXPECT_CONFIG_FAIL(b7, hidden_str, "\"hidden_size\"", "\"3584\"");
    EXPECT_CONFIG_FAIL(b7, layers_huge, "\"num_hidden_layers\"");
    EXPECT_CONFIG_FAIL(b7, mrope_bad, "mrope_section [16, 24, 25]", "128");
    EXPECT_CONFIG_FAIL(b7, mrope_two, "rope_scaling.mrope_section", "3 integers");
    EXPECT_CONFIG_FAIL(b7, rope_yarn, "rope_scaling.type", "yarn");
    EXPECT_CONFIG_FAIL(b7, head_dim_64, "mrope_section", "64");
    EXPECT_CONFIG_FAIL(b7, eps_zero, "\"rms_norm_eps\"");
    EXPECT_CONFIG_FAIL(b7, eps_float_zero, "\"rms_norm_eps\"", "e-97");
    EXPECT_CONFIG_FAIL(b7, theta_neg, "\"rope_theta\"", "-1");
    EXPECT_CONFIG_FAIL(b7, tie_str, "\"tie_word_embeddings\"");
    EXPECT_CONFIG_FAIL(b7, v_embed_odd, "vision_config.embed_dim (1281)", "num_heads (16)");
    EXPECT_CONFIG_FAIL(b7, v_head_dim_odd, "81", "multiple of 4");
    EXPECT_CONFIG_FAIL(b7, v_act_bad, "vision_config.hidden_act", "gelu_pytorch_tanh");
    EXPECT_CONFIG_FAIL(b7, v_channels, "vision_config.in_chans", "4");
    EXPECT_CONFIG_FAIL(b2, v_hidden_del, "vision_config.hidden_size (3584", "(1536)");
    EXPECT_CONFIG_FAIL(b7, v_not_obj, "\"vision_config\"");
    EXPECT_CONFIG_FAIL(b7, model_unknown, "qwen3_vl", "\"qwen2_vl\"", "\"qwen2_5_vl\"");
    EXPECT_CONFIG_FAIL(b7, image_id_big, "\"image_token_id\"", "152064");
    EXPECT_CONFIG_FAIL(b7, eos_empty, "\"eos_token_id\"", "empty");
    EXPECT_CONFIG_FAIL(tiny, text_kv3, "num_key_value_heads (3)");
    EXPECT_CONFIG_FAIL(tiny, text_rope_type, "text_config.rope_parameters.rope_type", "linear");

    vl_config c;
    vl_error_clear();
    VT_CHECK(vl_config_parse(&c, "{\"hidden_size\": 12", "broken/config.json") != 0);
    VT_CHECK(strstr(vl_error_get(), "broken/config.json") && strstr(vl_error_get(), "JSON"));
    vl_error_clear();
    VT_CHECK(vl_config_parse(&c, "[1, 2]", "list/config.json") != 0);
    VT_CHECK(strstr(vl_error_get(), "list/config.json") != NULL);
    vl_error_clear();
    VT_CHECK(vl_config_parse(&c, "", "empty/config.json") != 0);
    VT_CHECK(strstr(vl_error_get(), "empty/config.json") != NULL);
    vl_error_clear();
    VT_CHECK(vl_config_load(&c, vt_tpath("no-such-config.json")) != 0);
    VT_CHECK(strstr(vl_error_get(), "no-such-config.json") != NULL);
}

/* ---- token ids inside the vocabulary ------------------------------------------------------- */

static void tiny_no_image_id(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(d, "image_token_id");
}
static void tiny_no_bos(cJSON *d) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj_of(d, "text_config"), "bos_token_id");
}
static void tiny_bos_null(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(obj_of(d, "text_config"), "bos_token_id",
                                           cJSON_CreateNull());
}
static void tiny_eos_list_big(cJSON *d) {
    cJSON *eos = cJSON_CreateArray();
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(2041));
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(151643));
    cJSON_ReplaceItemInObjectCaseSensitive(obj_of(d, "text_config"), "eos_token_id", eos);
}
static void tiny_video_vocab(cJSON *d) {
    set_num(d, "video_token_id", 2048); /* == vocab_size: one past the last id */
}

static void test_token_ids(void) {
    const char *tiny = path_tiny();
    /* absent ids default to Qwen2-VL's 151643..., which a 2048-token vocabulary lacks */
    EXPECT_CONFIG_FAIL(tiny, tiny_no_image_id, "\"image_token_id\"", "151655", "vocab_size 2048");
    EXPECT_CONFIG_FAIL(tiny, tiny_no_bos, "\"bos_token_id\"", "151643", "vocab_size 2048");
    EXPECT_CONFIG_FAIL(tiny, tiny_bos_null, "\"bos_token_id\"", "vocab_size 2048");
    EXPECT_CONFIG_FAIL(tiny, tiny_eos_list_big, "\"text_config.eos_token_id[1]\"", "[0, 2047]",
                       "151643");
    EXPECT_CONFIG_FAIL(tiny, tiny_video_vocab, "\"video_token_id\"", "[0, 2047]", "2048");
    /* every id of a list inside the vocabulary: the first is the end of a turn */
    cJSON *doc = load_json(tiny);
    cJSON *eos = cJSON_CreateArray();
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(2047));
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(0));
    cJSON_ReplaceItemInObjectCaseSensitive(obj_of(doc, "text_config"), "eos_token_id", eos);
    vl_config c;
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.eos_id, 2047);
    cJSON_Delete(doc);
}

/* ---- vision sizes of config.json ------------------------------------------------------------- */

static void v_temporal_huge(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "temporal_patch_size", 1024);
}
static void v_temporal_one(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "temporal_patch_size", 1);
}
static void v_patch_15(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "patch_size", 15);
}
static void v_merge_4(cJSON *d) {
    set_num(obj_of(d, "vision_config"), "spatial_merge_size", 4);
}
static void v_patch_str(cJSON *d) {
    cJSON_ReplaceItemInObjectCaseSensitive(obj_of(d, "vision_config"), "patch_size",
                                           cJSON_CreateString("14"));
}

static void test_vision_sizes(void) {
    const char *tiny = path_tiny();
    EXPECT_CONFIG_FAIL(tiny, v_temporal_huge, "\"vision_config.temporal_patch_size\"", "must be 2",
                       "got 1024");
    EXPECT_CONFIG_FAIL(tiny, v_temporal_one, "\"vision_config.temporal_patch_size\"", "got 1");
    EXPECT_CONFIG_FAIL(tiny, v_patch_15, "\"vision_config.patch_size\"", "14 or 16", "got 15");
    EXPECT_CONFIG_FAIL(tiny, v_merge_4, "\"vision_config.spatial_merge_size\"", "must be 2",
                       "got 4");
    EXPECT_CONFIG_FAIL(tiny, v_patch_str, "\"vision_config.patch_size\"", "\"14\"");
    cJSON *doc = load_json(tiny); /* the newer Qwen-VL patch */
    set_num(obj_of(doc, "vision_config"), "patch_size", 16);
    vl_config c;
    VT_CHECKF(parse_doc(doc, &c) == 0, "%s", vl_error_get());
    VT_CHECK_INT(c.patch, 16);
    cJSON_Delete(doc);
}

/* ---- strict JSON ----------------------------------------------------------------------------- */

/* The 7B config with `edit` applied to its text (first occurrence of `from` -> `to`). */
static int load_edited_text(const char *from, const char *to, vl_config *c) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path_7b(), 1 << 20, &text, &len) != 0) exit(2);
    char *at = strstr(text, from);
    if (!at) exit(2);
    size_t a = (size_t)(at - text), nf = strlen(from), nt = strlen(to);
    char *out = malloc(len - nf + nt + 1);
    memcpy(out, text, a);
    memcpy(out + a, to, nt);
    memcpy(out + a + nt, at + nf, len - a - nf + 1);
    vt_write_bytes(vt_tpath("config.json"), out, len - nf + nt);
    free(out);
    free(text);
    vl_error_clear();
    return vl_config_load(c, vt_tpath("config.json"));
}

static void test_strict_json(void) {
    vl_config c;
    VT_CHECKF(load_edited_text("{", "{", &c) == 0, "%s", vl_error_get()); /* unchanged: loads */
    /* a repeated key: Python keeps the last value, cJSON the first */
    VT_CHECK(load_edited_text("\"hidden_size\": 3584,",
                              "\"hidden_size\": 3584, \"hidden_size\": 64,", &c) != 0);
    VT_CHECKF(strstr(vl_error_get(), "config.json") &&
                  strstr(vl_error_get(), "\"hidden_size\" twice"),
              "%s", vl_error_get());
    VT_CHECK(load_edited_text("\"spatial_patch_size\": 14", "\"in_chans\": 3", &c) != 0);
    VT_CHECKF(strstr(vl_error_get(), "\"in_chans\" twice"), "%s", vl_error_get());
    /* trailing text, and a NUL byte (which a C-string parse would stop at) */
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path_7b(), 1 << 20, &text, &len) != 0) exit(2);
    char *more = malloc(len + 16);
    memcpy(more, text, len);
    memcpy(more + len, "\n{\"x\": 1}", 9);
    vt_write_bytes(vt_tpath("config.json"), more, len + 9);
    vl_error_clear();
    VT_CHECK(vl_config_load(&c, vt_tpath("config.json")) != 0);
    VT_CHECKF(strstr(vl_error_get(), "after the JSON value"), "%s", vl_error_get());
    memcpy(more + len, "\n\0garbage", 9);
    vt_write_bytes(vt_tpath("config.json"), more, len + 9);
    vl_error_clear();
    VT_CHECK(vl_config_load(&c, vt_tpath("config.json")) != 0);
    VT_CHECKF(strstr(vl_error_get(), "NUL"), "%s", vl_error_get());
    free(more);
    free(text);
    vl_error_clear();
    VT_CHECK(vl_config_parse(&c, "{\"a\": 1} x", "trail/config.json") != 0);
    VT_CHECKF(strstr(vl_error_get(), "trail/config.json"), "%s", vl_error_get());
}

/* ---- preprocessor_config.json --------------------------------------------------------------- */

static void check_preproc_default(const vl_preproc_config *p) {
    VT_CHECK_INT(p->min_pixels, 3136);
    VT_CHECK_INT(p->max_pixels, 12845056);
    VT_CHECK(p->mean[0] == 0.48145466f && p->mean[1] == 0.4578275f && p->mean[2] == 0.40821073f);
    VT_CHECK(p->std[0] == 0.26862954f && p->std[1] == 0.26130258f && p->std[2] == 0.27577711f);
    VT_CHECK_INT(p->patch, 14);
    VT_CHECK_INT(p->temporal_patch, 2);
    VT_CHECK_INT(p->merge, 2);
}

static int load_preproc_text(const char *text, vl_preproc_config *p) {
    const char *path = vt_tpath("preprocessor_config.json");
    vt_write_text(path, text);
    vl_error_clear();
    return vl_preproc_config_load(p, path);
}

static void expect_preproc_fail(int line, const char *text, const char *needle) {
    vl_preproc_config p;
    memset(&p, 0x5a, sizeof p);
    VT_CHECKF(load_preproc_text(text, &p) != 0, "line %d: loaded but should not", line);
    const char *msg = vl_error_get();
    VT_CHECKF(strstr(msg, "preprocessor_config.json") && strstr(msg, needle),
              "line %d: \"%s\" lacks \"%s\"", line, msg, needle);
    VT_CHECKF(p.patch == 0x5a5a5a5a, "line %d: output modified", line);
}

static void test_preproc(void) {
    vl_preproc_config p;
    vl_preproc_config_default(&p);
    check_preproc_default(&p);

    /* the 7B-Instruct preprocessor_config.json */
    VT_CHECKF(load_preproc_text("{\"min_pixels\": 3136, \"max_pixels\": 12845056, "
                                "\"patch_size\": 14, \"temporal_patch_size\": 2, "
                                "\"merge_size\": 2, \"image_mean\": [0.48145466, 0.4578275, "
                                "0.40821073], \"image_std\": [0.26862954, 0.26130258, "
                                "0.27577711], \"image_processor_type\": "
                                "\"Qwen2VLImageProcessor\", \"processor_class\": "
                                "\"Qwen2VLProcessor\"}",
                                &p) == 0,
              "%s", vl_error_get());
    check_preproc_default(&p);
    VT_CHECK(load_preproc_text("{}", &p) == 0);
    check_preproc_default(&p);

    VT_CHECK(load_preproc_text("{\"min_pixels\": 100, \"max_pixels\": 5000, \"image_mean\": "
                               "[0.5, 0.25, 0], \"image_std\": [0.25, 0.5, 1], \"patch_size\": "
                               "16, \"temporal_patch_size\": 2, \"merge_size\": 2, "
                               "\"do_resize\": true, \"resample\": 3, \"rescale_factor\": "
                               "0.00392156862745098}",
                               &p) == 0);
    VT_CHECK_INT(p.min_pixels, 100);
    VT_CHECK_INT(p.max_pixels, 5000);
    VT_CHECK(p.mean[0] == 0.5f && p.mean[1] == 0.25f && p.mean[2] == 0.0f);
    VT_CHECK(p.std[0] == 0.25f && p.std[1] == 0.5f && p.std[2] == 1.0f);
    VT_CHECK(p.patch == 16 && p.temporal_patch == 2 && p.merge == 2);

    /* transformers 5 spelling, and top-level keys overriding it */
    VT_CHECK(load_preproc_text("{\"size\": {\"shortest_edge\": 1000, \"longest_edge\": 2000}}",
                               &p) == 0);
    VT_CHECK(p.min_pixels == 1000 && p.max_pixels == 2000 && p.patch == 14);
    VT_CHECK(load_preproc_text("{\"size\": {\"min_pixels\": 10, \"max_pixels\": 20}}", &p) == 0);
    VT_CHECK(p.min_pixels == 10 && p.max_pixels == 20);
    VT_CHECK(load_preproc_text("{\"size\": {\"shortest_edge\": 1000, \"longest_edge\": 2000}, "
                               "\"max_pixels\": 3000}",
                               &p) == 0);
    VT_CHECK(p.min_pixels == 1000 && p.max_pixels == 3000);

    expect_preproc_fail(__LINE__, "{\"image_mean\": [0.5, 0.5]}", "image_mean");
    expect_preproc_fail(__LINE__, "{\"image_std\": [0.5, 0, 0.5]}", "image_std");
    expect_preproc_fail(__LINE__, "{\"image_std\": [0.5, \"x\", 0.5]}", "image_std");
    /* found by fuzzing: a std that is 0 as a float, or small enough to make pixels infinite */
    expect_preproc_fail(__LINE__, "{\"image_std\": [0.5, 0.5, 1e-50]}", "image_std\"[2]");
    expect_preproc_fail(__LINE__, "{\"image_std\": [1e-40, 0.5, 0.5]}", "[0.001, 1e6]");
    expect_preproc_fail(__LINE__, "{\"min_pixels\": 5000, \"max_pixels\": 100}", "min_pixels");
    expect_preproc_fail(__LINE__, "{\"min_pixels\": -1}", "min_pixels");
    expect_preproc_fail(__LINE__, "{\"size\": {\"longest_edge\": 0}}", "size.longest_edge");
    expect_preproc_fail(__LINE__, "{\"size\": 5}", "size");
    expect_preproc_fail(__LINE__, "{\"patch_size\": 0}", "patch_size");
    expect_preproc_fail(__LINE__, "{\"merge_size\": 1.5}", "merge_size");
    expect_preproc_fail(__LINE__, "{\"resample\": 2}", "resample");
    expect_preproc_fail(__LINE__, "{\"do_normalize\": false}", "do_normalize");
    expect_preproc_fail(__LINE__, "{\"rescale_factor\": 1.0}", "rescale_factor");
    expect_preproc_fail(__LINE__, "{\"min_pixels\": ", "JSON");
    expect_preproc_fail(__LINE__, "[]", "object");
    vl_error_clear();
    VT_CHECK(vl_preproc_config_load(&p, vt_tpath("none/preprocessor_config.json")) != 0);
    VT_CHECK(strstr(vl_error_get(), "none/preprocessor_config.json") != NULL);
}

/* Sizes that decide how large the pixel buffer gets: the family's values only. */
static void test_preproc_caps(void) {
    static const struct {
        const char *text, *needle1, *needle2;
    } bad[] = {
        {"{\"max_pixels\": 12845057}", "\"max_pixels\"", "[1, 12845056]"},
        {"{\"max_pixels\": 1e12}", "\"max_pixels\"", "got 1000000000000"},
        {"{\"min_pixels\": 0}", "\"min_pixels\"", "[1, 12845056]"},
        {"{\"min_pixels\": 20000000, \"max_pixels\": 12845056}", "\"min_pixels\"", "got 20000000"},
        {"{\"size\": {\"longest_edge\": 99999999}}", "\"size.longest_edge\"", "got 99999999"},
        {"{\"size\": {\"shortest_edge\": 5000, \"longest_edge\": 4000}}", "min_pixels (5000)",
         "max_pixels (4000)"},
        {"{\"size\": {\"min_pixels\": -5}}", "\"size.min_pixels\"", "got -5"},
        {"{\"patch_size\": 28}", "\"patch_size\"", "14 or 16"},
        {"{\"patch_size\": 1024}", "\"patch_size\"", "got 1024"},
        {"{\"temporal_patch_size\": 1024}", "\"temporal_patch_size\"", "must be 2"},
        {"{\"temporal_patch_size\": 1}", "\"temporal_patch_size\"", "got 1"},
        {"{\"merge_size\": 8}", "\"merge_size\"", "must be 2"},
        {"{\"merge_size\": \"2\"}", "\"merge_size\"", "\"2\""},
        /* strict JSON */
        {"{\"patch_size\": 14, \"patch_size\": 16}", "\"patch_size\" twice", ""},
        {"{\"patch_size\": 14} {}", "after the JSON value", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_preproc_fail((int)(1000 + i), bad[i].text, bad[i].needle1);
        expect_preproc_fail((int)(1000 + i), bad[i].text, bad[i].needle2);
    }
    /* the bounds themselves are accepted */
    vl_preproc_config p;
    VT_CHECKF(load_preproc_text("{\"min_pixels\": 1, \"max_pixels\": 12845056, \"patch_size\": 16}",
                                &p) == 0,
              "%s", vl_error_get());
    VT_CHECK(p.min_pixels == 1 && p.max_pixels == 12845056 && p.patch == 16);
    VT_CHECKF(load_preproc_text("{\"size\": {\"shortest_edge\": 12845056, \"longest_edge\": "
                                "12845056}}",
                                &p) == 0,
              "%s", vl_error_get());
    VT_CHECK(p.min_pixels == 12845056 && p.max_pixels == 12845056);
}

/* preprocessor_config.json against config.json's vision values. */
static void test_preproc_check(void) {
    vl_config c;
    VT_CHECKF(vl_config_load(&c, path_tiny()) == 0, "%s", vl_error_get());
    vl_preproc_config p;
    vl_preproc_config_default(&p);
    vl_error_clear();
    VT_CHECKF(vl_preproc_config_check(&p, &c, "x/preprocessor_config.json") == 0, "%s",
              vl_error_get());
    p.patch = 16;
    VT_CHECK(vl_preproc_config_check(&p, &c, "x/preprocessor_config.json") != 0);
    const char *msg = vl_error_get();
    VT_CHECKF(strstr(msg, "x/preprocessor_config.json") && strstr(msg, "patch_size is 16") &&
                  strstr(msg, "vision_config.patch_size is 14"),
              "%s", msg);
    c.patch = 16; /* a newer-Qwen-VL pair agrees again */
    vl_error_clear();
    VT_CHECKF(vl_preproc_config_check(&p, &c, "x/preprocessor_config.json") == 0, "%s",
              vl_error_get());
    c.merge = 4; /* not a value the parser lets through, but the check compares all three */
    VT_CHECK(vl_preproc_config_check(&p, &c, "x/preprocessor_config.json") != 0);
    VT_CHECKF(strstr(vl_error_get(), "vision_config.spatial_merge_size is 4"), "%s",
              vl_error_get());
    /* the fixture models' own pairs load and agree */
    static const char *const models[] = {"models/tiny-a", "models/tiny-b", "models/tiny-odd"};
    for (int m = 0; m < 3; m++) {
        char cp[512], pp[512];
        snprintf(cp, sizeof cp, "%s/config.json", models[m]);
        snprintf(pp, sizeof pp, "%s/preprocessor_config.json", models[m]);
        vl_error_clear();
        VT_CHECKF(vl_config_load(&c, vt_fixture(cp)) == 0 &&
                      vl_preproc_config_load(&p, vt_fixture(pp)) == 0 &&
                      vl_preproc_config_check(&p, &c, pp) == 0,
                  "%s: %s", models[m], vl_error_get());
        VT_CHECK(p.patch == 14 && p.max_pixels == 12845056 && p.min_pixels == 3136);
    }
}

/* A FIFO as config.json or preprocessor_config.json is refused, not opened for reading (which
 * would block until a writer came); the watchdog fails the test if it blocks. */
static void test_fifos(void) {
    vt_watchdog(60);
    vt_mkfifo(vt_tpath("fifo_config.json"));
    vl_config c;
    vl_error_clear();
    VT_CHECK(vl_config_load(&c, vt_tpath("fifo_config.json")) != 0);
    VT_CHECKF(strstr(vl_error_get(), "fifo_config.json") && strstr(vl_error_get(), "FIFO"), "%s",
              vl_error_get());
    vt_mkfifo(vt_tpath("fifo_preproc.json"));
    vl_preproc_config p;
    vl_error_clear();
    VT_CHECK(vl_preproc_config_load(&p, vt_tpath("fifo_preproc.json")) != 0);
    VT_CHECKF(strstr(vl_error_get(), "fifo_preproc.json") && strstr(vl_error_get(), "FIFO"), "%s",
              vl_error_get());
    vt_watchdog(0);
}

int main(void) {
    vt_tmp_init("vl_cfg");
    test_published();
    test_tiny_nested();
    test_flat_variants();
    test_bad_configs();
    test_token_ids();
    test_vision_sizes();
    test_strict_json();
    test_preproc();
    test_preproc_caps();
    test_preproc_check();
    test_fifos();
    vt_rm_tree(vt_tmp_root);
    return vt_finish();
}
