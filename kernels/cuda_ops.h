/* cuda_ops.h: what the CUDA op files (cuda_backend.cu, cuda_linear.cu, cuda_elementwise.cu,
 * cuda_norm.cu, cuda_rope.cu) share: the backend's device state, the op entry points stored in
 * the table, the launchers behind them, and small device helpers (bf16 <-> fp32 vector loads).
 *
 * Each op has three layers: a __global__ kernel (static, in its .cu file); a launcher
 * vl_cuda_launch_<op>(pointers, sizes, strides, stream) that picks the kernel variant once; and
 * the table entry vl_cuda_<op>(vl_backend *, ...) that checks shapes and dtypes and aborts with
 * a message naming the op when the caller broke the contract of kernels.h.
 * Numerics: bf16 activations, every computation in fp32, one rounding to bf16 per output
 * element (round to nearest even), like the CPU twins in fp32.
 * Leaves out: attention (cuda_internal.h, attn_*.cu).
 * C++ only (included by .cu files); the public face stays kernels.h.
 */
#ifndef VL_CUDA_OPS_H
#define VL_CUDA_OPS_H

#include "kernels/cuda_internal.h"

#include <stdint.h>
#include <stdio.h>

#include <cublasLt.h>
#include <cuda.h> /* CUtensorMap */

typedef __nv_bfloat16 vl_bf16;

/* Scratch of vl_cuda_launch_gemv (cuda_gemv.cu) for K split over CTAs: fp32 partial sums and one
 * counter per 16-row tile, zeroed once at start-up and left zero by every launch. GEMVs that
 * share one scratch must run one after the other (one stream). Decode attention's tail combine
 * (cuda_attention_decode.cu) counts in the same counters, also leaving them zero. */
typedef struct {
    float *partials;
    int64_t partial_floats;
    int *tile_counters;
    int64_t n_tile_counters;
} vl_cuda_gemv_scratch;

/* What one device says about one kernel, asked on its first launch by this backend (a host
 * query with no stream work, so allowed while a CUDA graph is recorded): CTAs an SM holds at
 * once, after opting in to its dynamic shared memory above 48 KB. An open-addressed table
 * keyed by the kernel's address (vl_cuda_ctas_per_sm). */
#define VL_CUDA_KERNEL_FACTS 512
typedef struct {
    const void *kernel;
    int ctas_per_sm;
} vl_cuda_kernel_fact;

/* The backend's device state (vl_backend.ctx), one per vl_backend_cuda: nothing about a device
 * is kept per process, so backends on one device or several live side by side. */
typedef struct {
    int device;
    vl_cuda_config cfg;      /* the tuning knobs, read once at creation */
    int sm_count;            /* streaming multiprocessors: sizes the GEMV and split-KV grids */
    int cc_major, cc_minor;  /* compute capability: 9.0 takes the Hopper kernels */
    void *tensor_map_encode; /* cuTensorMapEncodeTiled, found on first use */
    char device_name[256];
    long graph_launches; /* replays so far (cfg.profile_step counts them) */
    vl_cuda_kernel_fact kernels[VL_CUDA_KERNEL_FACTS];
    cudaStream_t stream;   /* every op and copy of the backend runs on this one stream */
    cublasHandle_t cublas; /* bound to `stream`, with `cublas_ws` as its workspace */
    void *cublas_ws;
    size_t cublas_ws_bytes;
    void *attn_ws; /* scratch of vl_cuda_attention (split-KV partial results) */
    size_t attn_ws_bytes;
    float *staging; /* [staging_floats] fp32, for from_f32 / to_f32 chunks */
    int64_t staging_floats;
    vl_cuda_gemv_scratch gemv; /* split-K partials of the decode GEMV (cuda_gemv.cu) */
    /* quantized weights (cuda_quant.cu, cuda_dequant_gemm.cu) */
    void *quant_scratch; /* VL_CUDA_QUANT_STATE_BYTES + quant_scratch_floats * 4: offset of DQ */
    int64_t quant_scratch_floats;
    cublasLtHandle_t dq_lt; /* the dequant GEMM's cuBLASLt handle (bias epilogue) */
    cudaStream_t dq_stream; /* second stream: dequantizes slice i+1 during GEMM i */
    cudaEvent_t dq_start, dq_ready[2], dq_consumed[2];
    vl_bf16 *dq_slice[2]; /* [dq_slice_bytes] each: dequantized rows of W, double buffered */
    size_t dq_slice_bytes;
} vl_cuda_ctx;

