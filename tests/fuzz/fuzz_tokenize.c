/* fuzz_tokenize.c: libFuzzer harness for the encode/decode round trip on the test vocabulary
 * (.cache/tokenizer/small_tokenizer.json, loaded once; $VL_FUZZ_TOKENIZER overrides). The input
 * is the text up to its first NUL byte (the API takes a C string).
 *   valid UTF-8     encode must succeed, every id must decode, and decode(encode(x)) must equal
 *                   NFC(x) (utf8proc), byte for byte; when x holds the spelling of an added
 *                   token, NFC-equivalent instead: added tokens are split out of the raw text
 *                   before NFC (as HF tokenizers does), so a combining mark after "<|im_end|>"
 *                   does not compose with its ">" as whole-text NFC would
 *   invalid UTF-8   encode must fail with a message
 * Leaves out: agreement with HF's ids (tests/test_tokenizer.c has the goldens). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_tokenizer_decode.h"

#include <cJSON.h>
#include <utf8proc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ADDED 256

static vl_tokenizer *tok;
static char *added[MAX_ADDED]; /* contents of the added tokens */
static int n_added;

static void die(const char *what, const char *path) {
    fprintf(stderr, "fuzz_tokenize: %s %s: %s\n(run scripts/setup.sh to make it)\n", what, path,
            vl_error_get());
    exit(2);
}

/* The added tokens' contents, read from the same file. */
static void read_added(const char *path) {
    char *text;
    size_t len;
    if (vl_read_file(path, (size_t)1 << 30, &text, &len) != 0) die("cannot read", path);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c) && n_added < MAX_ADDED) added[n_added++] = strdup(c->valuestring);
    }
    cJSON_Delete(root);
}

static void free_tokenizer(void) {
    vl_tokenizer_free(tok);
    for (int i = 0; i < n_added; i++) free(added[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("VL_FUZZ_TOKENIZER");
    if (!path || !path[0]) path = VL_FUZZ_SOURCE_DIR "/.cache/tokenizer/small_tokenizer.json";
    if (vl_tokenizer_load(&tok, path) != 0) die("cannot load", path);
    read_added(path);
    atexit(free_tokenizer);
    return 0;
}

static int is_valid_utf8(const char *s, size_t n) {
    utf8proc_int32_t c;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

static int holds_added_token(const char *s) {
    for (int i = 0; i < n_added; i++)
        if (strstr(s, added[i])) return 1;
    return 0;
}

static void check_round_trip(const char *text, const char *decoded) {
    char *want = (char *)utf8proc_NFC((const utf8proc_uint8_t *)text);
    FUZZ_CHECK(want != NULL, "utf8proc_NFC refused valid UTF-8");
    if (!holds_added_token(text)) {
        FUZZ_CHECK(strcmp(decoded, want) == 0, "decode(encode(x)) = \"%s\", NFC(x) = \"%s\"",
                   decoded, want);
    } else {
        char *got = (char *)utf8proc_NFC((const utf8proc_uint8_t *)decoded);
        FUZZ_CHECK(got && strcmp(got, want) == 0,
                   "NFC(decode(encode(x))) = \"%s\", NFC(x) = \"%s\"", got ? got : "(null)", want);
        free(got);
    }
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    char *text = fuzz_strndup(data, size);
    size_t len = strlen(text);
    int valid = is_valid_utf8(text, len);
    int32_t *ids = NULL;
    int n = 0;
    int rc = vl_tokenizer_encode(tok, text, &ids, &n);
    fuzz_check_error(rc, "vl_tokenizer_encode");
    if (valid) {
        FUZZ_CHECK(rc == 0, "encode refused valid UTF-8");
        FUZZ_CHECK(n >= 0 && (n > 0) == (len > 0), "%d ids for %zu bytes", n, len);
        size_t dlen;
        char *decoded = fuzz_decode_ids(tok, ids, n, &dlen);
        FUZZ_CHECK(strlen(decoded) == dlen, "decoded text holds a NUL byte");
        check_round_trip(text, decoded);
        free(decoded);
    } else {
        FUZZ_CHECK(rc != 0, "encode accepted invalid UTF-8");
        FUZZ_CHECK(ids == NULL, "a failed encode returned ids");
    }
    free(ids);
    free(text);
    vl_error_clear();
    return 0;
}
