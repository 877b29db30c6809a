/* test_penalty.c: the repetition penalty's CPU twin (kernels.h: mark_seen, repetition_penalty,
 * sample_token_f32), generation_config.json, and what the engine takes from them.
 *
 *   - the twin against a direct transcription of transformers' processor (gather the score of
 *     every id of the sequence, torch.where(score < 0, score * p, score / p), scatter back) on
 *     crafted logits: positive, negative, +0 and -0, tiny, infinite, NaN; ids repeated, ids
 *     marked over several calls (prompt, then decode steps); bit for bit, for p = 1.05, 1.5, 0.5
 *     and 1; plus hand-computed values; ids outside the vocabulary mark nothing;
 *   - sample_token_f32 on the penalized scores picks what the penalty makes the argmax;
 *   - generation_config.json: Qwen2-VL-7B-Instruct's values, an integer eos id, nulls and absent
 *     keys (defaults), eos at the vocabulary's edge; vl_model_is_eos takes the file's eos ids;
 *   - the memory plan holds the seen set and the float32 scores only when a penalty is on. */
#include "engine/engine.h"
#include "vltest.h"
#include "vltest_fs.h"

#define N 12

/* transformers' RepetitionPenaltyLogitsProcessor on one row, spelled out as in torch. */
static void reference(const float *x, int n, const int32_t *ids, int m, float p, float *out) {
    float gathered[64];
    memcpy(out, x, (size_t)n * sizeof *out);
    for (int j = 0; j < m; j++) gathered[j] = x[ids[j]];
    for (int j = 0; j < m; j++) gathered[j] = gathered[j] < 0 ? gathered[j] * p : gathered[j] / p;
    for (int j = 0; j < m; j++) out[ids[j]] = gathered[j];
}

static void test_twin_vs_reference(void) {
    vl_backend *cpu = vl_backend_cpu();
    const float x[N] = {3.0f, -2.0f,  0.0f,     -0.0f,     1e-30f, -1e-30f,
                        5.0f, -7.25f, INFINITY, -INFINITY, NAN,    0.3f};
    /* the prompt (with repeats), then three decode steps, one of them a repeat */
    const int32_t prompt[] = {1, 0, 1, 1, 6, 7, 0, 2, 3, 4, 5, 8, 9, 10, 1};
    const int32_t steps[] = {7, 1, 0};
    const int n_prompt = (int)(sizeof prompt / sizeof prompt[0]);
    const float penalties[] = {1.05f, 1.5f, 0.5f, 1.0f};
    for (int k = 0; k < 4; k++) {
        const float p = penalties[k];
        uint8_t seen[N] = {0};
        int32_t all[64];
        int m = 0;
        cpu->mark_seen(cpu, seen, N, prompt, n_prompt);
        for (int j = 0; j < n_prompt; j++) all[m++] = prompt[j];
        for (int s = 0; s < 3; s++) {
            cpu->mark_seen(cpu, seen, N, &steps[s], 1);
            all[m++] = steps[s];
            float want[N], got[N];
            reference(x, N, all, m, p, want);
            cpu->repetition_penalty(cpu, got, x, seen, N, p);
            VT_CHECKF(memcmp(want, got, sizeof want) == 0, "p %g after step %d: bits differ", p, s);
        }
        VT_CHECK(!seen[11]); /* never in the sequence: 0.3 stays as it is */
    }
    /* hand-computed: p = 1.5 divides 3 -> 2 and multiplies -2 -> -3; zero stays zero */
    uint8_t seen[N];
    memset(seen, 1, sizeof seen);
    float got[N];
    cpu->repetition_penalty(cpu, got, x, seen, N, 1.5f);
    VT_CHECK(got[0] == 2.0f && got[1] == -3.0f && got[2] == 0.0f && !signbit(got[2]));
    VT_CHECK(got[3] == 0.0f && signbit(got[3])); /* -0 / 1.5 = -0, as torch */
    VT_CHECK(got[7] == -10.875f && got[8] == INFINITY && got[9] == -INFINITY && isnan(got[10]));
    VT_CHECK(got[6] == 5.0f / 1.5f && got[6] != 5.0f * (1.0f / 1.5f)); /* a division, as on CPU */
}

static void test_out_of_range_ids(void) {
    vl_backend *cpu = vl_backend_cpu();
    uint8_t seen[N + 4] = {0};
    const int32_t ids[] = {-1, N, N + 3, INT32_MAX, INT32_MIN};
    cpu->mark_seen(cpu, seen, N, ids, 5);
    int any = 0;
    for (int i = 0; i < N + 4; i++) any |= seen[i];
    VT_CHECK(!any);
}

/* The penalty moves the argmax: token 0 (seen) leads by a margin smaller than the penalty's. */
static void test_sample_after_penalty(void) {
    vl_backend *cpu = vl_backend_cpu();
    const float pos[4] = {2.0f, 1.9f, -5.0f, 1.0f}, neg[4] = {-1.0f, -1.02f, -3.0f, -9.0f};
    const float *rows[2] = {pos, neg};
    for (int r = 0; r < 2; r++) {
        uint8_t seen[4] = {1, 0, 0, 0};
        float scores[4];
        int32_t tokens[2];
        vl_decode_state st = {0};
        cpu->sample_token_f32(cpu, &st, tokens, rows[r], 4, 0.0f, 1, 0);
        cpu->repetition_penalty(cpu, scores, rows[r], seen, 4, 1.1f);
        cpu->sample_token_f32(cpu, &st, tokens, scores, 4, 0.0f, 1, 0);
        VT_CHECK_INT(tokens[0], 0); /* without the penalty: token 0 */
        VT_CHECK_INT(tokens[1], 1); /* with it: 2 / 1.1 < 1.9, and -1 * 1.1 < -1.02 */
        VT_CHECK_INT(st.step, 2);
    }
}

