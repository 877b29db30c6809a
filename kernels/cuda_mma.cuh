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

/* The scale of NF4 block b from global memory (kernels.h's formula): absmax[b], or with double
 * quantization (DQ) map[scale_codes[b]] * absmax[b / 256] + offset, multiply then add (no FMA,
 * as the CPU twin). */
template <bool DQ>
__device__ __forceinline__ float vl_nf4_block_scale(const float *absmax, const uint8_t *scale_codes,
                                                    const float *map, float offset, int64_t b) {
    if constexpr (DQ)
        return __fadd_rn(__fmul_rn(__ldg(map + __ldg(scale_codes + b)), __ldg(absmax + (b >> 8))),
                         offset);
    else
        return __ldg(absmax + b);
}

/* PTX prmt in its default mode: result byte n is byte (nibble n of sel) & 7 of {a: 0..3, b: 4..7},
 * or, where the nibble's bit 3 is set, that byte's sign bit copied into all 8 bits. (__byte_perm
 * documents only the low 3 bits of each nibble; the NF4 lookups below need the sign mode.) */
__device__ __forceinline__ uint32_t vl_prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

/* One NF4 block's 16 weights bf16(table[c] * scale) (the CPU twin's expression), as byte planes
 * for lookups in registers (vl_nf4_lookup8): hi[j] / lo[j] hold the high / low bytes of entries
 * 4j .. 4j + 3. 16 FMUL, 8 conversions, 8 byte permutes. */
struct vl_nf4_planes {
    uint32_t hi[4], lo[4];
};

__device__ __forceinline__ vl_nf4_planes vl_nf4_make_planes(const float *table, float scale) {
    vl_nf4_planes t;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint32_t a =
            vl_pack_bf16x2(__fmul_rn(table[4 * j], scale), __fmul_rn(table[4 * j + 1], scale));
        const uint32_t b =
            vl_pack_bf16x2(__fmul_rn(table[4 * j + 2], scale), __fmul_rn(table[4 * j + 3], scale));
        t.hi[j] = vl_prmt(a, b, 0x7531u);
        t.lo[j] = vl_prmt(a, b, 0x6420u);
    }
    return t;
}

/* Four codes (the nibbles of sel, bit 3 cleared) looked up in both halves of the table, merged
 * by m (0xff bytes: the code is 8..15), and interleaved into bf16 pairs: out0 = {code of nibble
 * 1, code of nibble 0}, out1 = {nibble 3, nibble 2} (low half first). */
__device__ __forceinline__ void vl_nf4_lookup4(uint32_t &out0, uint32_t &out1,
                                               const vl_nf4_planes &t, uint32_t sel, uint32_t m) {
    const uint32_t h0 = vl_prmt(t.hi[0], t.hi[1], sel), h1 = vl_prmt(t.hi[2], t.hi[3], sel);
    const uint32_t l0 = vl_prmt(t.lo[0], t.lo[1], sel), l1 = vl_prmt(t.lo[2], t.lo[3], sel);
    const uint32_t h = (h0 & ~m) | (h1 & m), l = (l0 & ~m) | (l1 & m);
    out0 = vl_prmt(l, h, 0x4051u);
    out1 = vl_prmt(l, h, 0x6273u);
}

/* The 8 weights of a word of NF4 codes (byte j: element 2j in the high nibble, 2j + 1 in the low
 * one) as bf16 pairs out[j] = {element 2j, element 2j + 1}, from the block's planes: 20 integer
 * instructions and no memory access (the shared-memory table costs a load per weight). */
__device__ __forceinline__ void vl_nf4_lookup8(uint32_t out[4], const vl_nf4_planes &t,
                                               uint32_t v) {
    const uint32_t sel = v & 0x77777777u; /* each code's entry within its half of the table */
    const uint32_t v4 = v << 4;           /* bit 3 of each low nibble now its byte's sign bit */
    /* 0xff bytes where a code is 8..15: sign bits of v (high nibbles) and v4 (low nibbles), in
     * the nibble order of sel: low 0, high 0, low 1, high 1 (bytes 0, 1 of v), then bytes 2, 3 */
    const uint32_t m01 = vl_prmt(v, v4, 0x9D8Cu), m23 = vl_prmt(v, v4, 0xBFAEu);
    vl_nf4_lookup4(out[0], out[1], t, sel, m01);
    vl_nf4_lookup4(out[2], out[3], t, sel >> 16, m23);
}

/* int8 byte j of `biased` (the word with every byte's sign bit flipped, q + 128) as the Q8ROW
 * weight: 0x4B0000bb is 2^23 + q + 128, so one subtraction gives the exact float q; then
 * q * absmax * (1/127), left to right (the CPU twin's expression). */
__device__ __forceinline__ float vl_q8_weight(uint32_t biased, int j, float absmax) {
    const float big = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7440u | (uint32_t)j));
    return __fmul_rn(__fmul_rn(__fsub_rn(big, 8388736.0f), absmax), 1.0f / 127.0f);
}

/* The mma A registers of 4 Q8ROW weights (one word) of each of two rows: row a's in a[0] (weights
 * 0, 1) and a[2] (2, 3), row b's in a[1] and a[3]; sa / sb the rows' absmax. */
__device__ __forceinline__ void vl_q8_a_regs(uint32_t a[4], uint32_t word_a, uint32_t word_b,
                                             float sa, float sb) {
    const uint32_t xa = word_a ^ 0x80808080u, xb = word_b ^ 0x80808080u;
    a[0] = vl_pack_bf16x2(vl_q8_weight(xa, 0, sa), vl_q8_weight(xa, 1, sa));
    a[2] = vl_pack_bf16x2(vl_q8_weight(xa, 2, sa), vl_q8_weight(xa, 3, sa));
    a[1] = vl_pack_bf16x2(vl_q8_weight(xb, 0, sb), vl_q8_weight(xb, 1, sb));
    a[3] = vl_pack_bf16x2(vl_q8_weight(xb, 2, sb), vl_q8_weight(xb, 3, sb));
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

/* The same four codes times sc: bf16_rn(code * sc), the product in fp32 (the expression of
 * kv_gather's dequant8, so the int8 cache's prefill tiles hold the bits of its dequantized copy).
 * No I2F: the attention's exp2 shares its unit. */
__device__ __forceinline__ uint2 vl_int8x4_scaled_to_bf16x4(uint32_t w, float sc) {
    const uint32_t u = w ^ 0x80808080u;
    float f[4];
#pragma unroll
    for (int j = 0; j < 4; j++)
        f[j] = __fmul_rn(
            __fsub_rn(__uint_as_float(__byte_perm(u, 0x4b000000u, 0x7650u + j)), 8388736.0f), sc);
    return make_uint2(vl_pack_bf16x2(f[0], f[1]), vl_pack_bf16x2(f[2], f[3]));
}

#endif
