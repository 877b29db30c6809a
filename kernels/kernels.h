/* kernels.h: the public face of kernels/: dtypes, weight descriptors and the op table.
 *
 * The engine computes through one table of function pointers (vl_backend) with two
 * implementations: "cpu" (plain C, fp32 activations, fp32 accumulation: the oracle, and what CI
 * runs) and "cuda" (kernels/ *.cu files, bf16 activations, fp32 accumulation). Every op of the CUDA
 * backend is tested against its CPU twin.
 *
 * Conventions
 *   - Activations live in backend memory, in the backend's activation dtype `act`, row-major.
 *     Sizes are in elements unless a name says bytes. Strides are in elements.
 *   - Weights are [rows = out features, cols = in features], row-major: y = x . W^T + b.
 *   - Dimension names in comments: S tokens of a chunk, T keys, H heads, D head dim, E width,
 *     F FFN width, V vocabulary.
 */
#ifndef VL_KERNELS_H
#define VL_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes ------------------------------------------------------------------------------ */

typedef enum {
    VL_DTYPE_F32,
    VL_DTYPE_F16,
    VL_DTYPE_BF16,
    VL_DTYPE_U8,
    VL_DTYPE_I8,
    VL_DTYPE_I32,
    VL_DTYPE_I64,
    VL_DTYPE_COUNT, /* the tensor dtypes of safetensors files end here */
    /* Quantized weight formats (vl_weight only; see "quantized weights" below). */
    VL_DTYPE_NF4 = 32,
    VL_DTYPE_Q8ROW
} vl_dtype;

size_t vl_dtype_size(vl_dtype t); /* 0 for the quantized formats */
const char *
vl_dtype_name(vl_dtype t); /* safetensors spelling: "F32", "BF16", ...; "NF4", "Q8ROW" */

static inline float vl_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as PyTorch's float -> bfloat16 cast; NaN stays a quiet NaN. */
static inline uint16_t vl_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* bf16 rounding of a float, kept as float (what a bf16 tensor op stores). */
static inline float vl_round_bf16(float f) {
    return vl_bf16_to_f32(vl_f32_to_bf16(f));
}

float vl_f16_to_f32(uint16_t h);
uint16_t vl_f32_to_f16(float f);

/* ---- parameters -------------------------------------------------------------------------- */

/* A matrix parameter W[rows, cols] (Linear weight [out, in], embedding table [V, E]).
 * The four fields after cols are used by the quantized formats only (zero otherwise). */
typedef struct {
    const void *data; /* backend memory (the CPU backend reads the mmapped file directly) */
    vl_dtype dtype;   /* F32, F16, BF16, or NF4 / Q8ROW (below) */
    int64_t rows, cols;
    const float *absmax;        /* NF4: block scales or nested scales; Q8ROW: row absmax */
    const uint8_t *absmax_code; /* NF4 double quantization: 8-bit code of each block scale */
    const float *absmax_map;    /* NF4 double quantization: the 256-entry code table */
    float absmax_offset;        /* NF4 double quantization: added back to every block scale */
} vl_weight;

/* A vector parameter (bias, norm weight) of n elements; data == NULL means "absent". */
typedef struct {
    const void *data;
    vl_dtype dtype;
    int64_t n;
} vl_vec;

/* ---- quantized weights (bitsandbytes' formats) -----------------------------------------------
 * All buffers in backend memory, like data.
 * VL_DTYPE_NF4: data = uint8 [ceil(rows*cols / 2)], two 4-bit codes per byte over the flattened
 *   row-major matrix, element 2j in the high nibble of byte j, 2j+1 in the low nibble. Blocks of
 *   VL_NF4_BLOCK consecutive elements share a scale a_b (b = element / 64):
 *     absmax_code == NULL: a_b = absmax[b]                         (fp32 [n_blocks])
 *     absmax_code != NULL: a_b = absmax_map[absmax_code[b]] * absmax[b / 256] + absmax_offset
 *                          (double quantization; fp32, multiply then add; absmax has
 *                          ceil(n_blocks / 256) entries, absmax_map 256)
 *   The weight a bf16 GEMM sees: w = bf16(vl_nf4_table[code] * a_b)  (bitsandbytes' dequantize).
 * VL_DTYPE_Q8ROW: data = int8 [rows, cols]; absmax = fp32 [rows] (bitsandbytes' SCB, the row's
 *   max |w|); w = bf16(q * absmax[r] * (1/127)). Weight-only (W8A16): not LLM.int8's outlier
 *   decomposition. */
#define VL_NF4_BLOCK    64
#define VL_NF4_DQ_BLOCK 256
extern const float vl_nf4_table[16];
/* bitsandbytes' signed dynamic 8-bit map (create_dynamic_map), the code of double quantization. */
void vl_dynamic_map(float map[256]);

