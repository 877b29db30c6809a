/* cuda_attention_dispatch.cu: the checked entry points of GPU attention (cuda_internal.h): which
 * parameters the kernels take, how much workspace they need, and the one place that turns a call
 * into a kernel choice (decode for a single query, prefill otherwise; head_dim and the prefill tile
 * height become template parameters there). Also the backend's attention_naive op (--attn
 * naive), which checks its parameters and runs vl_cuda_attention_naive on the backend stream.
 * Nothing on these paths reads device memory or synchronizes, so a call can be captured into a
 * CUDA graph (n_past_dev is read by the kernels).
 * A paged pool (pages, batch) goes to the decode kernel (one query per sequence); a prefill chunk
 * over pages is not supported (the engine gathers the sequence first, kv_gather). An int8 cache
 * (k_scale) in plain rows goes to every kernel: decode, and the two prefill kernels, which turn
 * its codes into bf16(code * scale) tiles in shared memory (no dequantized copy in memory).
 * Every head dim up to 128 and any row alignment are supported (the fast and the element paths
 * of cuda_attention_mma.cuh); vl_backend_check_attention (backend_caps.c) states the same limits to
 * the engine, which refuses a model beyond them before loading it. Leaves out: any fallback when
 * the parameters are not supported (the engine's check keeps such calls from happening; the backend
 * aborts on one as a broken invariant).
 */
#include "kernels/cuda_attention_mma.cuh"
#include "kernels/cuda_ops.h"

#include <stdlib.h>
#include <string.h>

/* Query rows per prefill CTA: 128 (2 m16 tiles per warp: every K/V fragment read from shared
 * memory feeds two MMAs) unless the whole call has 64 rows or fewer. The backend's
 * attn_prefill_rows (64 or 128) overrides it, for benchmarking only. */
static int prefill_rows(const vl_cuda_ctx *c, int64_t n_q) {
    if (c->cfg.attn_prefill_rows) return c->cfg.attn_prefill_rows;
    return n_q <= 64 ? 64 : 128;
}

/* A paged pool (p->pages) is read by the decode kernel only: one query of one sequence, or with
 * batch one query per sequence (each with its runtime length and table row). */
static int paged_supported(const vl_attn_params *p) {
    const vl_kv_pages *pg = &p->pages;
    if (pg->table == NULL) return !p->batch; /* a batch needs tables */
    if (pg->block_tokens <= 0 || (pg->block_tokens & (pg->block_tokens - 1)) != 0) return 0;
    if ((uintptr_t)pg->table % 4 || pg->block_stride < 0 || pg->scale_block_stride < 0) return 0;
    if (!p->batch) return p->n_q <= 1;
    const int group = p->n_heads / p->n_kv_heads;
    return p->causal && p->n_seg == 0 && p->n_past_dev != NULL && p->n_q >= 1 &&
           p->pages.table_stride >= (p->n_kv + pg->block_tokens - 1) / pg->block_tokens &&
           p->n_q * ((group + 15) / 16) <= 65535; /* grid dimension */
}

int vl_cuda_attention_supported(const vl_attn_params *p) {
    if (p == NULL) return 0;
    const int d = p->head_dim; /* fast or element path: cuda_attention_mma.cuh */
    if (d < 1 || d > vl_attn::kMaxHeadDim) return 0;
    if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0) return 0;
    if (p->n_heads > VL_CUDA_MAX_HEADS) return 0; /* grid dimension */
    /* positions are int inside the kernels; query blocks of 64 rows are a grid dimension */
    const int64_t big = (int64_t)1 << 30;
    if (p->n_q < 0 || p->n_q > (int64_t)65535 * 64 || p->n_kv < 0 || p->n_kv > big) return 0;
    if (p->n_q > 0 && p->n_kv == 0) return 0;
    if (!(p->scale > 0.0f) || p->scale > 1e30f) return 0; /* the max of q.k is the max of s */
    if (p->n_kv_heads > 0 && !paged_supported(p)) return 0;
    if (p->n_past_dev != NULL) {
        /* runtime length: causal, no segments, and the bound holds at least the new queries */
        if (!p->causal || p->n_seg != 0 || p->n_kv < (p->batch ? 1 : p->n_q)) return 0;
    } else if (p->causal && (p->q_pos0 < 0 || p->q_pos0 > big)) {
        return 0;
    }
    if (p->n_seg < 0 || (p->n_seg > 0 && (p->seg_starts == NULL || p->n_q != p->n_kv))) return 0;
    /* bf16 elements sit on 2-byte boundaries; rows may sit anywhere (the element path) */
    if ((uintptr_t)p->q % 2 || (uintptr_t)p->o % 2) return 0;
    if (p->k_scale != NULL || p->v_scale != NULL) {
        /* an int8 cache (the text layers': no segments), 4-byte scales; the prefill kernels
         * read it in plain rows, the decode kernel in plain rows or pages */
        if (p->k_scale == NULL || p->v_scale == NULL || p->n_seg != 0) return 0;
        if ((uintptr_t)p->k_scale % 4 || (uintptr_t)p->v_scale % 4 || p->kv_scale_head_stride < 0)
            return 0;
        return 1;
    }
    return (uintptr_t)p->k % 2 == 0 && (uintptr_t)p->v % 2 == 0;
}