extern "C" void vl_cuda_fill_random_bf16(vl_backend *b, void *dst, int64_t n, uint64_t key,
                                         float center, float half);
extern "C" void vl_cuda_mem_info(vl_backend *b, size_t *free_bytes, size_t *total_bytes);
extern "C" void *vl_cuda_host_mapped_alloc(vl_backend *b, size_t bytes, void **device_ptr);
extern "C" void vl_cuda_host_mapped_free(vl_backend *b, void *host_ptr);
extern "C" void vl_cuda_sample_token(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                                     const void *logits, int64_t n, float temperature,
                                     uint64_t seed, int advance);
extern "C" void vl_cuda_sample_token_f32(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                                         const float *logits, int64_t n, float temperature,
                                         uint64_t seed, int advance);
extern "C" void vl_cuda_sample_rows(vl_backend *b, int32_t *tokens, const void *logits,
                                    int64_t n_rows, int64_t n, const float *temperature,
                                    const uint64_t *keys);
extern "C" void vl_cuda_mark_seen(vl_backend *b, uint8_t *seen, int64_t vocab, const int32_t *ids,
                                  int64_t n_ids);
extern "C" void vl_cuda_repetition_penalty(vl_backend *b, float *dst, const void *logits,
                                           const uint8_t *seen, int64_t n, float penalty);
extern "C" int vl_cuda_graph_begin(vl_backend *b);
extern "C" void *vl_cuda_graph_end(vl_backend *b);
extern "C" void vl_cuda_graph_launch(vl_backend *b, void *graph);
extern "C" void vl_cuda_graph_free(vl_backend *b, void *graph);

/* The calling thread's current device, as vl_cuda_ctx_of last set it (-1: not yet). */
extern thread_local int vl_cuda_thread_device;
void vl_cuda_use_device(int device); /* cudaSetDevice, and remember it */

/* The backend's state; also makes its device the calling thread's current one, so backends on
 * different devices can be called from one thread (one comparison when it already is). */
static inline vl_cuda_ctx *vl_cuda_ctx_of(vl_backend *b) {
    vl_cuda_ctx *c = (vl_cuda_ctx *)b->ctx;
    if (c->device != vl_cuda_thread_device) vl_cuda_use_device(c->device);
    return c;
}

/* CTAs of `kernel` (a __global__ function's address) one SM of c's device holds at once with
 * `threads` threads and `smem` bytes of dynamic shared memory: asked once per backend and
 * kernel, after opting the kernel in to `smem` when it is above the 48 KB default. */
int vl_cuda_ctas_per_sm(vl_cuda_ctx *c, const void *kernel, int threads, size_t smem);

/* A TMA tensor map (cuda_tensor_map.cu) of a rank 1..3 tensor of bf16 (esz 2) or uint8 (esz 1):
 * dims innermost first, strides_bytes of dims 1.., box the tile one load brings, in the
 * 128-byte swizzle or none. Aborts naming the shape when the driver refuses it. */
void vl_cuda_tensor_map(vl_cuda_ctx *c, CUtensorMap *map, int esz, int rank, const void *base,
                        const uint64_t *dims, const uint64_t *strides_bytes, const uint32_t *box,
                        int swizzle_128b);

/* A broken invariant of the caller (shapes, dtypes): print the condition and why, then abort
 * through vl_cuda_fatal. Never used for user input (the engine validates that). */
#define VL_CUDA_REQUIRE(cond, ...)                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char vl_msg_[320];                                                                     \
            snprintf(vl_msg_, sizeof vl_msg_, __VA_ARGS__);                                        \
            vl_cuda_fatal(#cond, __FILE__, __LINE__, vl_msg_);                                     \
        }                                                                                          \
    } while (0)

/* Blocks for a grid-stride loop over `items` with `threads` per block; items > 0. The cap
 * keeps the grid small for huge n (each thread then loops), far above what fills a GPU. */
