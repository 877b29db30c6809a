/* vltest.h: the few macros every test program uses.
 *
 * A test program runs its cases, counts checks, prints failures with file:line and ends with
 * the closing line "N passed, N failed" (or "... , N skipped"); it exits 0 only if nothing
 * failed, 77 if everything was skipped (ctest's SKIP_RETURN_CODE for GPU tests). */
#ifndef VL_TEST_H
#define VL_TEST_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vt_passed, vt_failed, vt_skipped;

#define VT_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (cond)                                                                                  \
            vt_passed++;                                                                           \
        else {                                                                                     \
            vt_failed++;                                                                           \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
        }                                                                                          \
    } while (0)

#define VT_CHECKF(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond)                                                                                  \
            vt_passed++;                                                                           \
        else {                                                                                     \
            vt_failed++;                                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define VT_CHECK_INT(a, b)                                                                         \
    VT_CHECKF((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

#define VT_SKIP(why)                                                                               \
    do {                                                                                           \
        vt_skipped++;                                                                              \
        fprintf(stderr, "SKIP %s:%d: %s\n", __FILE__, __LINE__, why);                              \
    } while (0)

/* The tests' random inputs: splitmix64 from a seed each test sets (vt_rng_state = SEED),
 * uniform in (0, 1), and N(0, 1) by Box-Muller with the two draws in a fixed order. */
static uint64_t vt_rng_state = 1;

static inline uint64_t vt_rng_next(void) {
    uint64_t z = (vt_rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline double vt_rng_uniform(void) {
    return ((double)(vt_rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static inline double vt_rng_normal(void) {
    double u1 = vt_rng_uniform(), u2 = vt_rng_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Path of a fixture: $VL_FIXTURES/<rel> (the tests/fixtures folder of the source tree). */
static inline const char *vt_fixture(const char *rel) {
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("VL_FIXTURES");
    char *out = buf[slot++ & 7];
    snprintf(out, 4096, "%s/%s", root ? root : "tests/fixtures", rel);
    return out;
}

/* A whole file, NUL-terminated (malloc'ed; *len without the NUL), or NULL. */
static inline char *vt_read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0, *len = (size_t)n;
    return buf;
}

static inline int vt_finish(void) {
    if (vt_skipped)
        printf("%d passed, %d failed, %d skipped\n", vt_passed, vt_failed, vt_skipped);
    else
        printf("%d passed, %d failed\n", vt_passed, vt_failed);
    if (vt_failed) return 1;
    if (vt_passed == 0 && vt_skipped) return 77;
    return vt_passed > 0 ? 0 : 1; /* a test program that checked nothing has failed */
}
#endif
