/* cuda_norm.cu: RMSNorm and LayerNorm over the last dimension, one thread block per row.
 *
 * Same arithmetic as cpu_norm.c, in fp32, with the row sums reduced by warp shuffles:
 *   rmsnorm:   ms = sum(x^2) / n;  y = bf16((x * (1 / sqrt(ms + eps))) * w)
 *   layernorm: mean = sum(x) / n;  var = sum((x - mean)^2) / n (two passes, biased);
 *              y = bf16((x - mean) * (1 / sqrt(var + eps)) * w + b)
 * One rounding per output. (transformers' Qwen2RMSNorm rounds x * rsqrt to bf16 before the
 * weight multiply; the difference is at bf16 rounding level.) The row is read again from
 * global memory for each pass: rows are at most a few KiB and stay in L1/L2.
 * Rows whose width is a multiple of 8 (with 16-byte aligned pointers) use 16-byte accesses.
 * add_rmsnorm fuses the residual add before an rmsnorm: x += a, rounded to bf16 as the add op
 * does, then the rmsnorm of the rounded sums; the same bits as the two ops, one pass less.
 * Leaves out: rows wider than one block can hold in cache.
 */
#include "kernels/cuda_ops.h"
#include "kernels/cuda_pdl.cuh"

#define NORM_MAX_THREADS 256

