/* cuda_quant.cu: quantization of bf16 weights on the GPU at load time (NF4 with fp32 or
 * double-quantized block scales, Q8ROW), and dequantization back to bf16 (whole matrix, or a
 * range of rows for the dequant GEMM of cuda_dequant_gemm.cu).
 *
 * Every byte equals what the CPU twin (kernels/cpu_quant.c, vl_quantize_cpu) writes, and the
 * twin equals bitsandbytes. What that takes:
 *   - the scale of a block is max |x| (order free), its reciprocal an IEEE division, and every
 *     x * (1/absmax) a single fp32 multiply (__fdiv_rn / __fmul_rn: no fast reciprocal, no
 *     contraction into an fma; the file must never be built with --use_fast_math);
 *   - NF4 code = the number of midpoints m_k (between consecutive table values) with x > m_k:
 *     bitsandbytes' decision tree on the same midpoints with strict '>' is a binary search over
 *     them, so the count is the same code (NaN: 0, like the tree);
 *   - the last, partial block reads zeros past the end (bitsandbytes' loads pad with 0), so
 *     the low nibble of the last byte of an odd-sized matrix is the code of 0.0 * (1/absmax);
 *   - double quantization: offset = fp32(sum of the block scales) * fp32(1 / n_blocks), the
 *     sum a double-precision sum in block order (see "the offset" below), then
 *     (a_b - offset) * (1 / chunk absmax) coded in chunks of 256 with the dynamic map and
 *     bitsandbytes' binary search with midpoints;
 *   - Q8ROW: the weight cast to fp16 first, SCB = max |w| from 0, q = w * __fdividef(127, SCB)
 *     rounded half to even, NaN -> 0: bitsandbytes' own approximate division (the CPU twin
 *     reads its results from a table measured on the GPU, cpu_quant_fdividef.h).
 * Dequantization: w = bf16(table[code] * a_b), a_b = map[c_b] * absmax2[b / 256] + offset
 * (multiply, then add) with double quantization; Q8ROW w = bf16(q * absmax[r] * (1/127)).
 *
 * Leaves out: FP4, blocksizes other than 64, stochastic rounding, LLM.int8's outlier columns.
 * The matrix multiplies that consume these formats live in cuda_gemv.cu and cuda_dequant_gemm.cu.
 */
#include "kernels/cuda_mma.cuh"
#include "kernels/cuda_ops.h"

#include <cuda_fp16.h>
#include <float.h>
#include <limits.h>
#include <string.h>

#define QUANT_THREADS    256
#define DEQUANT_THREADS  256
#define OCTET            8 /* elements per thread: one 16-byte bf16 load, 4 bytes of NF4 codes */
#define OCTETS_PER_BLOCK (VL_NF4_BLOCK / OCTET) /* 8 lanes per NF4 block */
static_assert(VL_NF4_BLOCK == 64 && VL_NF4_DQ_BLOCK == 256, "kernels written for 64 / 256");
static_assert(QUANT_THREADS == VL_NF4_DQ_BLOCK, "one thread per block scale of a DQ chunk");

/* The NF4 table (bitsandbytes' get_4bit_type("nf4")), checked once against vl_nf4_table. */
#define NF4_TABLE_VALUES                                                                           \
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,                      \
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,                 \
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,    \
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f
static const float nf4_table_host[16] = {NF4_TABLE_VALUES};
__constant__ float nf4_table_dev[16] = {NF4_TABLE_VALUES};

/* ---- NF4 codes -------------------------------------------------------------------------- */

/* code = #{k : x > midpoint_k}; the midpoints are bitsandbytes' decision-tree constants. */
__device__ __forceinline__ unsigned nf4_code(float x) {
    unsigned c = 0;
    c += x > -0.8480964004993439f;
    c += x > -0.6106329262256622f;
    c += x > -0.4599952697753906f;
    c += x > -0.33967943489551544f;
    c += x > -0.23460740596055984f;
    c += x > -0.13791173323988914f;
    c += x > -0.045525018125772476f;
    c += x > 0.03979014977812767f;
    c += x > 0.1202552504837513f;
    c += x > 0.2035212516784668f;
    c += x > 0.2920137718319893f;
    c += x > 0.3893125355243683f;
    c += x > 0.5016634166240692f;
    c += x > 0.6427869200706482f;
    c += x > 0.8614784181118011f;
    return c;
}

