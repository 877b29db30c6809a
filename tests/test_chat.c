/* test_chat.c: the multi-turn conversation (engine/chat.c) with its KV cache kept between turns
 * equals a fresh computation of the whole conversation (CPU backend, tiny-a, small tokenizer).
 *
 * - The conversation's ids are the chat template's: each user turn's text (pads expanded, as
 *   transformers' processor does) tokenized in one piece, the answers' sampled ids kept as they
 *   are, "<|im_end|>\n" after each answer.
 * - Each turn's greedy answer equals a cache-free run: one prefill of the conversation up to that
 *   turn's assistant header (all images so far, positions from vl_prompt_from_ids) and greedy
 *   decoding on the host path.
 * - The kept KV cache equals the cache of one prefill over the conversation's ids (positions of
 *   later images included: a wrong position changes the rotated keys).
 * - /clear starts over; a message that does not fit is refused and changes nothing; an answer
 *   stops at the end-of-turn token, which is replaced by the template's closing. */
#include "engine/engine.h"
#include "vltest.h"

static vl_engine *g_engine;
static vl_pixels g_px[3]; /* img_a, img_b, img_c */

static void tok_append(int32_t *dst, int *n, const char *text) {
    int32_t *ids = NULL;
    int k = 0;
    int rc = vl_tokenizer_encode(g_engine->m.tok, text, &ids, &k);
    VT_CHECKF(rc == 0, "encode: %s", vl_error_get());
    memcpy(dst + *n, ids, (size_t)k * sizeof *ids);
    *n += k;
    free(ids);
}

/* The text of a user turn with every image's pad run written out, as the processor expands
 * the template's single <|image_pad|>. */
