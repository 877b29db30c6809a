/* dtype.c: element sizes and names of the tensor dtypes, and IEEE half <-> float conversion.
 *
 * The conversions are plain bit manipulation so that the CPU backend gives the same bits on
 * every compiler (no reliance on _Float16 or F16C). float -> half rounds to nearest even, as
 * PyTorch's cast does, produces half subnormals, saturates to infinity past 65519.99..., and
 * keeps NaN a (quiet) NaN. bf16 lives inline in kernels.h because it is on the hot path.
 * The quantized weight formats (NF4, Q8ROW) have names but no element size.
 * Leaves out: FP8 and other formats the checkpoint loader rejects. */
#include "kernels/kernels.h"

size_t vl_dtype_size(vl_dtype t) {
    switch (t) {
    case VL_DTYPE_F32:
        return 4;
    case VL_DTYPE_F16:
        return 2;
    case VL_DTYPE_BF16:
        return 2;
    case VL_DTYPE_U8:
        return 1;
    case VL_DTYPE_I8:
        return 1;
    case VL_DTYPE_I32:
        return 4;
    case VL_DTYPE_I64:
        return 8;
    case VL_DTYPE_NF4:
    case VL_DTYPE_Q8ROW:
        return 0; /* not one element size: see vl_quant_sizes_of */
    default:
        return 0;
    }
}

const char *vl_dtype_name(vl_dtype t) {
    switch (t) {
    case VL_DTYPE_F32:
        return "F32";
    case VL_DTYPE_F16:
        return "F16";
    case VL_DTYPE_BF16:
        return "BF16";
    case VL_DTYPE_U8:
        return "U8";
    case VL_DTYPE_I8:
        return "I8";
    case VL_DTYPE_I32:
        return "I32";
    case VL_DTYPE_I64:
        return "I64";
    case VL_DTYPE_NF4:
        return "NF4";
    case VL_DTYPE_Q8ROW:
        return "Q8ROW";
    default:
        return "?";
    }
}

float vl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf, or NaN keeping its payload */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        u = sign;
    } else {
        /* subnormal: man * 2^-24; normalize so the leading 1 becomes the implicit bit */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t vl_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    /* 65520 (0x477ff000) is halfway between 65504 (odd mantissa) and 2^16: ties go up -> inf */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal half: |f| >= 2^-14 */
        uint32_t r = a - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u); /* round to nearest even on the 13 dropped bits */
        return (uint16_t)(sign | (r >> 13));
    }
    /* subnormal half (or zero): value = q * 2^-24 with q = M * 2^(e-126), M the 24-bit
     * significand; at most 2^-25 (exactly half of the smallest subnormal) rounds to 0 */
    if (a <= 0x33000000u) return sign;
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* may carry into the first normal */
    return (uint16_t)(sign | q);
}