/* Elements e0 .. e0+7 of src as floats, zeros past n (the padding bitsandbytes loads). */
__device__ __forceinline__ void load_octet(const vl_bf16 *src, int64_t e0, int64_t n, bool vec,
                                           float v[OCTET]) {
    if (vec && e0 + OCTET <= n) {
        vl_load_bf16<8>(src + e0, v);
    } else {
#pragma unroll
        for (int i = 0; i < OCTET; i++) v[i] = e0 + i < n ? __bfloat162float(src[e0 + i]) : 0.0f;
    }
}

/* The scale of one NF4 block spread over its 8 lanes (xor 1, 2, 4 stay inside the group).
 * -FLT_MAX start and fmaxf (which skips NaN) as bitsandbytes' reduction. */
__device__ __forceinline__ float block_absmax(const float v[OCTET], unsigned group_mask) {
    float m = -FLT_MAX;
#pragma unroll
    for (int i = 0; i < OCTET; i++) m = fmaxf(m, fabsf(v[i]));
    m = fmaxf(m, __shfl_xor_sync(group_mask, m, 1));
    m = fmaxf(m, __shfl_xor_sync(group_mask, m, 2));
    m = fmaxf(m, __shfl_xor_sync(group_mask, m, 4));
    return m;
}

/* Four bytes of codes (element 2j in the high nibble of byte j), as one little-endian word. */
__device__ __forceinline__ uint32_t pack_octet(const float v[OCTET], float inv) {
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        unsigned hi = nf4_code(__fmul_rn(v[2 * j], inv));
        unsigned lo = nf4_code(__fmul_rn(v[2 * j + 1], inv));
        word |= ((hi << 4) | lo) << (8 * j);
    }
    return word;
}

/* ---- the offset of double quantization ---------------------------------------------------
 * The CPU twin sums the fp32 block scales in block order in double precision. A parallel sum
 * gives the same double whenever every partial sum is exact, which is the case when all scales
 * are multiples of 2^q and n_blocks * max < 2^(q + 53): then each partial sum is an integer
 * multiple of 2^q below 2^53 * 2^q. Scales of real weights are bf16 values (8 significant bits)
 * within a few powers of two of each other, far inside that bound. The quantize kernel gathers
 * the sum, q and max with one atomic per CTA; when the bound fails (zero-to-huge dynamic range,
 * inf, NaN) the offset comes from a sequential sum instead: the scales of one segment of
 * quant_scratch_floats blocks at a time into scratch, then one thread adds them in order. */
typedef struct {
    double sum;        /* parallel double sum of the block scales */
    double seq_sum;    /* sequential sum (fallback only) */
    unsigned max_bits; /* largest scale's fp32 bits (scales >= 0: bit order = value order) */
    int q_enc;         /* 200 - smallest q over non-zero scales; 0: all scales are zero */
    int weird;         /* a scale that is negative, inf or NaN was seen */
    float offset;      /* the result */
} dq_state;

/* q of a positive finite float: the exponent of its lowest set bit. */
__device__ __forceinline__ int lowest_bit_exponent(float a) {
    const unsigned u = __float_as_uint(a), e = u >> 23, m = u & 0x7fffffu;
    if (e == 0) return -149 + (__ffs((int)m) - 1);
    return (int)e - 150 + (__ffs((int)(m | 0x800000u)) - 1);
}

