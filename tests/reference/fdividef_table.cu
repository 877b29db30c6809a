/* fdividef_table.cu: what the GPU's __fdividef(127.0f, a) gives, written as the table that
 * kernels/cpu_quant.c uses to reproduce bitsandbytes' int8 row-wise scales on the CPU (run on
 * the GPU machine: nvcc -arch=sm_90 -o fdividef_table fdividef_table.cu;
 * ./fdividef_table kernels/cpu_quant_fdividef.h [all_results.f32]).
 *
 * bitsandbytes' kInt8VectorQuant takes the row absmax over the fp16 weight (so a is an fp16
 * value) and scales the row by __fdividef(127.0f, a): the hardware's approximate reciprocal, not
 * the correctly rounded 1 / a, and it differs from 127 * (1 / a) in the last bit for some a.
 * Where w * scale lands on k + 0.5 that bit decides the int8 code. The approximate reciprocal
 * depends on the significand only (the exponent shifts the result), and an fp16 value has 10
 * significand bits, so 1024 results, for a = 1 + i / 1024, describe every fp16 a:
 *     __fdividef(127, (1 + i/1024) * 2^e) = table[i] * 2^-e.
 * This program measures all 1024, then checks that rule against the GPU for every positive
 * fp16 value (normal and subnormal) and records the two special inputs (0 and +inf); it exits
 * 1, writing nothing, when any of them disagrees.
 * Leaves out: negative a (an absmax is never negative). */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define N_HALF 0x7c01 /* fp16 bits 0x0000 .. 0x7c00: zero, subnormals, normals, +inf */

static __global__ void fdividef_kernel(const float *a, float *out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __fdividef(127.0f, a[i]);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The fp16 value with these bits, exactly, as a float. */
static float half_value(uint32_t h) {
    const uint32_t e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) return m ? NAN : INFINITY;
    return e ? ldexpf((float)(1024 + m), (int)e - 25) : ldexpf((float)m, -24);
}

/* The rule cpu_quant.c applies, from the 1024-entry table. */
static float predicted(const uint32_t table[1024], float a) {
    int e;
    const float f = frexpf(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    const uint32_t idx = (bits_of(2.0f * f) >> 13) & 1023;
    return ldexpf(float_of(table[idx]), 1 - e);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s OUT_HEADER [OUT_RAW]\n", argv[0]);
        return 2;
    }
    static float a[N_HALF], got[N_HALF];
    for (uint32_t h = 0; h < N_HALF; h++) a[h] = half_value(h);
    float *da, *dout;
    if (cudaMalloc(&da, sizeof a) || cudaMalloc(&dout, sizeof got)) return 1;
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    fdividef_kernel<<<(N_HALF + 255) / 256, 256>>>(da, dout, N_HALF);
    if (cudaMemcpy(got, dout, sizeof got, cudaMemcpyDeviceToHost) != cudaSuccess) {
        fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    uint32_t table[1024];
    for (uint32_t i = 0; i < 1024; i++) table[i] = bits_of(got[0x3c00 | i]); /* a = 1 + i/1024 */
    int bad = 0, differs_from_ieee = 0;
    for (uint32_t h = 1; h < 0x7c00; h++) {
        const float want = got[h], rule = predicted(table, a[h]);
        if (bits_of(rule) != bits_of(want) && bad++ < 10)
            fprintf(stderr, "a = %.9g (fp16 0x%04x): GPU %.9g (0x%08x), rule %.9g (0x%08x)\n",
                    a[h], h, want, bits_of(want), rule, bits_of(rule));
        differs_from_ieee += bits_of(want) != bits_of(127.0f * (1.0f / a[h]));
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    printf("%s (sm_%d%d), CUDA runtime %d: __fdividef(127, a) for %d positive fp16 a: rule "
           "disagrees at %d, differs from 127 * (1 / a) at %d; a = 0 -> 0x%08x, a = inf -> "
           "0x%08x\n",
           prop.name, prop.major, prop.minor, runtime, 0x7c00 - 1, bad, differs_from_ieee,
           bits_of(got[0]), bits_of(got[0x7c00]));
    if (argc == 3) { /* every result, float32 [0x7c01], for a look at a disagreement */
        FILE *raw = fopen(argv[2], "wb");
        if (!raw || fwrite(got, sizeof got, 1, raw) != 1 || fclose(raw)) perror(argv[2]);
    }
    if (bad) return 1;
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f,
            "/* cpu_quant_fdividef.h: written by tests/reference/fdividef_table.cu on an %s\n"
            " * (sm_%d%d, CUDA runtime %d); do not edit. Entry i holds the float32 bits of the GPU's\n"
            " * __fdividef(127.0f, 1 + i / 1024.0f); for an fp16 value a = (1 + i / 1024) * 2^e,\n"
            " * __fdividef(127.0f, a) = entry i * 2^-e (checked there for every positive fp16 a).\n"
            " * Leaves out: inputs that are not fp16 values. */\n"
            "#ifndef VL_CPU_QUANT_FDIVIDEF_H\n#define VL_CPU_QUANT_FDIVIDEF_H\n\n"
            "#include <stdint.h>\n\n"
            "#define VL_FDIVIDEF127_OF_ZERO 0x%08xu /* a = 0 */\n"
            "#define VL_FDIVIDEF127_OF_INF  0x%08xu /* a = +inf */\n\n"
            "static const uint32_t vl_fdividef127_bits[1024] = {\n",
            prop.name, prop.major, prop.minor, runtime, bits_of(got[0]), bits_of(got[0x7c00]));
    for (int i = 0; i < 1024; i++)
        fprintf(f, "%s0x%08xu,%s", i % 6 ? " " : "    ", table[i], i % 6 == 5 ? "\n" : "");
    fprintf(f, "\n};\n\n#endif\n");
    return fclose(f) ? 1 : 0;
}
