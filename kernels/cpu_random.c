/* cpu_random.c: --random-weights on the CPU backend (fill_random_bf16, kernels.h): the CPU twin
 * of cuda_random.cu, the same counter-based generator (vl_random_unit) and the same fp32
 * expression rounded to bf16, so both backends, and a checkpoint written by `vlrun synth`, hold
 * the same bits. The destination is bf16 in host memory (what a bf16 weight of the CPU backend
 * holds). */
#include "kernels/cpu_internal.h"

typedef struct {
    uint16_t *dst;
    uint64_t key;
    float center, half;
} fill_job;

static void fill_range(void *ctx, int64_t begin, int64_t end) {
    const fill_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        double u = vl_random_unit(j->key + (uint64_t)i);
        j->dst[i] = vl_f32_to_bf16(j->center + j->half * (float)(2.0 * u - 1.0));
    }
}

void vl_cpu_fill_random_bf16(vl_backend *b, void *dst, int64_t n, uint64_t key, float center,
                             float half) {
    (void)b;
    fill_job j = {dst, key, center, half};
    vl_cpu_parallel(n, (double)n * 16, fill_range, &j); /* ~16 flops per value (the mixer) */
}