__device__ __forceinline__ bool dq_sum_is_exact(const dq_state *st, int64_t n_blocks) {
    if (st->weird) return false;
    if (st->q_enc == 0) return true; /* every scale is zero */
    const int q = 200 - st->q_enc;
    const int e_max = (int)(st->max_bits >> 23);
    const int e_hi = (e_max > 0 ? e_max : 1) - 126;    /* max < 2^e_hi */
    const int len = 64 - __clzll((long long)n_blocks); /* n_blocks < 2^len */
    return len + e_hi <= q + 53;
}

/* ---- kernels: NF4 -------------------------------------------------------------------------- */

/* One thread per 8 elements, 8 lanes per block. Without double quantization the scale goes
 * to absmax[b]; with it (absmax == NULL) the CTA adds its scales into the dq_state. */
static __global__ void __launch_bounds__(QUANT_THREADS)
    nf4_quantize_kernel(uint8_t *codes, float *absmax, dq_state *st, const vl_bf16 *src, int64_t n,
                        bool vec) {
    const int64_t n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;
    const int64_t n_octets = n_blocks * OCTETS_PER_BLOCK; /* whole blocks: groups stay full */
    const int64_t code_bytes = (n + 1) / 2;
    const unsigned lane = threadIdx.x & 31, group_mask = 0xffu << (lane & ~7u);
    const bool words = ((uintptr_t)codes & 3u) == 0;
    double sum = 0.0;
    unsigned max_bits = 0;
    int q_enc = 0, weird = 0;
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < n_octets;
         o += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e0 = o * OCTET;
        float v[OCTET];
        load_octet(src, e0, n, vec, v);
        const float a = block_absmax(v, group_mask);
        if ((lane & 7) == 0) {
            if (absmax) {
                absmax[o / OCTETS_PER_BLOCK] = a;
            } else if (!(a >= 0.0f && a <= FLT_MAX)) {
                weird = 1;
            } else if (a > 0.0f) {
                sum += (double)a;
                max_bits = max(max_bits, __float_as_uint(a));
                q_enc = max(q_enc, 200 - lowest_bit_exponent(a));
            }
        }
        const uint32_t word = pack_octet(v, __fdiv_rn(1.0f, a));
        const int64_t b0 = e0 / 2; /* first of the octet's 4 code bytes */
        if (words && b0 + 4 <= code_bytes) {
            *reinterpret_cast<uint32_t *>(codes + b0) = word;
        } else {
            for (int j = 0; j < 4 && b0 + j < code_bytes; j++)
                codes[b0 + j] = (uint8_t)(word >> (8 * j));
        }
    }
    if (absmax) return;
    /* CTA totals in any order: the fast path serves only the exact case */
    for (int off = 16; off > 0; off >>= 1) {
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
        max_bits = max(max_bits, __shfl_xor_sync(0xffffffffu, max_bits, off));
        q_enc = max(q_enc, __shfl_xor_sync(0xffffffffu, q_enc, off));
        weird |= __shfl_xor_sync(0xffffffffu, weird, off);
    }
    __shared__ double sums[QUANT_THREADS / 32];
    __shared__ unsigned maxes[QUANT_THREADS / 32];
    __shared__ int qs[QUANT_THREADS / 32], weirds[QUANT_THREADS / 32];
    const unsigned warp = threadIdx.x / 32;
    if (lane == 0) sums[warp] = sum, maxes[warp] = max_bits, qs[warp] = q_enc, weirds[warp] = weird;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (unsigned w = 1; w < blockDim.x / 32; w++) {
            sum += sums[w];
            max_bits = max(max_bits, maxes[w]);
            q_enc = max(q_enc, qs[w]);
            weird |= weirds[w];
        }
        if (sum != 0.0) atomicAdd(&st->sum, sum);
        if (max_bits) atomicMax(&st->max_bits, max_bits);
        if (q_enc) atomicMax(&st->q_enc, q_enc);
        if (weird) atomicOr(&st->weird, weird);
    }
}

