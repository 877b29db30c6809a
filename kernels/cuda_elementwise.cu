/* cuda_elementwise.cu: the element-wise ops of the CUDA backend (add, silu_mul, silu_mul_rows,
 * quick_gelu, gelu) and the host fp32 <-> device bf16 conversions (from_f32 / to_f32); the KV
 * cache's ops are in cuda_kv_cache.cu.
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
#include "kernels/cuda_pdl.cuh"

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

/* out[r, :n] = silu_mul(gu[r, :n], gu[r, n:2n]) for r < rows (rows n and 2n wide); n % VEC == 0.
 * Element v (in VEC units) of the output is row v / (n / VEC). */
template <int VEC>
static __global__ void silu_mul_rows_kernel(vl_bf16 *out, const vl_bf16 *gu, int64_t rows,
                                            int64_t n) {
    vl_pdl_launch_dependents(); /* the down GEMV after it may bring in its weights meanwhile */
    const int64_t row_vec = n / VEC, n_vec = rows * row_vec;
    const op_silu_mul op;
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < n_vec;
         v += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = v / row_vec, c = (v - r * row_vec) * VEC;
        float fg[VEC], fu[VEC], fo[VEC];
        vl_load_bf16<VEC>(gu + r * 2 * n + c, fg);
        vl_load_bf16<VEC>(gu + r * 2 * n + n + c, fu);
#pragma unroll
        for (int i = 0; i < VEC; i++) fo[i] = op(fg[i], fu[i]);
        vl_store_bf16<VEC>(out + r * n + c, fo);
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

void vl_cuda_launch_silu_mul_rows(vl_bf16 *y, const vl_bf16 *gu, int64_t rows, int64_t n,
                                  cudaStream_t stream) {
    if (rows <= 0 || n <= 0) return;
    if (n % 8 == 0 && vl_cuda_aligned16(y) && vl_cuda_aligned16(gu))
        silu_mul_rows_kernel<8>
            <<<vl_cuda_grid(rows * n / 8, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
                y, gu, rows, n);
    else
        silu_mul_rows_kernel<1>
            <<<vl_cuda_grid(rows * n, ELEMENTWISE_THREADS), ELEMENTWISE_THREADS, 0, stream>>>(
                y, gu, rows, n);
    VL_CUDA_LAUNCH_CHECK();
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

void vl_cuda_silu_mul_rows(vl_backend *b, void *y, const void *gu, int64_t rows, int64_t n) {
    vl_cuda_launch_silu_mul_rows((vl_bf16 *)y, (const vl_bf16 *)gu, rows, n,
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
