/* openai_request.c: a POST /v1/chat/completions body (OpenAI's wire format) -> the engine's
 * request. Fields OpenAI defines but vlrun does not use are ignored, as OpenAI ignores unknown
 * ones; a field of the wrong type or out of range is a 400 naming it (param), so a client learns
 * what to fix. null is the same as absent, as in OpenAI's API.
 *
 * Defaults where OpenAI's differ from the CLI's: temperature 1 (sampling; 0 = greedy), top_p 1,
 * the answer ends at the end-of-turn token, max_tokens absent = the server's default. */
#include "server/server_impl.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>

#define BAD(param, ...) vl_api_fail(e, 400, "invalid_request_error", param, __VA_ARGS__)

static const cJSON *field(const cJSON *obj, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* An integer-valued JSON number in [lo, hi]. */
static int int_field(const cJSON *obj, const char *name, double lo, double hi, double *out,
                     vl_api_error *e) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return BAD(name, "'%s' must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return BAD(name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 1;
}

static int number_field(const cJSON *obj, const char *name, double lo, double hi, float *out,
                        vl_api_error *e) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return BAD(name, "'%s' must be a number", name);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return BAD(name, "'%s' must be in [%g, %g], got %g", name, lo, hi, v->valuedouble);
    *out = (float)v->valuedouble;
    return 1;
}

static int bool_field(const cJSON *obj, const char *name, int *out, vl_api_error *e) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return BAD(name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int parse_stop(vl_oai_chat *c, const cJSON *root, vl_api_error *e) {
    const cJSON *v = field(root, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0]) c->stop[c->n_stop++] = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v)) return BAD("stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(v) > VL_MAX_STOP)
        return BAD("stop", "'stop' takes at most %d strings, got %d", VL_MAX_STOP,
                   cJSON_GetArraySize(v));
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s))
            return BAD("stop", "'stop' must be a string or an array of strings");
        if (s->valuestring[0]) c->stop[c->n_stop++] = s->valuestring;
    }
    return 0;
}

/* max_tokens / max_completion_tokens, temperature, top_p, seed, n, stream, stream_options. */
static int parse_settings(vl_oai_chat *c, const cJSON *root, vl_api_error *e) {
    double x = 0;
    int r = int_field(root, "max_completion_tokens", 1, 1 << 24, &x, e);
    if (r == 0) r = int_field(root, "max_tokens", 1, 1 << 24, &x, e);
    if (r < 0) return -1;
    c->max_tokens = r ? (int)x : 0;
    const cJSON *n = field(root, "n");
    if (n && (!cJSON_IsNumber(n) || n->valuedouble != 1.0))
        return BAD("n", "only n = 1 is supported (one choice a request)");
    if (number_field(root, "temperature", 0.0, 2.0, &c->temperature, e) < 0 ||
        number_field(root, "top_p", 0.0, 1.0, &c->top_p, e) < 0)
        return -1;
    c->greedy = c->temperature == 0.0f || c->top_p == 0.0f;
    r = int_field(root, "seed", -9.2e18, 1.8e19, &x, e);
    if (r < 0) return -1;
    c->has_seed = r;
    c->seed = x < 0 ? (uint64_t)(int64_t)x : (uint64_t)x;
    if (bool_field(root, "stream", &c->stream, e) < 0) return -1;
    const cJSON *so = field(root, "stream_options");
    if (so && !cJSON_IsObject(so))
        return BAD("stream_options", "'stream_options' must be an object");
    if (so && bool_field(so, "include_usage", &c->include_usage, e) < 0) {
        snprintf(e->param, sizeof e->param, "stream_options.include_usage");
        return -1;
    }
    const cJSON *model = field(root, "model");
    if (model && !cJSON_IsString(model)) return BAD("model", "'model' must be a string");
    c->model = model ? model->valuestring : NULL;
    return parse_stop(c, root, e);
}

/* One part of a message's content: {"type":"text","text"} or {"type":"image_url","image_url":
 * {"url"} | "url"}. */
static int parse_part(vl_oai_chat *c, const cJSON *p, const char *where, vl_part *out,
                      vl_api_error *e) {
    char param[128];
    if (!cJSON_IsObject(p)) return BAD(where, "%s must be an object", where);
    const cJSON *type = field(p, "type");
    snprintf(param, sizeof param, "%s.type", where);
    if (!type || !cJSON_IsString(type))
        return BAD(param, "%s must be \"text\" or \"image_url\"", param);
    if (strcmp(type->valuestring, "text") == 0) {
        const cJSON *t = field(p, "text");
        snprintf(param, sizeof param, "%s.text", where);
        if (!t || !cJSON_IsString(t)) return BAD(param, "%s must be a string", param);
        *out = (vl_part){.text = t->valuestring, .image = -1};
        return 0;
    }
    if (strcmp(type->valuestring, "image_url") != 0)
        return BAD(param, "%s '%.40s' is not supported; expected \"text\" or \"image_url\"", param,
                   type->valuestring);
    const cJSON *iu = field(p, "image_url");
    snprintf(param, sizeof param, "%s.image_url", where);
    const cJSON *url = iu && cJSON_IsObject(iu) ? field(iu, "url") : iu;
    if (iu && cJSON_IsObject(iu)) snprintf(param, sizeof param, "%s.image_url.url", where);
    if (!url || !cJSON_IsString(url) || !url->valuestring[0])
        return BAD(param, "%s must be a URL string (data:, a path or http(s)://)", param);
    c->image_urls[c->n_images] = url->valuestring;
    *out = (vl_part){.text = NULL, .image = c->n_images++};
    return 0;
}