/* Bytes of each buffer of a quantized rows x cols matrix (0 where unused). */
typedef struct {
    size_t data, absmax, absmax_code, absmax_map, total;
} vl_quant_sizes;
void vl_quant_sizes_of(vl_dtype fmt, int double_quant, int64_t rows, int64_t cols,
                       vl_quant_sizes *out);

/* CPU twins (kernels/cpu_quant.c), host memory. Quantize the bf16 matrix src[rows, cols] into
 * dst (dtype, rows and cols set, buffers allocated per vl_quant_sizes_of): the same bits as
 * bitsandbytes' quantize_4bit(nf4, blocksize 64[, compress_statistics]) / int8 row quantization.
 * Returns 0, or -1 with the error set. */
int vl_quantize_cpu(vl_weight *dst, const uint16_t *src_bf16, int double_quant);
/* Rows r0 .. r0+nr-1 of any weight (plain or quantized) as float32 [nr, cols]: the values a bf16
 * matrix multiply sees (bf16-rounded for the quantized formats). */
void vl_weight_rows_f32(const vl_weight *w, int64_t r0, int64_t nr, float *out);

/* ---- decode state ------------------------------------------------------------------------ */

/* Where one decode step stands, in backend memory, so that a recorded step (a CUDA graph) can
 * be replayed with no host work in between: the kernels read the token, the positions and the
 * cache length from here, and sample_token writes the next ones. */
typedef struct {
    int32_t token;      /* the token this step feeds (the previous sample) */
    int32_t n_past;     /* tokens in the KV cache before this step */
    int32_t pos[3];     /* this token's M-RoPE position rows t, h, w (all n_past + rope_delta) */
    int32_t rope_delta; /* decode position = n_past + rope_delta */
    int32_t step;       /* tokens sampled so far; sample i is stored at tokens[i] */
    int32_t pad;
} vl_decode_state;

/* ---- a paged KV cache (vlrun serve's pool) --------------------------------------------------
 * The KV cache of many sequences as one pool of blocks of block_tokens rows for every kv head
 * (vLLM's paged attention): row t of kv head g of the sequence whose block table is tbl lives in
 * block b = tbl[t / block_tokens], at element
 *   base + b * block_stride + g * head_stride + (t % block_tokens) * tok_stride
 * of the pool (head_stride and tok_stride are the caller's usual strides), and with an int8
 * cache its scale at
 *   scale + b * scale_block_stride + g * scale_head_stride + t % block_tokens.
 * Sequence i's table is table[i * table_stride ...] (int32 block ids, backend memory).
 * A NULL table is the contiguous cache (one block, t % block_tokens = t): what every op did
 * before pages existed, and what a single request still uses. */
typedef struct {
    const int32_t *table;
    int64_t table_stride; /* entries per sequence */
    int block_tokens;     /* rows per block (a power of two) */
    int64_t block_stride, scale_block_stride;
} vl_kv_pages;

/* ---- attention ------------------------------------------------------------------------------ */

/* One params struct for every attention variant (prefill causal, vision block-diagonal,
 * decode). Element strides let q/k/v be views into a fused qkv buffer or a KV cache.
 *   q[i, h, :] = q + i*q_stride + h*head_dim            i < n_q, h < n_heads
 *   k[j, g, :] = k + j*kv_tok_stride + g*kv_head_stride j < n_kv, g < n_kv_heads (same for v)
 *   o[i, h, :] = o + i*o_stride + h*head_dim
 * Query head h reads kv head h / (n_heads / n_kv_heads) (GQA without expanding K/V).
 * causal: query i sits at absolute position q_pos0 + i and sees keys j <= q_pos0 + i.
 * Non-causal with n_seg > 0: block-diagonal; seg_starts[0..n_seg] (backend memory, int32) are
 * cumulative boundaries shared by queries and keys (n_q == n_kv); a token attends only inside
 * its own segment (cu_seqlens of FlashAttention's varlen API). n_seg == 0: everything sees
 * everything. Softmax in fp32 with `scale` applied to q.k. */