static inline unsigned vl_cuda_grid(int64_t items, int threads) {
    int64_t blocks = (items + threads - 1) / threads;
    return (unsigned)(blocks < 1 ? 1 : blocks > (1 << 20) ? (1 << 20) : blocks);
}

/* 16-byte vector loads need 16-byte aligned addresses. */
static inline int vl_cuda_aligned16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

/* ---- device helpers: VEC consecutive bf16 <-> fp32 (VEC 8 = one 16-byte access) ----------- */

#ifdef __CUDACC__
template <int VEC> __device__ __forceinline__ void vl_load_bf16(const vl_bf16 *p, float *f) {
    if constexpr (VEC == 8) {
        uint4 u = *reinterpret_cast<const uint4 *>(p);
        const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 t = __bfloat1622float2(h[i]);
            f[2 * i] = t.x;
            f[2 * i + 1] = t.y;
        }
    } else {
        static_assert(VEC == 1, "vector width is 1 or 8 bf16");
        f[0] = __bfloat162float(*p);
    }
}

template <int VEC> __device__ __forceinline__ void vl_store_bf16(vl_bf16 *p, const float *f) {
    if constexpr (VEC == 8) {
        uint4 u;
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        *reinterpret_cast<uint4 *>(p) = u;
    } else {
        static_assert(VEC == 1, "vector width is 1 or 8 bf16");
        *p = __float2bfloat16_rn(f[0]);
    }
}
#endif

/* ---- launchers (pointers in device memory; bf16 unless typed otherwise) ------------------- */

/* y[m, N] = x[m, K] . W[N, K]^T through cublasGemmEx; `handle` must be bound to the caller's
 * stream. bias must be NULL: a biased GEMM goes through vl_cuda_launch_linear_bias. */
void vl_cuda_launch_linear(cublasHandle_t handle, cudaStream_t stream, vl_bf16 *y, const vl_bf16 *x,
                           int64_t m, const vl_bf16 *w, int64_t n_out, int64_t k_in,
                           const vl_bf16 *bias);
/* y = bf16(x . W^T + bias), one rounding: cuBLASLt with the BIAS epilogue (fp32) and no split-K
 * reduction through bf16. `ws` is cuBLASLt's workspace on `stream`. Returns 0 (nothing
 * enqueued) when cuBLASLt offers no algorithm for these sizes and alignments. */
int vl_cuda_launch_linear_bias(cublasLtHandle_t lt, void *ws, size_t ws_bytes, cudaStream_t stream,
                               vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_bf16 *w,
                               int64_t n_out, int64_t k_in, const vl_bf16 *bias);
/* D[m rows of ld_d] = x[m, K] . A[n, K]^T (+ bias[n]) through cuBLASLt (cuda_lt_gemm.cu): bf16
 * in and out, fp32 compute, one rounding, no bf16 split-K reduction; the algorithm is chosen once
 * per shape and alignment. Returns 0 (nothing enqueued) when cuBLASLt offers none. */
int vl_cuda_lt_gemm_bf16(cublasLtHandle_t lt, void *ws, size_t ws_bytes, cudaStream_t stream,
                         vl_bf16 *d, int64_t ld_d, const vl_bf16 *a, int64_t n, const vl_bf16 *x,
                         int64_t m, int64_t k, const vl_bf16 *bias);
/* y[m rows of ld_y] = bf16(x[m, K] . W[n, K]^T + bias[n]) for any shape and alignment, one
 * rounding: cuBLAS into fp32 `scratch` a block of rows at a time (at most max_block_rows when
 * > 0), then the bias added in fp32 and rounded (cuda_gemm_bias_fp32.cu). `blas` is bound to
 * `stream`; bias may be NULL. */
void vl_cuda_launch_gemm_bias_fp32(cublasHandle_t blas, cudaStream_t stream, float *scratch,
                                   size_t scratch_bytes, int64_t max_block_rows, vl_bf16 *y,
                                   int64_t ld_y, const vl_bf16 *x, int64_t m, const vl_bf16 *w,
                                   int64_t n, int64_t k, const vl_bf16 *bias);
/* The same for a bf16 W through the backend's handle and attention workspace (C linkage for
 * tests/test_ops_gpu.c). */