/* Fallback, segment [b0, b0 + len): block scales into scratch[0, len). */
static __global__ void __launch_bounds__(QUANT_THREADS)
    nf4_scales_kernel(float *scratch, const dq_state *st, const vl_bf16 *src, int64_t n, int64_t b0,
                      int64_t len, bool vec) {
    const int64_t n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;
    if (dq_sum_is_exact(st, n_blocks)) return;
    const unsigned lane = threadIdx.x & 31, group_mask = 0xffu << (lane & ~7u);
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < len * OCTETS_PER_BLOCK;
         o += (int64_t)gridDim.x * blockDim.x) {
        float v[OCTET];
        load_octet(src, (b0 * OCTETS_PER_BLOCK + o) * OCTET, n, vec, v);
        const float a = block_absmax(v, group_mask);
        if ((lane & 7) == 0) scratch[o / OCTETS_PER_BLOCK] = a;
    }
}

/* Fallback: one thread continues the in-order sum over the segment in scratch. */
static __global__ void dq_sequential_sum_kernel(dq_state *st, const float *scratch,
                                                int64_t n_blocks, int64_t len, bool first) {
    if (dq_sum_is_exact(st, n_blocks)) return;
    double s = first ? 0.0 : st->seq_sum;
    for (int64_t i = 0; i < len; i++) s += (double)scratch[i];
    st->seq_sum = s;
}

/* offset = fp32(sum) * fp32(1 / n_blocks): the CPU twin's mean (PyTorch's mean multiplies
 * by a float32 factor). */
static __global__ void dq_offset_kernel(dq_state *st, int64_t n_blocks) {
    const double sum = dq_sum_is_exact(st, n_blocks) ? st->sum : st->seq_sum;
    st->offset = __fmul_rn((float)sum, __fdiv_rn(1.0f, (float)n_blocks));
}

/* bitsandbytes' nearest-code search in the signed dynamic map (256 increasing values): a binary
 * search of 7 halvings from the middle, then the midpoint between the two neighbours decides. */
__device__ __forceinline__ unsigned dynamic_code(const float *map, float x) {
    int pivot = 127, upper_i = 255, lower_i = 0;
    float lower = -1.0f, upper = 1.0f, val = map[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lower_i = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_i = pivot;
            upper = val;
            pivot -= step;
        }
        val = map[pivot];
    }
    if (upper_i == 255) upper = map[255];
    if (lower_i == 0) lower = map[0];
    if (x > val) return x > __fmul_rn(__fadd_rn(upper, val), 0.5f) ? upper_i : pivot;
    return x < __fmul_rn(__fadd_rn(lower, val), 0.5f) ? lower_i : pivot;
}

/* One CTA per chunk of 256 blocks: recompute the block scales, subtract the offset, then the
 * chunk's absmax and the 8-bit code of each (a_b - offset) * (1 / chunk absmax). */
static __global__ void __launch_bounds__(QUANT_THREADS)
    dq_codes_kernel(uint8_t *scale_codes, float *chunk_absmax, const float *map, const dq_state *st,
                    const vl_bf16 *src, int64_t n, bool vec) {
    __shared__ float shifted[VL_NF4_DQ_BLOCK];
    __shared__ float map_s[256];
    __shared__ float warp_max[QUANT_THREADS / 32];
    const int64_t n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;
    const int64_t chunk = blockIdx.x, first_block = chunk * VL_NF4_DQ_BLOCK;
    const int valid = (int)min((int64_t)VL_NF4_DQ_BLOCK, n_blocks - first_block);
    const unsigned lane = threadIdx.x & 31, group_mask = 0xffu << (lane & ~7u);
    const float offset = st->offset;
    map_s[threadIdx.x] = map[threadIdx.x];
    for (int o = threadIdx.x; o < valid * OCTETS_PER_BLOCK; o += blockDim.x) {
        float v[OCTET];
        load_octet(src, (first_block * OCTETS_PER_BLOCK + o) * OCTET, n, vec, v);
        const float a = block_absmax(v, group_mask);
        if ((lane & 7) == 0) shifted[o / OCTETS_PER_BLOCK] = __fsub_rn(a, offset);
    }
    __syncthreads();
    /* the chunk's absmax over its valid scales (a padded entry would be |0|: no effect) */
    float m = threadIdx.x < valid ? fabsf(shifted[threadIdx.x]) : 0.0f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lane == 0) warp_max[threadIdx.x / 32] = m;
    __syncthreads();
    float cmax = -FLT_MAX;
    for (int w = 0; w < QUANT_THREADS / 32; w++) cmax = fmaxf(cmax, warp_max[w]);
    if (threadIdx.x == 0) chunk_absmax[chunk] = cmax;
    if (threadIdx.x < valid) {
        const float inv = __fdiv_rn(1.0f, cmax);
        scale_codes[first_block + threadIdx.x] =
            (uint8_t)dynamic_code(map_s, __fmul_rn(shifted[threadIdx.x], inv));
    }
}

