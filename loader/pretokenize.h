/* pretokenize.h: the text steps before BPE (loader/pretokenize.c): UTF-8 validation, NFC and
 * the Qwen2 split pattern, for the tokenizer's files (tokenizer.c, added_tokens.c). Not part
 * of the public API; pretokenize.c's one public function, vl_utf8_next, is in loader/loader.h. */
#ifndef VL_PRETOKENIZE_H
#define VL_PRETOKENIZE_H

#include <stddef.h>

/* Length of the longest valid UTF-8 prefix of s[0..n) (n when all of it is valid). Valid means
 * what Rust's str accepts: shortest form, no surrogates, nothing above U+10FFFF. */
size_t vl_utf8_valid_prefix(const char *s, size_t n);

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

#endif