typedef struct {
    const void *q;
    int64_t q_stride;
    const void *k, *v;
    int64_t kv_tok_stride, kv_head_stride;
    void *o;
    int64_t o_stride;
    int64_t n_q, n_kv;
    int n_heads, n_kv_heads, head_dim;
    float scale;
    int causal;
    int64_t q_pos0;
    const int32_t *seg_starts;
    int n_seg;
    /* Optional (causal only): when set, the cache length is read at run time from backend
     * memory: q_pos0 = n_past_dev[0] and n_kv = n_past_dev[0] + n_q. The n_kv field then only
     * bounds the launch (the cache capacity) and q_pos0 is ignored. */
    const int32_t *n_past_dev;
    /* Optional: an int8 KV cache (--kv int8). When k_scale is set, k and v hold int8 values
     * (the strides above count them, one byte each) and element (j, g, d) of K stands for
     * k[j, g, d] * k_scale[g * kv_scale_head_stride + j] in fp32; likewise V with v_scale.
     * Both backends' attention takes it for any number of queries (causal, no segments); on the
     * CUDA backend a paged pool (pages below) only for decode (cuda_attention_dispatch.cu), so
     * the engine gathers a prefill chunk's sequence out of the pool first (kv_gather). The CUDA
     * attention_naive takes no int8 cache (the CLI refuses --kv int8 with --attn naive). */
    const float *k_scale, *v_scale;
    int64_t kv_scale_head_stride;
    /* Optional: k and v (and the scales) are a paged pool (vl_kv_pages; table NULL: contiguous).
     * Without batch the queries are one sequence's (table row 0). With batch (decode, causal,
     * n_past_dev set, n_seg 0) the n_q queries are the one new token of n_q different
     * sequences: query i reads table row i, sits at position n_past_dev[i] and sees keys
     * 0 .. n_past_dev[i]; n_kv bounds every sequence's length (the launch). */
    vl_kv_pages pages;
    int batch;
} vl_attn_params;

/* The int8 KV cache (--kv int8): each (token, kv head) row x[n] of K or V is stored as
 * q[n] int8 and one fp32 scale: amax = max |x|, scale = amax / 127, q = x * (127 / amax)
 * rounded to nearest even (|q| <= 127); an all-zero row has scale 0 and q 0. Returns the
 * scale. The CPU twin of the CUDA append, which computes the same expressions from the bf16
 * row. */
float vl_kv_quantize_row(const float *x, int n, int8_t *q);

/* One decoder layer's rotary and cache append (rope_kv_append): text M-RoPE on q [s, n_heads,
 * head_dim] (row stride q_stride) and on k [s, n_kv_heads, head_dim] (row stride kv_stride), in
 * place, then k and v [s, n_kv_heads, head_dim] (row stride kv_stride) appended to k_cache and
 * v_cache at pos0 (or pos0_dev[0]), exactly as rope_text(q), rope_text(k), kv_append(k),
 * kv_append(v). pos, sections, theta: as rope_text; caches: as kv_append. */
typedef struct {
    void *q, *k;
    const void *v;
    int64_t q_stride, kv_stride, s;
    int n_heads, n_kv_heads, head_dim;
    const int32_t *pos;
    int sections[3];
    float theta;
    void *k_cache, *v_cache;
    int64_t head_stride, pos0;
    const int32_t *pos0_dev;
    /* --kv int8: when k_scale is set the caches are int8 and each appended (token, kv head)
     * row of k and v is quantized (vl_kv_quantize_row), its scale stored at
     * k_scale[g * scale_head_stride + t] (v_scale for v). */
    float *k_scale, *v_scale;
    int64_t scale_head_stride;
    /* Optional: the caches are a paged pool (vl_kv_pages, tok_stride head_dim; table NULL:
     * contiguous). Without batch the s rows are one sequence's, appended at pos0 (or
     * pos0_dev[0]) + i through table row 0. With batch (pos0_dev set) row i is the one new
     * token of sequence i: appended at pos0_dev[i] through table row i. */
    vl_kv_pages pages;
    int batch;
} vl_rope_kv_params;

/* ---- what a backend supports (kernels/backend_caps.c: plain C, in every build) --------------
 * Each backend kind describes itself in a vl_backend_caps reachable without starting a device
 * (vl_backend_caps_of), so that the engine can refuse a model right after its config is parsed:
 * before anything is loaded, and without a device. A started backend points at the same struct
 * (vl_backend.caps). */
typedef enum { VL_BACKEND_CUDA, VL_BACKEND_CPU } vl_backend_kind;

/* Limits of the compiled CUDA kernels (the values of the CUDA backend's caps). */
#define VL_CUDA_ATTN_MAX_HEAD_DIM                                                                  \
    128 /* flash prefill and split-KV decode: every head dim up to it */
#define VL_CUDA_ROPE_MAX_HEAD_DIM 512   /* rotary tables (cuda_rope.cu); --attn naive takes any */
#define VL_CUDA_MAX_HEADS         65535 /* attention grid dimensions */
/* Device memory the CUDA backend allocates for itself at start (cuBLAS, attention, staging,
 * GEMV and quantization workspaces): cuda_backend.cu checks its sizes add up to this, and a plan
 * made without a device (vlrun plan) uses it. */
#define VL_CUDA_WORKSPACE_BYTES (((size_t)117 << 20) + ((size_t)64 << 10) + 256)

