/* test_openai_stream.c: what a client reads back (server/stop_text.c, openai_response.c):
 *
 *   stop      stop strings over streamed pieces: text that could start a stop string is held,
 *             a stop string split over pieces is found, the first complete of several wins, held
 *             text that never became one is released (next piece or the end), NUL bytes pass
 *   random    10000 random texts over {a, b, c}, random stop strings and random piece splits:
 *             the streamed text always a prefix of the answer, which is the text cut before
 *             the first stop string to be complete (found by brute force here)
 *   sse       the chunks of a stream (role in the first, content, finish_reason in the last,
 *             "usage": null in each when usage is asked, the usage chunk with no choices, the
 *             error event, [DONE]) and the non-streaming chat.completion, each parsed back */
#include "server/server_impl.h"
#include "vltest.h"

#include <cJSON.h>

static void feed(vl_stop_filter *f, const char *piece, vl_buf *out, int want_rc,
                 const char *want_out) {
    int rc = vl_stop_feed(f, piece, strlen(piece), out);
    const char *got = out->p ? out->p : "";
    VT_CHECKF(rc == want_rc && out->len == strlen(want_out) && memcmp(got, want_out, out->len) == 0,
              "after '%s': rc %d out '%.*s' want rc %d '%s'", piece, rc, (int)out->len, got,
              want_rc, want_out);
}

static void test_stop(void) {
    static const char *const end[] = {"END"};
    vl_stop_filter f;
    vl_buf out = {0};
    vl_stop_init(&f, NULL, 0); /* no stop strings: everything passes at once */
    feed(&f, "abc E", &out, 0, "abc E");
    vl_stop_free(&f);
    vl_buf_free(&out);

    vl_stop_init(&f, end, 1);
    feed(&f, "abc E", &out, 0, "abc ");  /* "E" may start END: held */
    feed(&f, "N", &out, 0, "abc ");      /* "EN" too */
    feed(&f, "D more", &out, 1, "abc "); /* END: the text ends before it */
    feed(&f, "after", &out, 1, "abc ");  /* nothing after a stop */
    VT_CHECK_INT(vl_stop_finish(&f, &out), 0);
    VT_CHECK_INT(out.len, 4);
    vl_stop_free(&f);
    vl_buf_free(&out);

    vl_stop_init(&f, end, 1);
    feed(&f, "E", &out, 0, "");
    feed(&f, "x", &out, 0, "Ex"); /* a false start is released */
    feed(&f, "abc EN", &out, 0, "Exabc ");
    VT_CHECK_INT(vl_stop_finish(&f, &out), 0); /* the end: held text was text after all */
    VT_CHECK(out.len == 8 && memcmp(out.p, "Exabc EN", 8) == 0);
    vl_stop_free(&f);
    vl_buf_free(&out);

    static const char *const two[] = {"bb", "ab"};
    vl_stop_init(&f, two, 2);
    feed(&f, "xabb", &out, 1, "x"); /* "ab" (ends at 3) is complete before "bb" (at 4) */
    vl_stop_free(&f);
    vl_buf_free(&out);

    static const char *const late[] = {"a", "cac"};
    vl_stop_init(&f, late, 2);
    feed(&f, "bbbc", &out, 0, "bbb");
    feed(&f, "acb", &out, 1, "bbbc"); /* "a" is complete first: "cac" would need more text */
    vl_stop_free(&f);
    vl_buf_free(&out);

    static const char *const tie[] = {"b", "ab"};
    vl_stop_init(&f, tie, 2);
    feed(&f, "xab", &out, 1, "x"); /* both end at 3: the one starting first */
    vl_stop_free(&f);
    vl_buf_free(&out);

    static const char *const aab[] = {"aab"};
    vl_stop_init(&f, aab, 1);
    feed(&f, "a", &out, 0, "");
    feed(&f, "a", &out, 0, "");
    feed(&f, "a", &out, 0, "a"); /* "aaa": only "aa" can still start aab */
    feed(&f, "b", &out, 1, "a");
    vl_stop_free(&f);
    vl_buf_free(&out);

    static const char *const nl[] = {"\n\n"};
    vl_stop_init(&f, nl, 1);
    VT_CHECK_INT(vl_stop_feed(&f, "a\0b\n", 4, &out), 0);
    VT_CHECK(out.len == 3 && memcmp(out.p, "a\0b", 3) == 0);
    VT_CHECK_INT(vl_stop_feed(&f, "\nz", 2, &out), 1);
    VT_CHECK_INT(out.len, 3);
    vl_stop_free(&f);
    vl_buf_free(&out);
}