static int parse_role(const cJSON *m, const char *where, vl_role *role, vl_api_error *e) {
    char param[128];
    snprintf(param, sizeof param, "%s.role", where);
    const cJSON *r = field(m, "role");
    if (!r || !cJSON_IsString(r))
        return BAD(param, "%s must be \"system\", \"user\" or \"assistant\"", param);
    const char *s = r->valuestring;
    if (strcmp(s, "system") == 0 || strcmp(s, "developer") == 0)
        *role = VL_ROLE_SYSTEM;
    else if (strcmp(s, "user") == 0)
        *role = VL_ROLE_USER;
    else if (strcmp(s, "assistant") == 0)
        *role = VL_ROLE_ASSISTANT;
    else
        return BAD(param, "%s '%.40s' is not supported; expected system, user or assistant", param,
                   s);
    return 0;
}

static int parse_message(vl_oai_chat *c, const cJSON *m, int i, vl_api_error *e) {
    char where[64], param[96];
    snprintf(where, sizeof where, "messages[%d]", i);
    if (!cJSON_IsObject(m)) return BAD(where, "%s must be an object", where);
    vl_message *msg = &c->messages[i];
    if (parse_role(m, where, &msg->role, e)) return -1;
    msg->parts = c->parts + c->n_parts;
    const cJSON *content = field(m, "content");
    snprintf(param, sizeof param, "%s.content", where);
    /* an assistant turn may come without text (null or absent) */
    if ((content && !cJSON_IsString(content) && !cJSON_IsArray(content)) ||
        (!content && msg->role != VL_ROLE_ASSISTANT))
        return BAD(param, "%s must be a string or an array of content parts", param);
    if (!content || cJSON_IsString(content)) {
        c->parts[c->n_parts++] =
            (vl_part){.text = content ? content->valuestring : "", .image = -1};
        msg->n_parts = 1;
        return 0;
    }
    int j = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        char pw[112];
        snprintf(pw, sizeof pw, "%s[%d]", param, j++);
        if (parse_part(c, p, pw, &c->parts[c->n_parts], e)) return -1;
        c->n_parts++;
        msg->n_parts++;
    }
    return 0;
}

/* The parts of every message at most (a string content is one part). */
static int count_parts(const cJSON *messages) {
    int n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        const cJSON *content = cJSON_IsObject(m) ? field(m, "content") : NULL;
        n += content && cJSON_IsArray(content) ? cJSON_GetArraySize(content) : 1;
    }
    return n;
}

static int parse_messages(vl_oai_chat *c, const cJSON *root, vl_api_error *e) {
    const cJSON *ms = field(root, "messages");
    if (!ms || !cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
        return BAD("messages", "'messages' must be a non-empty array of messages");
    int n = cJSON_GetArraySize(ms), np = count_parts(ms);
    c->messages = calloc((size_t)n, sizeof *c->messages);
    c->parts = calloc((size_t)np, sizeof *c->parts);
    c->image_urls = calloc((size_t)np, sizeof *c->image_urls);
    if (!c->messages || !c->parts || !c->image_urls)
        return vl_api_fail(e, 500, "server_error", NULL, "out of host memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, ms) {
        if (parse_message(c, m, c->n_messages, e)) return -1;
        c->n_messages++;
    }
    if (c->messages[n - 1].role != VL_ROLE_USER)
        return BAD("messages", "the last message must be a user message (the model answers it)");
    return 0;
}

int vl_oai_chat_parse(const char *body, size_t len, vl_oai_chat *c, vl_api_error *e) {
    memset(c, 0, sizeof *c);
    c->temperature = 1.0f;
    c->top_p = 1.0f;
    vl_error_clear();
    if (vl_json_parse(body, len, "the request body", &c->root)) {
        BAD(NULL, "%s", vl_error_get());
        char *advice = strstr(e->message, "; the file"); /* written for files, not bodies */
        if (advice) *advice = '\0';
        vl_error_clear();
        return -1;
    }
    if (!cJSON_IsObject(c->root)) return BAD(NULL, "the request body must be a JSON object");
    if (parse_settings(c, c->root, e) || parse_messages(c, c->root, e)) return -1;
    return 0;
}

void vl_oai_chat_free(vl_oai_chat *c) {
    cJSON_Delete(c->root);
    free(c->messages);
    free(c->parts);
    free(c->image_urls);
    memset(c, 0, sizeof *c);
}

void vl_oai_chat_to_request(const vl_oai_chat *c, const vl_image_arg *images, vl_request *rq) {
    vl_request_default(rq);
    rq->prompt = NULL;
    rq->messages = c->messages;
    rq->n_messages = c->n_messages;
    rq->images = images;
    rq->n_images = c->n_images;
    rq->max_tokens = c->max_tokens;
    rq->stop_at_eos = 1;
    rq->greedy = c->greedy;
    rq->temperature = c->greedy ? 1.0f : c->temperature;
    rq->top_p = c->greedy ? 1.0f : c->top_p;
    rq->seed = c->seed;
}
