/* test_engine_api.c: the library's API (engine/vlrun.h) against transformers' goldens.
 *
 * One engine on tiny-a (CPU), several requests on it:
 *   1. golden_tiny-a.json's request: its prompt length and its 24 greedy tokens, exactly;
 *   2. the same request again: the same tokens, the weights placed once (weight_loads 1);
 *   3. a request whose image is missing: refused with the error set, the engine still usable;
 *   4. prefill_only with on_each_logits: the argmax at every prompt position, exactly.
 * Callbacks: on_text receives the answer's bytes (their concatenation is the result's text),
 * on_prompt the prompt's ids (the golden's input_ids). */
#include "engine/vlrun.h"
#include "vltest.h"

#include <cJSON.h>
#include <stdlib.h>

static cJSON *load_json(const char *path) {
    size_t len = 0;
    char *text = vt_read_all(path, &len);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

typedef struct {
    char text[8192];
    size_t len;
    const cJSON *want_ids; /* golden input_ids, or NULL */
    int ids_ok, ids_seen;
    const cJSON *want_argmax; /* golden argmax_every_position, or NULL */
    int argmax_ok, positions;
} sink;

static int on_text(void *ctx, const char *piece, size_t len) {
    sink *s = ctx;
    if (s->len + len < sizeof s->text) memcpy(s->text + s->len, piece, len);
    s->len += len;
    return 0;
}

static int on_prompt(void *ctx, const int32_t *ids, int n) {
    sink *s = ctx;
    s->ids_seen = 1;
    s->ids_ok = s->want_ids && cJSON_GetArraySize(s->want_ids) == n;
    for (int i = 0; s->ids_ok && i < n; i++)
        s->ids_ok = (int)cJSON_GetArrayItem(s->want_ids, i)->valuedouble == ids[i];
    return 0;
}

static int on_each(void *ctx, int64_t pos, const float *logits, int n) {
    sink *s = ctx;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    const cJSON *w = cJSON_GetArrayItem(s->want_argmax, (int)pos);
    if (pos == 0) s->argmax_ok = 1;
    s->argmax_ok = s->argmax_ok && w && (int)w->valuedouble == best;
    s->positions++;
    return 0;
}

static int tokens_equal(const vl_result *r, const cJSON *want, int n) {
    if (r->n_tokens < n || cJSON_GetArraySize(want) < n) return 0;
    for (int i = 0; i < n; i++)
        if ((int)cJSON_GetArrayItem(want, i)->valuedouble != r->tokens[i]) return 0;
    return 1;
}

int main(void) {
    char dir[4096], tok[4096], img[3][4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    snprintf(dir, sizeof dir, "%s", vt_fixture("models/tiny-a"));
    cJSON *g = load_json(vt_fixture("models/golden_tiny-a.json"));
    VT_CHECK(g != NULL);
    if (!g) return vt_finish();
    const cJSON *files = cJSON_GetObjectItem(g, "images");
    vl_image_arg args[8];
    int n_args = cJSON_GetArraySize(files);
    for (int i = 0; i < n_args && i < 8; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "models/images/%s", cJSON_GetArrayItem(files, i)->valuestring);
        snprintf(img[i % 3], sizeof img[0], "%s", vt_fixture(rel));
        args[i] = (vl_image_arg){.path = strdup(img[i % 3]), .repeat = 1};
    }

    vl_engine_config cfg;
    vl_engine_config_default(&cfg);
    cfg.backend = VL_BACKEND_CPU;
    cfg.model_dir = dir;
    cfg.tokenizer_path = tok;
    vl_engine *e = vl_engine_open(&cfg);
    VT_CHECKF(e != NULL, "open: %s", vl_error_get());
    if (!e) return vt_finish();

    vl_request rq;
    vl_request_default(&rq);
    rq.images = args;
    rq.n_images = n_args;
    rq.prompt = cJSON_GetObjectItem(g, "prompt")->valuestring;
    rq.max_tokens = 24;
    const cJSON *greedy = cJSON_GetObjectItem(g, "greedy");
    for (int round = 0; round < 2; round++) { /* 1 and 2: the golden request, twice */
        sink s = {.want_ids = cJSON_GetObjectItem(g, "input_ids")};
        vl_callbacks cb = {.ctx = &s, .on_text = on_text, .on_prompt = on_prompt};
        vl_result r;
        int rc = vl_engine_run(e, &rq, &cb, &r);
        VT_CHECKF(rc == 0, "round %d: %s", round, vl_error_get());
        if (rc) continue;
        VT_CHECKF(s.ids_seen && s.ids_ok, "round %d: prompt ids differ from transformers'", round);
        VT_CHECKF(r.n_tokens == 24 && tokens_equal(&r, greedy, 24), "round %d: greedy tokens",
                  round);
        VT_CHECK(r.stop_reason && strcmp(r.stop_reason, "max_tokens") == 0);
        VT_CHECKF(r.weight_loads == 1, "round %d: weights placed %d times", round, r.weight_loads);
        VT_CHECKF(s.len == r.text_len && memcmp(s.text, r.text, r.text_len) == 0,
                  "round %d: streamed text (%zu bytes) is not the result's (%zu)", round, s.len,
                  r.text_len);
        vl_result_free(&r);
    }

    /* 3: a refused request leaves the engine usable */
    vl_image_arg missing = {.path = "/nonexistent/vlrun-test.png", .repeat = 1};
    vl_request bad = rq;
    bad.images = &missing;
    bad.n_images = 1;
    vl_result r;
    vl_error_clear();
    VT_CHECK(vl_engine_run(e, &bad, NULL, &r) != 0 && strstr(vl_error_get(), "vlrun-test.png"));
    vl_error_clear();

    /* 4: prefill only, every position's logits */
    sink s = {.want_argmax = cJSON_GetObjectItem(g, "argmax_every_position")};
    vl_request pre = rq;
    pre.prefill_only = 1;
    vl_callbacks cb = {.ctx = &s, .on_each_logits = on_each};
    int rc = vl_engine_run(e, &pre, &cb, &r);
    VT_CHECKF(rc == 0, "prefill only: %s", vl_error_get());
    VT_CHECKF(rc == 0 && s.positions == r.prompt_tokens && s.argmax_ok,
              "argmax at every position: %d positions, equal %d", s.positions, s.argmax_ok);
    if (rc == 0) vl_result_free(&r);

    vl_engine_close(e);
    for (int i = 0; i < n_args && i < 8; i++) free((char *)args[i].path);
    cJSON_Delete(g);
    return vt_finish();
}
