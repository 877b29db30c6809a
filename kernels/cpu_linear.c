/* cpu_linear.c: the CPU twin of linear (y = x . W^T + b) and embed (rows of a table).
 *
 * linear: y[i, r] = dot(x[i, :], W[r, :]) + b[r], the dot product in float32 over the
 * interleaved lanes of cpu_internal.h, then one rounding for the bias. Weight rows are
 * converted to float32 a block of LINEAR_ROW_BLOCK rows at a time and reused for every input
 * row, so each weight element is converted once per call. Quantized weights (NF4, Q8ROW) are
 * converted by vl_weight_rows_f32 to the bf16-rounded values a bf16 GEMM would see, so a
 * quantized linear equals the linear on the dequantized bf16 matrix, bit for bit. Large calls
 * split the output features (weight rows) over up to VL_CPU_MAX_THREADS threads; every
 * y[i, r] is computed the same way in every split, so the result does not depend on the thread
 * count nor on m.
 * Leaves out: cache tiling of x.
 */
#include "kernels/cpu_internal.h"

/* Rows of W converted together: x[i, :] is read once per block instead of once per row. */
#define LINEAR_ROW_BLOCK 8

typedef struct {
    float *y;       /* [m, rows] */
    const float *x; /* [m, cols] */
    int64_t m;
    const vl_weight *w;
    const vl_vec *bias;
} linear_job;

static void linear_row_slice(void *ctx, int64_t r_begin, int64_t r_end) {
    const linear_job *job = ctx;
    const int64_t rows = job->w->rows, cols = job->w->cols;
    float *w_block = vl_cpu_scratch(LINEAR_ROW_BLOCK * cols); /* [LINEAR_ROW_BLOCK, cols] */
    float bias[LINEAR_ROW_BLOCK];
    for (int64_t r0 = r_begin; r0 < r_end; r0 += LINEAR_ROW_BLOCK) {
        int nr = r_end - r0 < LINEAR_ROW_BLOCK ? (int)(r_end - r0) : LINEAR_ROW_BLOCK;
        vl_weight_rows_f32(job->w, r0, nr, w_block);
        for (int r = 0; r < nr; r++) bias[r] = vl_cpu_vec_at(job->bias, r0 + r, 0.0f);
        for (int64_t i = 0; i < job->m; i++) {
            const float *xi = job->x + i * cols;
            float *yi = job->y + i * rows + r0;
            for (int r = 0; r < nr; r++) yi[r] = vl_cpu_dot(xi, w_block + r * cols, cols) + bias[r];
        }
    }
    free(w_block);
}

void vl_cpu_linear(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                   const vl_vec *bias) {
    VL_CPU_REQUIRE(m >= 0 && w->rows > 0 && w->cols > 0, "linear m=%lld W[%lld, %lld]",
                   (long long)m, (long long)w->rows, (long long)w->cols);
    VL_CPU_REQUIRE(!bias || !bias->data || bias->n == w->rows, "bias of %lld for %lld outputs",
                   (long long)bias->n, (long long)w->rows);
    if (m == 0) return;
    linear_job job = {y, x, m, w, bias};
    vl_cpu_parallel(w->rows, (double)m * (double)w->rows * (double)w->cols, linear_row_slice, &job);
}

void vl_cpu_embed(vl_backend *b, void *y, const vl_weight *table, const int32_t *ids, int64_t n) {
    float *out = y;
    for (int64_t i = 0; i < n; i++) {
        VL_CPU_REQUIRE(ids[i] >= 0 && ids[i] < table->rows, "token id %d of a table of %lld rows",
                       (int)ids[i], (long long)table->rows);
        vl_weight_rows_f32(table, ids[i], 1, out + i * table->cols);
    }
}
