/* cpu_quant.c: bitsandbytes' NF4 and int8 weight formats on the CPU: quantize a bf16 matrix
 * into the same bits as bitsandbytes 0.50.2 (CUDA), and turn any weight (plain or quantized)
 * back into the float32 values a bf16 matrix multiply sees.
 *
 * The formats (kernels.h, "quantized weights"):
 *   NF4    the flattened row-major matrix in blocks of 64 elements; absmax = max |x| of the
 *          block (fp32); each element becomes the 4-bit index of the nearest NF4 table entry to
 *          x * (1 / absmax), two per byte, element 2j in the high nibble of byte j.
 *          Double quantization ("compress_statistics"): offset = mean of all block absmax;
 *          (absmax - offset) is quantized again in blocks of 256 with an 8-bit code (the signed
 *          dynamic map) and one fp32 nested absmax per 256 blocks.
 *          Dequantized: w = bf16(table[code] * a_b), a_b = absmax[b] or
 *          map[absmax_code[b]] * nested[b / 256] + offset.
 *   Q8ROW  bitsandbytes' int8 row-wise weights (LLM.int8's CB and SCB): per output row,
 *          SCB = max |w| of the row after the weight is cast to fp16, CB = round(w * 127 / SCB).
 *          Dequantized: w = bf16(CB * SCB * (1/127)).
 *
 * The rounding rules, taken from bitsandbytes' CUDA kernels and checked bit for bit against
 * its output (tests/test_quant.c, tests/fixtures/bnb_goldens):
 *   - NF4 code: the kernel's decision tree on the midpoints between table entries, each test a
 *     strict '>' against the float32 midpoint; the scale is the float32 reciprocal 1 / absmax,
 *     and x * scale is rounded to float32 before the tree.
 *   - An all-zero block has absmax 0, scale +inf and x * scale = NaN; every comparison with NaN
 *     is false, so the tree ends in code 0 (-1.0) and the block dequantizes to -0.0. A NaN
 *     element is ignored by the absmax (fmaxf) and gets code 0 too. (From the kernel source:
 *     the goldens hold no such block.)
 *   - The last block of a matrix whose size is not a multiple of 64 is padded with zeros, and
 *     an odd element count pads the low nibble of the last byte with the code of 0 * scale.
 *   - Double quantization: offset = fp32(sum of the absmax) * fp32(1 / n_blocks) (PyTorch's
 *     mean multiplies the sum by a float32 factor). PyTorch sums on the GPU in float32, in an
 *     order that depends on the launch; here the sum is taken in double and rounded once, which
 *     equals the GPU's float32 sum whenever that one is exact to the last bit (all goldens and
 *     all tensors of the tiny fixtures). The 8-bit code of each (absmax - offset) * (1 / nested)
 *     is the kernel's binary search over the sorted map: 7 halving steps from index 127, then
 *     the nearer of the two neighbours by comparing with their float32 midpoint (strict '>'
 *     upwards, strict '<' downwards).
 *   - The dynamic map is built as create_dynamic_map(signed=True) builds it: torch.linspace in
 *     float32 (start + step * i for the first half, end - step * (n - 1 - i) for the second,
 *     each a fused multiply-add: what PyTorch's compiled CPU kernel computes), midpoints
 *     (a + b) / 2, times float32(10^(i - 6)), both signs, plus 0 and 1, sorted.
 *   - int8: the row absmax is taken over the fp16 values (bitsandbytes casts the weight to fp16
 *     first), so it is an fp16 value; the scale is the GPU's __fdividef(127.0f, absmax) (an
 *     approximate reciprocal, which differs from 127 * (1 / absmax) in the last bit for some
 *     absmax: where w * scale lands on k + 0.5 that bit decides the code), and w * scale is
 *     rounded half to even (__float2int_rn). The approximate reciprocal depends on the
 *     significand alone, and an fp16 value has 10 significand bits: the 1024 results measured
 *     on the GPU (cpu_quant_fdividef.h, written by tests/reference/fdividef_table.cu) give it
 *     for every fp16 absmax. Row-wise: any number of columns.
 * Leaves out: FP4 (refused by the loader), bitsandbytes' blockwise 8-bit weights, and speed
 * (the CUDA backend quantizes at load time; this is the oracle). */
#include "kernels/cpu_internal.h"
#include "kernels/cpu_quant_fdividef.h"

#include <float.h>
#include <math.h>