extern "C" void vl_cuda_linear_bias_fp32_blocked(vl_backend *b, void *y, const void *x, int64_t m,
                                                 const vl_weight *w, const vl_vec *bias,
                                                 int64_t max_block_rows);
void vl_cuda_launch_embed(vl_bf16 *y, const vl_bf16 *table, int64_t rows, int64_t cols,
                          const int32_t *ids, int64_t n, cudaStream_t stream);
void vl_cuda_launch_f32_to_bf16(vl_bf16 *dst, const float *src, int64_t n, cudaStream_t stream);
void vl_cuda_launch_bf16_to_f32(float *dst, const vl_bf16 *src, int64_t n, cudaStream_t stream);
void vl_cuda_launch_add(vl_bf16 *y, const vl_bf16 *a, int64_t n, cudaStream_t stream);
void vl_cuda_launch_silu_mul(vl_bf16 *y, const vl_bf16 *gate, const vl_bf16 *up, int64_t n,
                             cudaStream_t stream);
void vl_cuda_launch_silu_mul_rows(vl_bf16 *y, const vl_bf16 *gu, int64_t rows, int64_t n,
                                  cudaStream_t stream);
void vl_cuda_launch_quick_gelu(vl_bf16 *x, int64_t n, cudaStream_t stream);
void vl_cuda_launch_gelu(vl_bf16 *x, int64_t n, cudaStream_t stream);
/* dst[i, :] = src[idx[i], :] (cuda_gather_rows.cu); a row of NaN where idx[i] is outside
 * [0, n_rows). */
void vl_cuda_launch_gather_rows(vl_bf16 *dst, const vl_bf16 *src, const int32_t *idx,
                                int64_t n_rows, int64_t row_elems, cudaStream_t stream);
void vl_cuda_launch_kv_append(vl_bf16 *cache, int64_t head_stride, const vl_bf16 *src,
                              int64_t src_stride, int64_t s, int kv_heads, int head_dim,
                              int64_t pos0, const int32_t *pos0_dev, cudaStream_t stream);
/* w / bias may be NULL (ones / zeros). */
void vl_cuda_launch_rmsnorm(vl_bf16 *y, const vl_bf16 *x, int64_t m, int64_t n, const vl_bf16 *w,
                            float eps, cudaStream_t stream);
void vl_cuda_launch_add_rmsnorm(vl_bf16 *y, vl_bf16 *x, const vl_bf16 *a, int64_t m, int64_t n,
                                const vl_bf16 *w, float eps, cudaStream_t stream);
void vl_cuda_launch_layernorm(vl_bf16 *y, const vl_bf16 *x, int64_t m, int64_t n, const vl_bf16 *w,
                              const vl_bf16 *bias, float eps, cudaStream_t stream);

/* Rotary pairs: pair k (< head_dim/2) of every head of token i turns by the angle
 * (float)pos[axis[k] * s + i] * inv_freq[k]. Text and vision rotary differ only in the table,
 * which the host builds with the same powf expression as the CPU twin (a GPU powf may differ
 * by a few ulp, and angles of positions in the thousands would magnify that). */
#define VL_CUDA_ROPE_MAX_PAIRS (VL_CUDA_ROPE_MAX_HEAD_DIM / 2) /* kernels.h: head_dim <= 512 */
typedef struct {
    float inv_freq[VL_CUDA_ROPE_MAX_PAIRS];
    unsigned char axis[VL_CUDA_ROPE_MAX_PAIRS]; /* row of pos: 0..2 text, 0..1 vision */
} vl_cuda_rope_table;
void vl_cuda_launch_rope(vl_bf16 *x, int64_t stride, int64_t s, int heads, int head_dim,
                         const int32_t *pos, const vl_cuda_rope_table *table, cudaStream_t stream);

/* ---- table entries (kernels.h signatures) -------------------------------------------------- */

void vl_cuda_from_f32(vl_backend *b, void *dst, const float *src_host, int64_t n);
void vl_cuda_to_f32(vl_backend *b, float *dst_host, const void *src, int64_t n);
void vl_cuda_linear(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                    const vl_vec *bias);
void vl_cuda_embed(vl_backend *b, void *y, const vl_weight *table, const int32_t *ids, int64_t n);
void vl_cuda_rmsnorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                     float eps);
void vl_cuda_layernorm(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                       const vl_vec *bias, float eps);
void vl_cuda_add_rmsnorm(vl_backend *b, void *y, void *x, const void *a, int64_t m, int64_t n,
                         const vl_vec *w, float eps);
