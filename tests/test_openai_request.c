/* test_openai_request.c: POST /v1/chat/completions bodies -> the engine's request
 * (server/openai_request.c), without HTTP:
 *
 *   fields   every field read: model, messages (roles, string and part contents, image_url as an
 *            object or a string, assistant without content), max_tokens and
 *            max_completion_tokens (the latter wins), temperature (0 = greedy; default 1), top_p,
 *            seed (negative too), stop (a string, a list, empty strings dropped), stream,
 *            stream_options.include_usage, n = 1, null as absent, unknown fields ignored; and
 *            the vl_request built from them
 *   errors   each malformed body and each wrong type or range -> 400, invalid_request_error and
 *            the param naming the field
 *   bodies   the error body's JSON (api_error.c) and the data: URL decoder (data_url.c):
 *            base64 with and without padding, URL-safe, whitespace, refusals */
#include "server/server_impl.h"
#include "vltest.h"

#include <cJSON.h>

static int parse(const char *body, vl_oai_chat *c, vl_api_error *e) {
    memset(e, 0, sizeof *e);
    return vl_oai_chat_parse(body, strlen(body), c, e);
}

static void test_fields(void) {
    vl_oai_chat c;
    vl_api_error e;
    const char *body =
        "{\"model\":\"m1\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\","
        "\"detail\":\"high\"}},{\"type\":\"text\",\"text\":\"what?\"},{\"type\":\"image_url\","
        "\"image_url\":\"b.png\"}]},{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"developer\",\"content\":\"dev\"},{\"role\":\"user\",\"content\":\"more\"}],"
        "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0.5,\"top_p\":0.9,"
        "\"seed\":-3,\"stop\":[\"END\",\"\",\"##\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"n\":1,\"logprobs\":null,"
        "\"frequency_penalty\":0.2,\"tools\":[],\"whatever\":{\"x\":[1,2]}}";
    VT_CHECK_INT(parse(body, &c, &e), 0);
    VT_CHECK(c.model && strcmp(c.model, "m1") == 0);
    VT_CHECK_INT(c.n_messages, 5);
    VT_CHECK_INT(c.messages[0].role, VL_ROLE_SYSTEM);
    VT_CHECK_INT(c.messages[1].role, VL_ROLE_USER);
    VT_CHECK_INT(c.messages[2].role, VL_ROLE_ASSISTANT);
    VT_CHECK_INT(c.messages[3].role, VL_ROLE_SYSTEM); /* developer: OpenAI's newer system */
    VT_CHECK_INT(c.messages[1].n_parts, 3);
    VT_CHECK_INT(c.messages[1].parts[0].image, 0);
    VT_CHECK(c.messages[1].parts[0].text == NULL);
    VT_CHECK(strcmp(c.messages[1].parts[1].text, "what?") == 0);
    VT_CHECK_INT(c.messages[1].parts[1].image, -1);
    VT_CHECK_INT(c.messages[1].parts[2].image, 1);
    VT_CHECK_INT(c.messages[2].n_parts, 1); /* null content: one empty text part */
    VT_CHECK(strcmp(c.messages[2].parts[0].text, "") == 0);
    VT_CHECK_INT(c.n_images, 2);
    VT_CHECK(strcmp(c.image_urls[0], "data:x") == 0 && strcmp(c.image_urls[1], "b.png") == 0);
    VT_CHECK_INT(c.max_tokens, 9);
    VT_CHECK(!c.greedy && c.temperature == 0.5f && c.top_p == 0.9f);
    VT_CHECK(c.has_seed && c.seed == (uint64_t)(int64_t)-3);
    VT_CHECK_INT(c.n_stop, 2);
    VT_CHECK(strcmp(c.stop[0], "END") == 0 && strcmp(c.stop[1], "##") == 0);
    VT_CHECK(c.stream && c.include_usage);

    vl_image_arg imgs[2] = {{.path = "image 1"}, {.path = "image 2"}};
    vl_request rq;
    vl_oai_chat_to_request(&c, imgs, &rq);
    VT_CHECK(rq.messages == c.messages && rq.n_messages == 5);
    VT_CHECK(rq.images == imgs && rq.n_images == 2);
    VT_CHECK(rq.max_tokens == 9 && rq.stop_at_eos && !rq.ignore_eos && !rq.greedy);
    VT_CHECK(rq.temperature == 0.5f && rq.top_p == 0.9f && rq.seed == c.seed);
    vl_oai_chat_free(&c);

    /* defaults: OpenAI's temperature 1 (sampling), no stream, max_tokens absent */
    VT_CHECK_INT(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":null,"
                       "\"stop\":\"x\",\"temperature\":null,\"stream\":null}",
                       &c, &e),
                 0);
    VT_CHECK(!c.model && !c.greedy && c.temperature == 1.0f && c.top_p == 1.0f);
    VT_CHECK(!c.stream && !c.include_usage && !c.has_seed && c.max_tokens == 0);
    VT_CHECK(c.n_stop == 1 && strcmp(c.stop[0], "x") == 0);
    vl_oai_chat_to_request(&c, NULL, &rq);
    VT_CHECK(rq.n_images == 0 && rq.max_tokens == 0 && rq.stop_at_eos);
    vl_oai_chat_free(&c);

    /* greedy: temperature 0, or top_p 0 */
    VT_CHECK_INT(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0,"
                       "\"max_tokens\":3}",
                       &c, &e),
                 0);
    VT_CHECK(c.greedy && c.max_tokens == 3);
    vl_oai_chat_to_request(&c, NULL, &rq);
    VT_CHECK(rq.greedy);
    vl_oai_chat_free(&c);
    VT_CHECK_INT(
        parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0}", &c, &e), 0);
    VT_CHECK(c.greedy);
    vl_oai_chat_free(&c);
}