/* ---- kernels: Q8ROW -------------------------------------------------------------------------- */

/* The weight as bitsandbytes' int8 quantizer sees it: cast to fp16 (round to nearest even). */
__device__ __forceinline__ float as_f16(vl_bf16 x) {
    return __half2float(__float2half_rn(__bfloat162float(x)));
}

/* __float2int_rn into int8 as the CPU twin stores it: NaN -> 0, clamped to [-128, 127]. */
__device__ __forceinline__ int8_t round_to_i8(float y) {
    if (isnan(y)) return 0;
    return (int8_t)min(127, max(-128, __float2int_rn(y)));
}

/* One CTA per row: SCB = max |fp16(x)| of the row (from 0, NaN skipped), then
 * q = round-half-even(fp16(x) * __fdividef(127, SCB)) as bitsandbytes' kInt8VectorQuant. */
static __global__ void __launch_bounds__(QUANT_THREADS)
    q8row_quantize_kernel(int8_t *q, float *row_absmax, const vl_bf16 *src, int64_t rows,
                          int64_t cols) {
    __shared__ float warp_max[QUANT_THREADS / 32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const vl_bf16 *row = src + r * cols;
        float m = 0.0f;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            m = fmaxf(m, fabsf(as_f16(row[c])));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = m;
        __syncthreads();
        float amax = 0.0f;
        for (int w = 0; w < QUANT_THREADS / 32; w++) amax = fmaxf(amax, warp_max[w]);
        if (threadIdx.x == 0) row_absmax[r] = amax;
        const float scale = __fdividef(127.0f, amax);
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            q[r * cols + c] = round_to_i8(__fmul_rn(as_f16(row[c]), scale));
        __syncthreads(); /* warp_max is reused by the next row */
    }
}

/* ---- kernels: dequantization ------------------------------------------------------------------
 */

/* dst[i] = element base + i of W, i < count. VEC: base % 8 == 0, dst 16-byte and codes 4-byte
 * aligned: 8 outputs per thread from one 32-bit word of codes and one scale. */
template <bool DQ, bool VEC>
static __global__ void __launch_bounds__(DEQUANT_THREADS)
    nf4_dequantize_kernel(vl_bf16 *dst, const uint8_t *codes, const float *absmax,
                          const uint8_t *scale_codes, const float *map, float offset, int64_t base,
                          int64_t count) {
    __shared__ float table[16];
    if (threadIdx.x < 16) table[threadIdx.x] = nf4_table_dev[threadIdx.x];
    __syncthreads();
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if constexpr (VEC) {
        for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < count / OCTET;
             o += stride) {
            const int64_t e0 = base + o * OCTET;
            const uint32_t word = __ldg(reinterpret_cast<const uint32_t *>(codes + e0 / 2));
            const float a =
                vl_nf4_block_scale<DQ>(absmax, scale_codes, map, offset, e0 / VL_NF4_BLOCK);
            float w[OCTET];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const unsigned byte = (word >> (8 * j)) & 0xffu;
                w[2 * j] = __fmul_rn(table[byte >> 4], a);
                w[2 * j + 1] = __fmul_rn(table[byte & 15u], a);
            }
            vl_store_bf16<8>(dst + o * OCTET, w);
        }
    } else {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += stride) {
            const int64_t e = base + i;
            const unsigned byte = __ldg(codes + e / 2);
            const unsigned c = (e & 1) ? (byte & 15u) : (byte >> 4);
            const float a =
                vl_nf4_block_scale<DQ>(absmax, scale_codes, map, offset, e / VL_NF4_BLOCK);
            dst[i] = __float2bfloat16_rn(__fmul_rn(table[c], a));
        }
    }
}