/* bitsandbytes' get_4bit_type("nf4"): the quantiles of N(0, 1) scaled to [-1, 1]. */
const float vl_nf4_table[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* ---- the dynamic 8-bit map ------------------------------------------------------------------ */

/* Element i of torch.linspace(start, end, n) in float32 (PyTorch's CPU kernel, FMA-contracted). */
static float linspace_f32(float start, float end, int n, int i) {
    float step = (end - start) / (float)(n - 1);
    if (i < n / 2) return fmaf(step, (float)i, start);
    return fmaf(-step, (float)(n - 1 - i), end);
}

static int float_order(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void vl_dynamic_map(float map[256]) {
    /* signed, 7 exponent bits, 8 bits in all: exponent level i holds 2^i fraction values, the
     * midpoints of linspace(0.1, 1, 2^i + 1), scaled by 10^(i - 6) */
    static const double decade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    int k = 0;
    for (int i = 0; i < 7; i++) {
        int n = (1 << i) + 1;
        float scale = (float)decade[i];
        for (int j = 0; j + 1 < n; j++) {
            float mean =
                (linspace_f32(0.1f, 1.0f, n, j) + linspace_f32(0.1f, 1.0f, n, j + 1)) / 2.0f;
            map[k++] = scale * mean;
            map[k++] = -scale * mean;
        }
    }
    map[k++] = 0.0f;
    map[k++] = 1.0f;
    qsort(map, 256, sizeof(float), float_order);
}

/* ---- sizes ---------------------------------------------------------------------------------- */

static int64_t div_up(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

void vl_quant_sizes_of(vl_dtype fmt, int double_quant, int64_t rows, int64_t cols,
                       vl_quant_sizes *out) {
    memset(out, 0, sizeof *out);
    int64_t n = rows * cols;
    if (fmt == VL_DTYPE_NF4) {
        int64_t n_blocks = div_up(n, VL_NF4_BLOCK);
        out->data = (size_t)div_up(n, 2);
        if (double_quant) {
            out->absmax_code = (size_t)n_blocks;
            out->absmax = (size_t)div_up(n_blocks, VL_NF4_DQ_BLOCK) * sizeof(float);
            out->absmax_map = 256 * sizeof(float);
        } else {
            out->absmax = (size_t)n_blocks * sizeof(float);
        }
    } else if (fmt == VL_DTYPE_Q8ROW) {
        out->data = (size_t)n;
        out->absmax = (size_t)rows * sizeof(float);
    } else {
        out->data = (size_t)n * vl_dtype_size(fmt);
    }
    out->total = out->data + out->absmax + out->absmax_code + out->absmax_map;
}

/* ---- NF4 ------------------------------------------------------------------------------------ */

/* The kernel's decision tree: thresholds are the float32 midpoints between table entries. */
static uint8_t nf4_code(float x) {
    if (x > 0.03979014977812767f) {
        if (x > 0.3893125355243683f) {
            if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 15 : 14;
            return x > 0.5016634166240692f ? 13 : 12;
        }
        if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 11 : 10;
        return x > 0.1202552504837513f ? 9 : 8;
    }
    if (x > -0.33967943489551544f) {
        if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 7 : 6;
        return x > -0.23460740596055984f ? 5 : 4;
    }
    if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 3 : 2;
    return x > -0.8480964004993439f ? 1 : 0;
}

/* max |x| of one block as the kernel reduces it: NaN ignored (as fmaxf does), -FLT_MAX when
 * nothing else, and a partial block also sees its zero padding. Written with '>' rather than
 * fmaxf so that the result never depends on how a C library orders -0 and +0. */
static float block_absmax(const float *x, int64_t n_valid, int64_t block) {
    float m = -FLT_MAX;
    for (int64_t i = 0; i < n_valid; i++)
        if (fabsf(x[i]) > m) m = fabsf(x[i]);
    if (n_valid < block && m < 0.0f) m = 0.0f;
    return m;
}

/* The 8-bit code of x in the sorted 256-entry map (the kernel's dQuantize, not stochastic). */
static uint8_t dynamic_code(const float map[256], float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = map[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = map[pivot];
    }
    if (upper_pivot == 255) upper = map[upper_pivot];
    if (lower_pivot == 0) lower = map[lower_pivot];
    if (x > val) return (uint8_t)(x > (upper + val) * 0.5f ? upper_pivot : pivot);
    return (uint8_t)(x < (lower + val) * 0.5f ? lower_pivot : pivot);
}

static void quantize_nf4(vl_weight *dst, const uint16_t *src, int double_quant) {
    const int64_t n = dst->rows * dst->cols, n_blocks = div_up(n, VL_NF4_BLOCK);
    uint8_t *packed = (uint8_t *)dst->data;
    float *absmax = double_quant ? vl_cpu_scratch(n_blocks) : (float *)dst->absmax;
    float x[VL_NF4_BLOCK];
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t e0 = b * VL_NF4_BLOCK;
        int64_t n_valid = n - e0 < VL_NF4_BLOCK ? n - e0 : VL_NF4_BLOCK;
        for (int64_t i = 0; i < n_valid; i++) x[i] = vl_bf16_to_f32(src[e0 + i]);
        for (int64_t i = n_valid; i < VL_NF4_BLOCK; i++) x[i] = 0.0f;
        absmax[b] = block_absmax(x, n_valid, VL_NF4_BLOCK);
        float scale = 1.0f / absmax[b];
        /* bytes of this block: e0 is even, so a block owns whole bytes */
        for (int64_t i = 0; i < n_valid; i += 2) {
            uint8_t hi = nf4_code(x[i] * scale), lo = nf4_code(x[i + 1] * scale);
            packed[(e0 + i) / 2] = (uint8_t)(hi << 4 | lo);
        }
    }
    if (!double_quant) return;

    /* offset = mean(absmax): see the top of this file for the summation order */
    double sum = 0.0;
    for (int64_t b = 0; b < n_blocks; b++) sum += absmax[b];
    float offset = (float)sum * (1.0f / (float)n_blocks);
    float *map = (float *)dst->absmax_map, *nested = (float *)dst->absmax;
    uint8_t *codes = (uint8_t *)dst->absmax_code;
    vl_dynamic_map(map);
    for (int64_t b = 0; b < n_blocks; b++) absmax[b] -= offset;
    for (int64_t g = 0; g * VL_NF4_DQ_BLOCK < n_blocks; g++) {
        const float *a = absmax + g * VL_NF4_DQ_BLOCK;
        int64_t n_valid = n_blocks - g * VL_NF4_DQ_BLOCK;
        if (n_valid > VL_NF4_DQ_BLOCK) n_valid = VL_NF4_DQ_BLOCK;
        nested[g] = block_absmax(a, n_valid, VL_NF4_DQ_BLOCK);
        float scale = 1.0f / nested[g];
        for (int64_t i = 0; i < n_valid; i++)
            codes[g * VL_NF4_DQ_BLOCK + i] = dynamic_code(map, a[i] * scale);
    }
    dst->absmax_offset = offset;
    free(absmax);
}

/* ---- int8 row-wise ----------------------------------------------------------------------------
 */

/* __float2int_rn stored into int8_t: half to even, NaN -> 0 (the value past +-127.5 cannot
 * occur: |w| <= absmax). */
static int8_t round_to_i8(float y) {
    if (isnan(y)) return 0;
    float r = nearbyintf(y);
    if (r > 127.0f) r = 127.0f;
    if (r < -128.0f) r = -128.0f;
    return (int8_t)r;
}

static float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The GPU's __fdividef(127.0f, a) for an fp16 value a >= 0 (see the top of this file). */
static float fdividef_127(float a) {
    if (a == 0.0f) return f32_of_bits(VL_FDIVIDEF127_OF_ZERO);
    if (isinf(a)) return f32_of_bits(VL_FDIVIDEF127_OF_INF);
    int e;
    const float f = frexpf(a, &e); /* a = f * 2^e, f in [0.5, 1): 2f = 1 + i / 1024 */
    uint32_t u;
    const float significand = 2.0f * f;
    memcpy(&u, &significand, 4);
    return ldexpf(f32_of_bits(vl_fdividef127_bits[(u >> 13) & 1023]), 1 - e);
}

static void quantize_q8row(vl_weight *dst, const uint16_t *src) {
    const int64_t rows = dst->rows, cols = dst->cols;
    int8_t *q = (int8_t *)dst->data;
    float *scb = (float *)dst->absmax;
    float *h = vl_cpu_scratch(cols); /* the row as bitsandbytes sees it: cast to fp16 */
    for (int64_t r = 0; r < rows; r++) {
        float m = 0.0f; /* NaN ignored, as the kernel's fmaxf does */
        for (int64_t c = 0; c < cols; c++) {
            h[c] = vl_f16_to_f32(vl_f32_to_f16(vl_bf16_to_f32(src[r * cols + c])));
            if (fabsf(h[c]) > m) m = fabsf(h[c]);
        }
        scb[r] = m;
        float scale = fdividef_127(m);
        for (int64_t c = 0; c < cols; c++) q[r * cols + c] = round_to_i8(h[c] * scale);
    }
    free(h);
}

int vl_quantize_cpu(vl_weight *dst, const uint16_t *src_bf16, int double_quant) {
    VL_CPU_REQUIRE(dst->dtype == VL_DTYPE_NF4 || dst->dtype == VL_DTYPE_Q8ROW,
                   "quantize to %s: not a quantized format", vl_dtype_name(dst->dtype));
    VL_CPU_REQUIRE(dst->rows > 0 && dst->cols > 0 && dst->rows <= INT64_MAX / dst->cols,
                   "quantize a [%lld, %lld] matrix", (long long)dst->rows, (long long)dst->cols);
    VL_CPU_REQUIRE(dst->data && dst->absmax && src_bf16, "quantize: missing buffer");
    if (dst->dtype == VL_DTYPE_Q8ROW) {
        quantize_q8row(dst, src_bf16);
        return 0;
    }
    VL_CPU_REQUIRE(!double_quant || (dst->absmax_code && dst->absmax_map),
                   "double quantization without code or map buffers");
    if (!double_quant) {
        dst->absmax_code = NULL;
        dst->absmax_map = NULL;
        dst->absmax_offset = 0.0f;
    }
    quantize_nf4(dst, src_bf16, double_quant);
    return 0;
}

/* ---- dequantization ---------------------------------------------------------------------------
 */

/* Reads of the scale buffers go through memcpy: inside an mmapped checkpoint they may sit at
 * any byte offset. */
static float load_f32(const float *p, int64_t i) {
    float v;
    memcpy(&v, (const unsigned char *)p + i * 4, 4);
    return v;
}

/* The scale a_b of NF4 block b (kernels.h). */
static float nf4_block_scale(const vl_weight *w, int64_t b) {
    if (!w->absmax_code) return load_f32(w->absmax, b);
    float code_value = load_f32(w->absmax_map, w->absmax_code[b]);
    return code_value * load_f32(w->absmax, b / VL_NF4_DQ_BLOCK) + w->absmax_offset;
}

static void rows_nf4(const vl_weight *w, int64_t e_begin, int64_t e_end, float *out) {
    const uint8_t *packed = w->data;
    for (int64_t e = e_begin; e < e_end;) {
        int64_t b = e / VL_NF4_BLOCK, block_end = (b + 1) * VL_NF4_BLOCK;
        if (block_end > e_end) block_end = e_end;
        float scale = nf4_block_scale(w, b);
        for (; e < block_end; e++) {
            int code = (e & 1) ? packed[e >> 1] & 15 : packed[e >> 1] >> 4;
            *out++ = vl_round_bf16(vl_nf4_table[code] * scale);
        }
    }
}

static void rows_q8row(const vl_weight *w, int64_t r0, int64_t nr, float *out) {
    const int8_t *q = w->data;
    for (int64_t r = r0; r < r0 + nr; r++) {
        float absmax = load_f32(w->absmax, r);
        for (int64_t c = 0; c < w->cols; c++)
            *out++ = vl_round_bf16((float)q[r * w->cols + c] * absmax * (1.0f / 127.0f));
    }
}

void vl_weight_rows_f32(const vl_weight *w, int64_t r0, int64_t nr, float *out) {
    VL_CPU_REQUIRE(r0 >= 0 && nr >= 0 && r0 + nr <= w->rows, "rows %lld..%lld of %lld",
                   (long long)r0, (long long)(r0 + nr), (long long)w->rows);
    if (w->dtype == VL_DTYPE_NF4)
        rows_nf4(w, r0 * w->cols, (r0 + nr) * w->cols, out);
    else if (w->dtype == VL_DTYPE_Q8ROW)
        rows_q8row(w, r0, nr, out);
    else
        vl_cpu_param_to_f32(out, w->data, w->dtype, r0 * w->cols, nr * w->cols);
}

/* ---- the backend's table entries ----------------------------------------------------------------
 */

void vl_cpu_quantize(vl_backend *b, vl_weight *dst, const void *src_bf16, int double_quant) {
    vl_quantize_cpu(dst, src_bf16, double_quant);
}

void vl_cpu_dequantize(vl_backend *b, void *dst, const vl_weight *w) {
    vl_weight_rows_f32(w, 0, w->rows, dst);
}