static int load_text(vl_generation_config *g, const char *text, int vocab) {
    vt_write_text(vt_tpath("generation_config.json"), text);
    vl_error_clear();
    return vl_generation_config_load(g, vt_tpath("generation_config.json"), vocab);
}

static void test_generation_config(void) {
    vl_generation_config g;
    /* Qwen2-VL-7B-Instruct's file */
    VT_CHECK(load_text(&g,
                       "{\"bos_token_id\": 151643, \"pad_token_id\": 151643, \"do_sample\": true,"
                       " \"eos_token_id\": [151645, 151643], \"repetition_penalty\": 1.05,"
                       " \"temperature\": 0.01, \"top_p\": 0.001, \"top_k\": 1,"
                       " \"transformers_version\": \"4.37.0\"}",
                       152064) == 0);
    VT_CHECK(g.present && g.repetition_penalty == 1.05f && g.temperature == 0.01f);
    VT_CHECK(g.top_k == 1 && g.top_p == 0.001f && g.do_sample == 1);
    VT_CHECK(g.n_eos == 2 && g.eos_ids[0] == 151645 && g.eos_ids[1] == 151643);
    /* one integer id; nulls and absent keys keep the defaults */
    VT_CHECK(load_text(&g, "{\"eos_token_id\": 7, \"repetition_penalty\": null}", 8) == 0);
    VT_CHECK(g.n_eos == 1 && g.eos_ids[0] == 7 && g.repetition_penalty == 1.0f);
    VT_CHECK(g.temperature == 1.0f && g.top_k == 50 && g.top_p == 1.0f && !g.do_sample);
    VT_CHECK(load_text(&g, "{}", 8) == 0 && g.present && g.n_eos == 0);
    /* the vocabulary's edge, and one past it (the message names the file and the key) */
    VT_CHECK(load_text(&g, "{\"eos_token_id\": [0, 4095]}", 4096) == 0 && g.n_eos == 2);
    VT_CHECK(load_text(&g, "{\"eos_token_id\": [0, 4096]}", 4096) != 0);
    VT_CHECK(strstr(vl_error_get(), "generation_config.json: \"eos_token_id\"") != NULL);
    VT_CHECK(load_text(&g, "{\"repetition_penalty\": 0.0}", 8) != 0);
    VT_CHECK(strstr(vl_error_get(), "\"repetition_penalty\" must be a finite number > 0"));
    VT_CHECK(load_text(&g, "{\"repetition_penalty\": 0.5}", 8) == 0); /* a reward: allowed */
    vl_error_clear();
}

static void test_model_eos(void) {
    vl_model m;
    memset(&m, 0, sizeof m);
    m.cfg.eos_id = 5;
    vl_generation_config_default(&m.gen);
    VT_CHECK(vl_model_is_eos(&m, 5) && !vl_model_is_eos(&m, 7));
    m.gen.eos_ids[0] = 7;
    m.gen.eos_ids[1] = 9;
    m.gen.n_eos = 2;
    VT_CHECK(vl_model_is_eos(&m, 7) && vl_model_is_eos(&m, 9) && !vl_model_is_eos(&m, 8));
    /* the default penalty: the file's, unless the option says otherwise or weights are random */
    m.gen.repetition_penalty = 1.05f;
    VT_CHECK(vl_model_repetition_penalty(&m, 0, 0.0f) == 1.05f);
    VT_CHECK(vl_model_repetition_penalty(&m, 0, 1.0f) == 1.0f);
    VT_CHECK(vl_model_repetition_penalty(&m, 1, 0.0f) == 1.0f);
}

static void test_plan(void) {
    vl_config c;
    if (vl_config_load(&c, vt_fixture("models/tiny-a/config.json"))) {
        VT_CHECKF(0, "tiny-a config: %s", vl_error_get());
        return;
    }
    vl_shape sh = {.prompt_tokens = 200, .max_tokens = 24, .ctx = 200, .chunk = 64};
    size_t off[VL_MEM_GROUPS], one[VL_MEM_GROUPS], on[VL_MEM_GROUPS];
    vl_layout_plan(&c, VL_DTYPE_F32, &sh, off);
    sh.rep_penalty = 1.0f;
    vl_layout_plan(&c, VL_DTYPE_F32, &sh, one);
    sh.rep_penalty = 1.05f;
    vl_layout_plan(&c, VL_DTYPE_F32, &sh, on);
    VT_CHECK(memcmp(off, one, sizeof off) == 0);
    /* a byte and a float per vocabulary entry, each slice rounded up to 256 bytes */
    size_t want = ((size_t)c.vocab + 255) / 256 * 256 + ((size_t)c.vocab * 4 + 255) / 256 * 256;
    VT_CHECK_INT(on[VL_MEM_ACT] - off[VL_MEM_ACT], want);
    VT_CHECK(on[VL_MEM_KV] == off[VL_MEM_KV] && on[VL_MEM_WORKSPACE] == off[VL_MEM_WORKSPACE]);
}

int main(void) {
    vt_tmp_init("vl_penalty");
    test_twin_vs_reference();
    test_out_of_range_ids();
    test_sample_after_penalty();
    test_generation_config();
    test_model_eos();
    test_plan();
    vt_rm_tree(vt_tmp_root);
    return vt_finish();
}