/* dst[r, c] = bf16(q[r0 + r, c] * absmax[r0 + r] * (1/127)), r < nr. VEC: cols % 8 == 0 and
 * 8-byte aligned q, 16-byte aligned dst. Rows over blockIdx.y (grid-stride), columns over x. */
template <bool VEC>
static __global__ void __launch_bounds__(DEQUANT_THREADS)
    q8row_dequantize_kernel(vl_bf16 *dst, const int8_t *q, const float *absmax, int64_t r0,
                            int64_t nr, int64_t cols) {
    const float inv127 = 1.0f / 127.0f; /* bitsandbytes' 7.874015718698502e-3 as a float */
    const int64_t per_row = VEC ? cols / OCTET : cols;
    for (int64_t r = blockIdx.y; r < nr; r += gridDim.y) {
        const float a = __ldg(absmax + r0 + r);
        const int8_t *qr = q + (r0 + r) * cols;
        vl_bf16 *dr = dst + r * cols;
        for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < per_row;
             c += (int64_t)gridDim.x * blockDim.x) {
            if constexpr (VEC) {
                const uint2 raw = __ldg(reinterpret_cast<const uint2 *>(qr + c * OCTET));
                const int8_t *b = reinterpret_cast<const int8_t *>(&raw);
                float w[OCTET];
#pragma unroll
                for (int j = 0; j < OCTET; j++) w[j] = __fmul_rn(__fmul_rn((float)b[j], a), inv127);
                vl_store_bf16<8>(dr + c * OCTET, w);
            } else {
                dr[c] = __float2bfloat16_rn(__fmul_rn(__fmul_rn((float)qr[c], a), inv127));
            }
        }
    }
}

/* ---- host side ------------------------------------------------------------------------------- */

/* The device constants must be the host's tables, bit for bit (checked once, host only). */
static void check_tables(void) {
    static int checked;
    if (checked) return;
    VL_CUDA_REQUIRE(memcmp(nf4_table_host, vl_nf4_table, sizeof nf4_table_host) == 0,
                    "cuda_quant.cu's NF4 table differs from vl_nf4_table");
    checked = 1;
}

/* The dynamic map, computed once: a static array, so an asynchronous upload from it is safe. */
static const float *dynamic_map_host(void) {
    static float map[256];
    static int ready;
    if (!ready) {
        vl_dynamic_map(map);
        ready = 1;
    }
    return map;
}

static bool src_vec_ok(const void *src) {
    return vl_cuda_aligned16(src);
}

/* Double quantization of the block scales: offset, chunk absmax, 8-bit codes. Ends with a
 * download of the offset into dst (the field lives in host memory): one stream sync. */
