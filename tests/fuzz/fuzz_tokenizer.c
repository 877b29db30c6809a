/* fuzz_tokenizer.c: libFuzzer harness for tokenizer.json (vl_tokenizer_load from a file). A
 * loaded tokenizer must encode a fixed text holding ASCII, a combining accent, CJK, an emoji,
 * digits and an added-token spelling, with every id inside the vocabulary and decodable, and
 * free without leaks.
 * Leaves out: the exact round trip (a fuzzed file may give an added token a vocabulary id or a
 * non-NFC content, and then the text comes back other than it went in: fuzz_tokenize.c checks
 * the round trip on the real vocabulary). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_tokenizer_decode.h"

#include <stdlib.h>

static const char probe_text[] = "Hello, world! 123 e\xCC\x81t\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 "
                                 "\xF0\x9F\x98\x80 <|im_start|>user\n  x";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    const char *path = fuzz_write("tokenizer.json", data, size);
    vl_tokenizer *t = NULL;
    int rc = vl_tokenizer_load(&t, path);
    fuzz_check_error(rc, "vl_tokenizer_load");
    if (rc == 0) {
        FUZZ_CHECK(t != NULL && vl_tokenizer_vocab_size(t) > 0, "loaded an empty tokenizer");
        int32_t *ids = NULL;
        int n = 0;
        int erc = vl_tokenizer_encode(t, probe_text, &ids, &n);
        fuzz_check_error(erc, "vl_tokenizer_encode of valid UTF-8");
        FUZZ_CHECK(erc == 0 && n > 0 && ids != NULL, "encode gave %d ids", n);
        size_t len;
        free(fuzz_decode_ids(t, ids, n, &len));
        (void)vl_tokenizer_token_id(t, "<|im_start|>");
        free(ids);
    } else {
        FUZZ_CHECK(t == NULL, "a failed load returned a tokenizer");
    }
    vl_tokenizer_free(t);
    vl_error_clear();
    return 0;
}
