/* cpu_gather_rows.c: the CPU twin of gather_rows (cuda_gather_rows.cu): dst[i, :] =
 * src[idx[i], :] on float32 rows, the reorder of Qwen2.5-VL's patches into window order and
 * back. src has n_rows rows like dst (kernels.h), so every index must lie in [0, n_rows): all
 * are checked before anything is written, and dst may not overlap src. Large calls copy their
 * rows on several threads (vl_cpu_parallel), which also gives the heartbeat its turns.
 */
#include "kernels/cpu_internal.h"

#include <string.h>

typedef struct {
    float *dst;
    const float *src;
    const int32_t *idx;
    int64_t row_elems;
} gather_job;

static void gather_slice(void *ctx, int64_t begin, int64_t end) {
    const gather_job *job = ctx;
    const size_t row_bytes = (size_t)job->row_elems * sizeof(float);
    for (int64_t i = begin; i < end; i++)
        memcpy(job->dst + i * job->row_elems, job->src + job->idx[i] * job->row_elems, row_bytes);
}

void vl_cpu_gather_rows(vl_backend *b, void *dst, const void *src, const int32_t *idx,
                        int64_t n_rows, int64_t row_elems) {
    VL_CPU_REQUIRE(n_rows >= 0 && row_elems >= 0, "gather_rows of %lld rows of %lld elements",
                   (long long)n_rows, (long long)row_elems);
    if (n_rows == 0 || row_elems == 0) return;
    const uintptr_t bytes = (uintptr_t)(n_rows * row_elems) * sizeof(float);
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    VL_CPU_REQUIRE(d + bytes <= s || s + bytes <= d,
                   "gather_rows: dst and src (%lld rows of %lld) overlap", (long long)n_rows,
                   (long long)row_elems);
    for (int64_t i = 0; i < n_rows; i++)
        VL_CPU_REQUIRE(idx[i] >= 0 && idx[i] < n_rows,
                       "gather_rows: index %lld is %d, not a row of %lld", (long long)i,
                       (int)idx[i], (long long)n_rows);
    gather_job job = {dst, src, idx, row_elems};
    vl_cpu_parallel(n_rows, (double)n_rows * (double)row_elems, gather_slice, &job);
}
