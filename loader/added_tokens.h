/* added_tokens.h: the tokenizer's added tokens (loader/added_tokens.c): their table, lookup by
 * content, and splitting text at them, for tokenizer.c. Not part of the public API
 * (loader/loader.h). */
#ifndef VL_ADDED_TOKENS_H
#define VL_ADDED_TOKENS_H

#include "loader/pretokenize.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *content; /* as written in tokenizer.json; what decoding gives back */
    char *pattern; /* what is matched in the text: content, or NFC(content) if normalized */
    size_t plen;
    int32_t id;
    bool normalized;
} vl_added_token;

struct vl_ac_state; /* the matcher's automaton (added_tokens.c) */
struct vl_ac_edge;

typedef struct {
    vl_added_token *tok; /* in tokenizer.json's order */
    int n, cap;
    /* content -> index + 1 and id -> index + 1 (0 = free), open addressing */
    uint32_t *by_content, *by_id;
    size_t slot_mask;
    /* Aho-Corasick over the reversed patterns (built by vl_added_build) */
    struct vl_ac_state *states;
    uint32_t n_states;
    struct vl_ac_edge *edges; /* (state, byte) -> state, for states other than the root */
    size_t edge_mask;
    uint32_t root_next[256];
    bool any[2]; /* [normalized]: some token of that kind exists */
} vl_added_tokens;

/* Room for `cap` tokens (the length of tokenizer.json's added_tokens). path: for messages. */
int vl_added_init(vl_added_tokens *a, int cap, const char *path);
/* Append one token (content: non-empty valid UTF-8). Its pattern is NFC(content) when
 * normalized && nfc. Refused, naming both, if an earlier token has the same id or content. */
int vl_added_add(vl_added_tokens *a, const char *content, int32_t id, bool normalized, bool nfc,
                 const char *path);
/* Build the matcher once every token is in. */
int vl_added_build(vl_added_tokens *a, const char *path);
/* Index of the token whose content is exactly `content`, or -1. */
int vl_added_find(const vl_added_tokens *a, const char *content);
/* Split s[0..n) at the tokens with normalized == `normalized`: the leftmost position where one
 * matches, the longest one there (the first listed among equal patterns), then on after it.
 * Calls text(ctx, ...) for each non-empty stretch between matches and token(ctx, index) for
 * each match, in order; stops at the first non-zero return and returns it. */
typedef int (*vl_added_fn)(void *ctx, int index);
int vl_added_split(const vl_added_tokens *a, const char *s, size_t n, bool normalized,
                   vl_piece_fn text, vl_added_fn token, void *ctx);
void vl_added_free(vl_added_tokens *a);

#endif
