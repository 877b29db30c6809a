/* test_json.c: vl_json_parse, the strict parse every loader uses (loader/json.c).
 *
 * Each input sits in a buffer of exactly its length (no NUL after it), so AddressSanitizer
 * catches any read past the end, the way cJSON < 1.7.18 read past a text ending in ','. */
#include "loader/loader.h"
#include "vltest.h"

#include <cJSON.h>

/* Parse `text` from an exact-length heap copy; returns vl_json_parse's result. */
static int parse_exact(const char *text, size_t len, cJSON **root) {
    char *buf = malloc(len ? len : 1);
    memcpy(buf, text, len);
    vl_error_clear();
    int rc = vl_json_parse(buf, len, "test.json", root);
    free(buf);
    return rc;
}

static int parse_str(const char *text, cJSON **root) {
    return parse_exact(text, strlen(text), root);
}

static void expect_error(const char *text, size_t len, const char *needle) {
    cJSON *root = (cJSON *)1;
    int rc = parse_exact(text, len, &root);
    VT_CHECKF(rc != 0 && root == NULL, "accepted %.40s", text);
    VT_CHECKF(strstr(vl_error_get(), needle) != NULL, "error \"%s\" lacks \"%s\"", vl_error_get(),
              needle);
    VT_CHECKF(strstr(vl_error_get(), "test.json") != NULL, "error does not name the file: %s",
              vl_error_get());
}

static void test_valid(void) {
    cJSON *root = NULL;
    VT_CHECK(parse_str("{\"a\": [1, 2, {\"b\": null}], \"c\": \"x\"}\n\t \r\n", &root) == 0);
    VT_CHECK(cJSON_IsObject(root));
    VT_CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "a")), 3);
    cJSON_Delete(root);
    /* the same key in different objects, and keys differing only in case, are fine */
    VT_CHECK(parse_str("{\"k\": {\"k\": 1}, \"K\": [{\"k\": 2}, {\"k\": 3}]}", &root) == 0);
    cJSON_Delete(root);
    /* a number right at the end of the buffer */
    VT_CHECK(parse_str("12345", &root) == 0 && cJSON_IsNumber(root) && root->valuedouble == 12345);
    cJSON_Delete(root);
}

/* a literal's exact length, embedded NULs included */
#define EXPECT_ERROR(lit, needle) expect_error(lit, sizeof(lit) - 1, needle)

static void test_refused(void) {
    EXPECT_ERROR("{\"a\": 1} x", "after the JSON value");
    EXPECT_ERROR("{\"a\": 1}{\"a\": 1}", "after the JSON value");
    EXPECT_ERROR("{\"a\": 1,", "not valid JSON");                   /* truncated after ',' */
    EXPECT_ERROR("{\"a\": \"bc", "not valid JSON");                 /* string cut at the end */
    EXPECT_ERROR("{\"a\": 1}\0{}", "NUL byte");                     /* NUL then more text */
    EXPECT_ERROR("{\"a\": 1, \"a\": 2}", "\"a\" twice");            /* Python keeps 2, cJSON 1 */
    EXPECT_ERROR("[{\"x\": {\"y\": 1, \"y\": 1}}]", "\"y\" twice"); /* nested */
    EXPECT_ERROR("", "not valid JSON");
    EXPECT_ERROR("{\"a\":\n1,\n\"b\": }", "line 3");
}

/* A large object (a tokenizer vocabulary has 150k keys) with one duplicate far apart: found,
 * and the distinct version accepted; sorting keeps this O(n log n). */
static void test_large_object(void) {
    const int n = 150000;
    size_t cap = (size_t)n * 24 + 16, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text + len, cap - len, "{");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"tok%d\": %d", i ? ", " : "",
                                (int)((i * 7919LL) % n), i);
    size_t body = len;
    len += (size_t)snprintf(text + len, cap - len, "}");
    cJSON *root = NULL;
    VT_CHECK(parse_exact(text, len, &root) == 0);
    VT_CHECK_INT(cJSON_GetArraySize(root), n);
    cJSON_Delete(root);
    snprintf(text + body, cap - body, ", \"tok%d\": 0}", 123);
    expect_error(text, strlen(text), "\"tok123\" twice");
    free(text);
}

int main(void) {
    test_valid();
    test_refused();
    test_large_object();
    return vt_finish();
}