/* The answer by brute force: the text cut before the first stop string to be complete (the
 * earliest end; at equal ends the one starting first). */
static size_t cut_at_first_stop(const char *text, const char *const *stops, int n) {
    size_t len = strlen(text);
    for (size_t end = 1; end <= len; end++) {
        size_t start = len;
        for (int i = 0; i < n; i++) {
            size_t k = strlen(stops[i]);
            if (k <= end && strncmp(text + end - k, stops[i], k) == 0 && end - k < start)
                start = end - k;
        }
        if (start < len) return start;
    }
    return len;
}

static void random_case(void) {
    char text[41], stops_buf[VL_MAX_STOP][6];
    const char *stops[VL_MAX_STOP];
    size_t n = 1 + vt_rng_next() % 40;
    for (size_t i = 0; i < n; i++) text[i] = (char)('a' + vt_rng_next() % 3);
    text[n] = 0;
    int ns = 1 + (int)(vt_rng_next() % VL_MAX_STOP);
    for (int s = 0; s < ns; s++) {
        size_t k = 1 + vt_rng_next() % 5;
        for (size_t i = 0; i < k; i++) stops_buf[s][i] = (char)('a' + vt_rng_next() % 3);
        stops_buf[s][k] = 0;
        stops[s] = stops_buf[s];
    }
    size_t want = cut_at_first_stop(text, stops, ns);
    vl_stop_filter f;
    vl_buf out = {0};
    vl_stop_init(&f, stops, ns);
    int ok = 1, rc = 0;
    for (size_t at = 0; at < n && rc == 0;) {
        size_t k = 1 + vt_rng_next() % 6;
        if (k > n - at) k = n - at;
        rc = vl_stop_feed(&f, text + at, k, &out);
        at += k;
        ok &= out.len <= want &&
              memcmp(out.p ? out.p : "", text, out.len) == 0; /* never taken back */
    }
    if (rc == 0) vl_stop_finish(&f, &out);
    ok &= out.len == want && memcmp(out.p ? out.p : "", text, want) == 0;
    ok &= (rc == 1) == (want < n);
    VT_CHECKF(ok, "text '%s' stops %d first '%s': got '%.*s' want %zu bytes", text, ns, stops[0],
              (int)out.len, out.p ? out.p : "", want);
    vl_stop_free(&f);
    vl_buf_free(&out);
}

static void test_random(void) {
    vt_rng_state = 16;
    int before = vt_failed;
    for (int i = 0; i < 10000 && vt_failed - before < 5; i++) random_case();
}

/* "data: {json}\n\n" -> the parsed object (NULL when the frame is wrong). */
static cJSON *event(const char *ev) {
    size_t n = ev ? strlen(ev) : 0;
    if (n < 8 || strncmp(ev, "data: ", 6) != 0 || strcmp(ev + n - 2, "\n\n") != 0) return NULL;
    return cJSON_ParseWithLength(ev + 6, n - 8);
}