/* Bits of vl_backend_caps.weight_formats: the weight dtypes linear and embed take. */
#define VL_CAP_WEIGHT(dtype) (1ull << ((unsigned)(dtype)&63u))

typedef struct {
    vl_backend_kind kind;
    const char *name; /* "cpu" or "cuda" */
    vl_dtype act;     /* activation dtype: F32 on cpu, BF16 on cuda */
    /* Attention limits; 0 = no limit. max_head_dim bounds the flash kernels (attention);
     * max_rope_head_dim bounds the rotary ops and attention_naive (--attn naive). */
    int max_head_dim, max_rope_head_dim, max_heads;
    unsigned long long weight_formats; /* VL_CAP_WEIGHT(dtype) for each dtype linear takes */
    int naive_attention;               /* attention_naive present (--attn naive) */
    int graphs;             /* graph_begin..graph_free present (unless turned off at creation) */
    int quantize;           /* quantize / dequantize present (--quant) */
    int fill_random;        /* fill_random_bf16 present (--random-weights on the backend) */
    int host_mapped;        /* host_mapped_alloc present (--embed-on-host) */
    int paged_kv;           /* pages and batch of attention / rope_kv_append, and kv_gather */
    size_t workspace_bytes; /* memory the backend allocates for itself when it starts */
} vl_backend_caps;

/* The capabilities of a backend kind; never NULL for a kind of the enum. Describes the kernels
 * the build would run: a build without CUDA still answers for VL_BACKEND_CUDA (and
 * vl_backend_cuda then says why there is no such backend). */
const vl_backend_caps *vl_backend_caps_of(vl_backend_kind kind);

/* One attention of a model (the decoder's, the vision tower's). */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    int naive; /* --attn naive: the materialized-score kernels instead of the flash ones */
} vl_attn_shape;

/* 0 when a backend with these caps runs attention of this shape, with its rotary (rotate_half
 * over head_dim); otherwise -1 and one line in why that names the value out of range and what to
 * do instead ("head_dim 256 is above 128, ...; use --attn naive or --backend cpu"). A backend
 * without limits (the CPU) takes every shape the config parser accepts. */
int vl_backend_check_attention(const vl_backend_caps *caps, const vl_attn_shape *s, char *why,
                               size_t why_len);

/* ---- the op table ------------------------------------------------------------------------ */

typedef struct vl_backend vl_backend;
struct vl_backend {
    const char *name;            /* "cpu" or "cuda" (caps->name) */
    vl_dtype act;                /* activation dtype: F32 on cpu, BF16 on cuda (caps->act) */
    const vl_backend_caps *caps; /* what it supports: vl_backend_caps_of(its kind) */
    void *ctx;                   /* backend private state */
    /* Called now and then from the calling thread while a long op runs on the CPU backend (a
     * 7B layer takes tens of seconds there): the engine's progress line redraws from it, so a
     * CPU run is never silent for long. NULL: nothing. Ops on the GPU return at once. */
    void (*heartbeat)(void *ctx);
    void *heartbeat_ctx;

    /* memory: large blocks only (the engine's arena carves them); never in the decode loop */
    void *(*mem_alloc)(vl_backend *b, size_t bytes); /* NULL when out of memory */
    void (*mem_free)(vl_backend *b, void *p);
    void (*upload)(vl_backend *b, void *dst, const void *src_host, size_t bytes);
    void (*download)(vl_backend *b, void *dst_host, const void *src, size_t bytes);
    void (*copy)(vl_backend *b, void *dst, const void *src, size_t bytes);
    void (*sync)(vl_backend *b);

    /* dst[n] (act) = host float32 src[n], converted to the activation dtype */
    void (*from_f32)(vl_backend *b, void *dst, const float *src_host, int64_t n);
    /* host float32 dst[n] = src[n] (act) */
    void (*to_f32)(vl_backend *b, float *dst_host, const void *src, int64_t n);

