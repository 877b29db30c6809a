/* fuzz_openai.c: libFuzzer harness for what `vlrun serve` reads from a network client before the
 * engine sees it: the chat completion body (vl_oai_chat_parse), the data: URLs of its images
 * (vl_data_url_decode) and the stop strings over generated text (vl_stop_feed / finish).
 * Promises checked: a refused body is a 4xx with a type and a message; an accepted one has a
 * user message last, image parts that index the images once each in order, at most 4 non-empty
 * stop strings and sampling within OpenAI's ranges, and converts to an engine request; a data:
 * URL decodes to at most the cap, or is a 400 naming it; the text let through by the stop
 * strings is a prefix of what was fed and holds none of them.
 * Leaves out: fetching local or remote images (files and sockets), HTTP itself (libmicrohttpd). */
#include "server/server_impl.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#define DATA_URL_CAP (1u << 16)

static void check_refusal(const vl_api_error *e, const char *what) {
    FUZZ_CHECK(e->status >= 400 && e->status < 500 && e->type && e->message[0], "%s: status %d",
               what, e->status);
}

static void check_accepted(const vl_oai_chat *c) {
    FUZZ_CHECK(c->n_messages >= 1 && c->messages[c->n_messages - 1].role == VL_ROLE_USER,
               "%d messages, the last not a user's", c->n_messages);
    int next_image = 0;
    for (int i = 0; i < c->n_messages; i++)
        for (int k = 0; k < c->messages[i].n_parts; k++) {
            const vl_part *p = &c->messages[i].parts[k];
            FUZZ_CHECK((p->image < 0) == (p->text != NULL), "part %d of message %d", k, i);
            if (p->image >= 0) FUZZ_CHECK(p->image == next_image++, "image %d out of order", k);
        }
    FUZZ_CHECK(next_image == c->n_images, "%d image parts for %d images", next_image, c->n_images);
    FUZZ_CHECK(c->n_stop >= 0 && c->n_stop <= VL_MAX_STOP, "%d stop strings", c->n_stop);
    for (int i = 0; i < c->n_stop; i++) FUZZ_CHECK(c->stop[i][0], "empty stop string %d", i);
    FUZZ_CHECK(c->max_tokens >= 0 && c->temperature >= 0 && c->temperature <= 2 && c->top_p >= 0 &&
                   c->top_p <= 1,
               "max_tokens %d temperature %g top_p %g", c->max_tokens, (double)c->temperature,
               (double)c->top_p);
}

static void check_data_urls(const vl_oai_chat *c) {
    for (int i = 0; i < c->n_images; i++) {
        if (strncmp(c->image_urls[i], "data:", 5) != 0) continue;
        uint8_t *d = NULL;
        size_t len = 0;
        vl_api_error e;
        memset(&e, 0, sizeof e);
        if (vl_data_url_decode(c->image_urls[i], DATA_URL_CAP, &d, &len, "image", &e) == 0)
            FUZZ_CHECK(d != NULL && len > 0 && len <= DATA_URL_CAP, "data: URL of %zu bytes", len);
        else
            check_refusal(&e, "data: URL");
        free(d);
    }
}

/* The body itself as generated text, in pieces of 1..7 bytes, through the stop strings. */
static void check_stops(const vl_oai_chat *c, const uint8_t *data, size_t size) {
    vl_stop_filter f;
    vl_stop_init(&f, c->stop, c->n_stop);
    vl_buf out = {0};
    int rc = 0;
    for (size_t at = 0; at < size && rc == 0;) {
        size_t n = 1 + (data[at] % 7);
        if (n > size - at) n = size - at;
        rc = vl_stop_feed(&f, (const char *)data + at, n, &out);
        at += n;
    }
    if (rc == 0) rc = vl_stop_finish(&f, &out);
    FUZZ_CHECK(rc >= 0, "stop filter out of memory");
    FUZZ_CHECK(out.len <= size && (out.len == 0 || memcmp(out.p, data, out.len) == 0),
               "the text let through is not a prefix of the input");
    for (int i = 0; i < c->n_stop; i++) {
        size_t sl = strlen(c->stop[i]);
        for (size_t k = 0; k + sl <= out.len; k++)
            FUZZ_CHECK(memcmp(out.p + k, c->stop[i], sl) != 0, "stop string %d let through", i);
    }
    vl_buf_free(&out);
    vl_stop_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_oai_chat c;
    vl_api_error e;
    memset(&e, 0, sizeof e);
    if (vl_oai_chat_parse((const char *)data, size, &c, &e) != 0) {
        check_refusal(&e, "body");
        vl_oai_chat_free(&c);
        return 0;
    }
    check_accepted(&c);
    vl_image_arg *args = calloc((size_t)c.n_images + 1, sizeof *args);
    FUZZ_CHECK(args != NULL, "out of memory");
    vl_request rq;
    vl_oai_chat_to_request(&c, args, &rq);
    FUZZ_CHECK(rq.n_messages == c.n_messages && rq.n_images == c.n_images, "request of %d / %d",
               rq.n_messages, rq.n_images);
    check_data_urls(&c);
    check_stops(&c, data, size);
    free(args);
    vl_oai_chat_free(&c);
    return 0;
}