/* A body that must be refused: 400, invalid_request_error, this param ("" = null). */
static void refused(const char *body, const char *param) {
    vl_oai_chat c;
    vl_api_error e;
    int rc = parse(body, &c, &e);
    VT_CHECKF(rc == -1 && e.status == 400 && e.type &&
                  strcmp(e.type, "invalid_request_error") == 0 && strcmp(e.param, param) == 0 &&
                  e.message[0],
              "%s -> rc %d status %d type %s param '%s' (want '%s'): %s", body, rc, e.status,
              e.type ? e.type : "(null)", e.param, param, e.message);
    vl_oai_chat_free(&c);
}

#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_errors(void) {
    refused("", "");
    refused("{", "");
    refused("{\"messages\":[]} x", "");
    refused("[1,2]", "");
    refused("\"str\"", "");
    refused("{\"a\":1,\"a\":2," USER "}", ""); /* a key twice */
    refused("{}", "messages");
    refused("{\"messages\":[]}", "messages");
    refused("{\"messages\":{}}", "messages");
    refused("{\"messages\":\"hi\"}", "messages");
    refused("{\"messages\":[1]}", "messages[0]");
    refused("{\"messages\":[{\"content\":\"hi\"}]}", "messages[0].role");
    refused("{\"messages\":[{\"role\":7,\"content\":\"hi\"}]}", "messages[0].role");
    refused("{\"messages\":[{\"role\":\"tool\",\"content\":\"hi\"}]}", "messages[0].role");
    refused("{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":{}}]}", "messages[0].content");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[\"hi\"]}]}", "messages[0].content[0]");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}",
            "messages[0].content[0].type");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
            "messages[0].content[0].type");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
            "messages[0].content[0].text");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
            "messages[0].content[0].text");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
            "messages[0].content[0].image_url");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
            "\"image_url\":3}]}]}",
            "messages[0].content[0].image_url");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
            "\"image_url\":{\"url\":3}}]}]}",
            "messages[0].content[0].image_url.url");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
            "\"image_url\":{\"url\":\"\"}}]}]}",
            "messages[0].content[0].image_url.url");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
            "\"content\":\"b\"}]}",
            "messages"); /* the last message must be the user's */
    refused("{" USER ",\"model\":5}", "model");
    refused("{" USER ",\"max_tokens\":\"5\"}", "max_tokens");
    refused("{" USER ",\"max_tokens\":2.5}", "max_tokens");
    refused("{" USER ",\"max_tokens\":0}", "max_tokens");
    refused("{" USER ",\"max_tokens\":-1}", "max_tokens");
    refused("{" USER ",\"max_tokens\":1e12}", "max_tokens");
    refused("{" USER ",\"max_completion_tokens\":true}", "max_completion_tokens");
    refused("{" USER ",\"temperature\":\"hot\"}", "temperature");
    refused("{" USER ",\"temperature\":-0.1}", "temperature");
    refused("{" USER ",\"temperature\":2.5}", "temperature");
    refused("{" USER ",\"top_p\":[]}", "top_p");
    refused("{" USER ",\"top_p\":1.5}", "top_p");
    refused("{" USER ",\"seed\":\"1\"}", "seed");
    refused("{" USER ",\"seed\":1.5}", "seed");
    refused("{" USER ",\"n\":2}", "n");
    refused("{" USER ",\"n\":\"1\"}", "n");
    refused("{" USER ",\"stream\":1}", "stream");
    refused("{" USER ",\"stream\":\"true\"}", "stream");
    refused("{" USER ",\"stream_options\":true}", "stream_options");
    refused("{" USER ",\"stream_options\":{\"include_usage\":\"yes\"}}",
            "stream_options.include_usage");
    refused("{" USER ",\"stop\":5}", "stop");
    refused("{" USER ",\"stop\":[\"a\",5]}", "stop");
    refused("{" USER ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop");
}