/* Sum of v over the block, returned to every thread. blockDim.x is a multiple of 32. */
static __device__ float block_sum(float v) {
    __shared__ float warp_sums[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* an earlier call may still be reading warp_sums */
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    /* every warp reduces the partial sums itself: the total reaches all threads without
     * another round through shared memory */
    v = lane < n_warps ? warp_sums[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <int VEC> static __device__ void load_or(const vl_bf16 *p, float *f, float absent) {
    if (p)
        vl_load_bf16<VEC>(p, f);
    else
        for (int i = 0; i < VEC; i++) f[i] = absent;
}

template <int VEC>
static __global__ void rmsnorm_kernel(vl_bf16 *y, const vl_bf16 *x, int64_t n, const vl_bf16 *w,
                                      float eps) {
    vl_pdl_launch_dependents(); /* the GEMV after it may bring in its weights meanwhile */
    const vl_bf16 *xr = x + blockIdx.x * n;
    vl_bf16 *yr = y + blockIdx.x * n;
    const int64_t step = (int64_t)blockDim.x * VEC;
    float sum_sq = 0.0f;
    for (int64_t j = threadIdx.x * VEC; j < n; j += step) {
        float f[VEC];
        vl_load_bf16<VEC>(xr + j, f);
#pragma unroll
        for (int i = 0; i < VEC; i++) sum_sq += f[i] * f[i];
    }
    const float mean_sq = block_sum(sum_sq) / (float)n;
    const float inv_rms = 1.0f / sqrtf(mean_sq + eps);
    for (int64_t j = threadIdx.x * VEC; j < n; j += step) {
        float f[VEC], g[VEC];
        vl_load_bf16<VEC>(xr + j, f);
        load_or<VEC>(w ? w + j : NULL, g, 1.0f);
#pragma unroll
        for (int i = 0; i < VEC; i++) f[i] = (f[i] * inv_rms) * g[i];
        vl_store_bf16<VEC>(yr + j, f);
    }
}

/* add_rmsnorm: x += a (one bf16 rounding per sum, as the add op), then rmsnorm_kernel's
 * formula on the rounded sums. A row of at most ITERS * blockDim.x * VEC elements stays in
 * registers, and the weight is loaded before the reduction: one trip to memory per element
 * instead of rmsnorm's two (this runs twice per decoder layer at decode, where its latency is
 * what counts). Each thread writes y only where it read a, so y may alias a. */
template <int VEC, int ITERS>
static __global__ void add_rmsnorm_kernel(vl_bf16 *y, vl_bf16 *x, const vl_bf16 *a, int64_t n,
                                          const vl_bf16 *w, float eps) {
    vl_pdl_launch_dependents(); /* the GEMV after it may bring in its weights meanwhile */
    vl_bf16 *xr = x + blockIdx.x * n;
    const vl_bf16 *ar = a + blockIdx.x * n;
    vl_bf16 *yr = y + blockIdx.x * n;
    float f[ITERS][VEC], g[ITERS][VEC];
    float sum_sq = 0.0f;
#pragma unroll
    for (int it = 0; it < ITERS; it++) {
        const int64_t j = ((int64_t)it * blockDim.x + threadIdx.x) * VEC;
        if (j >= n) break;
        float h[VEC];
        vl_load_bf16<VEC>(xr + j, f[it]);
        vl_load_bf16<VEC>(ar + j, h);
        load_or<VEC>(w ? w + j : NULL, g[it], 1.0f);
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            f[it][i] = __bfloat162float(__float2bfloat16_rn(f[it][i] + h[i]));
            sum_sq += f[it][i] * f[it][i];
        }
        vl_store_bf16<VEC>(xr + j, f[it]);
    }
    const float mean_sq = block_sum(sum_sq) / (float)n;
    const float inv_rms = 1.0f / sqrtf(mean_sq + eps);
#pragma unroll
    for (int it = 0; it < ITERS; it++) {
        const int64_t j = ((int64_t)it * blockDim.x + threadIdx.x) * VEC;
        if (j >= n) break;
#pragma unroll
        for (int i = 0; i < VEC; i++) f[it][i] = (f[it][i] * inv_rms) * g[it][i];
        vl_store_bf16<VEC>(yr + j, f[it]);
    }
}

template <int VEC>
static __global__ void layernorm_kernel(vl_bf16 *y, const vl_bf16 *x, int64_t n, const vl_bf16 *w,
                                        const vl_bf16 *bias, float eps) {
    const vl_bf16 *xr = x + blockIdx.x * n;
    vl_bf16 *yr = y + blockIdx.x * n;
    const int64_t step = (int64_t)blockDim.x * VEC;
    float sum = 0.0f;
    for (int64_t j = threadIdx.x * VEC; j < n; j += step) {
        float f[VEC];
        vl_load_bf16<VEC>(xr + j, f);
#pragma unroll
        for (int i = 0; i < VEC; i++) sum += f[i];
    }
    const float mean = block_sum(sum) / (float)n;
    float sum_sq = 0.0f;
    for (int64_t j = threadIdx.x * VEC; j < n; j += step) {
        float f[VEC];
        vl_load_bf16<VEC>(xr + j, f);
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            const float d = f[i] - mean;
            sum_sq += d * d;
        }
    }
    const float var = block_sum(sum_sq) / (float)n;
    const float inv_std = 1.0f / sqrtf(var + eps);
    for (int64_t j = threadIdx.x * VEC; j < n; j += step) {
        float f[VEC], g[VEC], bb[VEC];
        vl_load_bf16<VEC>(xr + j, f);
        load_or<VEC>(w ? w + j : NULL, g, 1.0f);
        load_or<VEC>(bias ? bias + j : NULL, bb, 0.0f);
#pragma unroll
        for (int i = 0; i < VEC; i++) f[i] = (f[i] - mean) * inv_std * g[i] + bb[i];
        vl_store_bf16<VEC>(yr + j, f);
    }
}

/* Threads per row: enough warps to give each thread a few elements, at most NORM_MAX_THREADS. */
static int norm_threads(int64_t n, int vec) {
    int64_t warps = (n / vec + 31) / 32;
    if (warps > NORM_MAX_THREADS / 32) warps = NORM_MAX_THREADS / 32;
    return (int)(warps < 1 ? 32 : warps * 32);
}

static int norm_vec_ok(int64_t n, const void *y, const void *x, const void *w, const void *b) {
    return n % 8 == 0 && vl_cuda_aligned16(y) && vl_cuda_aligned16(x) &&
           (!w || vl_cuda_aligned16(w)) && (!b || vl_cuda_aligned16(b));
}

void vl_cuda_launch_rmsnorm(vl_bf16 *y, const vl_bf16 *x, int64_t m, int64_t n, const vl_bf16 *w,
                            float eps, cudaStream_t stream) {
    if (m <= 0) return;
    if (norm_vec_ok(n, y, x, w, NULL))
        rmsnorm_kernel<8><<<(unsigned)m, norm_threads(n, 8), 0, stream>>>(y, x, n, w, eps);
    else
        rmsnorm_kernel<1><<<(unsigned)m, norm_threads(n, 1), 0, stream>>>(y, x, n, w, eps);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_add_rmsnorm(vl_bf16 *y, vl_bf16 *x, const vl_bf16 *a, int64_t m, int64_t n,
                                const vl_bf16 *w, float eps, cudaStream_t stream) {
    if (m <= 0) return;
    /* rows up to 4 * 256 * 8 = 8192 elements (16-byte path) or 4 * 256 (scalar) stay in
     * registers; wider ones take the two ops (the same bits, one more pass) */
    const int vec = norm_vec_ok(n, y, x, w, NULL) && vl_cuda_aligned16(a) ? 8 : 1;
    if (n > 4 * NORM_MAX_THREADS * vec) {
        vl_cuda_launch_add(x, a, m * n, stream);
        vl_cuda_launch_rmsnorm(y, x, m, n, w, eps, stream);
        return;
    }
    if (vec == 8)
        add_rmsnorm_kernel<8, 4>
            <<<(unsigned)m, norm_threads(n, 8), 0, stream>>>(y, x, a, n, w, eps);
    else
        add_rmsnorm_kernel<1, 4>
            <<<(unsigned)m, norm_threads(n, 1), 0, stream>>>(y, x, a, n, w, eps);
    VL_CUDA_LAUNCH_CHECK();
}

void vl_cuda_launch_layernorm(vl_bf16 *y, const vl_bf16 *x, int64_t m, int64_t n, const vl_bf16 *w,
                              const vl_bf16 *bias, float eps, cudaStream_t stream) {
    if (m <= 0) return;
    if (norm_vec_ok(n, y, x, w, bias))
        layernorm_kernel<8><<<(unsigned)m, norm_threads(n, 8), 0, stream>>>(y, x, n, w, bias, eps);
    else
        layernorm_kernel<1><<<(unsigned)m, norm_threads(n, 1), 0, stream>>>(y, x, n, w, bias, eps);
    VL_CUDA_LAUNCH_CHECK();
}

/* A norm parameter as a device pointer: NULL when absent; BF16 of n elements otherwise. */
static const vl_bf16 *norm_param(const vl_vec *v, int64_t n, const char *what) {
    if (!v || !v->data) return NULL;
    VL_CUDA_REQUIRE(v->n == n && v->dtype == VL_DTYPE_BF16,
                    "%s of %lld %s for rows of %lld; expected %lld BF16 (convert at load)", what,
                    (long long)v->n, vl_dtype_name(v->dtype), (long long)n, (long long)n);
    return (const vl_bf16 *)v->data;
}

void vl_cuda_rmsnorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                     float eps) {
    VL_CUDA_REQUIRE(n > 0 && m >= 0 && m <= INT32_MAX, "rmsnorm of %lld rows of %lld", (long long)m,
                    (long long)n);
    vl_cuda_launch_rmsnorm((vl_bf16 *)y, (const vl_bf16 *)x, m, n,
                           norm_param(w, n, "rmsnorm weight"), eps, vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_add_rmsnorm(vl_backend *b, void *y, void *x, const void *a, int64_t m, int64_t n,
                         const vl_vec *w, float eps) {
    VL_CUDA_REQUIRE(n > 0 && m >= 0 && m <= INT32_MAX, "add_rmsnorm of %lld rows of %lld",
                    (long long)m, (long long)n);
    vl_cuda_launch_add_rmsnorm((vl_bf16 *)y, (vl_bf16 *)x, (const vl_bf16 *)a, m, n,
                               norm_param(w, n, "rmsnorm weight"), eps, vl_cuda_ctx_of(b)->stream);
}

void vl_cuda_layernorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                       const vl_vec *bias, float eps) {
    VL_CUDA_REQUIRE(n > 0 && m >= 0 && m <= INT32_MAX, "layernorm of %lld rows of %lld",
                    (long long)m, (long long)n);
    vl_cuda_launch_layernorm((vl_bf16 *)y, (const vl_bf16 *)x, m, n,
                             norm_param(w, n, "layernorm weight"),
                             norm_param(bias, n, "layernorm bias"), eps, vl_cuda_ctx_of(b)->stream);
}