    /* y[m, w.rows] = x[m, w.cols] . w^T (+ bias[w.rows] when bias && bias->data) */
    void (*linear)(vl_backend *b, void *y, const void *x, int64_t m, const vl_weight *w,
                   const vl_vec *bias);
    /* y[n, E] = table[ids[i], :]; ids: int32 in backend memory, each in [0, table.rows) */
    void (*embed)(vl_backend *b, void *y, const vl_weight *table, const int32_t *ids, int64_t n);
    /* y[m, n] = RMSNorm(x[m, n]) * w   (fp32 statistics) */
    void (*rmsnorm)(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                    float eps);
    /* x[m, n] += a[m, n], then y[m, n] = RMSNorm(x) * w: add followed by rmsnorm, in one pass
     * over the row (the decoder's residual add and the norm after it). y may be a. */
    void (*add_rmsnorm)(vl_backend *b, void *y, void *x, const void *a, int64_t m, int64_t n,
                        const vl_vec *w, float eps);
    /* y[m, n] = LayerNorm(x[m, n]) * w + bias   (fp32 statistics, biased variance) */
    void (*layernorm)(vl_backend *b, void *y, const void *x, int64_t m, int64_t n, const vl_vec *w,
                      const vl_vec *bias, float eps);
    /* y[n] += a[n] */
    void (*add)(vl_backend *b, void *y, const void *a, int64_t n);
    /* y[n] = silu(gate[n]) * up[n], silu(x) = x / (1 + exp(-x)) */
    void (*silu_mul)(vl_backend *b, void *y, const void *gate, const void *up, int64_t n);
    /* y[r, :n] = silu(gu[r, :n]) * gu[r, n:2n] for r < rows: the rows of a fused [gate | up]
     * product (2n wide) into rows n wide; y must not overlap gu */
    void (*silu_mul_rows)(vl_backend *b, void *y, const void *gu, int64_t rows, int64_t n);
    /* in place: x = x * sigmoid(1.702 x) */
    void (*quick_gelu)(vl_backend *b, void *x, int64_t n);
    /* in place: x = 0.5 x (1 + erf(x / sqrt 2))  (exact GELU) */
    void (*gelu)(vl_backend *b, void *x, int64_t n);
    /* dst[i, :] = src[idx[i], :] for i < n_rows, rows of row_elems act elements; idx: int32 in
     * backend memory, each a row of src. src has n_rows rows too, so 0 <= idx[i] < n_rows (the
     * CPU twin aborts otherwise; the CUDA op writes a row of NaN). dst and src do not overlap.
     * With a permutation and its inverse: Qwen2.5-VL's window order of the patches and back to
     * raster order. */
    void (*gather_rows)(vl_backend *b, void *dst, const void *src, const int32_t *idx,
                        int64_t n_rows, int64_t row_elems);

    /* Text M-RoPE, in place on x[s, heads, head_dim] with row stride `stride`.
     * pos: int32 [3, s] in backend memory (rows t, h, w). inv_freq_k = theta^(-2k/head_dim),
     * k < head_dim/2; frequency pair k takes its position from row 0 for k < sec[0], row 1 for
     * k < sec[0]+sec[1], else row 2. x'[k] = x[k] cos - x[k+D/2] sin, x'[k+D/2] = x[k+D/2] cos
     * + x[k] sin (rotate_half). */
    void (*rope_text)(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                      const int32_t *pos, const int sections[3], float theta);
    /* Vision 2-D rotary, in place on x[s, heads, head_dim] (row stride `stride`).
     * pos: int32 [2, s] (rows h, w). inv_freq_j = theta^(-2j/(head_dim/2)), j < head_dim/4;
     * angle vector over head_dim/2 = [h*inv_freq, w*inv_freq]; rotate_half over head_dim. */
    void (*rope_vision)(vl_backend *b, void *x, int64_t stride, int64_t s, int heads, int head_dim,
                        const int32_t *pos, float theta);

    void (*attention)(vl_backend *b, const vl_attn_params *p);
    /* rope_text on q and k, then kv_append of k and v, in one op (vl_rope_kv_params) */
    void (*rope_kv_append)(vl_backend *b, const vl_rope_kv_params *p);

    /* KV cache append: cache[g, pos0 + i, :] = src[i, g, :] for i < s, g < kv_heads.
     * cache rows are head-major: element (g, t, d) at cache + g*head_stride + t*head_dim + d.
     * src row stride `src_stride` (elements). */
    void (*kv_append)(vl_backend *b, void *cache, int64_t head_stride, const void *src,
                      int64_t src_stride, int64_t s, int kv_heads, int head_dim, int64_t pos0,
                      const int32_t *pos0_dev /* optional: pos0 read from backend memory */);

    /* One sequence of a paged pool (src: keys or values, pages: its table as row 0) into a
     * contiguous head-major buffer: dst[g, t, :] (act; rows head_dim apart, heads
     * dst_head_stride apart) = row t of kv head g, for t < n_tok, g < kv_heads; an int8 pool
     * (scale set) is dequantized (dst = act(q * scale), q * scale in fp32), an act pool copied.
     * A prefill chunk's attention over the pool then reads dst. */
    void (*kv_gather)(vl_backend *b, void *dst, int64_t dst_head_stride, const void *src,
                      const float *scale, const vl_kv_pages *pages, int64_t head_stride,
                      int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim);

