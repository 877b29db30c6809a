/* test_cpu_backend.c: the CPU backend's heartbeat (kernels.h): a long op calls it from the
 * calling thread between pieces of its work, single- and multi-threaded, and gives the same
 * result as without it; no heartbeat set, no call. */
#include "kernels/kernels.h"
#include "vltest.h"

static int beats;
static void count_beat(void *ctx) {
    beats++;
    VT_CHECK(ctx == &beats);
}

/* y = x . w^T with F32 weights on the CPU backend; rows x cols decides the thread count. */
static void run_linear(vl_backend *b, int64_t m, int64_t rows, int64_t cols, float *y) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w),
          *x = malloc((size_t)(m * cols) * sizeof *x);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)((i * 7 % 13) - 6) / 8.0f;
    for (int64_t i = 0; i < m * cols; i++) x[i] = (float)((i * 5 % 11) - 5) / 4.0f;
    vl_weight W = {.data = w, .dtype = VL_DTYPE_F32, .rows = rows, .cols = cols};
    vl_vec B = {NULL, VL_DTYPE_F32, rows};
    b->linear(b, y, x, m, &W, &B);
    free(w);
    free(x);
}

int main(void) {
    vl_backend *b = vl_backend_cpu();
    /* a small op (one thread) and a large one (several threads where the machine has them) */
    const int64_t shapes[2][3] = {{2, 16, 8}, {64, 1024, 512}};
    for (int k = 0; k < 2; k++) {
        const int64_t m = shapes[k][0], rows = shapes[k][1], cols = shapes[k][2];
        float *quiet = malloc((size_t)(m * rows) * sizeof(float));
        float *beat = malloc((size_t)(m * rows) * sizeof(float));
        b->heartbeat = NULL;
        beats = 0;
        run_linear(b, m, rows, cols, quiet);
        VT_CHECK_INT(beats, 0);
        b->heartbeat = count_beat;
        b->heartbeat_ctx = &beats;
        run_linear(b, m, rows, cols, beat);
        b->heartbeat = NULL;
        /* one beat per piece of the calling thread's share: several per op, never none */
        VT_CHECKF(beats >= 8, "%lld x %lld: %d heartbeats", (long long)rows, (long long)cols,
                  beats);
        VT_CHECK(memcmp(quiet, beat, (size_t)(m * rows) * sizeof(float)) == 0);
        free(quiet);
        free(beat);
    }
    return vt_finish();
}
