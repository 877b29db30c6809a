/* hash.h: the hash functions and table sizing of the loader's open-addressing tables (the
 * tokenizer's vocabulary and merges in tokenizer.c, the added tokens in added_tokens.c).
 * Not part of the public API (loader/loader.h). */
#ifndef VL_HASH_H
#define VL_HASH_H

#include <stddef.h>
#include <stdint.h>

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
