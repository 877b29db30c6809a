/* cuda_mma.cuh: the tensor-core and unpacking helpers every CUDA kernel family shares (attention,
 * the decode GEMVs): the one mma.m16n8k16 wrapper, bf16x2 packing, and the exact int8 / NF4 ->
 * float unpacking of quantized weights and of the int8 KV cache.
 * Fragment layouts of mma.m16n8k16: cuda_attention_mma.cuh. Inline PTX for sm_80 and newer.
 * Leaves out: Hopper wgmma (cuda_hopper.cuh; mma.sync runs on every target from sm_80 up). */
#ifndef VL_CUDA_MMA_CUH
#define VL_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* c[16 x 8] += a[16 x 16] . b[16 x 8] (bf16 in, fp32 accumulate) */
__device__ __forceinline__ void vl_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats rounded to nearest-even bf16, `first` in the low half (the lower index). */
__device__ __forceinline__ uint32_t vl_pack_bf16x2(float first, float second) {
    __nv_bfloat162 v = __floats2bfloat162_rn(first, second);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Byte j of v, zero-extended. */
__device__ __forceinline__ uint32_t vl_byte_of(uint32_t v, int j) {
    return __byte_perm(v, 0u, 0x4440u | (uint32_t)j);
}

/* The NF4 weight pair of byte j of a word of codes as a bf16x2 register: `hi4` / `lo4` hold each
 * byte's high / low code times 4 (byte offsets into the float table `s_table`); the high nibble
 * is the earlier element. bf16(table[code] * scale), no FMA (the CPU twin's expression). */
__device__ __forceinline__ uint32_t vl_nf4_pair(const float *s_table, uint32_t hi4, uint32_t lo4,
                                                int j, float scale) {
    const char *t = reinterpret_cast<const char *>(s_table);
    const float first = *reinterpret_cast<const float *>(t + vl_byte_of(hi4, j));
    const float second = *reinterpret_cast<const float *>(t + vl_byte_of(lo4, j));
    return vl_pack_bf16x2(__fmul_rn(first, scale), __fmul_rn(second, scale));
}

/* int8 byte j of `biased` (the word with every byte's sign bit flipped, q + 128) as the Q8ROW
 * weight: 0x4B0000bb is 2^23 + q + 128, so one subtraction gives the exact float q; then
 * q * absmax * (1/127), left to right (the CPU twin's expression). */
__device__ __forceinline__ float vl_q8_weight(uint32_t biased, int j, float absmax) {
    const float big = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7440u | (uint32_t)j));
    return __fmul_rn(__fmul_rn(__fsub_rn(big, 8388736.0f), absmax), 1.0f / 127.0f);
}

/* Four int8 (the bytes of w, lowest first) as four exact bf16, two per register, lowest in the
 * low half: b + 128 is placed in the mantissa of 2^23 and 2^23 + 128 subtracted in fp32 (exact),
 * then each pair is rounded to bf16 (exact: |b| <= 128). */
__device__ __forceinline__ uint2 vl_int8x4_to_bf16x4(uint32_t w) {
    const uint32_t u = w ^ 0x80808080u; /* b + 128, as unsigned bytes */
    const float f0 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7650)) - 8388736.0f;
    const float f1 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7651)) - 8388736.0f;
    const float f2 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7652)) - 8388736.0f;
    const float f3 = __uint_as_float(__byte_perm(u, 0x4b000000u, 0x7653)) - 8388736.0f;
    return make_uint2(vl_pack_bf16x2(f0, f1), vl_pack_bf16x2(f2, f3));
}

#endif