void vl_cuda_rope_kv_append(vl_backend *b, const vl_rope_kv_params *p);
void vl_cuda_add(vl_backend *b, void *y, const void *a, int64_t n);
void vl_cuda_silu_mul(vl_backend *b, void *y, const void *gate, const void *up, int64_t n);
void vl_cuda_silu_mul_rows(vl_backend *b, void *y, const void *gu, int64_t rows, int64_t n);
void vl_cuda_quick_gelu(vl_backend *b, void *x, int64_t n);
void vl_cuda_gelu(vl_backend *b, void *x, int64_t n);
void vl_cuda_gather_rows(vl_backend *b, void *dst, const void *src, const int32_t *idx,
                         int64_t n_rows, int64_t row_elems);
void vl_cuda_rope_text(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                       const int32_t *pos, const int sections[3], float theta);
void vl_cuda_rope_vision(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                         const int32_t *pos, float theta);
void vl_cuda_kv_gather(vl_backend *b, void *dst, int64_t dst_head_stride, const void *src,
                       const float *scale, const vl_kv_pages *pages, int64_t head_stride,
                       int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim);
void vl_cuda_kv_append(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                       int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                       const int32_t *pos0_dev);

/* ---- attention (cuda_attention_dispatch.cu; the kernels' own interface is in cuda_internal.h)
 * -------- */
void vl_cuda_attention_naive_op(vl_backend *b, const vl_attn_params *p, float *scores);

/* ---- quantized weights (cuda_quant.cu, cuda_dequant_gemm.cu) ------------------------------------
 */

#define VL_CUDA_QUANT_STATE_BYTES 256 /* head of quant_scratch: the DQ offset's reduction state */

void vl_cuda_quantize(vl_backend *b, vl_weight *dst, const void *src_bf16, int double_quant);
void vl_cuda_dequantize(vl_backend *b, void *dst_bf16, const vl_weight *w);
/* dst[nr, cols] (bf16) = rows r0 .. r0+nr-1 of the NF4 / Q8ROW weight w. */
void vl_cuda_launch_dequantize_rows(vl_bf16 *dst, const vl_weight *w, int64_t r0, int64_t nr,
                                    cudaStream_t stream);
/* y[m, w.rows] = x[m, w.cols] . W^T (+ bias) for an NF4 / Q8ROW w, through bf16 slices of W
 * and cuBLASLt (prefill sizes of m); enqueued on the backend's stream, no host sync. */
void vl_cuda_launch_dequant_gemm(vl_backend *b, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                                 const vl_weight *w, const vl_bf16 *bias);
/* The same with explicit resources (a slice limit for the tests). */
typedef struct {
    cublasLtHandle_t lt;
    cublasHandle_t blas; /* bound to `stream`: biased GEMMs that are not 16-byte clean */
    cudaStream_t stream, side_stream; /* GEMMs on stream, dequantization on side_stream */
    cudaEvent_t start, ready[2], consumed[2];
    vl_bf16 *slice[2];
    size_t slice_bytes;
    void *lt_ws; /* cuBLASLt workspace, used on `stream` only */
    size_t lt_ws_bytes;
    int64_t max_slice_rows; /* 0: chosen from slice_bytes and m; > 0: at most this many */
    int overlap;            /* 1: slice i + 1 dequantized on side_stream during GEMM i; 0: each
                             * slice dequantized on `stream` just before its GEMM */
} vl_cuda_dqgemm_res;
void vl_cuda_dequant_gemm_run(const vl_cuda_dqgemm_res *r, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                              const vl_weight *w, const vl_bf16 *bias);
/* Checked entry with a slice limit, overlap (< 0: the backend's dq_overlap) and the Hopper
 * kernel (wgmma: < 0 the backend's dq_wgmma, 0 never, 1 where it takes), C linkage for
 * tests/test_quant_gpu.c. Returns 1 when the Hopper kernel ran, 0 for the slices. */
extern "C" int vl_cuda_dequant_gemm_sliced(vl_backend *b, void *y, const void *x, int64_t m,
                                           const vl_weight *w, const vl_vec *bias,
                                           int64_t max_slice_rows, int overlap, int wgmma);
