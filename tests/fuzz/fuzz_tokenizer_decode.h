/* fuzz_tokenizer_decode.h: ids -> text through the streaming decoder (vl_decoder_feed, then
 * vl_decoder_flush), for the tokenizer harnesses. Every id must decode; the text is malloc'ed
 * and NUL-terminated, *len its byte count.
 * Leaves out: judging the text (each harness knows what to expect). */
#ifndef VL_FUZZ_TOKENIZER_DECODE_H
#define VL_FUZZ_TOKENIZER_DECODE_H

#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdlib.h>
#include <string.h>

static inline char *fuzz_decode_ids(const vl_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = 64, used = 0;
    char *text = malloc(cap);
    FUZZ_CHECK(text != NULL, "out of memory");
    vl_decoder d = {0};
    for (int i = 0; i <= n; i++) {
        int tok_len = 0;
        if (i < n)
            FUZZ_CHECK(vl_tokenizer_token_bytes(t, ids[i], &tok_len) != NULL,
                       "encode gave id %d (of %d) that has no bytes", ids[i],
                       vl_tokenizer_vocab_size(t));
        /* each invalid byte can become a 3-byte U+FFFD; pending bytes join the token */
        size_t room = 3 * ((size_t)tok_len + 8) + 1;
        if (used + room > cap) {
            while (used + room > cap) cap *= 2;
            char *grown = realloc(text, cap);
            FUZZ_CHECK(grown != NULL, "out of memory");
            text = grown;
        }
        int k = i < n ? vl_decoder_feed(&d, t, ids[i], text + used, (int)room)
                      : vl_decoder_flush(&d, text + used, (int)room);
        FUZZ_CHECK(k >= 0 && (size_t)k < room, "decoding id %d gave %d", i < n ? ids[i] : -1, k);
        used += (size_t)k;
    }
    text[used] = '\0';
    *len = used;
    return text;
}

#endif