static void quantize_nf4_dq(vl_cuda_ctx *c, vl_weight *dst, const vl_bf16 *src, int64_t n) {
    const int64_t n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;
    const int64_t n_chunks = (n_blocks + VL_NF4_DQ_BLOCK - 1) / VL_NF4_DQ_BLOCK;
    const bool vec = src_vec_ok(src);
    cudaStream_t s = c->stream;
    dq_state *st = (dq_state *)c->quant_scratch;
    float *scales = (float *)((char *)c->quant_scratch + VL_CUDA_QUANT_STATE_BYTES);
    static_assert(sizeof(dq_state) <= VL_CUDA_QUANT_STATE_BYTES, "dq_state fits its slot");
    VL_CUDA_CHECK(cudaMemsetAsync(st, 0, sizeof(dq_state), s));
    nf4_quantize_kernel<<<vl_cuda_grid(n_blocks * OCTETS_PER_BLOCK, QUANT_THREADS), QUANT_THREADS,
                          0, s>>>((uint8_t *)dst->data, NULL, st, src, n, vec);
    VL_CUDA_LAUNCH_CHECK();
    /* the sequential fallback: launched always, returns at once when the fast sum is exact */
    for (int64_t b0 = 0; b0 < n_blocks; b0 += c->quant_scratch_floats) {
        const int64_t len = min(c->quant_scratch_floats, n_blocks - b0);
        nf4_scales_kernel<<<vl_cuda_grid(len * OCTETS_PER_BLOCK, QUANT_THREADS), QUANT_THREADS, 0,
                            s>>>(scales, st, src, n, b0, len, vec);
        VL_CUDA_LAUNCH_CHECK();
        dq_sequential_sum_kernel<<<1, 1, 0, s>>>(st, scales, n_blocks, len, b0 == 0);
        VL_CUDA_LAUNCH_CHECK();
    }
    dq_offset_kernel<<<1, 1, 0, s>>>(st, n_blocks);
    VL_CUDA_LAUNCH_CHECK();
    VL_CUDA_CHECK(cudaMemcpyAsync((void *)dst->absmax_map, dynamic_map_host(), 256 * sizeof(float),
                                  cudaMemcpyHostToDevice, s));
    VL_CUDA_REQUIRE(n_chunks <= INT_MAX, "NF4 matrix of %lld blocks", (long long)n_blocks);
    dq_codes_kernel<<<(unsigned)n_chunks, QUANT_THREADS, 0, s>>>(
        (uint8_t *)dst->absmax_code, (float *)dst->absmax, dst->absmax_map, st, src, n, vec);
    VL_CUDA_LAUNCH_CHECK();
    float offset = 0.0f;
    VL_CUDA_CHECK(cudaMemcpyAsync(&offset, &st->offset, sizeof offset, cudaMemcpyDeviceToHost, s));
    VL_CUDA_CHECK(cudaStreamSynchronize(s));
    dst->absmax_offset = offset;
}

void vl_cuda_quantize(vl_backend *b, vl_weight *dst, const void *src_bf16, int double_quant) {
    VL_CUDA_REQUIRE(dst->rows > 0 && dst->cols > 0 && dst->rows <= INT64_MAX / dst->cols,
                    "quantize W[%lld, %lld]", (long long)dst->rows, (long long)dst->cols);
    VL_CUDA_REQUIRE(dst->dtype == VL_DTYPE_NF4 || dst->dtype == VL_DTYPE_Q8ROW,
                    "quantize to %s: expected NF4 or Q8ROW", vl_dtype_name(dst->dtype));
    if (dst->dtype == VL_DTYPE_Q8ROW) double_quant = 0; /* as the CPU twin: no nested scales */
    vl_quant_sizes sz;
    vl_quant_sizes_of(dst->dtype, double_quant, dst->rows, dst->cols, &sz);
    VL_CUDA_REQUIRE(src_bf16 && dst->data && (!sz.absmax || dst->absmax) &&
                        (!sz.absmax_code || dst->absmax_code) &&
                        (!sz.absmax_map || dst->absmax_map),
                    "quantize W[%lld, %lld] to %s: a source or destination buffer is NULL",
                    (long long)dst->rows, (long long)dst->cols, vl_dtype_name(dst->dtype));
    check_tables();
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    const int64_t n = dst->rows * dst->cols;
    const vl_bf16 *src = (const vl_bf16 *)src_bf16;
    if (dst->dtype == VL_DTYPE_Q8ROW) {
        const int64_t grid = min(dst->rows, (int64_t)1 << 20);
        q8row_quantize_kernel<<<(unsigned)grid, QUANT_THREADS, 0, c->stream>>>(
            (int8_t *)dst->data, (float *)dst->absmax, src, dst->rows, dst->cols);
        VL_CUDA_LAUNCH_CHECK();
        dst->absmax_code = NULL;
        dst->absmax_map = NULL;
        dst->absmax_offset = 0.0f;
        return;
    }
    if (double_quant) {
        quantize_nf4_dq(c, dst, src, n);
        return;
    }
    const int64_t n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;
    nf4_quantize_kernel<<<vl_cuda_grid(n_blocks * OCTETS_PER_BLOCK, QUANT_THREADS), QUANT_THREADS,
                          0, c->stream>>>((uint8_t *)dst->data, (float *)dst->absmax, NULL, src, n,
                                          src_vec_ok(src));
    VL_CUDA_LAUNCH_CHECK();
    dst->absmax_code = NULL;
    dst->absmax_map = NULL;
    dst->absmax_offset = 0.0f;
}

