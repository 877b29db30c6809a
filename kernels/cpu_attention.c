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
 * n_past_dev (runtime cache length) is read directly: CPU backend memory is host memory.
 * An int8 cache (k_scale set) is read as q * scale in fp32, row by row.
 * A paged cache (pages.table set) is read through the block table (vl_cpu_kv_at), the same
 * arithmetic on the same rows; with batch, query i is sequence i's next token (its own table row
 * and length n_past_dev[i] + 1 keys), exactly a single-query call on that sequence.
 * vl_cpu_attention_naive (--attn naive) runs the same arithmetic in the eager order: all scores
 * into the caller's [H, n_q, n_kv] matrix, then every row's softmax, then P.V; so its results
 * have exactly the bits of vl_cpu_attention.
 * Leaves out: sliding windows, dropout, attention sinks, any tiling (one pass per row) and a
 * batch in the eager order (naive takes pages of one sequence only).
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

/* batch: query i is the next token of sequence i, at n_past_dev[i], through table row i. */
static void check_batch(const vl_attn_params *p) {
    VL_CPU_REQUIRE(p->causal && p->n_seg == 0 && p->n_past_dev && p->pages.table,
                   "batched attention needs causal, no segments, n_past_dev and a block table");
    for (int64_t i = 0; i < p->n_q; i++) {
        const int64_t past = p->n_past_dev[i];
        VL_CPU_REQUIRE(past >= 0 && past < p->n_kv,
                       "n_past_dev[%lld] = %lld exceeds the bound n_kv %lld", (long long)i,
                       (long long)past, (long long)p->n_kv);
        vl_cpu_check_pages(&p->pages, p->pages.table + i * p->pages.table_stride, past + 1, 1);
    }
}

/* The parameters with the cache length written in: with n_past_dev, q_pos0 = n_past_dev[0] and
 * n_kv = q_pos0 + n_q, which must fit the bound p->n_kv. Then checked. A batch keeps its
 * n_past_dev (each query has its own length, key_range reads it) and n_kv as the bound. */
static vl_attn_params resolved(const vl_attn_params *p) {
    vl_attn_params r = *p;
    if (p->batch) {
        check_batch(p);
    } else if (p->n_past_dev) {
        VL_CPU_REQUIRE(p->causal && p->n_seg == 0, "n_past_dev needs causal attention without "
                                                   "segments");
        const int64_t past = p->n_past_dev[0];
        VL_CPU_REQUIRE(past >= 0 && past + p->n_q <= p->n_kv,
                       "n_past_dev[0] = %lld with %lld queries exceeds the bound n_kv %lld",
                       (long long)past, (long long)p->n_q, (long long)p->n_kv);
        r.q_pos0 = past;
        r.n_kv = past + p->n_q;
        r.n_past_dev = NULL;
    }
    check_params(&r);
    if (r.pages.table && !r.batch) vl_cpu_check_pages(&r.pages, r.pages.table, r.n_kv, 0);
    return r;
}

/* Keys [*lo, *hi) visible to query row i. */
static void key_range(const vl_attn_params *p, int64_t i, int64_t *lo, int64_t *hi) {
    *lo = 0, *hi = p->n_kv;
    if (p->n_seg > 0) {
        int s = segment_of(p->seg_starts, p->n_seg, i);
        *lo = p->seg_starts[s];
        *hi = p->seg_starts[s + 1];
    }
    if (p->batch)
        *hi = p->n_past_dev[i] + 1;
    else if (p->causal && p->q_pos0 + i + 1 < *hi)
        *hi = p->q_pos0 + i + 1;
}

/* The block table row of query i's sequence: NULL for a contiguous cache, row i in a batch. */
static const int32_t *table_of(const vl_attn_params *p, int64_t i) {
    if (!p->pages.table) return NULL;
    return p->pages.table + (p->batch ? i * p->pages.table_stride : 0);
}

