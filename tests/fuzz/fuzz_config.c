/* fuzz_config.c: libFuzzer harness for config.json text (vl_config_parse) and, on the same
 * input, generation_config.json text (vl_generation_config_parse). A parsed config must
 * hold the invariants the loader states it checks (positive sizes, head and rotary dimensions
 * that divide, the merger width equal to the decoder width, special ids inside the vocabulary).
 * Leaves out: reading the file (vl_config_load is vl_read_file + this parse; the file path is
 * fuzzed by fuzz_preproc.c and fuzz_tokenizer.c). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>
#include <stdlib.h>

/* Every special id lies in the vocabulary, whether the file gives it or it takes Qwen2-VL's
 * default (config.c refuses a default past vocab_size at parse time). */
static void check_id(int id, int vocab, const char *what) {
    FUZZ_CHECK(id >= 0 && id < vocab, "%s %d outside [0, %d)", what, id, vocab);
}

static void check_config(const vl_config *c) {
    FUZZ_CHECK(c->hidden > 0 && c->intermediate > 0 && c->n_layers > 0 && c->vocab > 0,
               "decoder sizes %d %d %d %d", c->hidden, c->intermediate, c->n_layers, c->vocab);
    FUZZ_CHECK(c->n_heads > 0 && c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
               "heads %d / kv heads %d", c->n_heads, c->n_kv_heads);
    FUZZ_CHECK(c->head_dim > 0 && c->head_dim % 2 == 0, "head_dim %d", c->head_dim);
    FUZZ_CHECK(c->mrope_section[0] > 0 && c->mrope_section[1] > 0 && c->mrope_section[2] > 0 &&
                   2 * (c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2]) ==
                       c->head_dim,
               "mrope_section %d %d %d for head_dim %d", c->mrope_section[0], c->mrope_section[1],
               c->mrope_section[2], c->head_dim);
    FUZZ_CHECK(isfinite(c->rope_theta) && c->rope_theta > 0 && isfinite(c->rms_eps) &&
                   c->rms_eps > 0 && isfinite(c->v_rope_theta) && c->v_rope_theta > 0,
               "rope_theta %g rms_eps %g vision rope_theta %g", (double)c->rope_theta,
               (double)c->rms_eps, (double)c->v_rope_theta);
    FUZZ_CHECK(c->max_positions > 0, "max_positions %d", c->max_positions);
    FUZZ_CHECK(c->v_depth > 0 && c->v_embed > 0 && c->v_heads > 0 && c->v_mlp > 0,
               "vision sizes %d %d %d %d", c->v_depth, c->v_embed, c->v_heads, c->v_mlp);
    FUZZ_CHECK(c->v_head_dim * c->v_heads == c->v_embed && c->v_head_dim % 4 == 0,
               "vision head_dim %d x %d heads for embed %d", c->v_head_dim, c->v_heads, c->v_embed);
    FUZZ_CHECK(c->v_out == c->hidden, "merger output %d, decoder %d", c->v_out, c->hidden);
    FUZZ_CHECK(c->patch > 0 && c->temporal_patch > 0 && c->merge > 0 && c->in_channels == 3,
               "patch %d temporal %d merge %d channels %d", c->patch, c->temporal_patch, c->merge,
               c->in_channels);
    check_id(c->bos_id, c->vocab, "bos_token_id");
    check_id(c->eos_id, c->vocab, "eos_token_id");
    check_id(c->image_id, c->vocab, "image_token_id");
    check_id(c->video_id, c->vocab, "video_token_id");
    check_id(c->vision_start_id, c->vocab, "vision_start_token_id");
    check_id(c->vision_end_id, c->vocab, "vision_end_token_id");
    check_id(c->vision_pad_id, c->vocab, "vision_token_id");
}

/* generation_config.json: a penalty transformers accepts, at most VL_GEN_MAX_EOS eos ids, each in
 * the vocabulary. */
static void check_generation(const uint8_t *data, size_t size) {
    vl_generation_config g;
    const int vocab = 152064;
    int rc =
        vl_generation_config_parse(&g, (const char *)data, size, "generation_config.json", vocab);
    fuzz_check_error(rc, "vl_generation_config_parse");
    if (rc) return;
    FUZZ_CHECK(isfinite(g.repetition_penalty) && g.repetition_penalty > 0, "penalty %g",
               (double)g.repetition_penalty);
    FUZZ_CHECK(g.n_eos >= 0 && g.n_eos <= VL_GEN_MAX_EOS, "%d eos ids", g.n_eos);
    for (int i = 0; i < g.n_eos; i++) check_id(g.eos_ids[i], vocab, "eos_token_id");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    char *text = fuzz_strndup(data, size);
    vl_config c;
    int rc = vl_config_parse(&c, text, "config.json");
    fuzz_check_error(rc, "vl_config_parse");
    if (rc == 0) check_config(&c);
    free(text);
    vl_error_clear();
    check_generation(data, size);
    vl_error_clear();
    return 0;
}
