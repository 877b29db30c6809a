/* backend_caps.c: what each backend kind supports (vl_backend_caps_of, kernels.h) and whether it
 * runs a model's attention shape (vl_backend_check_attention), from the limits of its compiled
 * kernels alone. Plain C in every build, so the engine can refuse a model right after parsing its
 * config, before loading anything and before (or without) opening a device; the CUDA kernels
 * check the same limits again on every call (vl_cuda_attention_supported, the rotary's shape
 * check).
 * Leaves out: sizes that only memory bounds (the planner refuses those) and shapes the config
 * parser already refuses for every backend (heads not a multiple of kv heads, odd rotary dims).
 */
#include "kernels/kernels.h"
#include "kernels/say.h"

#include <stdio.h>

/* Named (not static) so that each backend's table can point at its own in an initializer. */
extern const vl_backend_caps vl_caps_cpu, vl_caps_cuda;

const vl_backend_caps vl_caps_cpu = {
    .kind = VL_BACKEND_CPU,
    .name = "cpu",
    .act = VL_DTYPE_F32,
    .weight_formats = VL_CAP_WEIGHT(VL_DTYPE_F32) | VL_CAP_WEIGHT(VL_DTYPE_F16) |
                      VL_CAP_WEIGHT(VL_DTYPE_BF16) | VL_CAP_WEIGHT(VL_DTYPE_NF4) |
                      VL_CAP_WEIGHT(VL_DTYPE_Q8ROW),
    .naive_attention = 1,
    .quantize = 1,
    .fill_random = 1,
    .paged_kv = 1,
};

const vl_backend_caps vl_caps_cuda = {
    .kind = VL_BACKEND_CUDA,
    .name = "cuda",
    .act = VL_DTYPE_BF16,
    .max_head_dim = VL_CUDA_ATTN_MAX_HEAD_DIM,
    .max_rope_head_dim = VL_CUDA_ROPE_MAX_HEAD_DIM,
    .max_heads = VL_CUDA_MAX_HEADS,
    /* F32 / F16 checkpoints are converted to BF16 when the engine copies them to the device */
    .weight_formats =
        VL_CAP_WEIGHT(VL_DTYPE_BF16) | VL_CAP_WEIGHT(VL_DTYPE_NF4) | VL_CAP_WEIGHT(VL_DTYPE_Q8ROW),
    .naive_attention = 1,
    .graphs = 1,
    .quantize = 1,
    .fill_random = 1,
    .host_mapped = 1,
    .paged_kv = 1,
    .workspace_bytes = VL_CUDA_WORKSPACE_BYTES,
};

const vl_backend_caps *vl_backend_caps_of(vl_backend_kind kind) {
    return kind == VL_BACKEND_CPU ? &vl_caps_cpu : &vl_caps_cuda;
}

/* The messages name the CUDA kernels: the only backend with limits. */
int vl_backend_check_attention(const vl_backend_caps *caps, const vl_attn_shape *s, char *why,
                               size_t why_len) {
    if (!caps->max_heads && !caps->max_head_dim && !caps->max_rope_head_dim) return 0;
    if (s->n_heads < 1 || s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads != 0)
        return vl_say(why, why_len,
                      "%d query heads over %d kv heads: the CUDA attention needs a "
                      "whole number of query heads per kv head",
                      s->n_heads, s->n_kv_heads);
    if (caps->max_heads && s->n_heads > caps->max_heads)
        return vl_say(why, why_len,
                      "%d heads is above %d, the most the CUDA attention kernels take (a grid "
                      "dimension); use --backend cpu",
                      s->n_heads, caps->max_heads);
    if (caps->max_rope_head_dim && (s->head_dim < 1 || s->head_dim > caps->max_rope_head_dim))
        return vl_say(why, why_len,
                      "head_dim %d is outside 1..%d, the head dims the CUDA rotary kernels take; "
                      "use --backend cpu",
                      s->head_dim, caps->max_rope_head_dim);
    if (!s->naive && caps->max_head_dim && s->head_dim > caps->max_head_dim)
        return vl_say(why, why_len,
                      "head_dim %d is above %d, the largest the CUDA flash attention kernels "
                      "take; use --attn naive (any head dim up to %d) or --backend cpu",
                      s->head_dim, caps->max_head_dim, caps->max_rope_head_dim);
    return 0;
}