static void user_text(char *out, size_t cap, int first, const int *img, int n_img,
                      const char *text) {
    size_t o = 0;
    if (first)
        o += (size_t)snprintf(out + o, cap - o,
                              "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    o += (size_t)snprintf(out + o, cap - o, "<|im_start|>user\n");
    for (int i = 0; i < n_img; i++) {
        const vl_pixels *px = &g_px[img[i]];
        o += (size_t)snprintf(out + o, cap - o, "<|vision_start|>");
        for (int64_t k = 0; k < px->n_patches / 4; k++)
            o += (size_t)snprintf(out + o, cap - o, "<|image_pad|>");
        o += (size_t)snprintf(out + o, cap - o, "<|vision_end|>");
    }
    snprintf(out + o, cap - o, "%s<|im_end|>\n<|im_start|>assistant\n", text);
}

typedef struct {
    int32_t ids[64];
    int n;
} answer_buf;

static int collect(void *ctx, int32_t id) {
    answer_buf *a = ctx;
    if (a->n < 64) a->ids[a->n] = id;
    a->n++;
    return 0;
}

/* Greedy answer of a fresh session over ids[0..n) with images px[0..n_px): at most max tokens,
 * stopping at end of turn. */
static int fresh_greedy(const int32_t *ids, int n, vl_pixels *px, int n_px, int max, int32_t *out) {
    vl_prompt p;
    int rc = vl_prompt_from_ids(&p, &g_engine->m.cfg, ids, n, px, NULL, n_px);
    VT_CHECKF(rc == 0, "prompt: %s", vl_error_get());
    if (rc) return -1;
    vl_session s;
    rc = vl_session_init(&s, &g_engine->m, n + max, 2048, 200);
    float *logits = malloc((size_t)g_engine->m.cfg.vocab * sizeof *logits);
    int k = 0;
    if (rc == 0 && vl_prefill(&s.seq, &p, logits, NULL) == 0) {
        for (; k < max; k++) {
            int32_t t = vl_argmax(logits, g_engine->m.cfg.vocab);
            if (vl_model_is_eos(&g_engine->m, t)) break;
            out[k] = t;
            if (k + 1 < max && vl_decode_step(&s.seq, t, logits)) break;
        }
    }
    free(logits);
    vl_session_free(&s);
    vl_prompt_free(&p);
    return k;
}

static void start_chat(vl_chat *c, int64_t ctx, int max_answer, int chunk) {
    vl_request rq;
    vl_request_default(&rq); /* greedy */
    vl_chat_shape sh = {ctx, max_answer, chunk, 200};
    int rc = vl_chat_start(c, g_engine, &rq, &sh);
    VT_CHECKF(rc == 0, "chat start: %s", vl_error_get());
}

/* Three turns (one image, two images, none); the conversation's ids, each answer, the cache. */
static void three_turns(int chunk) {
    static const char *texts[3] = {"What is in this picture?", "And these two?\n\nCompare.",
                                   "\n thanks"};
    static const int imgs[3][2] = {{0, 0}, {1, 2}, {0, 0}};
    static const int n_imgs[3] = {1, 2, 0};
    vl_chat c;
    start_chat(&c, 400, 6, chunk);
    int32_t *want = malloc(4000 * sizeof *want);
    char *text = malloc(1 << 16);
    int n_want = 0;
    vl_pixels all[3];
    int n_all = 0;
    for (int t = 0; t < 3; t++) {
        vl_pixels turn_px[2];
        for (int i = 0; i < n_imgs[t]; i++) turn_px[i] = all[n_all++] = g_px[imgs[t][i]];
        answer_buf a = {{0}, 0};
        vl_chat_stats st;
        int64_t cached = c.s.seq.n_past;
        int rc = vl_chat_turn(&c, texts[t], turn_px, NULL, n_imgs[t], collect, &a, &st);
        VT_CHECKF(rc == 0, "turn %d: %s", t + 1, vl_error_get());
        if (rc) break;
        user_text(text, 1 << 16, t == 0, imgs[t], n_imgs[t], texts[t]);
        tok_append(want, &n_want, text);
        /* a cache-free greedy answer over the conversation so far */
        int32_t fresh[8];
        int k = fresh_greedy(want, n_want, all, n_all, 6, fresh);
        VT_CHECK_INT(a.n, k);
        VT_CHECK_INT(st.answer_tokens, a.n);
        VT_CHECK_INT(st.prefill_tokens, n_want - cached); /* only what the cache lacked */
        for (int i = 0; i < k && i < a.n; i++)
            VT_CHECKF(a.ids[i] == fresh[i], "chunk %d turn %d token %d: %d, fresh %d", chunk, t + 1,
                      i, a.ids[i], fresh[i]);
        memcpy(want + n_want, a.ids, (size_t)a.n * sizeof *want);
        n_want += a.n;
        tok_append(want, &n_want, "<|im_end|>\n");
        VT_CHECK_INT(c.n_conv, n_want);
        int same = c.n_conv == n_want && memcmp(c.conv, want, (size_t)n_want * 4) == 0;
        VT_CHECKF(same, "chunk %d turn %d: the conversation's ids differ from the template's",
                  chunk, t + 1);
        /* 6 tokens, no end of turn: the last is fed with the next turn, after the closing */
        VT_CHECK_INT(c.s.seq.n_past, c.n_conv - 3);
    }
    /* the kept cache against one prefill of the cached ids */
    vl_prompt p;
    int rc =
        vl_prompt_from_ids(&p, &g_engine->m.cfg, c.conv, (int)c.s.seq.n_past, all, NULL, n_all);
    VT_CHECKF(rc == 0, "prompt: %s", vl_error_get());
    vl_session s;
    rc = rc || vl_session_init(&s, &g_engine->m, c.s.seq.max_ctx, 2048, 200) ||
         vl_prefill(&s.seq, &p, NULL, NULL);
    VT_CHECKF(rc == 0, "fresh prefill: %s", vl_error_get());
    if (rc == 0) {
        const vl_config *cf = &g_engine->m.cfg;
        int64_t rows = (int64_t)cf->n_layers * 2 * cf->n_kv_heads, D = cf->head_dim;
        double worst = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t t = 0; t < c.s.seq.n_past; t++)
                for (int64_t d = 0; d < D; d++) {
                    size_t at = (size_t)((r * c.s.seq.max_ctx + t) * D + d);
                    float x = ((float *)c.s.seq.mem.kv)[at], y = ((float *)s.seq.mem.kv)[at];
                    double e = fabs((double)x - y) / (1.0 + fabs((double)y));
                    if (e > worst) worst = e;
                }
        VT_CHECKF(worst < 1e-5, "chunk %d: kept cache differs by %g from a fresh prefill", chunk,
                  worst);
        VT_CHECK_INT(c.s.seq.rope_delta, s.seq.rope_delta);
        vl_session_free(&s);
    }
    vl_prompt_free(&p);
    free(text);
    free(want);
    vl_chat_free(&c);
}

/* /clear: the same first turn again gives the same answer and conversation. */
static void clear_starts_over(void) {
    vl_chat c;
    start_chat(&c, 400, 5, 2048);
    answer_buf a1 = {{0}, 0}, a2 = {{0}, 0}, a3 = {{0}, 0};
    vl_chat_stats st;
    VT_CHECK(vl_chat_turn(&c, "Hello.", &g_px[1], NULL, 1, collect, &a1, &st) == 0);
    int32_t first[64];
    int n_first = c.n_conv;
    memcpy(first, c.conv, (size_t)n_first * 4);
    VT_CHECK(vl_chat_turn(&c, "More.", &g_px[2], NULL, 1, collect, &a2, &st) == 0);
    vl_chat_clear(&c);
    VT_CHECK_INT(c.n_conv, 0);
    VT_CHECK(vl_chat_turn(&c, "Hello.", &g_px[1], NULL, 1, collect, &a3, &st) == 0);
    VT_CHECK_INT(c.n_conv, n_first);
    VT_CHECK(c.n_conv == n_first && memcmp(c.conv, first, (size_t)n_first * 4) == 0);
    VT_CHECK_INT(a3.n, a1.n);
    VT_CHECK(memcmp(a3.ids, a1.ids, (size_t)a1.n * 4) == 0);
    vl_chat_free(&c);
}