/* Row j of kv head g of K (v = 0) or V (v = 1) of the sequence with block table row tbl (NULL:
 * contiguous) as floats: a pointer into the cache or, for an int8 cache, its values q * scale
 * written into tmp (head_dim floats). */
static const float *kv_row(const vl_attn_params *p, const int32_t *tbl, int v, int g, int64_t j,
                           float *tmp) {
    int64_t sat;
    const int64_t at = vl_cpu_kv_at(&p->pages, tbl, g, j, p->kv_head_stride, p->kv_tok_stride,
                                    p->kv_scale_head_stride, &sat);
    if (!p->k_scale) return (const float *)(v ? p->v : p->k) + at;
    const int8_t *q = (const int8_t *)(v ? p->v : p->k) + at;
    const float sc = (v ? p->v_scale : p->k_scale)[sat];
    for (int d = 0; d < p->head_dim; d++) tmp[d] = (float)q[d] * sc;
    return tmp;
}

/* The three steps for query row i, head h over its n visible keys from lo; the attention of one
 * row is row_scores, row_softmax, row_output on the same n floats. tmp: head_dim floats. */
static void row_scores(const vl_attn_params *p, int64_t i, int h, int64_t lo, int64_t n,
                       float *scores, float *tmp) {
    const int D = p->head_dim, g = h / (p->n_heads / p->n_kv_heads);
    const float *q = (const float *)p->q + i * p->q_stride + (int64_t)h * D;
    const int32_t *tbl = table_of(p, i);
    for (int64_t j = 0; j < n; j++)
        scores[j] = vl_cpu_dot(q, kv_row(p, tbl, 0, g, lo + j, tmp), D) * p->scale;
}

static void row_softmax(float *scores, int64_t n) {
    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (scores[j] > max) max = scores[j];
    for (int64_t j = 0; j < n; j++) scores[j] = expf(scores[j] - max);
    const float sum = vl_cpu_sum(scores, n);
    for (int64_t j = 0; j < n; j++) scores[j] /= sum;
}

/* block/total/tmp: head_dim floats of scratch each. */
static void row_output(const vl_attn_params *p, int64_t i, int h, int64_t lo, int64_t n,
                       const float *probs, float *block, float *total, float *tmp) {
    const int D = p->head_dim, g = h / (p->n_heads / p->n_kv_heads);
    float *o = (float *)p->o + i * p->o_stride + (int64_t)h * D;
    const int32_t *tbl = table_of(p, i);
    memset(total, 0, (size_t)D * sizeof(float));
    for (int64_t j0 = 0; j0 < n; j0 += OUT_BLOCK) {
        memset(block, 0, (size_t)D * sizeof(float));
        int64_t j1 = j0 + OUT_BLOCK < n ? j0 + OUT_BLOCK : n;
        for (int64_t j = j0; j < j1; j++) {
            const float *vj = kv_row(p, tbl, 1, g, lo + j, tmp);
            for (int d = 0; d < D; d++) block[d] += probs[j] * vj[d];
        }
        for (int d = 0; d < D; d++) total[d] += block[d];
    }
    memcpy(o, total, (size_t)D * sizeof(float));
}

/* Items are (query row, head) pairs, item = i * n_heads + h. */
static void attention_slice(void *ctx, int64_t begin, int64_t end) {
    const vl_attn_params *p = ctx;
    float *scores = vl_cpu_scratch(p->n_kv + 3 * (int64_t)p->head_dim);
    float *block = scores + p->n_kv, *total = block + p->head_dim, *tmp = total + p->head_dim;
    for (int64_t item = begin; item < end; item++) {
        const int64_t i = item / p->n_heads;
        const int h = (int)(item % p->n_heads);
        int64_t lo, hi;
        key_range(p, i, &lo, &hi);
        row_scores(p, i, h, lo, hi - lo, scores, tmp);
        row_softmax(scores, hi - lo);
        row_output(p, i, h, lo, hi - lo, scores, block, total, tmp);
    }
    free(scores);
}