/* The fast path: a multiple of 8 whose rows can move 16 bytes at a time (int8 cache rows: 16
 * bytes, or 8 when head_dim is not a multiple of 16); the element path takes the rest. */
int vl_attn_fast_rows(const vl_attn_params *p) {
    const int d = p->head_dim;
    if (d % 8 != 0 || !vl_cuda_aligned16(p->q) || !vl_cuda_aligned16(p->o) || p->q_stride % 8 ||
        p->o_stride % 8)
        return 0;
    const int64_t cb = p->k_scale == NULL ? 16 : d % 16 == 0 ? 16 : 8; /* bytes per copy */
    const int64_t esz = p->k_scale == NULL ? 2 : 1;                    /* bytes per element */
    return (uintptr_t)p->k % cb == 0 && (uintptr_t)p->v % cb == 0 &&
           (p->kv_tok_stride * esz) % cb == 0 && (p->kv_head_stride * esz) % cb == 0 &&
           (p->pages.block_stride * esz) % cb == 0;
}

/* The decode partials at the most splits: independent of n_q and n_kv, so one call at planning
 * time covers every later step. Prefill needs none. A batch holds those of its n_q sequences. */
size_t vl_cuda_attention_workspace_bytes(const vl_attn_params *p) {
    if (p == NULL || p->n_heads <= 0 || p->head_dim <= 0) return 0;
    const size_t n_seq = p->batch && p->n_q > 1 ? (size_t)p->n_q : 1;
    return n_seq * (size_t)vl_attn::kMaxSplits * (size_t)p->n_heads *
           (size_t)(decode_ws_row(p->head_dim) + 1) * sizeof(float);
}

void vl_cuda_attention(vl_backend *b, const vl_attn_params *p, void *workspace,
                       size_t workspace_bytes, cudaStream_t stream) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    if (!vl_cuda_attention_supported(p))
        vl_cuda_fatal("vl_cuda_attention", __FILE__, __LINE__,
                      "parameters not supported (the caller must check "
                      "vl_cuda_attention_supported)");
    if (p->n_q == 0) return;
    if (p->n_q == 1 || p->batch)
        vl_attn_decode_launch(c, p, workspace, workspace_bytes, stream);
    else if (!vl_attn_prefill_wgmma(c, p, stream))
        vl_attn_prefill_launch(c, p, prefill_rows(c, p->n_q), stream);
}

int vl_cuda_attention_uses_wgmma(vl_backend *b, const vl_attn_params *p) {
    return vl_cuda_attention_supported(p) && vl_attn_wgmma_takes(vl_cuda_ctx_of(b), p);
}

/* The --attn naive table entry: the same contract as attention (kernels.h), any head_dim and
 * alignment (scalar loads); scores holds n_heads * n_q * n_kv floats (n_kv: the bound when
 * n_past_dev is set). */
void vl_cuda_attention_naive_op(vl_backend *b, const vl_attn_params *p, float *scores) {
    VL_CUDA_REQUIRE(p->n_heads > 0 && p->n_kv_heads > 0 && p->n_heads % p->n_kv_heads == 0 &&
                        p->n_heads <= 65535,
                    "attention_naive: %d query heads over %d kv heads", p->n_heads, p->n_kv_heads);
    VL_CUDA_REQUIRE(p->head_dim > 0 && p->n_q >= 0 && (p->n_q == 0 || p->n_kv > 0) &&
                        p->n_kv <= ((int64_t)1 << 30) && (p->n_q + 15) / 16 <= 65535,
                    "attention_naive: head_dim %d, n_q %lld, n_kv %lld", p->head_dim,
                    (long long)p->n_q, (long long)p->n_kv);
    VL_CUDA_REQUIRE(p->n_past_dev == NULL || (p->causal && p->n_seg == 0 && p->n_kv >= p->n_q),
                    "attention_naive: n_past_dev needs causal, no segments and n_kv (the bound "
                    "%lld) >= n_q (%lld)",
                    (long long)p->n_kv, (long long)p->n_q);
    VL_CUDA_REQUIRE(p->n_past_dev != NULL || !p->causal || p->q_pos0 >= 0,
                    "attention_naive: causal with q_pos0 %lld", (long long)p->q_pos0);
    VL_CUDA_REQUIRE(p->n_seg >= 0 && (p->n_seg == 0 || (p->seg_starts && p->n_q == p->n_kv)),
                    "attention_naive: %d segments need seg_starts and n_q == n_kv (%lld, %lld)",
                    p->n_seg, (long long)p->n_q, (long long)p->n_kv);
    VL_CUDA_REQUIRE(scores != NULL || p->n_q == 0, "attention_naive: no score buffer");
    VL_CUDA_REQUIRE(p->k_scale == NULL && p->v_scale == NULL,
                    "attention_naive: an int8 cache is not supported (a bf16 cache only)");
    VL_CUDA_REQUIRE(p->pages.table == NULL && !p->batch,
                    "attention_naive: a paged cache must be gathered first (kv_gather)");
    vl_cuda_attention_naive(p, scores, vl_cuda_ctx_of(b)->stream);
}
