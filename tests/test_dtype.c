/* test_dtype.c: dtype sizes/names and the IEEE half <-> float conversions of kernels/dtype.c.
 *
 * Every half value is round-tripped; float -> half is checked on values whose correct rounding
 * follows from the IEEE definition (ties, overflow threshold, subnormals) and, where the
 * compiler has _Float16, against the compiler's own conversion on random and midpoint values.
 * Leaves out: bf16 (inline in kernels.h, tested with the kernels). */
#include "kernels/kernels.h"
#include "vltest.h"

#include <float.h>
#include <stdint.h>

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

static void test_sizes_names(void) {
    static const struct {
        vl_dtype t;
        size_t size;
        const char *name;
    } want[] = {{VL_DTYPE_F32, 4, "F32"}, {VL_DTYPE_F16, 2, "F16"}, {VL_DTYPE_BF16, 2, "BF16"},
                {VL_DTYPE_U8, 1, "U8"},   {VL_DTYPE_I8, 1, "I8"},   {VL_DTYPE_I32, 4, "I32"},
                {VL_DTYPE_I64, 8, "I64"}};
    VT_CHECK_INT(sizeof want / sizeof want[0], VL_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        VT_CHECK_INT(vl_dtype_size(want[i].t), want[i].size);
        VT_CHECKF(strcmp(vl_dtype_name(want[i].t), want[i].name) == 0, "%s",
                  vl_dtype_name(want[i].t));
    }
    VT_CHECK_INT(vl_dtype_size(VL_DTYPE_COUNT), 0);
}

static void test_half_to_float(void) {
    VT_CHECK(vl_f16_to_f32(0x3c00) == 1.0f);
    VT_CHECK(vl_f16_to_f32(0xc000) == -2.0f);
    VT_CHECK(vl_f16_to_f32(0x7bff) == 65504.0f);
    VT_CHECK(vl_f16_to_f32(0x3555) == 0x1.554p-2f);
    VT_CHECK(vl_f16_to_f32(0x0400) == ldexpf(1.0f, -14)); /* smallest normal */
    VT_CHECK(vl_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    VT_CHECK(vl_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    VT_CHECK(vl_f16_to_f32(0x8001) == -ldexpf(1.0f, -24));
    VT_CHECK(isinf(vl_f16_to_f32(0x7c00)) && vl_f16_to_f32(0x7c00) > 0);
    VT_CHECK(isinf(vl_f16_to_f32(0xfc00)) && vl_f16_to_f32(0xfc00) < 0);
    VT_CHECK(isnan(vl_f16_to_f32(0x7e00)) && isnan(vl_f16_to_f32(0xfc01)));
    VT_CHECK(vl_f16_to_f32(0x8000) == 0.0f && signbit(vl_f16_to_f32(0x8000)));

    /* every half survives half -> float -> half; every finite half is exactly m * 2^e */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = vl_f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        if (e == 31 && m) {
            if (!isnan(f) || !isnan(vl_f16_to_f32(vl_f32_to_f16(f)))) bad++;
            continue;
        }
        float want = e == 31  ? INFINITY
                     : e == 0 ? ldexpf((float)m, -24)
                              : ldexpf((float)(m | 1024), (int)e - 25);
        if (h & 0x8000) want = -want;
        if (bits_of(f) != bits_of(want) || vl_f32_to_f16(f) != h) bad++;
    }
    VT_CHECKF(bad == 0, "%d halves wrong", bad);
}

static void test_float_to_half(void) {
    VT_CHECK_INT(vl_f32_to_f16(1.0f), 0x3c00);
    VT_CHECK_INT(vl_f32_to_f16(-2.0f), 0xc000);
    VT_CHECK_INT(vl_f32_to_f16(0.1f), 0x2e66);
    VT_CHECK_INT(vl_f32_to_f16(0.0f), 0x0000);
    VT_CHECK_INT(vl_f32_to_f16(-0.0f), 0x8000);
    VT_CHECK_INT(vl_f32_to_f16(65504.0f), 0x7bff);
    VT_CHECK_INT(vl_f32_to_f16(65519.0f), 0x7bff);
    VT_CHECK_INT(vl_f32_to_f16(65520.0f), 0x7c00); /* tie with an odd mantissa: up, to inf */
    VT_CHECK_INT(vl_f32_to_f16(1e10f), 0x7c00);
    VT_CHECK_INT(vl_f32_to_f16(-1e10f), 0xfc00);
    VT_CHECK_INT(vl_f32_to_f16(INFINITY), 0x7c00);
    VT_CHECK_INT(vl_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t hn = vl_f32_to_f16(NAN);
    VT_CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    /* ties to even in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    VT_CHECK_INT(vl_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    VT_CHECK_INT(vl_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    VT_CHECK_INT(vl_f32_to_f16(nextafterf(1.0f + ldexpf(1.0f, -11), 2.0f)), 0x3c01);
    /* subnormals: units of 2^-24 */
    VT_CHECK_INT(vl_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    VT_CHECK_INT(vl_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* half a unit: to even (0) */
    VT_CHECK_INT(vl_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    VT_CHECK_INT(vl_f32_to_f16(3 * ldexpf(1.0f, -25)), 0x0002); /* 1.5 units -> 2 */
    VT_CHECK_INT(vl_f32_to_f16(5 * ldexpf(1.0f, -25)), 0x0002); /* 2.5 units -> 2 */
    VT_CHECK_INT(vl_f32_to_f16(-ldexpf(1.0f, -30)), 0x8000);
    VT_CHECK_INT(vl_f32_to_f16(1023.5f * ldexpf(1.0f, -24)), 0x0400); /* carries to normal */
    VT_CHECK_INT(vl_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);
    VT_CHECK_INT(vl_f32_to_f16(FLT_MIN), 0x0000);
}

#if defined(__FLT16_MANT_DIG__)
/* The compiler's float -> _Float16 conversion (libgcc / hardware) as an independent oracle. */
static uint16_t compiler_f16(float f) {
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static void test_against_compiler(void) {
    int bad = 0;
    uint32_t s = 12345u;
    for (int i = 0; i < 300000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s;
        if (i & 1) u = (u & 0x87ffffffu) | 0x30000000u; /* concentrate near the half range */
        float f = float_of(u);
        if (isnan(f)) continue;
        if (vl_f32_to_f16(f) != compiler_f16(f)) bad++;
    }
    /* exact midpoints between neighbouring halves: the tie cases */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float a = vl_f16_to_f32((uint16_t)h), b = vl_f16_to_f32((uint16_t)(h + 1));
        float mid = (a + b) * 0.5f; /* exact: halves have 11 significant bits */
        if (vl_f32_to_f16(mid) != compiler_f16(mid)) bad++;
        if (vl_f32_to_f16(-mid) != compiler_f16(-mid)) bad++;
    }
    VT_CHECKF(bad == 0, "%d conversions differ from the compiler's", bad);
}
#endif

int main(void) {
    test_sizes_names();
    test_half_to_float();
    test_float_to_half();
#if defined(__FLT16_MANT_DIG__)
    test_against_compiler();
#else
    VT_SKIP("no _Float16 in this compiler: no cross-check against it");
#endif
    return vt_finish();
}
