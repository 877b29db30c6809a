/* cuda_elementwise.cu: the element-wise ops of the CUDA backend (add, silu_mul, quick_gelu,
 * gelu), the host fp32 <-> device bf16 conversions (from_f32 / to_f32), kv_append and the int8
 * cache's kv_dequant.
 *
 * Same formulas as cpu_elementwise.c, evaluated in fp32 with the accurate libdevice functions
 * (expf, erff: no --use_fast_math) and rounded to bf16 once:
 *   silu_mul(g, u)  = g / (1 + exp(-g)) * u
 *   quick_gelu(x)   = x * (1 / (1 + exp(-1.702 x)))
 *   gelu(x)         = 0.5 x (1 + erf(x / sqrt 2))
 * (transformers evaluates quick_gelu and silu*up as separate bf16 tensor ops, rounding after
 * each; one rounding is closer to the exact value and to the CPU oracle.)
 * Every kernel has a 16-byte path (8 bf16 per access) taken when n and the pointers allow it,
 * and a scalar path for the rest; the launcher decides once.
 * Leaves out: the tanh GELU and fusing these ops into the GEMM epilogue.
 */
#include "kernels/cuda_ops.h"

#define ELEMENTWISE_THREADS 256
#define SQRT_HALF           0.70710678118654752440f

/* ---- one kernel for every map y[i] = op(a[i], b[i]) ---------------------------------------- */

struct op_add {
    static constexpr bool binary = true;
    __device__ float operator()(float y, float a) const { return y + a; }
};
struct op_silu_mul {
    static constexpr bool binary = true;
    __device__ float operator()(float g, float u) const { return g / (1.0f + expf(-g)) * u; }
};
struct op_quick_gelu {
    static constexpr bool binary = false;
    __device__ float operator()(float x, float) const {
        return x * (1.0f / (1.0f + expf(-1.702f * x)));
    }
};
struct op_gelu {
    static constexpr bool binary = false;
    __device__ float operator()(float x, float) const {
        return 0.5f * x * (1.0f + erff(x * SQRT_HALF));
    }
};

/* out[i] = op(a[i], b[i]) for i < n (b unused when !Op::binary); n % VEC == 0. out may be a. */
template <class Op, int VEC>
static __global__ void map_kernel(vl_bf16 *out, const vl_bf16 *a, const vl_bf16 *b, int64_t n,
                                  Op op) {
    const int64_t n_vec = n / VEC;
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < n_vec;
         v += (int64_t)gridDim.x * blockDim.x) {
        float fa[VEC], fb[VEC], fo[VEC];
        vl_load_bf16<VEC>(a + v * VEC, fa);
        if constexpr (Op::binary) vl_load_bf16<VEC>(b + v * VEC, fb);
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            if constexpr (Op::binary)
                fo[i] = op(fa[i], fb[i]);
            else
                fo[i] = op(fa[i], 0.0f);
        }
        vl_store_bf16<VEC>(out + v * VEC, fo);
    }
}

