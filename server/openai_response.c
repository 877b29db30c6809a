/* openai_response.c: the bodies a client of OpenAI's API expects: chat.completion, the SSE
 * events of a stream (chat.completion.chunk, then "data: [DONE]"), the model list. Generated
 * text goes in through vl_json_string (loader/json_text.c) so that a NUL byte neither cuts nor
 * breaks it; everything else through cJSON. */
#include "server/server_impl.h"

#include <cJSON.h>
#include <stdlib.h>

/* The text as a raw JSON string item (NULL when out of memory). */
static cJSON *text_item(const char *text, size_t len) {
    char *lit = vl_json_string(text ? text : "", text ? len : 0);
    cJSON *item = lit ? cJSON_CreateRaw(lit) : NULL;
    free(lit);
    return item;
}

static cJSON *usage_item(const vl_token_usage *u) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_tokens", u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", u->prompt_tokens + u->completion_tokens);
    return o;
}

static cJSON *head(const vl_completion_meta *m, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddNullToObject(o, "system_fingerprint");
    return o;
}

/* Print and free; NULL when any item could not be made (cJSON drops NULL items silently). */
static char *finish(cJSON *o, int ok) {
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *vl_completion_json(const vl_completion_meta *m, const char *text, size_t len,
                         const char *finish_reason, const vl_token_usage *u) {
    cJSON *o = head(m, "chat.completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON *content = text_item(text, len);
    cJSON_AddItemToObject(msg, "content", content);
    cJSON_AddNullToObject(msg, "refusal");
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish_reason);
    cJSON_AddItemToObject(o, "usage", usage_item(u));
    return finish(o, content != NULL);
}

/* "data: JSON\n\n" from a printed object (freed). */
static char *sse_event(char *json) {
    if (!json) return NULL;
    vl_buf b = {0};
    int rc = vl_buf_printf(&b, "data: %s\n\n", json);
    free(json);
    if (rc) vl_buf_free(&b);
    return b.p;
}

char *vl_sse_chunk(const vl_completion_meta *m, int first, const char *text, size_t len,
                   const char *finish_reason, int with_usage) {
    cJSON *o = head(m, "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON *delta = cJSON_AddObjectToObject(c, "delta");
    if (first) cJSON_AddStringToObject(delta, "role", "assistant");
    cJSON *content = NULL;
    if (!finish_reason) {
        content = text_item(text, len);
        cJSON_AddItemToObject(delta, "content", content);
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (finish_reason)
        cJSON_AddStringToObject(c, "finish_reason", finish_reason);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    if (with_usage) cJSON_AddNullToObject(o, "usage");
    return sse_event(finish(o, finish_reason || content));
}

char *vl_sse_usage(const vl_completion_meta *m, const vl_token_usage *u) {
    cJSON *o = head(m, "chat.completion.chunk");
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_item(u));
    return sse_event(finish(o, 1));
}

char *vl_sse_error(const vl_api_error *e) {
    return sse_event(vl_api_error_body(e));
}

char *vl_models_json(const char *model, long long created) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "vlrun");
    return finish(o, 1);
}