void vl_cpu_attention(vl_backend *b, const vl_attn_params *p) {
    const vl_attn_params r = resolved(p);
    /* work: q.k and p.v for every visible key, bounded by all n_kv keys */
    double work = 2.0 * (double)r.n_q * (double)r.n_kv * r.n_heads * r.head_dim;
    vl_cpu_parallel(r.n_q * r.n_heads, work, attention_slice, (void *)&r);
}

/* ---- the eager order (--attn naive) --------------------------------------------------------- */

typedef struct {
    const vl_attn_params *p; /* resolved */
    float *scores;           /* [n_heads, n_q, row_len] */
    int64_t row_len;         /* the n_kv the caller sized scores with (the bound) */
} naive_ctx;

/* Items are score rows, item = h * n_q + i (the matrix order). */
static float *naive_row(const naive_ctx *c, int64_t item, int64_t *i, int *h, int64_t *lo,
                        int64_t *hi) {
    *h = (int)(item / c->p->n_q);
    *i = item % c->p->n_q;
    key_range(c->p, *i, lo, hi);
    return c->scores + item * c->row_len;
}

/* scores of visible keys, -inf elsewhere (the mask of an eager implementation) */
static void naive_scores_slice(void *ctx, int64_t begin, int64_t end) {
    const naive_ctx *c = ctx;
    float *tmp = vl_cpu_scratch(c->p->head_dim);
    for (int64_t item = begin; item < end; item++) {
        int64_t i, lo, hi;
        int h;
        float *row = naive_row(c, item, &i, &h, &lo, &hi);
        for (int64_t j = 0; j < c->row_len; j++) row[j] = -INFINITY;
        row_scores(c->p, i, h, lo, hi - lo, row + lo, tmp);
    }
    free(tmp);
}

/* probabilities: the softmax of the visible keys, exactly 0 elsewhere */
static void naive_softmax_slice(void *ctx, int64_t begin, int64_t end) {
    const naive_ctx *c = ctx;
    for (int64_t item = begin; item < end; item++) {
        int64_t i, lo, hi;
        int h;
        float *row = naive_row(c, item, &i, &h, &lo, &hi);
        row_softmax(row + lo, hi - lo);
        for (int64_t j = 0; j < c->row_len; j++)
            if (j < lo || j >= hi) row[j] = 0.0f;
    }
}

static void naive_output_slice(void *ctx, int64_t begin, int64_t end) {
    const naive_ctx *c = ctx;
    float *block = vl_cpu_scratch(3 * (int64_t)c->p->head_dim), *total = block + c->p->head_dim;
    float *tmp = total + c->p->head_dim;
    for (int64_t item = begin; item < end; item++) {
        int64_t i, lo, hi;
        int h;
        const float *row = naive_row(c, item, &i, &h, &lo, &hi);
        row_output(c->p, i, h, lo, hi - lo, row + lo, block, total, tmp);
    }
    free(block);
}

void vl_cpu_attention_naive(vl_backend *b, const vl_attn_params *p, float *scores) {
    VL_CPU_REQUIRE(!p->batch, "attention_naive takes one sequence (no batch)");
    const vl_attn_params r = resolved(p);
    VL_CPU_REQUIRE(scores != NULL || r.n_q == 0, "attention_naive without a score buffer");
    naive_ctx c = {.p = &r, .scores = scores, .row_len = p->n_kv};
    const int64_t rows = r.n_q * r.n_heads;
    const double pairs = (double)r.n_q * (double)c.row_len * r.n_heads;
    vl_cpu_parallel(rows, pairs * r.head_dim, naive_scores_slice, &c);
    vl_cpu_parallel(rows, pairs * 4, naive_softmax_slice, &c);
    vl_cpu_parallel(rows, pairs * r.head_dim, naive_output_slice, &c);
}
