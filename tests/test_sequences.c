/* test_sequences.c: several sequences on one context (tiny-a, CPU backend).
 *
 * Two requests (one with an image, one with another image and other text) run alone, each on
 * its own session, then together on one context of two slots, interleaved: prefill A, prefill
 * B, decode A, decode B, ... Each must produce exactly the tokens it produces alone, on the
 * host path (vl_decode_step) and on the backend path (vl_decode_begin right after each
 * prefill, then vl_decode_next alternating). A shared KV cache or position would change them.
 * Also: a third sequence is refused while both slots are taken and gets one once a sequence
 * closes, and the context's arena is what the planner prices for two sequences. */
#include "engine/engine.h"
#include "vltest.h"

enum { N = 12 };

typedef struct {
    vl_pixels px;
    vl_prompt p;
} request;

static vl_model model;

static int request_build(request *r, const char *image, const char *text) {
    vl_image im;
    memset(r, 0, sizeof *r);
    int rc = vl_image_load(&im, vt_fixture(image));
    if (!rc) {
        rc = vl_preprocess_image(&im, &model.pre, &r->px);
        vl_image_free(&im);
    }
    int src = 0;
    if (!rc) rc = vl_prompt_build(&r->p, &model, text, &r->px, &src, 1);
    VT_CHECKF(rc == 0, "request %s: %s", image, vl_error_get());
    return rc;
}

static void request_free(request *r) {
    vl_prompt_free(&r->p);
    vl_pixels_free(&r->px);
}

/* The shape that holds both requests. */
static vl_shape shape_for(const request *a, const request *b, int n_sequences) {
    vl_shape sh = {0};
    sh.prompt_tokens = a->p.n > b->p.n ? a->p.n : b->p.n;
    sh.max_tokens = N;
    sh.chunk = 7; /* images straddle chunk boundaries */
    sh.max_patches = a->px.n_patches > b->px.n_patches ? a->px.n_patches : b->px.n_patches;
    sh.n_sequences = n_sequences;
    return sh;
}

/* Host path: greedy tokens from the prefill's logits, then one vl_decode_step per token. */
static int host_first(vl_sequence *s, const request *r, float *logits, int32_t *tok) {
    if (vl_prefill(s, &r->p, logits, NULL)) return -1;
    tok[0] = vl_argmax(logits, model.cfg.vocab);
    return 0;
}

static int host_next(vl_sequence *s, float *logits, int32_t *tok, int k) {
    if (vl_decode_step(s, tok[k - 1], logits)) return -1;
    tok[k] = vl_argmax(logits, model.cfg.vocab);
    return 0;
}

/* Tokens of r alone: host path (host) and backend path (dev). */
static void alone(const request *r, const vl_shape *sh, int32_t *host, int32_t *dev) {
    float *logits = malloc((size_t)model.cfg.vocab * sizeof *logits);
    vl_session s;
    int rc = !logits || vl_session_start(&s, &model, sh) || host_first(&s.seq, r, logits, host);
    for (int k = 1; !rc && k < N; k++) rc = host_next(&s.seq, logits, host, k);
    rc = rc || vl_sequence_reset(&s.seq) || vl_prefill(&s.seq, &r->p, NULL, NULL) ||
         vl_decode_begin(&s.seq, 0.0f, 0);
    for (int k = 1; !rc && k < N; k++) rc = vl_decode_next(&s.seq);
    VT_CHECKF(rc == 0, "alone: %s", vl_error_get());
    vl_decode_tokens(&s.seq, dev, N);
    vl_session_free(&s);
    free(logits);
}

static void check_same(const char *what, const int32_t *got, const int32_t *want) {
    int same = 0;
    for (int k = 0; k < N; k++) same += got[k] == want[k];
    VT_CHECKF(same == N, "%s: %d of %d tokens differ from the sequence alone", what, N - same, N);
}

