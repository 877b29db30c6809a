/* attn_dispatch.cu: the checked entry points of GPU attention (cuda_internal.h): which parameters
 * the kernels take, how much workspace they need, and the one place that turns a call into a
 * kernel choice (decode for a single query, prefill otherwise; head_dim and the prefill tile
 * height become template parameters there).
 * Leaves out: any fallback when the parameters are not supported; the backend checks
 * vl_cuda_attention_supported first and reports the error to the user.
 */
#include "kernels/attn_mma.cuh"

#include <stdlib.h>
#include <string.h>

/* Query rows per prefill CTA: 128 (2 m16 tiles per warp: every K/V fragment read from shared
 * memory feeds two MMAs) unless the whole call has 64 rows or fewer. VL_ATTN_PREFILL_ROWS=64|128
 * overrides it, for benchmarking only. */
static int prefill_rows(int64_t n_q) {
    static const int forced = [] {
        const char *e = getenv("VL_ATTN_PREFILL_ROWS");
        if (e && strcmp(e, "64") == 0) return 64;
        if (e && strcmp(e, "128") == 0) return 128;
        return 0;
    }();
    if (forced) return forced;
    return n_q <= 64 ? 64 : 128;
}

static int aligned16(const void *ptr) {
    return ((uintptr_t)ptr & 15u) == 0;
}

int vl_cuda_attention_supported(const vl_attn_params *p) {
    if (p == NULL) return 0;
    const int d = p->head_dim;
    if (d != 64 && d != 80 && d != 96 && d != 128) return 0;
    if (p->n_heads <= 0 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads != 0) return 0;
    if (p->n_heads > 65535) return 0; /* grid dimension */
    /* positions are int inside the kernels; query blocks of 64 rows are a grid dimension */
    const int64_t big = (int64_t)1 << 30;
    if (p->n_q < 0 || p->n_q > (int64_t)65535 * 64 || p->n_kv < 0 || p->n_kv > big) return 0;
    if (p->n_q > 0 && p->n_kv == 0) return 0;
    if (!(p->scale > 0.0f) || p->scale > 1e30f) return 0; /* the max of q.k is the max of s */
    if (p->causal && (p->q_pos0 < 0 || p->q_pos0 > big)) return 0;
    if (p->n_seg < 0 || (p->n_seg > 0 && (p->seg_starts == NULL || p->n_q != p->n_kv))) return 0;
    /* 16-byte vector loads and stores of rows */
    if (!aligned16(p->q) || !aligned16(p->k) || !aligned16(p->v) || !aligned16(p->o)) return 0;
    if (p->q_stride % 8 || p->o_stride % 8 || p->kv_tok_stride % 8 || p->kv_head_stride % 8)
        return 0;
    return 1;
}

/* The decode partials at the most splits: independent of n_q and n_kv, so one call at planning
 * time covers every later step. Prefill needs none. */
size_t vl_cuda_attention_workspace_bytes(const vl_attn_params *p) {
    if (p == NULL || p->n_heads <= 0 || p->head_dim <= 0) return 0;
    return (size_t)vl_attn::kMaxSplits * (size_t)p->n_heads * (size_t)(p->head_dim + 1) *
           sizeof(float);
}

void vl_cuda_attention(const vl_attn_params *p, void *workspace, size_t workspace_bytes,
                       cudaStream_t stream) {
    if (!vl_cuda_attention_supported(p))
        vl_cuda_fatal("vl_cuda_attention", __FILE__, __LINE__,
                      "parameters not supported (the caller must check "
                      "vl_cuda_attention_supported)");
    if (p->n_q == 0) return;
    if (p->n_q == 1)
        vl_attn_decode_launch(p, workspace, workspace_bytes, stream);
    else
        vl_attn_prefill_launch(p, prefill_rows(p->n_q), stream);
}
