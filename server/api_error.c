/* api_error.c: an error as OpenAI's API answers it: the HTTP status and the body
 * {"error":{"message","type","param","code"}} that the official clients read (their error
 * classes come from the status; message, type, param and code are shown to the user). */
#include "server/server_impl.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdlib.h>

int vl_api_fail(vl_api_error *e, int status, const char *type, const char *param, const char *fmt,
                ...) {
    e->status = status;
    e->type = type;
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static cJSON *string_or_null(const char *s) {
    return s && s[0] ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *vl_api_error_body(const vl_api_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_CreateObject();
    if (!root || !err) {
        cJSON_Delete(root);
        cJSON_Delete(err);
        return NULL;
    }
    cJSON_AddItemToObject(root, "error", err);
    cJSON_AddItemToObject(err, "message", cJSON_CreateString(e->message));
    cJSON_AddItemToObject(err, "type", cJSON_CreateString(e->type ? e->type : "server_error"));
    cJSON_AddItemToObject(err, "param", string_or_null(e->param));
    cJSON_AddItemToObject(err, "code", string_or_null(e->code));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}