/* A message that does not fit is refused (1) and leaves the conversation as it was; an answer
 * that reaches the end of the context stops there. */
static void context_full(void) {
    vl_chat c;
    start_chat(&c, 48, 0, 2048); /* turn 1 with img_a is 36 tokens */
    answer_buf a = {{0}, 0};
    vl_chat_stats st;
    VT_CHECK(vl_chat_turn(&c, "hi there", &g_px[0], NULL, 1, collect, &a, &st) == 0);
    VT_CHECK_INT(st.stop, VL_CHAT_STOP_CONTEXT);
    VT_CHECK_INT(a.n, 48 - 36 + 1); /* the cache is full, the last token waits */
    VT_CHECK_INT(c.s.seq.n_past, 48);
    int n_conv = c.n_conv;
    vl_error_clear();
    answer_buf b = {{0}, 0};
    VT_CHECK_INT(vl_chat_turn(&c, "more", NULL, NULL, 0, collect, &b, &st), 1);
    VT_CHECKF(strstr(vl_error_get(), "conversation is full") != NULL, "%s", vl_error_get());
    VT_CHECK_INT(c.n_conv, n_conv);
    VT_CHECK_INT(b.n, 0);
    vl_error_clear();
    /* text that is not UTF-8: refused the same way */
    VT_CHECK_INT(vl_chat_turn(&c, "bad \xff", NULL, NULL, 0, collect, &b, &st), 1);
    VT_CHECK_INT(c.n_conv, n_conv);
    vl_error_clear();
    vl_chat_clear(&c);
    VT_CHECK(vl_chat_turn(&c, "hi", NULL, NULL, 0, collect, &b, &st) == 0);
    vl_chat_free(&c);
}

/* End of turn: with the config's eos set to the second greedy token, the answer stops before
 * it, every answer token is in the cache, and the closing follows (the eos id itself is not in
 * the conversation: the template closes with <|im_end|>). The next turn still equals a fresh
 * run over those ids. */
static void stops_at_eos(void) {
    vl_chat c;
    start_chat(&c, 400, 8, 2048);
    answer_buf a = {{0}, 0};
    vl_chat_stats st;
    VT_CHECK(vl_chat_turn(&c, "Hello.", &g_px[0], NULL, 1, collect, &a, &st) == 0);
    int32_t eos = a.ids[1], saved = g_engine->m.cfg.eos_id;
    VT_CHECK(a.ids[0] != eos);
    vl_chat_clear(&c);
    g_engine->m.cfg.eos_id = eos;
    answer_buf b = {{0}, 0};
    VT_CHECK(vl_chat_turn(&c, "Hello.", &g_px[0], NULL, 1, collect, &b, &st) == 0);
    VT_CHECK_INT(b.n, 1);
    VT_CHECK_INT(st.stop, VL_CHAT_STOP_EOS);
    VT_CHECK_INT(c.s.seq.n_past, c.n_conv - 2); /* only "<|im_end|>\n" waits */
    VT_CHECK_INT(c.conv[c.n_conv - 3], a.ids[0]);
    answer_buf d = {{0}, 0};
    VT_CHECK(vl_chat_turn(&c, "Next?", &g_px[2], NULL, 1, collect, &d, &st) == 0);
    int32_t fresh[8];
    vl_pixels both[2] = {g_px[0], g_px[2]};
    int k = fresh_greedy(c.conv, c.n_conv - d.n - 2, both, 2, 8, fresh);
    VT_CHECK_INT(d.n, k);
    for (int i = 0; i < k && i < d.n; i++) VT_CHECK_INT(d.ids[i], fresh[i]);
    g_engine->m.cfg.eos_id = saved;
    vl_chat_free(&c);
}

int main(void) {
    char dir[4096], tok[4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    snprintf(dir, sizeof dir, "%s", vt_fixture("models/tiny-a"));
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = dir;
    o.tokenizer_path = tok;
    o.backend = VL_BACKEND_CPU;
    g_engine = vl_engine_open(&o);
    if (!g_engine || vl_engine_place_weights(g_engine)) {
        fprintf(stderr, "cannot load %s: %s\n", dir, vl_error_get());
        return 1;
    }
    static const char *files[3] = {"models/images/img_a_56x84.png",
                                   "models/images/img_b_100x60.png",
                                   "models/images/img_c_45x130.png"};
    for (int i = 0; i < 3; i++) {
        vl_image img;
        int rc = vl_image_load(&img, vt_fixture(files[i]));
        rc = rc || vl_preprocess_image(&img, &g_engine->m.pre, &g_px[i]);
        if (rc) {
            fprintf(stderr, "cannot load %s: %s\n", files[i], vl_error_get());
            return 1;
        }
        vl_image_free(&img);
    }
    three_turns(2048);
    three_turns(7); /* turns straddle prefill chunks */
    clear_starts_over();
    context_full();
    stops_at_eos();
    for (int i = 0; i < 3; i++) vl_pixels_free(&g_px[i]);
    vl_engine_close(g_engine);
    return vt_finish();
}
