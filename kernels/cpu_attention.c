/* cpu_attention.c: the CPU twin of attention (kernels.h, vl_attn_params), one query row and
 * head at a time.
 *
 * For query i, head h (kv head g = h / (n_heads / n_kv_heads)) and its visible keys [lo, hi):
 *   [lo, hi) = [0, n_kv), narrowed to the segment holding i when n_seg > 0 (block diagonal),
 *              and to keys j <= q_pos0 + i when causal (both may apply);
 *   s_j = dot(q_i, k_j) * scale                 float32, lane-interleaved dot
 *   p_j = exp(s_j - max s) / sum exp(s - max s)  float32 softmax
 *   o_i = sum_j p_j v_j                          float32, summed in blocks of OUT_BLOCK keys
 * The scores of one row live in a scratch row of n_kv floats, so memory does not grow with
 * n_q * n_kv. Every query row has at least one visible key (itself, or key 0), so the softmax
 * is never empty.
 * Leaves out: sliding windows, dropout, attention sinks and any tiling (one pass per row).
 */
#include "kernels/cpu_internal.h"

#include <math.h>
#include <string.h>

/* Keys per partial sum of P.V: the rounding error of o grows like OUT_BLOCK + n_kv / OUT_BLOCK
 * instead of n_kv, the same two-level idea as the lanes of the dot product. */
#define OUT_BLOCK 64

/* Index s of the segment holding token i: seg[s] <= i < seg[s + 1] (binary search). */
static int segment_of(const int32_t *seg, int n_seg, int64_t i) {
    int lo = 0, hi = n_seg; /* seg[lo] <= i < seg[hi] */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (seg[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void check_params(const vl_attn_params *p) {
    VL_CPU_REQUIRE(p->n_heads > 0 && p->n_kv_heads > 0 && p->n_heads % p->n_kv_heads == 0,
                   "%d query heads over %d kv heads", p->n_heads, p->n_kv_heads);
    VL_CPU_REQUIRE(p->head_dim > 0 && p->n_q >= 0 && (p->n_q == 0 || p->n_kv > 0),
                   "head_dim %d, n_q %lld, n_kv %lld", p->head_dim, (long long)p->n_q,
                   (long long)p->n_kv);
    VL_CPU_REQUIRE(!p->causal || p->q_pos0 >= 0, "causal with q_pos0 %lld", (long long)p->q_pos0);
    if (p->n_seg > 0) {
        VL_CPU_REQUIRE(p->n_q == p->n_kv, "segments need n_q == n_kv, got %lld and %lld",
                       (long long)p->n_q, (long long)p->n_kv);
        VL_CPU_REQUIRE(p->seg_starts[0] == 0 && p->seg_starts[p->n_seg] == p->n_kv,
                       "segments must cover [0, %lld)", (long long)p->n_kv);
        for (int s = 0; s < p->n_seg; s++)
            VL_CPU_REQUIRE(p->seg_starts[s] <= p->seg_starts[s + 1],
                           "segment %d ends before it starts", s);
    }
}

/* o for one (query row, head) pair; scores: n_kv floats, block/total: head_dim floats each. */
static void attend_one(const vl_attn_params *p, int64_t i, int h, float *scores, float *block,
                       float *total) {
    const int D = p->head_dim;
    const int g = h / (p->n_heads / p->n_kv_heads);
    const float *q = (const float *)p->q + i * p->q_stride + (int64_t)h * D;
    const float *k = (const float *)p->k + (int64_t)g * p->kv_head_stride;
    const float *v = (const float *)p->v + (int64_t)g * p->kv_head_stride;
    float *o = (float *)p->o + i * p->o_stride + (int64_t)h * D;

    int64_t lo = 0, hi = p->n_kv;
    if (p->n_seg > 0) {
        int s = segment_of(p->seg_starts, p->n_seg, i);
        lo = p->seg_starts[s];
        hi = p->seg_starts[s + 1];
    }
    if (p->causal && p->q_pos0 + i + 1 < hi) hi = p->q_pos0 + i + 1;
    const int64_t n = hi - lo;

    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        scores[j] = vl_cpu_dot(q, k + (lo + j) * p->kv_tok_stride, D) * p->scale;
        if (scores[j] > max) max = scores[j];
    }
    for (int64_t j = 0; j < n; j++) scores[j] = expf(scores[j] - max);
    const float sum = vl_cpu_sum(scores, n);
    for (int64_t j = 0; j < n; j++) scores[j] /= sum;

    memset(total, 0, (size_t)D * sizeof(float));
    for (int64_t j0 = 0; j0 < n; j0 += OUT_BLOCK) {
        memset(block, 0, (size_t)D * sizeof(float));
        int64_t j1 = j0 + OUT_BLOCK < n ? j0 + OUT_BLOCK : n;
        for (int64_t j = j0; j < j1; j++) {
            const float *vj = v + (lo + j) * p->kv_tok_stride;
            for (int d = 0; d < D; d++) block[d] += scores[j] * vj[d];
        }
        for (int d = 0; d < D; d++) total[d] += block[d];
    }
    memcpy(o, total, (size_t)D * sizeof(float));
}

/* Items are (query row, head) pairs, item = i * n_heads + h. */
static void attention_slice(void *ctx, int64_t begin, int64_t end) {
    const vl_attn_params *p = ctx;
    float *scores = vl_cpu_scratch(p->n_kv + 2 * (int64_t)p->head_dim);
    float *block = scores + p->n_kv, *total = block + p->head_dim;
    for (int64_t item = begin; item < end; item++)
        attend_one(p, item / p->n_heads, (int)(item % p->n_heads), scores, block, total);
    free(scores);
}

void vl_cpu_attention(vl_backend *b, const vl_attn_params *p) {
    check_params(p);
    /* work: q.k and p.v for every visible key, bounded by all n_kv keys */
    double work = 2.0 * (double)p->n_q * (double)p->n_kv * p->n_heads * p->head_dim;
    vl_cpu_parallel(p->n_q * p->n_heads, work, attention_slice, (void *)p);
}
