/* test_vision_cache.c: the batch's vision cache (engine/vision_cache.c) on a host block:
 *   - the key: equal for equal pixels and grids, different when one pixel bit, the grid or the
 *     patch size differs;
 *   - lookups: a stored entry is found with its token count (not with another), a missing key
 *     is not; hits and misses are counted;
 *   - the ring: entries go one after the other (256-byte aligned); one that does not fit before
 *     the end goes to offset 0 and evicts what it overlaps, oldest first; one larger than the
 *     block is not cached; a cache without a block caches nothing.
 * The batch's use of it (answers equal with and without it) is in test_batch.c. */
#include "engine/engine.h"
#include "vltest.h"

static vl_pixels pixels(float *data, int gh, int gw, float first) {
    vl_pixels px = {0};
    px.grid_t = 1, px.grid_h = gh, px.grid_w = gw;
    px.n_patches = (int64_t)gh * gw;
    px.patch_dim = 6;
    px.pixels = data;
    for (int64_t i = 0; i < px.n_patches * px.patch_dim; i++) data[i] = 0.25f * (float)(i % 7);
    data[0] = first;
    return px;
}

static int same(vl_vision_key a, vl_vision_key b) {
    return a.a == b.a && a.b == b.b;
}

static void test_keys(void) {
    float d1[4 * 4 * 6], d2[4 * 4 * 6], d3[4 * 4 * 6];
    vl_pixels p1 = pixels(d1, 4, 4, 1.0f), p2 = pixels(d2, 4, 4, 1.0f);
    VT_CHECK(same(vl_vision_key_of(&p1), vl_vision_key_of(&p2)));
    d2[95] = nextafterf(d2[95], 10.0f); /* one bit of the last value */
    VT_CHECK(!same(vl_vision_key_of(&p1), vl_vision_key_of(&p2)));
    vl_pixels p3 = pixels(d3, 2, 8, 1.0f); /* the same floats, another grid */
    VT_CHECK(memcmp(d1, d3, sizeof d1) == 0);
    VT_CHECK(!same(vl_vision_key_of(&p1), vl_vision_key_of(&p3)));
    p3 = pixels(d3, 4, 4, 1.0f);
    p3.patch_dim = 3, p3.n_patches = 32; /* the same bytes cut into other patches */
    VT_CHECK(!same(vl_vision_key_of(&p1), vl_vision_key_of(&p3)));
}

static void test_ring(void) {
    enum { CAP = 1024 };
    static unsigned char block[CAP];
    vl_vision_cache vc;
    vl_vision_cache_init(&vc, block, CAP);
    const vl_vision_key ka = {1, 2}, kb = {3, 4}, kc = {5, 6}, kd = {7, 8};
    VT_CHECK(vl_vision_cache_find(&vc, ka, 10) == NULL);
    unsigned char *a = vl_vision_cache_put(&vc, ka, 10, 300); /* 512 with alignment */
    unsigned char *b = vl_vision_cache_put(&vc, kb, 20, 256);
    VT_CHECK(a == block && b == block + 512);
    VT_CHECK(vl_vision_cache_find(&vc, ka, 10) == a);
    VT_CHECK(vl_vision_cache_find(&vc, ka, 11) == NULL); /* another token count */
    VT_CHECK(vl_vision_cache_find(&vc, kb, 20) == b);
    /* 300 bytes do not fit after 768: back to 0, a goes, b stays */
    unsigned char *c = vl_vision_cache_put(&vc, kc, 30, 300);
    VT_CHECK(c == block);
    VT_CHECK(vl_vision_cache_find(&vc, ka, 10) == NULL);
    VT_CHECK(vl_vision_cache_find(&vc, kb, 20) == b);
    VT_CHECK(vl_vision_cache_find(&vc, kc, 30) == c);
    VT_CHECK_INT(vc.evictions, 1);
    /* 600 bytes (768 aligned) from 512 do not fit: from 0, evicting c and b */
    unsigned char *d = vl_vision_cache_put(&vc, kd, 40, 600);
    VT_CHECK(d == block && vc.n == 1 && vc.evictions == 3);
    VT_CHECK(vl_vision_cache_find(&vc, kb, 20) == NULL);
    VT_CHECK(vl_vision_cache_put(&vc, ka, 10, CAP + 1) == NULL); /* larger than the block */
    VT_CHECK(vl_vision_cache_find(&vc, kd, 40) == d);
    VT_CHECK_INT(vc.hits, 5);
    VT_CHECK_INT(vc.misses, 4);
    vl_vision_cache_free(&vc);

    vl_vision_cache none;
    vl_vision_cache_init(&none, NULL, CAP);
    VT_CHECK(vl_vision_cache_put(&none, ka, 10, 16) == NULL && none.cap == 0);
    vl_vision_cache_free(&none);
}

int main(void) {
    test_keys();
    test_ring();
    return vt_finish();
}
