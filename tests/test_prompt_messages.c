/* test_prompt_messages.c: a conversation's ids through the chat template (vl_request.messages,
 * engine/prompt.c), CPU backend, tiny-a and the small tokenizer.
 *   1. [user: the golden's 4 images + its text] gives transformers' input_ids of
 *      golden_tiny-a.json, which are also today's prompt path's;
 *   2. a multi-turn conversation (system, user with an image, assistant, user with text around
 *      an image repeated twice, text starting with a newline) gives the ids of tokenizing the
 *      whole template text written out by hand with every pad expanded;
 *   3. malformed conversations are refused with a line saying what is wrong;
 *   4. vl_engine_run with messages: the prompt ids and greedy tokens of the prompt path, and a
 *      text-only request runs;
 *   5. an assistant prefix (vl_request.assistant_prefix) on both paths and through the engine:
 *      the ids of the whole template text with the prefix after the assistant header. */
#include "engine/engine.h"
#include "vltest.h"

#include <cJSON.h>

static vl_engine *g_e;

static cJSON *load_json(const char *path) {
    size_t len = 0;
    char *text = vt_read_all(path, &len);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    return j;
}

static int ids_equal(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* 1: the golden request as one user message. */
static void test_golden_as_messages(const cJSON *g, vl_image_arg *args, int n_args) {
    vl_image_set is;
    VT_CHECKF(vl_image_set_load(&is, args, n_args, &g_e->m.pre, NULL) == 0, "%s", vl_error_get());
    const char *text = cJSON_GetObjectItem(g, "prompt")->valuestring;
    vl_part parts[9];
    for (int i = 0; i < n_args; i++) parts[i] = (vl_part){NULL, i};
    parts[n_args] = (vl_part){text, -1};
    vl_message msg = {VL_ROLE_USER, parts, n_args + 1};
    vl_prompt pm, pp;
    int rc = vl_prompt_build_messages(&pm, &g_e->m, &msg, 1, NULL, is.list, is.src, is.n_list);
    VT_CHECKF(rc == 0, "messages: %s", vl_error_get());
    VT_CHECK(vl_prompt_build_system(&pp, &g_e->m, NULL, text, NULL, is.list, is.src, is.n_list) ==
             0);
    const cJSON *want = cJSON_GetObjectItem(g, "input_ids");
    int n = cJSON_GetArraySize(want), ok = rc == 0 && pm.n == n;
    for (int i = 0; ok && i < n; i++)
        ok = pm.ids[i] == (int)cJSON_GetArrayItem(want, i)->valuedouble;
    VT_CHECKF(ok, "ids of the messages differ from transformers' input_ids");
    VT_CHECK(rc == 0 && ids_equal(pm.ids, pm.n, pp.ids, pp.n));
    VT_CHECK(rc == 0 &&
             pm.rope_delta == (int64_t)cJSON_GetObjectItem(g, "rope_delta")->valuedouble);
    if (rc == 0) vl_prompt_free(&pm);
    vl_prompt_free(&pp);
    vl_image_set_free(&is);
}

/* The block of one image as the processor expands the template's <|image_pad|>. */
static size_t image_block(char *out, size_t cap, const vl_pixels *px) {
    size_t o = (size_t)snprintf(out, cap, "<|vision_start|>");
    for (int64_t k = 0; k < px->n_patches / 4; k++)
        o += (size_t)snprintf(out + o, cap - o, "<|image_pad|>");
    return o + (size_t)snprintf(out + o, cap - o, "<|vision_end|>");
}

/* 2: several turns against the whole template text tokenized at once. */
static void test_multi_turn(vl_image_arg *args) {
    vl_image_arg two[2] = {args[1], args[2]};
    two[1].repeat = 2; /* IMAGE x2: one part, two blocks */
    vl_image_set is;
    VT_CHECK(vl_image_set_load(&is, two, 2, &g_e->m.pre, NULL) == 0);
    vl_part sys[] = {{"Be terse.", -1}};
    vl_part u1[] = {{NULL, 0}, {"What is this?", -1}};
    vl_part a1[] = {{"A box.\n", -1}};
    vl_part u2[] = {{"\n\nCompare ", -1}, {NULL, 1}, {" with it.", -1}};
    vl_message msgs[] = {{VL_ROLE_SYSTEM, sys, 1},
                         {VL_ROLE_USER, u1, 2},
                         {VL_ROLE_ASSISTANT, a1, 1},
                         {VL_ROLE_USER, u2, 3}};
    size_t cap = 1 << 20, o = 0;
    char *text = malloc(cap);
    o += (size_t)snprintf(text + o, cap - o,
                          "<|im_start|>system\nBe terse.<|im_end|>\n"
                          "<|im_start|>user\n");
    o += image_block(text + o, cap - o, &is.list[0]);
    o += (size_t)snprintf(text + o, cap - o,
                          "What is this?<|im_end|>\n<|im_start|>assistant\nA box.\n<|im_end|>\n"
                          "<|im_start|>user\n\n\nCompare ");
    o += image_block(text + o, cap - o, &is.list[1]);
    o += image_block(text + o, cap - o, &is.list[2]);
    snprintf(text + o, cap - o, " with it.<|im_end|>\n<|im_start|>assistant\n");
    int32_t *want = NULL;
    int n_want = 0;
    VT_CHECK(vl_tokenizer_encode(g_e->m.tok, text, &want, &n_want) == 0);
    vl_prompt p;
    int rc = vl_prompt_build_messages(&p, &g_e->m, msgs, 4, NULL, is.list, is.src, is.n_list);
    VT_CHECKF(rc == 0, "%s", vl_error_get());
    VT_CHECKF(rc == 0 && ids_equal(p.ids, p.n, want, n_want), "%d ids, want %d", rc ? 0 : p.n,
              n_want);
    VT_CHECK(rc == 0 && p.n_images == 3 && p.image_src[1] == 1 && p.image_src[2] == 1);
    if (rc == 0) vl_prompt_free(&p);
    /* without a system message: the default one first */
    o = (size_t)snprintf(text, cap,
                         "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                         "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(want);
    VT_CHECK(vl_tokenizer_encode(g_e->m.tok, text, &want, &n_want) == 0);
    vl_part hi[] = {{"Hi", -1}};
    vl_message one = {VL_ROLE_USER, hi, 1};
    rc = vl_prompt_build_messages(&p, &g_e->m, &one, 1, NULL, NULL, NULL, 0);
    VT_CHECK(rc == 0 && ids_equal(p.ids, p.n, want, n_want));
    if (rc == 0) vl_prompt_free(&p);
    free(want);
    free(text);
    vl_image_set_free(&is);
}

/* 3: one refusal; its message must hold `needle`. */
static void expect_refused(const vl_message *msgs, int n, vl_pixels *list, const int *src,
                           int n_list, const char *needle) {
    vl_prompt p;
    vl_error_clear();
    int rc = vl_prompt_build_messages(&p, &g_e->m, msgs, n, NULL, list, src, n_list);
    VT_CHECKF(rc != 0 && strstr(vl_error_get(), needle), "want '%s', got rc %d '%s'", needle, rc,
              vl_error_get());
    if (rc == 0) vl_prompt_free(&p);
    vl_error_clear();
}

static void test_refusals(vl_image_arg *args) {
    vl_image_set is;
    VT_CHECK(vl_image_set_load(&is, args, 2, &g_e->m.pre, NULL) == 0);
    vl_part t[] = {{"x", -1}}, img1[] = {{NULL, 1}, {NULL, 0}}, img0[] = {{NULL, 0}};
    vl_part bad_img[] = {{NULL, 5}};
    vl_message last_assistant[] = {{VL_ROLE_USER, t, 1}, {VL_ROLE_ASSISTANT, t, 1}};
    vl_message late_system[] = {{VL_ROLE_USER, t, 1}, {VL_ROLE_SYSTEM, t, 1}, {VL_ROLE_USER, t, 1}};
    vl_message out_of_order[] = {{VL_ROLE_USER, img1, 2}};
    vl_message unused[] = {{VL_ROLE_USER, img0, 1}};
    vl_message unknown[] = {{VL_ROLE_USER, bad_img, 1}};
    vl_message bad_role[] = {{(vl_role)7, t, 1}};
    expect_refused(last_assistant, 2, NULL, NULL, 0, "must be the user's");
    expect_refused(late_system, 3, NULL, NULL, 0, "messages[1]: a system message may only");
    expect_refused(out_of_order, 1, is.list, is.src, is.n_list, "image part 1 where image 0");
    expect_refused(unused, 1, is.list, is.src, is.n_list, "1 of the request's 2 images");
    expect_refused(unknown, 1, is.list, is.src, 1, "image part 5 where image 0");
    expect_refused(bad_role, 1, NULL, NULL, 0, "unknown role 7");
    expect_refused(NULL, 0, NULL, NULL, 0, "none given");
    vl_image_set_free(&is);
}

typedef struct {
    int32_t ids[256];
    int n;
} ids_sink;

static int keep_ids(void *ctx, const int32_t *ids, int n) {
    ids_sink *s = ctx;
    s->n = n;
    memcpy(s->ids, ids, (size_t)(n < 256 ? n : 256) * sizeof *ids);
    return 0;
}

/* 4: the engine's run takes messages. */
static void test_engine_run(vl_image_arg *args, int n_args, const char *text) {
    vl_request rq;
    vl_request_default(&rq);
    rq.images = args;
    rq.n_images = n_args;
    rq.prompt = text;
    rq.max_tokens = 6;
    vl_part parts[9];
    for (int i = 0; i < n_args; i++) parts[i] = (vl_part){NULL, i};
    parts[n_args] = (vl_part){text, -1};
    vl_message msg = {VL_ROLE_USER, parts, n_args + 1};
    ids_sink a = {0}, b = {0};
    vl_callbacks ca = {.ctx = &a, .on_prompt = keep_ids}, cbb = {.ctx = &b, .on_prompt = keep_ids};
    vl_result ra, rb;
    VT_CHECKF(vl_engine_run(g_e, &rq, &ca, &ra) == 0, "%s", vl_error_get());
    rq.messages = &msg;
    rq.n_messages = 1;
    rq.prompt = "not used";
    VT_CHECKF(vl_engine_run(g_e, &rq, &cbb, &rb) == 0, "%s", vl_error_get());
    VT_CHECK(a.n > 0 && ids_equal(a.ids, a.n, b.ids, b.n));
    VT_CHECK(ra.n_tokens == 6 && ids_equal(ra.tokens, ra.n_tokens, rb.tokens, rb.n_tokens));
    vl_result_free(&ra);
    vl_result_free(&rb);
    /* text only */
    vl_part hi[] = {{"Hello there.", -1}};
    vl_message one = {VL_ROLE_USER, hi, 1};
    rq.images = NULL;
    rq.n_images = 0;
    rq.messages = &one;
    int rc = vl_engine_run(g_e, &rq, NULL, &ra);
    VT_CHECKF(rc == 0 && ra.n_tokens == 6 && ra.n_images == 0, "text only: %s", vl_error_get());
    if (rc == 0) vl_result_free(&ra);
}

/* 5: the answer's start, forced. The prefix begins with a newline and ends in digits so that a
 * prefix tokenized apart from the header ("\n" + "\n" joins) would differ. */
static void test_assistant_prefix(vl_image_arg *args) {
    static const char prefix[] = "\n 4827 top left";
    vl_image_set is;
    VT_CHECK(vl_image_set_load(&is, args, 1, &g_e->m.pre, NULL) == 0);
    size_t cap = 1 << 16, o = 0;
    char *text = malloc(cap);
    o += (size_t)snprintf(text, cap,
                          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                          "<|im_start|>user\n");
    o += image_block(text + o, cap - o, &is.list[0]);
    snprintf(text + o, cap - o, "Q?<|im_end|>\n<|im_start|>assistant\n%s", prefix);
    int32_t *want = NULL;
    int n_want = 0;
    VT_CHECK(vl_tokenizer_encode(g_e->m.tok, text, &want, &n_want) == 0);
    vl_prompt ps, pm, plain;
    int rs = vl_prompt_build_system(&ps, &g_e->m, NULL, "Q?", prefix, is.list, is.src, 1);
    VT_CHECKF(rs == 0 && ids_equal(ps.ids, ps.n, want, n_want), "system path: %d ids, want %d",
              rs ? 0 : ps.n, n_want);
    vl_part parts[] = {{NULL, 0}, {"Q?", -1}};
    vl_message msg = {VL_ROLE_USER, parts, 2};
    int rm = vl_prompt_build_messages(&pm, &g_e->m, &msg, 1, prefix, is.list, is.src, 1);
    VT_CHECKF(rm == 0 && ids_equal(pm.ids, pm.n, want, n_want), "messages path differs");
    /* tokenized with the header: its "\n" and the prefix's join into one token, so the ids
     * without the prefix agree up to their last one only */
    VT_CHECK(vl_prompt_build_system(&plain, &g_e->m, NULL, "Q?", NULL, is.list, is.src, 1) == 0);
    VT_CHECK(plain.n < n_want && ids_equal(plain.ids, plain.n - 1, want, plain.n - 1) &&
             plain.ids[plain.n - 1] != want[plain.n - 1]);
    /* through the engine: the prompt it runs is the same */
    vl_request rq;
    vl_request_default(&rq);
    rq.images = args;
    rq.n_images = 1;
    rq.prompt = "Q?";
    rq.assistant_prefix = prefix;
    rq.max_tokens = 2;
    ids_sink seen = {0};
    vl_callbacks cb = {.ctx = &seen, .on_prompt = keep_ids};
    vl_result r;
    int rc = vl_engine_run(g_e, &rq, &cb, &r);
    VT_CHECKF(rc == 0 && ids_equal(seen.ids, seen.n, want, n_want), "engine: %s", vl_error_get());
    VT_CHECK(rc != 0 || (r.prompt_tokens == n_want && r.n_tokens == 2));
    if (rc == 0) vl_result_free(&r);
    if (rs == 0) vl_prompt_free(&ps);
    if (rm == 0) vl_prompt_free(&pm);
    vl_prompt_free(&plain);
    free(want);
    free(text);
    vl_image_set_free(&is);
}

int main(void) {
    char tok[4096], img[4][4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    cJSON *g = load_json(vt_fixture("models/golden_tiny-a.json"));
    VT_CHECK(g != NULL);
    if (!g) return 1;
    const cJSON *files = cJSON_GetObjectItem(g, "images");
    vl_image_arg args[4];
    int n_args = cJSON_GetArraySize(files);
    for (int i = 0; i < n_args && i < 4; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "models/images/%s", cJSON_GetArrayItem(files, i)->valuestring);
        snprintf(img[i], sizeof img[i], "%s", vt_fixture(rel));
        args[i] = (vl_image_arg){.path = img[i], .repeat = 1};
    }
    vl_engine_config cfg;
    vl_engine_config_default(&cfg);
    cfg.backend = VL_BACKEND_CPU;
    cfg.model_dir = vt_fixture("models/tiny-a");
    cfg.tokenizer_path = tok;
    g_e = vl_engine_open(&cfg);
    VT_CHECKF(g_e != NULL, "open: %s", vl_error_get());
    if (g_e) {
        test_golden_as_messages(g, args, n_args);
        test_multi_turn(args);
        test_refusals(args);
        test_engine_run(args, n_args, cJSON_GetObjectItem(g, "prompt")->valuestring);
        test_assistant_prefix(args);
    }
    vl_engine_close(g_e);
    cJSON_Delete(g);
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
