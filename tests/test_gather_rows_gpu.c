/* test_gather_rows_gpu.c: the CUDA backend's gather_rows against its CPU twin, bit for bit (a
 * gather is exact: bf16 inputs, the CPU twin gathers their float32 values).
 *   - every copy width of the kernel: rows of a multiple of 8 with 16-byte aligned pointers,
 *     then the same rows from pointers 4 and 2 bytes off, even rows of 6 and 2054 elements, odd
 *     rows (1, 3, 1280 * 4 + 1);
 *   - Qwen2.5-VL's index patterns at 7B widths: the window order of a merged grid (rows of
 *     4 x 1280) and its inverse (rows of 3584), a random permutation, an index with repeats,
 *     one row;
 *   - more rows than one sweep of the capped grid (2^20 blocks of 8 warps): 9M rows of one
 *     element;
 *   - the guard row after dst stays untouched; an index outside [0, n_rows) gives a row of
 *     quiet NaN (0x7fc0) and leaves the other rows right.
 * Without a device it reports one skip (exit 77). */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"
#include "vltest_gather.h"

#ifdef VL_HAVE_CUDA

#define GUARD_BITS 0x5555u

static vl_backend *gpu;

/* dst bits of the GPU's gather of `src` (bf16, n_rows x row_elems) placed dst_off / src_off
 * elements past 256-byte aligned device buffers; dst has one guard row after n_rows.
 * Returns n_rows + 1 rows of bits (caller frees). */
static uint16_t *gpu_gather(const uint16_t *src, const int32_t *idx, int64_t n_rows,
                            int64_t row_elems, int dst_off, int src_off) {
    const int64_t n = n_rows * row_elems, n_dst = n + row_elems;
    uint16_t *out = malloc((size_t)n_dst * 2);
    for (int64_t i = 0; i < n_dst; i++) out[i] = GUARD_BITS;
    uint16_t *d_src = vt_dev_alloc(gpu, (size_t)(n + src_off) * 2);
    uint16_t *d_dst = vt_dev_alloc(gpu, (size_t)(n_dst + dst_off) * 2);
    int32_t *d_idx = vt_dev_alloc(gpu, (size_t)n_rows * 4);
    gpu->upload(gpu, d_src + src_off, src, (size_t)n * 2);
    gpu->upload(gpu, d_dst + dst_off, out, (size_t)n_dst * 2);
    gpu->upload(gpu, d_idx, idx, (size_t)n_rows * 4);
    gpu->gather_rows(gpu, d_dst + dst_off, d_src + src_off, d_idx, n_rows, row_elems);
    gpu->download(gpu, out, d_dst + dst_off, (size_t)n_dst * 2);
    gpu->mem_free(gpu, d_src), gpu->mem_free(gpu, d_dst), gpu->mem_free(gpu, d_idx);
    return out;
}

/* The CUDA op against the CPU twin for idx (every entry in range). */
static void check(const char *what, const int32_t *idx, int64_t n_rows, int64_t row_elems,
                  int dst_off, int src_off) {
    const int64_t n = n_rows * row_elems;
    vt_rng_state = 3 + (uint64_t)(n_rows * 7 + row_elems);
    uint16_t *src = malloc((size_t)n * 2);
    float *src_f = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        src[i] = vl_f32_to_bf16((float)vt_rng_normal());
        src_f[i] = vl_bf16_to_f32(src[i]);
    }
    vl_backend *cpu = vl_backend_cpu();
    cpu->gather_rows(cpu, want, src_f, idx, n_rows, row_elems);
    uint16_t *got = gpu_gather(src, idx, n_rows, row_elems, dst_off, src_off);
    int64_t bad = 0, guard = 0;
    for (int64_t i = 0; i < n; i++) bad += got[i] != vl_f32_to_bf16(want[i]);
    for (int64_t j = 0; j < row_elems; j++) guard += got[n + j] != GUARD_BITS;
    VT_CHECKF(bad == 0 && guard == 0,
              "%s (%lld rows of %lld, dst +%d src +%d elements): %lld elements differ from the CPU "
              "twin, %lld guard elements written",
              what, (long long)n_rows, (long long)row_elems, dst_off, src_off, (long long)bad,
              (long long)guard);
    free(src), free(src_f), free(want), free(got);
}

