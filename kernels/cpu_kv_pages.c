/* cpu_kv_pages.c: the CPU twins of the paged KV cache (kernels.h, vl_kv_pages; vlrun serve's
 * pool): the paged and batched append of rope_kv_append, and kv_gather (one sequence of the pool
 * into a contiguous buffer). Rows are addressed by vl_cpu_kv_at (cpu_internal.h), the same
 * formula attention reads them with; the values written are those of the contiguous ops
 * (memcpy of fp32 rows, vl_kv_quantize_row for int8) and, gathered, q * scale in fp32 (what
 * attention reads an int8 row as), so a paged cache holds exactly the bits of a contiguous one.
 */
#include "kernels/cpu_internal.h"

#include <string.h>

void vl_cpu_check_pages(const vl_kv_pages *pg, const int32_t *tbl, int64_t n_tok, int batch) {
    const int bt = pg->block_tokens;
    VL_CPU_REQUIRE(bt > 0 && (bt & (bt - 1)) == 0, "block_tokens %d is not a power of two", bt);
    const int64_t blocks = (n_tok + bt - 1) / bt;
    VL_CPU_REQUIRE(n_tok >= 0 && ((!batch && pg->table_stride == 0) || blocks <= pg->table_stride),
                   "%lld rows need %lld blocks, the table holds %lld per sequence",
                   (long long)n_tok, (long long)blocks, (long long)pg->table_stride);
    for (int64_t j = 0; j < blocks; j++)
        VL_CPU_REQUIRE(tbl[j] >= 0, "block %lld of a sequence is %d", (long long)j, tbl[j]);
}

/* One (token, kv head) row x of K or V into the cache: copied (fp32) or quantized (int8). */
static void store_row(void *cache, float *scale, int64_t at, int64_t scale_at, const float *x,
                      int head_dim) {
    if (scale)
        scale[scale_at] = vl_kv_quantize_row(x, head_dim, (int8_t *)cache + at);
    else
        memcpy((float *)cache + at, x, (size_t)head_dim * sizeof(float));
}

void vl_cpu_kv_append_pages(const vl_rope_kv_params *p) {
    const vl_kv_pages *pg = &p->pages;
    VL_CPU_REQUIRE(pg->table != NULL, "a batched rope_kv_append without a block table");
    VL_CPU_REQUIRE(!p->batch || p->pos0_dev, "a batched rope_kv_append without pos0_dev");
    VL_CPU_REQUIRE(!p->k_scale == !p->v_scale, "an int8 cache needs both scales");
    const int64_t start = p->pos0_dev ? p->pos0_dev[0] : p->pos0;
    for (int64_t i = 0; i < p->s; i++) {
        /* batch: row i is sequence i's next token; else row i of one sequence at start + i */
        const int32_t *tbl = pg->table + (p->batch ? i * pg->table_stride : 0);
        const int64_t t = p->batch ? p->pos0_dev[i] : start + i;
        VL_CPU_REQUIRE(t >= 0, "rope_kv_append at position %lld", (long long)t);
        vl_cpu_check_pages(pg, tbl, t + 1, p->batch);
        for (int g = 0; g < p->n_kv_heads; g++) {
            int64_t sat;
            const int64_t at = vl_cpu_kv_at(pg, tbl, g, t, p->head_stride, p->head_dim,
                                            p->scale_head_stride, &sat);
            const int64_t src = i * p->kv_stride + (int64_t)g * p->head_dim;
            store_row(p->k_cache, p->k_scale, at, sat, (const float *)p->k + src, p->head_dim);
            store_row(p->v_cache, p->v_scale, at, sat, (const float *)p->v + src, p->head_dim);
        }
    }
}

void vl_cpu_kv_gather(vl_backend *b, void *dst, int64_t dst_head_stride, const void *src,
                      const float *scale, const vl_kv_pages *pages, int64_t head_stride,
                      int64_t scale_head_stride, int kv_heads, int64_t n_tok, int head_dim) {
    const vl_kv_pages none = {0};
    const vl_kv_pages *pg = pages ? pages : &none;
    if (pg->table) vl_cpu_check_pages(pg, pg->table, n_tok, 0);
    float *out = dst;
    for (int g = 0; g < kv_heads; g++)
        for (int64_t t = 0; t < n_tok; t++) {
            int64_t sat;
            const int64_t at =
                vl_cpu_kv_at(pg, pg->table, g, t, head_stride, head_dim, scale_head_stride, &sat);
            float *o = out + g * dst_head_stride + t * head_dim;
            if (!scale) {
                memcpy(o, (const float *)src + at, (size_t)head_dim * sizeof(float));
                continue;
            }
            const int8_t *q = (const int8_t *)src + at;
            for (int d = 0; d < head_dim; d++) o[d] = (float)q[d] * scale[sat];
        }
}