    /* Choose the next token from logits[n] (act) and advance the decode state, all in backend
     * memory: temperature <= 0: the first maximum; else the Gumbel-max draw argmax_i
     * (logits_i / temperature - log(-log(u_i))), u_i = vl_random_unit(vl_sample_key(seed,
     * st->step) + i), which samples softmax(logits / temperature) exactly.
     * Then tokens[st->step] = st->token = choice, st->step += 1, and when `advance`:
     * st->n_past += 1, st->pos[0..2] = st->n_past + st->rope_delta. */
    void (*sample_token)(vl_backend *b, vl_decode_state *st, int32_t *tokens, const void *logits,
                         int64_t n, float temperature, uint64_t seed, int advance);
    /* The same over float32 logits (the repetition penalty's output, below). */
    void (*sample_token_f32)(vl_backend *b, vl_decode_state *st, int32_t *tokens,
                             const float *logits, int64_t n, float temperature, uint64_t seed,
                             int advance);
    /* sample_token's rule for n_rows rows at once, with no decode state (vlrun serve's batched
     * decode: one call instead of a pass over each row's logits on the host): tokens[r] = the
     * first best i of vl_sample_score(logits[r * n + i], i, temperature[r], keys[r]), where
     * keys[r] = vl_sample_key(seed, step) of row r's request; 0 when every logit is NaN.
     * logits in the act dtype; tokens (int32), temperature (float32), keys: backend memory. */
    void (*sample_rows)(vl_backend *b, int32_t *tokens, const void *logits, int64_t n_rows,
                        int64_t n, const float *temperature, const uint64_t *keys);

    /* The repetition penalty (transformers' RepetitionPenaltyLogitsProcessor), over the set of
     * token ids seen so far: seen[n] (uint8, backend memory) is nonzero for each id in it.
     * mark_seen: seen[ids[i]] = 1 for i < n_ids (ids int32, backend memory; an id outside
     * [0, vocab) marks nothing). repetition_penalty: dst[i] (float32) = x = logits[i] (act, as
     * float32) where seen[i] == 0, else x * penalty when x < 0 and x / penalty otherwise, in
     * float32 (as torch on float32 scores). */
    void (*mark_seen)(vl_backend *b, uint8_t *seen, int64_t vocab, const int32_t *ids,
                      int64_t n_ids);
    void (*repetition_penalty)(vl_backend *b, float *dst, const void *logits, const uint8_t *seen,
                               int64_t n, float penalty);

    /* Optional (NULL where absent). */
    /* dst[i] (bf16) = center + half * (2 u(key + i) - 1), u = vl_random_unit: --random-weights
     * without the host generating the model. */
    void (*fill_random_bf16)(vl_backend *b, void *dst, int64_t n, uint64_t key, float center,
                             float half);
    /* Attention through a materialized fp32 score matrix (--attn naive): `scores` holds
     * n_heads * n_q * n_kv floats (backend memory). */
    void (*attention_naive)(vl_backend *b, const vl_attn_params *p, float *scores);
    /* Quantize the bf16 matrix src (backend memory) into dst (dtype, rows, cols set; buffers in
     * backend memory per vl_quant_sizes_of): the same bits as vl_quantize_cpu. */
    void (*quantize)(vl_backend *b, vl_weight *dst, const void *src_bf16, int double_quant);
    /* dst[rows, cols] (act dtype, backend memory) = w dequantized (vl_weight_rows_f32's values). */
    void (*dequantize)(vl_backend *b, void *dst_bf16, const vl_weight *w);
    /* Record every op enqueued between graph_begin and graph_end (a CUDA graph), replay it
     * with graph_launch. graph_end returns NULL (error set) when recording failed. */
    int (*graph_begin)(vl_backend *b);
    void *(*graph_end)(vl_backend *b);
    void (*graph_launch)(vl_backend *b, void *graph);
    void (*graph_free)(vl_backend *b, void *graph);
    /* Pinned host memory the device reads directly (zero-copy): the host pointer, and in
     * *device_ptr the address kernels use. For tables read a row at a time (--embed-on-host). */
    void *(*host_mapped_alloc)(vl_backend *b, size_t bytes, void **device_ptr);
    void (*host_mapped_free)(vl_backend *b, void *host_ptr);
    /* Device memory now: free and total bytes (cudaMemGetInfo). */
    void (*mem_info)(vl_backend *b, size_t *free_bytes, size_t *total_bytes);
    const char *device_name; /* "NVIDIA H100 80GB HBM3", "cpu" */
    size_t workspace_bytes;  /* scratch the backend holds itself (cuBLAS, attention partials) */
};

/* Every member of vl_backend, in struct order: its ops (function pointers) and its data.
 * tests/test_op_coverage.c checks these lists against the struct's layout (a member added
 * without an entry fails it) and that every op has a test case that calls it, so a new op comes
 * with its test. */