/* A and B interleaved on one context of two slots (both paths). */
static void interleaved(const request *a, const request *b, const vl_shape *sh,
                        int32_t want[2][2][N]) {
    vl_context cx;
    vl_sequence sa, sb, sc;
    float *la = malloc((size_t)model.cfg.vocab * sizeof *la);
    float *lb = malloc((size_t)model.cfg.vocab * sizeof *lb);
    int32_t ta[N], tb[N];
    int rc = !la || !lb || vl_context_start(&cx, &model, sh, NULL) || vl_sequence_open(&sa, &cx) ||
             vl_sequence_open(&sb, &cx);
    VT_CHECKF(rc == 0, "context: %s", vl_error_get());
    if (rc) goto done;
    VT_CHECKF(vl_sequence_open(&sc, &cx) != 0, "a third sequence got one of two slots");
    rc = host_first(&sa, a, la, ta) || host_first(&sb, b, lb, tb);
    for (int k = 1; !rc && k < N; k++) rc = host_next(&sa, la, ta, k) || host_next(&sb, lb, tb, k);
    VT_CHECKF(rc == 0, "host path: %s", vl_error_get());
    check_same("A, host path", ta, want[0][0]);
    check_same("B, host path", tb, want[1][0]);

    /* B's slot again, through close and open: the backend path, alternating steps */
    vl_sequence_close(&sb);
    rc = vl_sequence_open(&sb, &cx) || vl_sequence_reset(&sa);
    rc = rc || vl_prefill(&sa, &a->p, NULL, NULL) || vl_decode_begin(&sa, 0.0f, 0) ||
         vl_prefill(&sb, &b->p, NULL, NULL) || vl_decode_begin(&sb, 0.0f, 0);
    for (int k = 1; !rc && k < N; k++) rc = vl_decode_next(&sa) || vl_decode_next(&sb);
    VT_CHECKF(rc == 0, "backend path: %s", vl_error_get());
    vl_decode_tokens(&sa, ta, N);
    vl_decode_tokens(&sb, tb, N);
    check_same("A, backend path", ta, want[0][1]);
    check_same("B, backend path", tb, want[1][1]);
    /* the arena is the planner's figure for two sequences, byte for byte */
    size_t groups[VL_MEM_GROUPS];
    VT_CHECK_INT(vl_layout_plan(&model.cfg, model.be->act, sh, groups), cx.arena.peak_total);
    VT_CHECK_INT(cx.arena.peak_total, cx.arena.cap);
    for (int g = 0; g < VL_MEM_GROUPS; g++) VT_CHECK_INT(groups[g], cx.arena.peak[g]);
    vl_sequence_close(&sa);
    vl_sequence_close(&sb);
done:
    vl_context_free(&cx);
    free(la);
    free(lb);
}

int main(void) {
    char tok[4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = vt_fixture("models/tiny-a");
    o.tokenizer_path = tok;
    o.backend = VL_BACKEND_CPU;
    if (vl_model_load(&model, &o, vl_backend_cpu())) {
        VT_CHECKF(0, "tiny-a: %s", vl_error_get());
        return vt_finish();
    }
    request a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (request_build(&a, "models/images/img_b_100x60.png", "Describe it.") == 0 &&
        request_build(&b, "tiny-qwen2vl/tiny_input_140x84.png",
                      "What is in this picture? Answer in one long sentence.") == 0) {
        vl_shape one = shape_for(&a, &b, 1), two = shape_for(&a, &b, 2);
        int32_t want[2][2][N];
        alone(&a, &one, want[0][0], want[0][1]);
        alone(&b, &one, want[1][0], want[1][1]);
        check_same("A: backend path vs host path", want[0][1], want[0][0]);
        int differ = 0;
        for (int k = 0; k < N; k++) differ += want[0][0][k] != want[1][0][k];
        VT_CHECKF(differ > 0, "A and B generate the same tokens: the test could not fail");
        interleaved(&a, &b, &two, want);
    }
    request_free(&a);
    request_free(&b);
    vl_model_free(&model);
    return vt_finish();
}