static void test_error_body(void) {
    vl_api_error e;
    vl_api_fail(&e, 400, "invalid_request_error", "messages[0]", "bad \"%s\"", "x");
    e.code = "context_length_exceeded";
    char *body = vl_api_error_body(&e);
    cJSON *j = cJSON_Parse(body);
    cJSON *err = cJSON_GetObjectItem(j, "error");
    VT_CHECK(err && strcmp(cJSON_GetObjectItem(err, "message")->valuestring, "bad \"x\"") == 0);
    VT_CHECK(strcmp(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error") == 0);
    VT_CHECK(strcmp(cJSON_GetObjectItem(err, "param")->valuestring, "messages[0]") == 0);
    VT_CHECK(strcmp(cJSON_GetObjectItem(err, "code")->valuestring, "context_length_exceeded") == 0);
    cJSON_Delete(j);
    free(body);
    vl_api_fail(&e, 401, "authentication_error", NULL, "no key");
    body = vl_api_error_body(&e);
    VT_CHECK(strcmp(body, "{\"error\":{\"message\":\"no key\",\"type\":\"authentication_error\","
                          "\"param\":null,\"code\":null}}") == 0);
    free(body);
}

static void data_url_ok(const char *url, const char *want, size_t want_len) {
    uint8_t *d = NULL;
    size_t n = 0;
    vl_api_error e;
    int rc = vl_data_url_decode(url, 1 << 20, &d, &n, "image 1", &e);
    VT_CHECKF(rc == 0 && n == want_len && memcmp(d, want, n) == 0, "%s: rc %d len %zu", url, rc, n);
    free(d);
}

static void data_url_bad(const char *url, size_t cap) {
    uint8_t *d = NULL;
    size_t n = 0;
    vl_api_error e;
    memset(&e, 0, sizeof e);
    int rc = vl_data_url_decode(url, cap, &d, &n, "image 1", &e);
    VT_CHECKF(rc == -1 && d == NULL && e.status == 400 && strcmp(e.param, "image 1") == 0, "%s",
              url);
}

static void test_data_url(void) {
    data_url_ok("data:image/png;base64,aGVsbG8=", "hello", 5);
    data_url_ok("data:image/png;base64,aGVsbG8", "hello", 5); /* padding left out */
    data_url_ok("DATA:image/jpeg;charset=x;base64,aGVs\nbG8h", "hello!", 6);
    data_url_ok("data:;base64,-_8=", "\xfb\xff", 2); /* URL-safe alphabet */
    data_url_ok("data:image/png;base64,AAEC", "\x00\x01\x02", 3);
    data_url_bad("data:image/png,hello", 1 << 20);             /* not base64 */
    data_url_bad("data:image/png;base64", 1 << 20);            /* no comma */
    data_url_bad("data:image/png;base64,", 1 << 20);           /* nothing */
    data_url_bad("data:image/png;base64,a", 1 << 20);          /* 6 bits: cut */
    data_url_bad("data:image/png;base64,aGV*bG8=", 1 << 20);   /* not an alphabet character */
    data_url_bad("data:image/png;base64,aG=VsbG8=", 1 << 20);  /* padding inside */
    data_url_bad("data:image/png;base64,aGVsbG8haGVsbG8h", 4); /* over the cap */
}

int main(void) {
    test_fields();
    test_errors();
    test_error_body();
    test_data_url();
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
