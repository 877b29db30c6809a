/* attn_limits.c: whether the CUDA backend runs a model's attention shape (vl_cuda_check_attention,
 * kernels.h), from the limits of its compiled kernels alone. Plain C in every build, so the
 * engine can refuse a model right after parsing its config, before loading anything and before
 * (or without) opening a device; the kernels check the same limits again on every call
 * (vl_cuda_attention_supported, the rotary's shape check).
 * Leaves out: sizes that only memory bounds (the planner refuses those) and shapes the config
 * parser already refuses for every backend (heads not a multiple of kv heads, odd rotary dims).
 */
#include "kernels/kernels.h"

#include <stdarg.h>
#include <stdio.h>

static int refuse(char *why, size_t why_len, const char *fmt, ...) {
    if (why && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int vl_cuda_check_attention(const vl_attn_shape *s, char *why, size_t why_len) {
    if (s->n_heads < 1 || s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads != 0)
        return refuse(why, why_len,
                      "%d query heads over %d kv heads: the CUDA attention needs a "
                      "whole number of query heads per kv head",
                      s->n_heads, s->n_kv_heads);
    if (s->n_heads > VL_CUDA_MAX_HEADS)
        return refuse(why, why_len,
                      "%d heads is above %d, the most the CUDA attention kernels take (a grid "
                      "dimension); use --backend cpu",
                      s->n_heads, VL_CUDA_MAX_HEADS);
    if (s->head_dim < 1 || s->head_dim > VL_CUDA_ROPE_MAX_HEAD_DIM)
        return refuse(why, why_len,
                      "head_dim %d is outside 1..%d, the head dims the CUDA rotary kernels take; "
                      "use --backend cpu",
                      s->head_dim, VL_CUDA_ROPE_MAX_HEAD_DIM);
    if (!s->naive && s->head_dim > VL_CUDA_ATTN_MAX_HEAD_DIM)
        return refuse(why, why_len,
                      "head_dim %d is above %d, the largest the CUDA flash attention kernels "
                      "take; use --attn naive (any head dim up to %d) or --backend cpu",
                      s->head_dim, VL_CUDA_ATTN_MAX_HEAD_DIM, VL_CUDA_ROPE_MAX_HEAD_DIM);
    return 0;
}
