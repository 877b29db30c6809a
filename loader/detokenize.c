/* detokenize.c: token ids back to text as a stream (vl_decoder), as HF `tokenizers` decodes
 * the whole sequence: each token's raw bytes (tokenizer.c), special tokens skipped when asked
 * (skip_special_tokens), and the byte stream turned into UTF-8 text as Rust's
 * String::from_utf8_lossy does, a token at a time.
 * Leaves out: the ids' bytes and which ids are special (tokenizer.c owns both). */
#include "loader/loader.h"

#include <stdlib.h>
#include <string.h>

/* Bytes become text as String::from_utf8_lossy turns the whole byte stream into text (what HF
 * decode does): each maximal invalid subpart becomes one U+FFFD. A valid but incomplete
 * sequence at the end of a token is held back (at most 3 bytes) until the next token. */
int vl_decoder_feed(vl_decoder *d, const vl_tokenizer *t, int id, char *out, int out_cap) {
    if (!d || !out || out_cap < 1) return vl_error_set("vl_decoder_feed: no decoder or buffer");
    out[0] = '\0';
    int len;
    const char *b = vl_tokenizer_token_bytes(t, id, &len);
    /* HF's decode drops ids the tokenizer does not know (the models' vocabularies are padded
     * past their tokenizers': 152064 ids for 151665 tokens in Qwen2-VL-7B), so a sampled pad id
     * adds nothing; held bytes wait for the next token */
    if (!b && id >= 0) return 0;
    if (!b) return vl_error_set("cannot decode token id %d: not a token id", id);
    if (d->n_pending < 0 || d->n_pending > 3)
        return vl_error_set("vl_decoder_feed: decoder state is corrupt (zero it before use)");
    /* HF drops skipped tokens before joining the bytes: held bytes wait for the next token */
    if (d->skip_special && vl_tokenizer_is_special(t, id)) return 0;
    char stack[256], *buf = stack;
    size_t total = (size_t)d->n_pending + (size_t)len;
    if (total > sizeof stack && !(buf = malloc(total)))
        return vl_error_set("out of memory decoding token %d", id);
    memcpy(buf, d->pending, (size_t)d->n_pending);
    memcpy(buf + d->n_pending, b, (size_t)len);
    size_t o = 0, cap = (size_t)out_cap - 1, i = 0;
    int rc = 0;
    while (i < total) {
        int r = vl_utf8_next((const unsigned char *)buf + i, total - i);
        if (r == 0) break; /* incomplete: keep for the next token */
        const char *src = r > 0 ? buf + i : "\xEF\xBF\xBD";
        size_t k = r > 0 ? (size_t)r : 3;
        if (o + k > cap) {
            rc = vl_error_set("decoded text of token %d does not fit in %d bytes; pass a larger "
                              "buffer",
                              id, out_cap);
            break;
        }
        memcpy(out + o, src, k);
        o += k;
        i += (size_t)(r > 0 ? r : -r);
    }
    if (rc == 0) { /* commit only on success, so a failed call changes nothing */
        d->n_pending = (int)(total - i);
        memcpy(d->pending, buf + i, total - i);
    }
    out[rc == 0 ? o : 0] = '\0';
    if (buf != stack) free(buf);
    return rc == 0 ? (int)o : -1;
}

int vl_decoder_flush(vl_decoder *d, char *out, int out_cap) {
    if (!d || !out || out_cap < 1) return vl_error_set("vl_decoder_flush: no decoder or buffer");
    out[0] = '\0';
    if (d->n_pending <= 0) return d->n_pending = 0, 0;
    if (out_cap < 4) return vl_error_set("vl_decoder_flush: needs a buffer of 4 bytes or more");
    d->n_pending = 0; /* one incomplete sequence: one U+FFFD, as from_utf8_lossy gives */
    memcpy(out, "\xEF\xBF\xBD", 4);
    return 3;
}
