/* tokenizer_internal.h: what the tokenizer's files share, private to loader/tokenizer.c,
 * loader/pretokenize.c and loader/added_tokens.c:
 *   pretokenize.c   UTF-8 checks, NFC and the Qwen2 split pattern
 *   added_tokens.c  the added tokens: table, lookup by content, splitting text at them
 *   hashing         the hash functions and table sizing both tables use
 * Leaves out: the vocabulary, merges and BPE (tokenizer.c). */
#ifndef VL_TOKENIZER_INTERNAL_H
#define VL_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- pretokenize.c ----------------------------------------------------------------------------
 */

/* Length of the longest valid UTF-8 prefix of s[0..n) (n when all of it is valid). Valid means
 * what Rust's str accepts: shortest form, no surrogates, nothing above U+10FFFF. */
size_t vl_utf8_valid_prefix(const char *s, size_t n);

/* Length of the UTF-8 sequence starting at s[0..n) if it is complete and valid (1..4);
 * 0 if it is a valid start cut short by the end of the buffer; -k if the first k bytes form
 * a maximal invalid subpart (replace them by one U+FFFD and go on after them). */
int vl_utf8_next(const unsigned char *s, size_t n);

/* NFC of the valid UTF-8 s[0..n) into a malloc'ed, NUL-terminated *out. */
int vl_nfc(const char *s, size_t n, char **out, size_t *out_n);

/* Split the valid UTF-8 s[0..n) with the Qwen2 pre-tokenizer pattern (Split, Isolated):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 * and call piece(ctx, start, len) for each piece in order; the pieces cover s exactly.
 * Stops at the first non-zero return of piece and returns it. */
typedef int (*vl_piece_fn)(void *ctx, const char *start, size_t len);
int vl_pretokenize_qwen2(const char *s, size_t n, vl_piece_fn piece, void *ctx);

/* The pattern above as tokenizer.json spells it (checked at load time: no other is supported). */
extern const char vl_qwen2_split_pattern[];

/* ---- added_tokens.c ---------------------------------------------------------------------------
 */

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

/* ---- hashing ----------------------------------------------------------------------------------
 */

static inline uint64_t vl_hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static inline uint64_t vl_hash_pair(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)a << 32 | b) * 0x9e3779b97f4a7c15ull; /* splitmix64 finalizer */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    return x ^ (x >> 31);
}

static inline size_t vl_hash_table_size(size_t n) { /* power of two, load factor <= 1/2 */
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

#endif