/* The dequant GEMM with W converted inside a Hopper GEMM (cuda_dequant_gemm_wgmma.cu): when
 * `enabled` (the backend's dq_wgmma, or a test's choice) and c's device and the operands' shapes
 * and alignment take it, enqueues it on stream and returns 1; else 0, nothing enqueued. */
int vl_dqg_wgmma(vl_cuda_ctx *c, int enabled, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                 const vl_weight *w, const vl_bf16 *bias, cudaStream_t stream);

/* ---- decode GEMV (cuda_gemv.cu, cuda_gemv_bf16.cu, cuda_gemv_quant_m1.cu) -------------------
 * vl_cuda_linear sends m <= VL_CUDA_GEMV_MAX_M here; vl_cuda_gemv (cuda_linear.cu) is the one
 * place that picks the kernel for a shape, format and configuration. */

/* Rows of x the GEMV takes: the n of one mma.m16n8k16. */
#define VL_CUDA_GEMV_MAX_M 8
/* Rows of x vl_cuda_launch_gemv takes in one pass of an NF4 or Q8ROW W: two B tiles, W read
 * once (vlrun serve's batched decode; vl_cuda_linear sends 9 to 16 rows there unless the
 * configuration's gemv_rows16 is 0). A bf16 W takes MAX_M. */
#define VL_CUDA_GEMV_WIDE_M 16
/* y[m, N] = x[m, K] . W^T (+ bias[N]) on c's stream through the kernel chosen for (w, m) and
 * c->cfg: the bf16 m = 1 kernel, the quantized m = 1 kernel, or the general one. */
void vl_cuda_gemv(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m, const vl_weight *w,
                  const vl_bf16 *bias);
/* 1 if vl_cuda_launch_gemv takes (w, m): 1 <= m <= VL_CUDA_GEMV_WIDE_M, a BF16, NF4 (either scale
 * mode) or Q8ROW weight with its scale buffers, sizes within int. */
int vl_cuda_gemv_supported(const vl_weight *w, int64_t m);
/* The general GEMV. y[m, N] = x[m, K] . W^T (+ bias[N]), fp32 sums, one rounding per output,
 * deterministic. Any shape and alignment; the fast path needs K % (8 bf16, 16 Q8ROW, 32 NF4) == 0
 * and 16-byte aligned W data and x. c: the backend (device facts); scratch may be NULL (then K
 * is never split over CTAs); stream: one of c's device. Graph-safe: no host sync, no
 * allocation. */
void vl_cuda_launch_gemv(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, int64_t m,
                         const vl_weight *w, const vl_bf16 *bias,
                         const vl_cuda_gemv_scratch *scratch, cudaStream_t stream);
/* The m = 1 quantized GEMV (two rows per warp; cuda_gemv_quant_m1.cu): launches and returns 1
 * for NF4 (fp32 block scales, K % 64 == 0) or Q8ROW (K % 16 == 0) with 16-byte aligned W data and
 * x; returns 0 (nothing launched) otherwise. Same numerics and determinism as the general GEMV,
 * graph-safe. Warps per row pair: c->cfg.gemv_quant_m1_splits or chosen per shape. */
int vl_cuda_gemv_quant_m1(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, const vl_weight *w,
                          const vl_bf16 *bias);
/* The K step of the lean GEMV (cuda_gemv_lean.cu) for a weight dtype: it takes NF4 / Q8ROW
 * products whose K is a multiple of it (256 / 128); 0 for the dtypes it never takes. */
int vl_cuda_gemv_lean_step(vl_dtype dtype);
/* The m = 1 bf16 GEMV (cuda_gemv_bf16.cu): launches and returns 1 for a BF16 weight with
 * K % 8 == 0 and 16-byte aligned W data and x; returns 0 (nothing launched) otherwise. One
 * rounding per output, deterministic, graph-safe. Warps per row: c->cfg.gemv_bf16_splits or
 * chosen per shape. */
int vl_cuda_gemv_bf16(vl_cuda_ctx *c, vl_bf16 *y, const vl_bf16 *x, const vl_weight *w,
                      const vl_bf16 *bias);

#endif