/* One line per group of members, as the struct lists them. */
/* clang-format off */
#define VL_BACKEND_OPS(X) \
    X(heartbeat) X(mem_alloc) X(mem_free) X(upload) X(download) X(copy) \
    X(sync) X(from_f32) X(to_f32) X(linear) X(embed) X(rmsnorm) \
    X(add_rmsnorm) X(layernorm) X(add) X(silu_mul) X(silu_mul_rows) \
    X(quick_gelu) X(gelu) \
    X(gather_rows) \
    X(rope_text) X(rope_vision) X(attention) X(rope_kv_append) X(kv_append) \
    X(kv_gather) \
    X(sample_token) X(sample_token_f32) X(sample_rows) X(mark_seen) X(repetition_penalty) \
    X(fill_random_bf16) X(attention_naive) X(quantize) X(dequantize) \
    X(graph_begin) X(graph_end) X(graph_launch) X(graph_free) \
    X(host_mapped_alloc) X(host_mapped_free) X(mem_info)
#define VL_BACKEND_DATA(X) \
    X(name) X(act) X(caps) X(ctx) X(heartbeat_ctx) X(device_name) X(workspace_bytes)
/* clang-format on */

/* The counter-based generator behind --random-weights: a pure function of (key + i), so the
 * host and any device make the same values. splitmix64's finalizer, top 53 bits -> [0, 1). */
#ifdef __CUDACC__
#define VL_HOST_DEVICE __host__ __device__
#else
#define VL_HOST_DEVICE
#endif
static inline VL_HOST_DEVICE uint64_t vl_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline VL_HOST_DEVICE double vl_random_unit(uint64_t x) {
    return (double)(vl_mix64(x) >> 11) * (1.0 / 9007199254740992.0);
}
/* The Gumbel noise key of decode step `step` (sample_token). */
static inline VL_HOST_DEVICE uint64_t vl_sample_key(uint64_t seed, int32_t step) {
    return vl_mix64(seed * 0x9e3779b97f4a7c15ull + 0x5851f42d4c957f2dull * (uint64_t)(step + 1));
}

/* The CPU backend (always available). Returns a static, ready instance. */
vl_backend *vl_backend_cpu(void);

/* ---- the CUDA backend's configuration ---------------------------------------------------------
 * Read once, when the backend is created (vl_backend_cuda): every tuning knob of kernels/ lives
 * here, none in the environment. The defaults (vl_cuda_config_init, or a NULL config) are what
 * the engine runs; the rest are for benchmarks and tests. Keys of vl_cuda_config_set in quotes. */