void vl_cuda_launch_dequantize_rows(vl_bf16 *dst, const vl_weight *w, int64_t r0, int64_t nr,
                                    cudaStream_t stream) {
    if (nr <= 0) return;
    const int64_t cols = w->cols;
    if (w->dtype == VL_DTYPE_Q8ROW) {
        const bool vec =
            cols % OCTET == 0 && vl_cuda_aligned16(dst) && ((uintptr_t)w->data & 7u) == 0;
        const int64_t per_row = vec ? cols / OCTET : cols;
        dim3 grid((unsigned)min((per_row + DEQUANT_THREADS - 1) / DEQUANT_THREADS, (int64_t)1024),
                  (unsigned)min(nr, (int64_t)65535));
        if (vec)
            q8row_dequantize_kernel<true><<<grid, DEQUANT_THREADS, 0, stream>>>(
                dst, (const int8_t *)w->data, w->absmax, r0, nr, cols);
        else
            q8row_dequantize_kernel<false><<<grid, DEQUANT_THREADS, 0, stream>>>(
                dst, (const int8_t *)w->data, w->absmax, r0, nr, cols);
        VL_CUDA_LAUNCH_CHECK();
        return;
    }
    const int64_t base = r0 * cols, count = nr * cols;
    const uint8_t *codes = (const uint8_t *)w->data;
    const bool vec = base % OCTET == 0 && count % OCTET == 0 && vl_cuda_aligned16(dst) &&
                     ((uintptr_t)codes & 3u) == 0;
    const unsigned grid = vl_cuda_grid(vec ? count / OCTET : count, DEQUANT_THREADS);
#define LAUNCH(DQ, VEC)                                                                            \
    nf4_dequantize_kernel<DQ, VEC><<<grid, DEQUANT_THREADS, 0, stream>>>(                          \
        dst, codes, w->absmax, w->absmax_code, w->absmax_map, w->absmax_offset, base, count)
    if (w->absmax_code) {
        if (vec)
            LAUNCH(true, true);
        else
            LAUNCH(true, false);
    } else {
        if (vec)
            LAUNCH(false, true);
        else
            LAUNCH(false, false);
    }
#undef LAUNCH
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_dequantize(vl_backend *b, void *dst_bf16, const vl_weight *w) {
    VL_CUDA_REQUIRE(w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW,
                    "dequantize of a %s weight [%lld, %lld]: expected NF4 or Q8ROW",
                    vl_dtype_name(w->dtype), (long long)w->rows, (long long)w->cols);
    VL_CUDA_REQUIRE(w->rows > 0 && w->cols > 0 && w->data && w->absmax &&
                        (!w->absmax_code || w->absmax_map),
                    "dequantize of %s W[%lld, %lld]: missing buffers", vl_dtype_name(w->dtype),
                    (long long)w->rows, (long long)w->cols);
    check_tables();
    vl_cuda_launch_dequantize_rows((vl_bf16 *)dst_bf16, w, 0, w->rows, vl_cuda_ctx_of(b)->stream);
}
