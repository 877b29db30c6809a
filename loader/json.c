/* json.c: the one strict JSON parse every loader uses (config, preprocessor config, tokenizer,
 * safetensors header and index, bitsandbytes quant state).
 *
 * cJSON alone is lenient where Python's json (what wrote and what reads these files in the
 * reference) is not, or differs:
 *   - it parses up to the first NUL, so a buffer that is not NUL-terminated (mmapped data) can
 *     be over-read by older cJSON: the text is always parsed from a terminated copy here;
 *   - text after the value is ignored unless asked for: only whitespace may follow;
 *   - duplicate object keys are kept and lookups return the first, where Python keeps the
 *     last: refused here, so no file means one thing to vlrun and another to transformers.
 * Duplicates are found by sorting each object's keys (O(n log n); tokenizer vocabularies have
 * 150k keys in one object). */
#include "loader/loader.h"

#include <cJSON.h>

#include <stdlib.h>
#include <string.h>

static int key_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First duplicated key anywhere under j, or NULL. Recursion depth is bounded by cJSON's
 * nesting limit (1000). *oom set when a key table could not be allocated. */
static const char *find_duplicate_key(const cJSON *j, int *oom) {
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) return NULL;
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        const char *d = find_duplicate_key(c, oom);
        if (d || *oom) return d;
        n++;
    }
    if (!cJSON_IsObject(j) || n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) {
        *oom = 1;
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *c = j->child; c; c = c->next) keys[k++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, key_cmp);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
    free(keys);
    return dup;
}

static int is_json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1-based line of byte `off` in text, for messages. */
static long line_of(const char *text, size_t off) {
    long line = 1;
    for (size_t i = 0; i < off; i++) line += text[i] == '\n';
    return line;
}

int vl_json_parse(const char *text, size_t len, const char *what, struct cJSON **out) {
    *out = NULL;
    char *copy = malloc(len + 1);
    if (!copy) return vl_error_set("out of memory parsing %s (%zu bytes)", what, len);
    memcpy(copy, text, len);
    copy[len] = '\0';
    size_t nul = strlen(copy);
    if (nul != len) {
        free(copy);
        return vl_error_set("%s contains a NUL byte at byte %zu (line %ld): not JSON text; the "
                            "file is damaged",
                            what, nul, line_of(text, nul));
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    if (!root) {
        size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : len;
        long line = line_of(copy, at);
        free(copy);
        return vl_error_set("%s is not valid JSON (error at byte %zu of %zu, line %ld); the "
                            "file is damaged or truncated: fetch it again",
                            what, at, len, line);
    }
    size_t stop = (size_t)(end - copy);
    while (stop < len && is_json_space(copy[stop])) stop++;
    if (stop != len) {
        long line = line_of(copy, stop);
        free(copy);
        cJSON_Delete(root);
        return vl_error_set("%s has %zu bytes of text after the JSON value (from byte %zu, line "
                            "%ld); the file is damaged or two files were joined",
                            what, len - stop, stop, line);
    }
    free(copy);
    int oom = 0;
    const char *dup = find_duplicate_key(root, &oom);
    if (dup || oom) {
        int rc = oom ? vl_error_set("out of memory checking the keys of %s", what)
                     : vl_error_set("%s has the key \"%.80s\" twice in one object; which value "
                                    "is meant is ambiguous (Python keeps the last, cJSON the "
                                    "first): remove one",
                                    what, dup);
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}