static void check_permutation(const char *what, int64_t n_rows, int64_t row_elems, int dst_off,
                              int src_off) {
    vt_rng_state = 17 + (uint64_t)n_rows;
    int32_t *perm = vt_random_permutation(n_rows);
    check(what, perm, n_rows, row_elems, dst_off, src_off);
    free(perm);
}

static void test_widths(void) {
    check_permutation("16-byte copies", 300, 5120, 0, 0);
    check_permutation("dst 4 bytes off", 300, 5120, 2, 0);
    check_permutation("src 2 bytes off", 300, 5120, 0, 1);
    check_permutation("even rows", 300, 6, 0, 0);
    check_permutation("even rows, not of 8", 77, 2054, 0, 0);
    check_permutation("odd rows", 300, 3, 0, 0);
    check_permutation("odd wide rows", 50, 1280 * 4 + 1, 0, 0);
    check_permutation("rows of one element", 1000, 1, 0, 0);
}

static void test_patterns(void) {
    /* a 1288 x 1680 image at 7B: a 46 x 60 merged grid, windows cut at both edges */
    int32_t *order = vt_window_order(46, 60, 4), *inv = vt_inverse_permutation(order, 46 * 60);
    check("window order", order, 46 * 60, 4 * 1280, 0, 0);
    check("raster order again", inv, 46 * 60, 3584, 0, 0);
    free(order), free(inv);
    int32_t repeats[101];
    vt_rng_state = 5;
    for (int i = 0; i < 101; i++) repeats[i] = (int32_t)(vt_rng_next() % 10);
    repeats[50] = 100;
    check("index with repeats", repeats, 101, 3584, 0, 0);
    check("index with repeats, odd rows", repeats, 101, 7, 0, 0);
    const int32_t zero = 0;
    check("one row", &zero, 1, 8192, 0, 0);
    check("one odd row", &zero, 1, 5, 0, 0);
}

/* 9M rows: more than one sweep of the grid (2^20 blocks x 8 warps = 8388608 rows) */
static void test_many_rows(void) {
    const int64_t n_rows = 9000000;
    int32_t *rev = malloc((size_t)n_rows * 4);
    for (int64_t i = 0; i < n_rows; i++) rev[i] = (int32_t)(n_rows - 1 - i);
    check("9M rows reversed", rev, n_rows, 1, 0, 0);
    check("9M rows reversed, 4-byte copies", rev, n_rows, 2, 0, 0);
    free(rev);
}

/* Indices n_rows and -1: rows of quiet NaN; the other rows as the reference loop says. */
static void test_out_of_range(void) {
    const int64_t n_rows = 6;
    const int32_t idx[6] = {5, 6, 0, -1, 2, 2};
    for (int64_t row_elems = 7; row_elems <= 16; row_elems += 1) {
        const int64_t n = n_rows * row_elems;
        uint16_t *src = malloc((size_t)n * 2);
        for (int64_t i = 0; i < n; i++) src[i] = (uint16_t)(0x3f80 + i % 97); /* 1.0 and up */
        uint16_t *got = gpu_gather(src, idx, n_rows, row_elems, 0, 0);
        int64_t bad = 0;
        for (int64_t i = 0; i < n_rows; i++)
            for (int64_t j = 0; j < row_elems; j++) {
                const int in_range = idx[i] >= 0 && idx[i] < n_rows;
                const uint16_t want = in_range ? src[idx[i] * row_elems + j] : 0x7fc0;
                bad += got[i * row_elems + j] != want;
            }
        VT_CHECKF(bad == 0, "out-of-range indices, rows of %lld: %lld elements wrong",
                  (long long)row_elems, (long long)bad);
        free(src), free(got);
    }
}

int main(void) {
    gpu = vt_gpu_or_skip();
    if (!gpu) return vt_finish();
    test_widths();
    test_patterns();
    test_many_rows();
    test_out_of_range();
    return vt_finish();
}

#else
int main(void) {
    VT_SKIP("built without CUDA");
    return vt_finish();
}
#endif