template <class Op>
static void launch_map(vl_bf16 *out, const vl_bf16 *a, const vl_bf16 *b, int64_t n,
                       cudaStream_t stream) {
    if (n <= 0) return;
    int vec = n % 8 == 0 && vl_cuda_aligned16(out) && vl_cuda_aligned16(a) &&
              (!Op::binary || vl_cuda_aligned16(b));
    if (vec)
        map_kernel<Op, 8>
            <<<vl_cuda_grid(n / 8, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
                out, a, b, n, Op());
    else
        map_kernel<Op, 1><<<vl_cuda_grid(n, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
            out, a, b, n, Op());
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_add(vl_bf16 *y, const vl_bf16 *a, int64_t n, cudaStream_t stream) {
    launch_map<op_add>(y, y, a, n, stream);
}

void vl_cuda_launch_silu_mul(vl_bf16 *y, const vl_bf16 *gate, const vl_bf16 *up, int64_t n,
                             cudaStream_t stream) {
    launch_map<op_silu_mul>(y, gate, up, n, stream);
}

void vl_cuda_launch_quick_gelu(vl_bf16 *x, int64_t n, cudaStream_t stream) {
    launch_map<op_quick_gelu>(x, x, NULL, n, stream);
}

void vl_cuda_launch_gelu(vl_bf16 *x, int64_t n, cudaStream_t stream) {
    launch_map<op_gelu>(x, x, NULL, n, stream);
}

void vl_cuda_add(vl_backend *b, void *y, const void *a, int64_t n) {
    vl_cuda_launch_add((vl_bf16 *)y, (const vl_bf16 *)a, n, vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_silu_mul(vl_backend *b, void *y, const void *gate, const void *up, int64_t n) {
    vl_cuda_launch_silu_mul((vl_bf16 *)y, (const vl_bf16 *)gate, (const vl_bf16 *)up, n,
                            vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_quick_gelu(vl_backend *b, void *x, int64_t n) {
    vl_cuda_launch_quick_gelu((vl_bf16 *)x, n, vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_gelu(vl_backend *b, void *x, int64_t n) {
    vl_cuda_launch_gelu((vl_bf16 *)x, n, vl_cuda_ctx_of(b)->stream);
}

/* ---- fp32 <-> bf16 ----------------------------------------------------------------------- */

static __global__ void f32_to_bf16_kernel(vl_bf16 *dst, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static __global__ void bf16_to_f32_kernel(float *dst, const vl_bf16 *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

void vl_cuda_launch_f32_to_bf16(vl_bf16 *dst, const float *src, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    f32_to_bf16_kernel<<<vl_cuda_grid(n, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
        dst, src, n);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_bf16_to_f32(float *dst, const vl_bf16 *src, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    bf16_to_f32_kernel<<<vl_cuda_grid(n, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
        dst, src, n);
    VL_CUDA_LAUNCH_CHECK();
}

/* Host fp32 goes to the device as fp32 through the staging buffer, chunk by chunk, and is
 * rounded there; the stream orders each chunk's copy after the previous chunk's kernel. */
void vl_cuda_from_f32(vl_backend *b, void *dst, const float *src_host, int64_t n) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    for (int64_t i0 = 0; i0 < n; i0 += c->staging_floats) {
        int64_t k = n - i0 < c->staging_floats ? n - i0 : c->staging_floats;
        VL_CUDA_CHECK(cudaMemcpyAsync(c->staging, src_host + i0, (size_t)k * sizeof(float),
                                      cudaMemcpyHostToDevice, c->stream));
        vl_cuda_launch_f32_to_bf16((vl_bf16 *)dst + i0, c->staging, k, c->stream);
    }
    /* the caller may free src_host on return */
    VL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

void vl_cuda_to_f32(vl_backend *b, float *dst_host, const void *src, int64_t n) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    for (int64_t i0 = 0; i0 < n; i0 += c->staging_floats) {
        int64_t k = n - i0 < c->staging_floats ? n - i0 : c->staging_floats;
        vl_cuda_launch_bf16_to_f32(c->staging, (const vl_bf16 *)src + i0, k, c->stream);
        VL_CUDA_CHECK(cudaMemcpyAsync(dst_host + i0, c->staging, (size_t)k * sizeof(float),
                                      cudaMemcpyDeviceToHost, c->stream));
    }
    VL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

/* ---- kv_append ----------------------------------------------------------------------------- */

/* cache[g, pos0 + i, :] = src[i, g, :]; items are (i, g, d/VEC) with d fastest, so a warp
 * reads and writes contiguous runs of one head row. */
template <int VEC>
static __global__ void kv_append_kernel(vl_bf16 *cache, int64_t head_stride, const vl_bf16 *src,
                                        int64_t src_stride, int64_t s, int kv_heads, int head_dim,
                                        int64_t pos0, const int32_t *pos0_dev) {
    if (pos0_dev) pos0 = pos0_dev[0]; /* a replayed decode step: the position lives on the GPU */
    const int row_vecs = head_dim / VEC;
    const int64_t total = s * kv_heads * row_vecs;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < total;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(item % row_vecs) * VEC;
        const int64_t ig = item / row_vecs;
        const int g = (int)(ig % kv_heads);
        const int64_t i = ig / kv_heads;
        const vl_bf16 *from = src + i * src_stride + (int64_t)g * head_dim + d;
        vl_bf16 *to = cache + g * head_stride + (pos0 + i) * head_dim + d;
        if constexpr (VEC == 8)
            *reinterpret_cast<uint4 *>(to) = *reinterpret_cast<const uint4 *>(from);
        else
            *to = *from;
    }
}

void vl_cuda_launch_kv_append(vl_bf16 *cache, int64_t head_stride, const vl_bf16 *src,
                              int64_t src_stride, int64_t s, int kv_heads, int head_dim,
                              int64_t pos0, const int32_t *pos0_dev, cudaStream_t stream) {
    if (s <= 0) return;
    int vec = head_dim % 8 == 0 && head_stride % 8 == 0 && src_stride % 8 == 0 &&
              vl_cuda_aligned16(cache) && vl_cuda_aligned16(src);
    int64_t items = s * kv_heads * (vec ? head_dim / 8 : head_dim);
    unsigned grid = vl_cuda_grid(items, ELEMENTWISE_THREADS);
    if (vec)
        kv_append_kernel<8><<<grid, ELEMENTWISE_THREADS, 0, stream>>>(
            cache, head_stride, src, src_stride, s, kv_heads, head_dim, pos0, pos0_dev);
    else
        kv_append_kernel<1><<<grid, ELEMENTWISE_THREADS, 0, stream>>>(
            cache, head_stride, src, src_stride, s, kv_heads, head_dim, pos0, pos0_dev);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_kv_append(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                       int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                       const int32_t *pos0_dev) {
    /* the same contract as the CPU twin: heads must not overlap */
    VL_CUDA_REQUIRE(
        kv_heads > 0 && head_dim > 0 && s >= 0 && src_stride >= (int64_t)kv_heads * head_dim,
        "kv_append of %d heads of %d from rows of %lld", kv_heads, head_dim, (long long)src_stride);
    VL_CUDA_REQUIRE(pos0 >= 0 && (kv_heads == 1 || (pos0 + s) * head_dim <= head_stride),
                    "kv_append of %lld tokens at %lld overflows a head of %lld elements",
                    (long long)s, (long long)pos0, (long long)head_stride);
    vl_cuda_launch_kv_append((vl_bf16 *)cache, head_stride, (const vl_bf16 *)src, src_stride, s,
                             kv_heads, head_dim, pos0, pos0_dev, vl_cuda_ctx_of(b)->stream);
}

/* ---- kv_dequant (--kv int8) ------------------------------------------------------------------ */

/* dst[g, t, :] = bf16(src[g, t, :] * scale[g, t]); items are (g, t, d/VEC) with d fastest. With
 * VEC 8 a thread reads 8 codes (8 bytes) and writes 16 bytes. */
template <int VEC>
static __global__ void kv_dequant_kernel(vl_bf16 *dst, const int8_t *src, const float *scale,
                                         int64_t head_stride, int64_t scale_head_stride,
                                         int kv_heads, int64_t n_tok, int head_dim) {
    const int row_vecs = head_dim / VEC;
    const int64_t total = (int64_t)kv_heads * n_tok * row_vecs;
    for (int64_t item = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; item < total;
         item += (int64_t)gridDim.x * blockDim.x) {
        const int d = (int)(item % row_vecs) * VEC;
        const int64_t gt = item / row_vecs, t = gt % n_tok;
        const int g = (int)(gt / n_tok);
        const int64_t at = g * head_stride + t * head_dim + d;
        const float sc = scale[g * scale_head_stride + t];
        if constexpr (VEC == 8) {
            const uint2 w = *reinterpret_cast<const uint2 *>(src + at);
            const int8_t *c = reinterpret_cast<const int8_t *>(&w);
            __align__(16) vl_bf16 out[8];
#pragma unroll
            for (int e = 0; e < 8; e++) out[e] = __float2bfloat16_rn((float)c[e] * sc);
            *reinterpret_cast<uint4 *>(dst + at) = *reinterpret_cast<const uint4 *>(out);
        } else {
            dst[at] = __float2bfloat16_rn((float)src[at] * sc);
        }
    }
}

void vl_cuda_kv_dequant(vl_backend *b, void *dst, const int8_t *src, const float *scale,
                        int64_t head_stride, int64_t scale_head_stride, int kv_heads, int64_t n_tok,
                        int head_dim) {
    VL_CUDA_REQUIRE(
        kv_heads > 0 && head_dim > 0 && n_tok >= 0 &&
            (kv_heads == 1 || (n_tok * head_dim <= head_stride && n_tok <= scale_head_stride)),
        "kv_dequant of %lld tokens of %d heads of %d overflows a head of %lld", (long long)n_tok,
        kv_heads, head_dim, (long long)head_stride);
    if (n_tok == 0) return;
    const int vec = head_dim % 8 == 0 && head_stride % 8 == 0 && vl_cuda_aligned16(dst) &&
                    (uintptr_t)src % 8 == 0;
    const int64_t items = (int64_t)kv_heads * n_tok * (vec ? head_dim / 8 : head_dim);
    const unsigned grid = vl_cuda_grid(items, ELEMENTWISE_THREADS);
    cudaStream_t stream = vl_cuda_ctx_of(b)->stream;
    if (vec)
        kv_dequant_kernel<8><<<grid, ELEMENTWISE_THREADS, 0, stream>>>(
            (vl_bf16 *)dst, src, scale, head_stride, scale_head_stride, kv_heads, n_tok, head_dim);
    else
        kv_dequant_kernel<1><<<grid, ELEMENTWISE_THREADS, 0, stream>>>(
            (vl_bf16 *)dst, src, scale, head_stride, scale_head_stride, kv_heads, n_tok, head_dim);
    VL_CUDA_LAUNCH_CHECK();
}
