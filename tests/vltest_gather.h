/* vltest_gather.h: index vectors for the gather_rows tests (test_gather_rows.c and its GPU
 * twin): a random permutation, and the window order of Qwen2.5-VL's merged tokens, written
 * here from the definition (transformers' get_window_index: windows of `win` x `win` merged
 * tokens in raster order of the windows, smaller at the right and bottom edges, tokens in raster
 * order inside each window) so the tests see the engine's real index pattern. */
#ifndef VL_TEST_GATHER_H
#define VL_TEST_GATHER_H
#include "vltest.h"

#include <stdint.h>
#include <stdlib.h>

/* A random permutation of 0..n-1 (Fisher-Yates over vt_rng_next); malloc'ed. */
static inline int32_t *vt_random_permutation(int64_t n) {
    int32_t *p = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)(vt_rng_next() % (uint64_t)(i + 1));
        const int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

/* idx[k] = the raster index of the k-th merged token in window order, for a grid of h x w merged
 * tokens; malloc'ed, h * w entries. */
static inline int32_t *vt_window_order(int h, int w, int win) {
    int32_t *p = malloc((size_t)h * (size_t)w * sizeof(int32_t));
    int64_t k = 0;
    for (int wy = 0; wy < h; wy += win)
        for (int wx = 0; wx < w; wx += win)
            for (int y = wy; y < h && y < wy + win; y++)
                for (int x = wx; x < w && x < wx + win; x++) p[k++] = (int32_t)(y * w + x);
    return p;
}

/* inv[perm[i]] = i; malloc'ed. */
static inline int32_t *vt_inverse_permutation(const int32_t *perm, int64_t n) {
    int32_t *inv = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) inv[perm[i]] = (int32_t)i;
    return inv;
}

#endif