typedef struct {
    int device;    /* "device": the CUDA device ordinal (default 0) */
    int no_graphs; /* "no_graphs": 1 leaves graph_begin..graph_free NULL, so the engine runs each
                    * decode step eagerly instead of replaying a CUDA graph (default 0) */
    int gemv_bf16; /* "gemv_bf16": 1 (default) sends every m = 1 bf16 product the bf16 GEMV takes
                    * there (cuda_gemv_bf16.cu); 0: the general GEMV (cuda_gemv.cu) instead */
    int gemv_bf16_splits;     /* "gemv_bf16_splits": warps per row of the bf16 GEMV: 0 (default)
                               * chosen per shape; 1, 2, 4 or 8 forced */
    int gemv_quant_m1;        /* "gemv_quant_m1": the m = 1 quantized GEMV (cuda_gemv_quant_m1.cu):
                               * -1 (default) where it measured faster (Q8ROW rows of K >= 8192
                               * the lean GEMV does not take); 1 for every NF4 / Q8ROW product
                               * it takes; 0 never */
    int gemv_quant_m1_splits; /* "gemv_quant_m1_splits": its warps per row pair, as above */
    int gemv_rows16;          /* "gemv_rows16": 1 (default) sends NF4 / Q8ROW products of 9 to
                               * 16 rows of x to the GEMV with two x tiles (W read once);
                               * 0: two 8-row passes (with quant_gemv_rows). bf16 goes to
                               * cuBLAS above 8 rows either way (faster there) */
    int gemv_row_tiles;       /* "gemv_row_tiles": 16-row tiles of W per warp in the GEMV of 9
                               * to 16 rows of x: 1, or 2 (each x load serves twice the weights;
                               * 3 CTAs an SM), or 3 (default: two, under a 4-CTA register
                               * bound; int8 as 2, it would spill) */
    int gemv_nf4_regs;        /* "gemv_nf4_regs": NF4 dequantization in the lean GEMV (up to 8
                               * rows of x): of each 16-byte chunk's 4 words (32 weights), how many
                               * are looked up in registers (the block's 16 weights as byte
                               * planes, byte permutes), the rest in the shared-memory table
                               * (a load and a multiply per weight): 0..4 (default 4) */
    int pdl;                  /* "pdl": 1 (default) launches the decode GEMVs (the lean and the
                               * bf16 ones) and the decode attention's combine as programmatic
                               * dependents of the kernel before them on sm_90 (cuda_pdl.cuh:
                               * the GEMVs' first weights come in, the combine's launch happens,
                               * while it finishes; an ordinary launch below sm_90); 0: ordinary
                               * launches */
    int gemv_lean;            /* "gemv_lean": 1 (default) runs NF4 / Q8ROW products of up to
                               * 8 rows of x with K a multiple of 256 (NF4) or 128 (Q8ROW) on
                               * the lean GEMV (cuda_gemv_lean.cu: a 64-weight block a lane a
                               * step, no per-step bounds or index arithmetic); 0: cuda_gemv.cu's */
    int quant_gemv_rows;      /* "quant_gemv_rows": NF4 / Q8ROW products of 9 to N rows of x (a
                               * batched decode step) run the GEMV 8 rows at a time, reading the
                               * packed W m / 8 times, instead of the dequant GEMM, whose bf16
                               * slices cost more than that at such m; 0: never; default 32 */
    int dq_slice_rows;        /* "dq_slice_rows": rows of W per bf16 slice of the dequant GEMM
                               * (prefill of NF4 / Q8ROW weights), at most what a 32 MiB slice
                               * buffer holds; 0 (default): its rule (cuda_dequant_gemm.cu) */
    int dq_wgmma;             /* "dq_wgmma": 1 runs the dequant GEMM on a compute capability 9.0
                               * device as one Hopper kernel whose tensor-core warps convert W's
                               * codes in registers (cuda_dequant_gemm_wgmma.cu), where it takes
                               * the shape; 0 (default): bf16 slices and cuBLASLt, measured faster
                               * on an H100 (S28, bench/RESULTS.md) */
    int dq_overlap;           /* "dq_overlap": 1 (default) dequantizes the dequant GEMM's next
                               * slice on a second stream while the GEMM of the last runs; 0:
                               * each slice just before its GEMM, on the one stream */
    int attn_decode_splits;   /* "attn_decode_splits": split-KV decode: 0 (default) one wave of
                               * the GPU; N > 0 forces N splits before the length and workspace
                               * caps */
    int attn_decode_waves;    /* "attn_decode_waves": the CTAs of a runtime-length decode (a
                               * graph's) walk its split slots in at most N waves (default 1) */
    int attn_decode_tail;     /* "attn_decode_tail": 1 (default) the last CTA of a decode head
                               * tile combines plans of a few splits; 0: the second kernel
                               * combines every plan (the same bits, one launch more) */
    int attn_prefill_wgmma;   /* "attn_prefill_wgmma": prefill attention on a compute
                               * capability 9.0 device takes the Hopper kernel (wgmma + TMA)
                               * where it applies: 2 with the two consumer warpgroups'
                               * products in turn (pingpong), 3 (default) that plus each
                               * softmax beside its own consumer's P.V (causal calls; the
                               * others run 2), 1 without turns; 0 keeps the mma.sync kernel
                               * (sm_80's) for every call */
    int attn_prefill_rows;    /* "attn_prefill_rows": query rows per prefill CTA: 0 (default)
                               * 64 for calls of <= 64 rows, else 128; 64 or 128 forced */
    long profile_step;        /* "profile_step": N > 0 brackets the Nth graph replay (from 1) with
                               * cudaProfilerStart / Stop, so `ncu --profile-from-start off` times the
                               * kernels of exactly one decode step; 0 (default) never */
} vl_cuda_config;

/* The defaults above. */
void vl_cuda_config_init(vl_cuda_config *c);
/* One "key=value" setting (the keys above; integers in decimal): 0, or -1 and one line in `why`
 * (if non-NULL) naming the key or value and what is accepted. vlrun's and vlbench's --cuda-opt.
 * (kernels/ sits below loader/error.c, so the caller records the line with vl_error_set.) */
int vl_cuda_config_set(vl_cuda_config *c, const char *key_eq_value, char *why, size_t why_len);

/* A CUDA backend on cfg->device (cfg NULL: the defaults): its own stream, cuBLAS handles,
 * workspaces and device facts, so several may exist at once (on one device or several). NULL
 * and a message in `why` (if non-NULL) when the device is not usable or the build has no CUDA.
 * Ops of one backend must not be called from two threads at once. */
vl_backend *vl_backend_cuda(const vl_cuda_config *cfg, char *why, size_t why_len);

/* Releases a backend from vl_backend_cuda (its workspaces, streams and handles; memory it
 * handed out with mem_alloc must be freed first). The CPU backend and NULL: nothing. */
void vl_backend_free(vl_backend *b);

#ifdef __cplusplus
}
#endif
#endif