static const char *str_at(const cJSON *o, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItem(o, a);
    if (b) x = cJSON_GetObjectItem(cJSON_IsArray(x) ? cJSON_GetArrayItem(x, 0) : x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void test_sse(void) {
    vl_completion_meta m = {.id = "chatcmpl-1", .model = "tiny", .created = 1700000000};
    char *ev = vl_sse_chunk(&m, 1, "", 0, NULL, 1);
    cJSON *o = event(ev), *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    VT_CHECK(o && strcmp(str_at(o, "object", NULL), "chat.completion.chunk") == 0);
    VT_CHECK(strcmp(str_at(o, "id", NULL), "chatcmpl-1") == 0);
    VT_CHECK(strcmp(str_at(o, "model", NULL), "tiny") == 0);
    VT_CHECK(cJSON_GetObjectItem(o, "created")->valuedouble == 1700000000.0);
    VT_CHECK(strcmp(str_at(c0, "delta", "role"), "assistant") == 0);
    VT_CHECK(strcmp(str_at(c0, "delta", "content"), "") == 0);
    VT_CHECK(cJSON_IsNull(cJSON_GetObjectItem(c0, "finish_reason")));
    VT_CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "usage")));
    cJSON_Delete(o);
    free(ev);

    ev = vl_sse_chunk(&m, 0, "a\0\"b\n", 5, NULL, 0); /* a NUL: escaped, not a cut */
    VT_CHECK(ev && strstr(ev, "\"content\":\"a\\u0000\\\"b\\n\"") != NULL);
    o = event(ev);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    VT_CHECK(o && !cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "role"));
    VT_CHECK(!cJSON_GetObjectItem(o, "usage"));
    cJSON_Delete(o);
    free(ev);

    ev = vl_sse_chunk(&m, 0, NULL, 0, "length", 1);
    o = event(ev);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    VT_CHECK(o && strcmp(str_at(c0, "finish_reason", NULL), "length") == 0);
    VT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(c0, "delta")) == 0);
    cJSON_Delete(o);
    free(ev);

    vl_token_usage u = {12, 5};
    ev = vl_sse_usage(&m, &u);
    o = event(ev);
    VT_CHECK(o && cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) == 0);
    cJSON *us = cJSON_GetObjectItem(o, "usage");
    VT_CHECK(cJSON_GetObjectItem(us, "prompt_tokens")->valueint == 12);
    VT_CHECK(cJSON_GetObjectItem(us, "completion_tokens")->valueint == 5);
    VT_CHECK(cJSON_GetObjectItem(us, "total_tokens")->valueint == 17);
    cJSON_Delete(o);
    free(ev);

    vl_api_error e;
    vl_api_fail(&e, 503, "server_error", NULL, "shutting down");
    ev = vl_sse_error(&e);
    o = event(ev);
    VT_CHECK(o && strcmp(str_at(o, "error", "message"), "shutting down") == 0);
    cJSON_Delete(o);
    free(ev);
    VT_CHECK(strcmp(VL_SSE_DONE, "data: [DONE]\n\n") == 0);

    char *body = vl_completion_json(&m, "hi\0x", 4, "stop", &u);
    o = cJSON_Parse(body);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    VT_CHECK(o && strcmp(str_at(o, "object", NULL), "chat.completion") == 0);
    VT_CHECK(cJSON_GetObjectItem(c0, "index")->valueint == 0);
    VT_CHECK(strcmp(str_at(c0, "message", "role"), "assistant") == 0);
    VT_CHECK(strstr(body, "\"content\":\"hi\\u0000x\"") != NULL);
    VT_CHECK(strcmp(str_at(c0, "finish_reason", NULL), "stop") == 0);
    VT_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint == 17);
    cJSON_Delete(o);
    free(body);

    body = vl_models_json("tiny-a", 5);
    o = cJSON_Parse(body);
    VT_CHECK(o && strcmp(str_at(o, "object", NULL), "list") == 0);
    VT_CHECK(strcmp(str_at(o, "data", "id"), "tiny-a") == 0);
    VT_CHECK(strcmp(str_at(o, "data", "object"), "model") == 0);
    cJSON_Delete(o);
    free(body);
}

int main(void) {
    test_stop();
    test_random();
    test_sse();
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
