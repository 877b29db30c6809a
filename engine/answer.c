/* answer.c: the text a user reads from generated tokens, as transformers' decode(...,
 * skip_special_tokens=True) gives it: special tokens dropped, UTF-8 split across tokens held
 * until whole, invalid bytes as U+FFFD. The text ends at the first end-of-turn token
 * (vl_model_is_eos) unless keep_after_eos (--ignore-eos: llama.cpp prints on too); tokens after
 * it may still be generated (--max-tokens N is a fixed-length measurement) but are not shown.
 * Each piece goes to on_text as it comes (the command line streams it to stdout). The text may hold
 * NUL bytes (a model may generate the byte 0x00), so it is kept with its length. */
#include "engine/engine.h"

#include <stdlib.h>

void vl_answer_init(vl_answer *a, const vl_model *m, int keep_after_eos,
                    int (*on_text)(void *ctx, const char *piece, size_t len), void *ctx) {
    memset(a, 0, sizeof *a);
    a->m = m;
    a->dec.skip_special = 1;
    a->on_text = on_text;
    a->on_text_ctx = ctx;
    a->keep_after_eos = keep_after_eos;
    a->eos_at = -1;
}

void vl_answer_free(vl_answer *a) {
    free(a->text);
    memset(a, 0, sizeof *a);
}

/* Append (and hand on) n bytes; the buffer stays NUL-terminated for convenience. */
static int put(vl_answer *a, const char *s, int n) {
    if (n <= 0) return 0;
    if (a->len + (size_t)n + 1 > a->cap) {
        size_t nc = (a->len + (size_t)n + 1) * 2 + 256;
        char *t = realloc(a->text, nc);
        if (!t) return vl_error_set("out of host memory");
        a->text = t;
        a->cap = nc;
    }
    memcpy(a->text + a->len, s, (size_t)n);
    a->len += (size_t)n;
    a->text[a->len] = '\0';
    /* a failed consumer (a full disk, a closed stdout) ends the request now, not after N tokens */
    return a->on_text ? a->on_text(a->on_text_ctx, s, (size_t)n) : 0;
}

int vl_answer_add(vl_answer *a, int32_t tok) {
    int index = a->n_tokens++;
    if (a->eos_at < 0 && vl_model_is_eos(a->m, tok)) a->eos_at = index;
    if ((a->eos_at >= 0 && !a->keep_after_eos) || !a->m->tok) return 0;
    char piece[256];
    int k = vl_decoder_feed(&a->dec, a->m->tok, tok, piece, sizeof piece);
    return k < 0 ? -1 : put(a, piece, k);
}

int vl_answer_finish(vl_answer *a) {
    char piece[8];
    int k = vl_decoder_flush(&a->dec, piece, sizeof piece);
    if (k < 0 || put(a, piece, k)) return -1;
    if (!a->text) { /* an empty answer is "" */
        a->text = calloc(1, 1);
        if (!a->text) return vl_error_set("out of host memory");
    }
    return 0;
}
