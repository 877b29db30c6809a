/* test_gather_rows.c: gather_rows on the CPU backend (the oracle of the CUDA op) against a plain
 * reference loop, element for element (a gather is exact):
 *   - a random permutation, and the window order of a 6 x 9 merged grid (its first entries
 *     written out), each followed by its inverse, which must give back the source bit for bit;
 *   - a non-permutation index with repeats (some rows never read), odd row_elems;
 *   - one row, and rows of one element;
 *   - a call big enough to run on several threads (same result as the reference);
 *   - dst rows past n_rows stay untouched;
 *   - an index outside [0, n_rows), a negative one, and dst overlapping src abort (VL_CPU_REQUIRE)
 *     in a child process.
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_gather.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static float *random_rows(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)vt_rng_normal();
    return p;
}

/* Gathers n_rows rows into a dst of n_rows + 1 rows (the last one a guard) and compares with
 * the reference loop. Returns the gathered rows (caller frees). */
static float *check_gather(const char *what, const float *src, const int32_t *idx, int64_t n_rows,
                           int64_t row_elems) {
    vl_backend *cpu = vl_backend_cpu();
    const int64_t n = n_rows * row_elems;
    float *dst = malloc((size_t)(n + row_elems) * sizeof(float));
    for (int64_t i = 0; i < n + row_elems; i++) dst[i] = -777.0f;
    cpu->gather_rows(cpu, dst, src, idx, n_rows, row_elems);
    int64_t bad = 0;
    for (int64_t i = 0; i < n_rows; i++)
        for (int64_t j = 0; j < row_elems; j++)
            bad += memcmp(&dst[i * row_elems + j], &src[idx[i] * row_elems + j], 4) != 0;
    for (int64_t j = 0; j < row_elems; j++) bad += dst[n + j] != -777.0f;
    VT_CHECKF(bad == 0, "%s (%lld rows of %lld): %lld elements differ from the reference loop",
              what, (long long)n_rows, (long long)row_elems, (long long)bad);
    return dst;
}

/* perm (NULL: a random permutation) then its inverse: the source again, bit for bit */
static void test_round_trip(const char *what, int32_t *perm, int64_t n_rows, int64_t row_elems) {
    vt_rng_state = 7 + (uint64_t)(n_rows * 31 + row_elems);
    float *src = random_rows(n_rows * row_elems);
    if (!perm) perm = vt_random_permutation(n_rows);
    int32_t *inv = vt_inverse_permutation(perm, n_rows);
    float *window = check_gather(what, src, perm, n_rows, row_elems);
    float *back = check_gather("its inverse", window, inv, n_rows, row_elems);
    VT_CHECKF(memcmp(back, src, (size_t)(n_rows * row_elems) * sizeof(float)) == 0,
              "%s then its inverse (%lld rows of %lld) is not the source", what, (long long)n_rows,
              (long long)row_elems);
    free(src), free(perm), free(inv), free(window), free(back);
}

/* The window order of a 6 x 9 merged grid (windows of 4 x 4, cut at the right and bottom) */
static void test_window_order(void) {
    int32_t *order = vt_window_order(6, 9, 4);
    /* window (0,0): rows 0..3, columns 0..3; window (0,1) starts at column 4; window (0,2) is
     * one column wide; window (1,0) holds rows 4..5 */
    const int32_t want[20] = {0,  1,  2,  3,  9,  10, 11, 12, 18, 19,
                              20, 21, 27, 28, 29, 30, 4,  5,  6,  7};
    VT_CHECK(memcmp(order, want, sizeof want) == 0);
    VT_CHECK(order[32] == 8 && order[33] == 17 && order[36] == 36 && order[53] == 53);
    test_round_trip("window order", order, 6 * 9, 4 * 12);
}

static void test_repeats(void) {
    const int64_t n_rows = 37, row_elems = 7;
    vt_rng_state = 99;
    float *src = random_rows(n_rows * row_elems);
    int32_t idx[37];
    for (int i = 0; i < 37; i++) idx[i] = (int32_t)(vt_rng_next() % 9); /* rows 0..8, repeated */
    idx[5] = 36;                                                        /* the last row */
    free(check_gather("index with repeats", src, idx, n_rows, row_elems));
    free(src);
}

static void test_small(void) {
    const float one_row[5] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f};
    const int32_t zero = 0;
    free(check_gather("one row", one_row, &zero, 1, 5));
    const float column[4] = {10, 11, 12, 13};
    const int32_t rev[4] = {3, 2, 1, 0};
    float *got = check_gather("rows of one element", column, rev, 4, 1);
    VT_CHECK(got[0] == 13 && got[1] == 12 && got[2] == 11 && got[3] == 10);
    free(got);
    vl_backend *cpu = vl_backend_cpu();
    float untouched = 5.0f;
    cpu->gather_rows(cpu, &untouched, column, rev, 0, 4); /* no rows: nothing written */
    VT_CHECK(untouched == 5.0f);
}

/* cpu->gather_rows with a broken contract must abort (in a child, stderr silenced). */
static void expect_abort(const char *what, float *dst, const float *src, const int32_t *idx,
                         int64_t n_rows, int64_t row_elems) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        vl_backend *cpu = vl_backend_cpu();
        cpu->gather_rows(cpu, dst, src, idx, n_rows, row_elems);
        _exit(0);
    }
    int status = 0;
    VT_CHECKF(pid > 0 && waitpid(pid, &status, 0) == pid, "%s: fork / wait failed", what);
    VT_CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: no abort (status %d)", what,
              status);
}

static void test_contract(void) {
    float src[12] = {0}, dst[12] = {0};
    const int32_t past_end[3] = {0, 3, 1}, negative[3] = {2, -1, 0}, ok[3] = {2, 1, 0};
    expect_abort("index == n_rows", dst, src, past_end, 3, 4);
    expect_abort("negative index", dst, src, negative, 3, 4);
    expect_abort("dst overlapping src", src + 2, src, ok, 2, 4);
    VT_CHECK(dst[0] == 0.0f); /* the children wrote nothing here */
}

int main(void) {
    test_round_trip("permutation", NULL, 1000, 20);
    test_round_trip("permutation", NULL, 64, 1280 * 4 + 3); /* odd, wide rows */
    test_round_trip("permutation", NULL, 2600, 4000);       /* 10.4M elements: the threaded path */
    test_window_order();
    test_repeats();
    test_small();
    test_contract();
    return vt_finish();
}
