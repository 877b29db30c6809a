/* vision_cache.c: a batch's cache of vision embeddings, so that a request whose image is
 * identical to a recent one's (the same preprocessed pixels) skips the vision tower.
 *
 * The embeddings (merged tokens x hidden, act dtype) live in one block of the batch's arena, sized
 * by vl_batch_config.vision_cache_bytes and counted in its plan. Entries are written one after
 * the other as a ring: a new entry goes at the write offset (back to 0 when it does not fit
 * before the end) and evicts every entry it overlaps, so the oldest go first and the block
 * never fragments. An entry larger than the block is not cached.
 * The key is two independent 64-bit hashes of the pixels with the grid and patch sizes (a
 * collision would give a request another image's embedding: 128 bits make that negligible), and
 * an entry also records its token count, checked on lookup. The host side is plain bookkeeping;
 * the batch's one thread uses it. Leaves out: LRU order (a hit does not move its entry). */
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

#define VC_ALIGN 256 /* entries start where the arena's slices would */

static uint64_t rotl64(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

vl_vision_key vl_vision_key_of(const vl_pixels *px) {
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x9e3779b97f4a7c15ull;
    const uint64_t dims[4] = {(uint64_t)px->grid_t, (uint64_t)px->grid_h, (uint64_t)px->grid_w,
                              (uint64_t)px->patch_dim};
    for (int i = 0; i < 4; i++) {
        h1 = (h1 ^ dims[i]) * 0x100000001b3ull;
        h2 = rotl64(h2 + dims[i] * 0xc2b2ae3d27d4eb4full, 31) * 0x9e3779b97f4a7c15ull;
    }
    const size_t n = (size_t)px->n_patches * (size_t)px->patch_dim;
    const uint32_t *w = (const uint32_t *)px->pixels; /* the floats' bits */
    for (size_t i = 0; i < n; i++) {
        h1 = (h1 ^ w[i]) * 0x100000001b3ull;
        h2 = rotl64(h2 + w[i] * 0xc2b2ae3d27d4eb4full, 31) * 0x9e3779b97f4a7c15ull;
    }
    vl_vision_key k = {vl_mix64(h1), vl_mix64(h2 ^ (uint64_t)n)};
    return k;
}

void vl_vision_cache_init(vl_vision_cache *vc, void *base, size_t bytes) {
    memset(vc, 0, sizeof *vc);
    vc->base = base;
    vc->cap = base ? bytes : 0;
}

void vl_vision_cache_free(vl_vision_cache *vc) {
    free(vc->e);
    memset(vc, 0, sizeof *vc);
}

const void *vl_vision_cache_find(vl_vision_cache *vc, vl_vision_key key, int64_t n_tokens) {
    for (int i = 0; i < vc->n; i++) {
        const vl_vision_entry *e = &vc->e[i];
        if (e->key.a == key.a && e->key.b == key.b && e->n_tokens == n_tokens) {
            vc->hits++;
            return (const char *)vc->base + e->off;
        }
    }
    vc->misses++;
    return NULL;
}

/* Drop the entries overlapping [lo, hi). */
static void evict_range(vl_vision_cache *vc, size_t lo, size_t hi) {
    int kept = 0;
    for (int i = 0; i < vc->n; i++) {
        const vl_vision_entry *e = &vc->e[i];
        if (e->off < hi && lo < e->off + e->bytes)
            vc->evictions++;
        else
            vc->e[kept++] = *e;
    }
    vc->n = kept;
}

void *vl_vision_cache_put(vl_vision_cache *vc, vl_vision_key key, int64_t n_tokens, size_t bytes) {
    const size_t size = (bytes + VC_ALIGN - 1) & ~(size_t)(VC_ALIGN - 1);
    if (!vc->base || bytes == 0 || size > vc->cap) return NULL;
    if (vc->n == vc->cap_e) {
        int ncap = vc->cap_e * 2 + 8;
        vl_vision_entry *t = realloc(vc->e, (size_t)ncap * sizeof *t);
        if (!t) return NULL; /* not cached: the request still runs */
        vc->e = t;
        vc->cap_e = ncap;
    }
    if (vc->head + size > vc->cap) vc->head = 0;
    evict_range(vc, vc->head, vc->head + size);
    vl_vision_entry *e = &vc->e[vc->n++];
    e->key = key;
    e->n_tokens = n_tokens;
    e->off = vc->head;
    e->bytes = size;
    vc->head += size;
    return (char *)vc->base + e->off;
}
