/* vlbench_shared.c: the helpers every benchmark file of vlbench uses (vlbench.h): result rows,
 * device buffers freed together, random bf16 inputs, the reference rows, the memory-bound test
 * and the error fold. Kept apart from vlbench.c (the entry point) so that the benchmark files
 * depend on this file and vlbench.c on them, with no loop.
 */
#include "bench/vlbench.h"

#include <math.h>
#include <string.h>

void vlb_row_init(vlb_row *r, const char *bench, const char *quant) {
    memset(r, 0, sizeof *r);
    r->bench = bench;
    r->quant = quant;
    r->ms = r->min_ms = r->anchor_ms = NAN;
    r->max_abs_err = r->max_rel_err = r->anchor_max_abs_err = NAN;
}

void *vlb_alloc(vlb_bufs *bufs, size_t bytes) {
    if (bufs->n == VLB_MAX_BUFS) return NULL;
    void *p = bufs->gpu->mem_alloc(bufs->gpu, bytes);
    if (p) bufs->p[bufs->n++] = p;
    return p;
}

void vlb_free_all(vlb_bufs *bufs) {
    bufs->gpu->sync(bufs->gpu);
    for (int i = 0; i < bufs->n; i++) bufs->gpu->mem_free(bufs->gpu, bufs->p[i]);
    bufs->n = 0;
}

void vlb_fill_random(vl_backend *gpu, void *dst, int64_t n, uint64_t key, float center,
                     float half) {
    gpu->fill_random_bf16(gpu, dst, n, key, center, half); /* every backend has it */
}

int vlb_ref_rows(int64_t n, int64_t rows[VLB_REF_ROWS]) {
    const int64_t want[VLB_REF_ROWS] = {0, n / 3, 2 * n / 3, n - 1};
    int k = 0;
    for (int i = 0; i < VLB_REF_ROWS; i++)
        if (k == 0 || want[i] > rows[k - 1]) rows[k++] = want[i];
    return k;
}

int vlb_memory_bound(const vlb_run *run, double flops, double bytes) {
    double ridge = run->peak_tflops * 1e12 / (run->copy_gbps * 1e9);
    if (!isfinite(ridge) || ridge <= 0) ridge = 100.0; /* a ceiling could not be measured */
    return flops < ridge * bytes;
}

void vlb_compare(const float *a, const float *ref, int64_t n, double *max_abs, double *max_ref) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > *max_abs || d != d) *max_abs = d; /* NaN sticks */
        if (fabs((double)ref[i]) > *max_ref) *max_ref = fabs((double)ref[i]);
    }
}
