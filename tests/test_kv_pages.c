/* test_kv_pages.c: the paged KV cache (kernels.h, vl_kv_pages) on the CPU backend, the oracle of
 * the CUDA one. Three sequences of lengths that are not multiples of the block size share one
 * pool whose blocks they take in a shuffled order (block_tokens 4 with a block-major pool, 16
 * with a head-major one, so block and head strides cannot be swapped unnoticed), fp32 and int8.
 * Each sequence is built twice from the same rows: into the pool (two prefill chunks, the second
 * with pos0_dev, then decode steps of all three sequences in one batched rope_kv_append) and
 * into its own contiguous cache (the same chunks, then one rope_kv_append per decode row).
 *   - append: the rotated q and k rows are identical; read through the table with the
 *     documented formula (computed here), the pool holds the contiguous cache's values (and
 *     codes and scales) bit for bit; blocks no sequence owns are untouched;
 *   - kv_gather of each sequence == the contiguous cache (fp32) or its values code * scale
 *     (int8, fp32 products computed here);
 *   - attention through the table (a chunk of 5 queries at q_pos0 > 0, GQA 6/2, also with
 *     n_past_dev, and attention_naive) == attention over the contiguous cache, bit for bit;
 *   - batched decode attention (query i: sequence i at n_past_dev[i]) == one single-sequence
 *     call per sequence, bit for bit.
 */
#include "kernels/kernels.h"
#include "vltest.h"

#define NSEQ       3
#define H          6
#define G          2
#define D          32
#define NDEC       3                 /* decode steps appended in a batch */
#define ROW        ((H + 2 * G) * D) /* one token's fused q, k, v */
#define SENTINEL_F 12345.0f
#define SENTINEL_Q 0x55

typedef struct {
    int bt, head_major, int8;
    int64_t len[NSEQ], max_blocks, n_blocks, cap;
    int32_t *table; /* [NSEQ, max_blocks] */
    vl_kv_pages pages;
    int64_t head_stride, scale_head_stride;
    void *kp, *vp;                /* the pool */
    float *ksp, *vsp;             /* its scales (int8) */
    void *kc[NSEQ], *vc[NSEQ];    /* contiguous caches [G, cap, D] */
    float *ksc[NSEQ], *vsc[NSEQ]; /* their scales [G, cap] */
    float *qkv[NSEQ];             /* the rows of each sequence, [len, ROW] */
} fixture;

static size_t elem(const fixture *f) {
    return f->int8 ? 1 : sizeof(float);
}

static void *filled(int64_t n, size_t size, int int8) {
    void *p = malloc((size_t)n * size);
    for (int64_t i = 0; i < n; i++) {
        if (int8)
            ((int8_t *)p)[i] = SENTINEL_Q;
        else
            ((float *)p)[i] = SENTINEL_F;
    }
    return p;
}

/* The pool: blocks of the three sequences handed out in a shuffled order, two spare blocks. */
static void make_pool(fixture *f) {
    int64_t need = 0;
    f->max_blocks = 0;
    for (int s = 0; s < NSEQ; s++) {
        const int64_t b = (f->len[s] + f->bt - 1) / f->bt;
        need += b;
        if (b > f->max_blocks) f->max_blocks = b;
    }
    f->n_blocks = need + 2;
    int32_t *perm = malloc((size_t)f->n_blocks * sizeof(int32_t));
    for (int64_t i = 0; i < f->n_blocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = f->n_blocks - 1; i > 0; i--) { /* Fisher-Yates */
        const int64_t j = (int64_t)(vt_rng_next() % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    f->table = malloc((size_t)(NSEQ * f->max_blocks) * sizeof(int32_t));
    for (int64_t i = 0; i < NSEQ * f->max_blocks; i++) f->table[i] = -1;
    int64_t next = 0;
    for (int s = 0; s < NSEQ; s++)
        for (int64_t b = 0; b * f->bt < f->len[s]; b++)
            f->table[s * f->max_blocks + b] = perm[next++];
    free(perm);
    const int64_t blk = (int64_t)G * f->bt * D, n = f->n_blocks * blk;
    f->pages =
        (vl_kv_pages){.table = f->table, .table_stride = f->max_blocks, .block_tokens = f->bt};
    if (f->head_major) { /* [G, n_blocks, bt, D] */
        f->head_stride = f->n_blocks * f->bt * D;
        f->pages.block_stride = (int64_t)f->bt * D;
        f->scale_head_stride = f->n_blocks * f->bt;
        f->pages.scale_block_stride = f->bt;
    } else { /* [n_blocks, G, bt, D] */
        f->head_stride = (int64_t)f->bt * D;
        f->pages.block_stride = blk;
        f->scale_head_stride = f->bt;
        f->pages.scale_block_stride = (int64_t)G * f->bt;
    }
    f->kp = filled(n, elem(f), f->int8);
    f->vp = filled(n, elem(f), f->int8);
    f->ksp = f->int8 ? filled(n / D, sizeof(float), 0) : NULL;
    f->vsp = f->int8 ? filled(n / D, sizeof(float), 0) : NULL;
}

static void make_sequences(fixture *f) {
    f->cap = 0;
    for (int s = 0; s < NSEQ; s++)
        if (f->len[s] > f->cap) f->cap = f->len[s];
    for (int s = 0; s < NSEQ; s++) {
        f->qkv[s] = malloc((size_t)(f->len[s] * ROW) * sizeof(float));
        for (int64_t e = 0; e < f->len[s] * ROW; e++) f->qkv[s][e] = (float)vt_rng_normal();
        for (int64_t t = 0; t < f->len[s]; t++) f->qkv[s][t * ROW + H * D + 5] += 6.0f; /* k bias */
        f->kc[s] = filled(G * f->cap * D, elem(f), f->int8);
        f->vc[s] = filled(G * f->cap * D, elem(f), f->int8);
        f->ksc[s] = f->int8 ? filled(G * f->cap, sizeof(float), 0) : NULL;
        f->vsc[s] = f->int8 ? filled(G * f->cap, sizeof(float), 0) : NULL;
    }
}

static void free_fixture(fixture *f) {
    for (int s = 0; s < NSEQ; s++)
        free(f->qkv[s]), free(f->kc[s]), free(f->vc[s]), free(f->ksc[s]), free(f->vsc[s]);
    free(f->kp), free(f->vp), free(f->ksp), free(f->vsp), free(f->table);
}

/* M-RoPE positions [3, n] of rows at tokens tok[i] (the three axes differ). */
static void positions(int32_t *pos, int64_t n, const int64_t *tok) {
    for (int a = 0; a < 3; a++)
        for (int64_t i = 0; i < n; i++) pos[a * n + i] = (int32_t)(tok[i] + 7 * a);
}

/* rope_kv_append of rows x[i] (row stride ROW) into caches, pages and batch as given */
static vl_rope_kv_params append_params(const fixture *f, float *x, int64_t s, const int32_t *pos,
                                       int paged) {
    vl_rope_kv_params r = {0};
    r.q = x;
    r.k = x + H * D;
    r.v = x + (H + G) * D;
    r.q_stride = r.kv_stride = ROW;
    r.s = s;
    r.n_heads = H;
    r.n_kv_heads = G;
    r.head_dim = D;
    r.pos = pos;
    r.sections[0] = 4, r.sections[1] = 6, r.sections[2] = 6;
    r.theta = 10000.0f;
    if (paged) {
        r.k_cache = f->kp, r.v_cache = f->vp;
        r.head_stride = f->head_stride;
        r.k_scale = f->ksp, r.v_scale = f->vsp;
        r.scale_head_stride = f->scale_head_stride;
        r.pages = f->pages;
    }
    return r;
}

static void contiguous_target(const fixture *f, vl_rope_kv_params *r, int s) {
    r->k_cache = f->kc[s], r->v_cache = f->vc[s];
    r->head_stride = f->cap * D;
    r->k_scale = f->ksc[s], r->v_scale = f->vsc[s];
    r->scale_head_stride = f->cap;
}

/* Prefill of sequence s's first n = len - NDEC rows in two chunks, into pool and its cache. */
static int prefill(fixture *f, int s, float *pool_rows) {
    vl_backend *cpu = vl_backend_cpu();
    const int64_t n = f->len[s] - NDEC, cut = n / 2 + 1;
    const int64_t from[2] = {0, cut}, count[2] = {cut, n - cut};
    int diff = 0;
    for (int c = 0; c < 2; c++) {
        int32_t *pos = malloc((size_t)(3 * count[c]) * sizeof(int32_t));
        int64_t *tok = malloc((size_t)count[c] * sizeof(int64_t));
        for (int64_t i = 0; i < count[c]; i++) tok[i] = from[c] + i;
        positions(pos, count[c], tok);
        free(tok);
        const int32_t start = (int32_t)from[c];
        float *mine = f->qkv[s] + from[c] * ROW, *theirs = pool_rows + from[c] * ROW;
        vl_rope_kv_params rp = append_params(f, theirs, count[c], pos, 1);
        rp.pages.table = f->table + s * f->max_blocks;
        if (c == 1)
            rp.pos0_dev = &start, rp.pos0 = -99; /* pos0 ignored */
        else
            rp.pos0 = start;
        cpu->rope_kv_append(cpu, &rp);
        vl_rope_kv_params rc = append_params(f, mine, count[c], pos, 0);
        contiguous_target(f, &rc, s);
        rc.pos0 = start;
        cpu->rope_kv_append(cpu, &rc);
        diff += memcmp(mine, theirs, (size_t)(count[c] * ROW) * sizeof(float)) != 0;
        free(pos);
    }
    return diff;
}

/* Decode step k of all sequences: one batched append into the pool, one call per sequence into
 * the contiguous caches. */
static int decode_step(fixture *f, int k, float *pool_rows[NSEQ]) {
    vl_backend *cpu = vl_backend_cpu();
    float batch[NSEQ * ROW];
    int32_t at[NSEQ], pos[3 * NSEQ];
    int64_t t0[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        t0[s] = f->len[s] - NDEC + k;
        at[s] = (int32_t)t0[s];
        memcpy(batch + s * ROW, pool_rows[s] + t0[s] * ROW, ROW * sizeof(float));
    }
    positions(pos, NSEQ, t0);
    vl_rope_kv_params rb = append_params(f, batch, NSEQ, pos, 1);
    rb.pos0_dev = at;
    rb.batch = 1;
    cpu->rope_kv_append(cpu, &rb);
    int diff = 0;
    for (int s = 0; s < NSEQ; s++) {
        int32_t one[3] = {pos[s], pos[NSEQ + s], pos[2 * NSEQ + s]};
        float *mine = f->qkv[s] + t0[s] * ROW;
        vl_rope_kv_params rc = append_params(f, mine, 1, one, 0);
        contiguous_target(f, &rc, s);
        rc.pos0 = t0[s];
        cpu->rope_kv_append(cpu, &rc);
        diff += memcmp(mine, batch + s * ROW, ROW * sizeof(float)) != 0;
    }
    return diff;
}

/* Row t of kv head g of sequence s in the pool, by the formula of kernels.h. */
static int64_t pool_at(const fixture *f, int s, int g, int64_t t, int64_t *scale_at) {
    const int64_t b = f->table[s * f->max_blocks + t / f->bt], r = t % f->bt;
    *scale_at = b * f->pages.scale_block_stride + g * f->scale_head_stride + r;
    return b * f->pages.block_stride + g * f->head_stride + r * D;
}

/* Pool rows == contiguous rows (values, or codes and scales); owned rows marked in `used`. */
static int compare_caches(const fixture *f, uint8_t *used) {
    int bad = 0;
    for (int s = 0; s < NSEQ; s++)
        for (int g = 0; g < G; g++)
            for (int64_t t = 0; t < f->len[s]; t++) {
                int64_t sat;
                const int64_t at = pool_at(f, s, g, t, &sat), c = (g * f->cap + t) * D;
                const size_t n = D * elem(f);
                bad += memcmp((char *)f->kp + at * elem(f), (char *)f->kc[s] + c * elem(f), n) != 0;
                bad += memcmp((char *)f->vp + at * elem(f), (char *)f->vc[s] + c * elem(f), n) != 0;
                if (f->int8)
                    bad += f->ksp[sat] != f->ksc[s][g * f->cap + t] ||
                           f->vsp[sat] != f->vsc[s][g * f->cap + t];
                used[at / D] = 1;
            }
    return bad;
}

/* Rows of the pool no sequence owns still hold the sentinel (the rows past each sequence's end
 * in its last block included). */
static int count_outside_writes(const fixture *f, const uint8_t *used) {
    const int64_t rows = f->n_blocks * G * f->bt;
    int outside = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (used[r]) continue;
        for (int d = 0; d < D; d++) {
            const int64_t e = r * D + d;
            outside +=
                f->int8 ? ((int8_t *)f->kp)[e] != SENTINEL_Q || ((int8_t *)f->vp)[e] != SENTINEL_Q
                        : ((float *)f->kp)[e] != SENTINEL_F || ((float *)f->vp)[e] != SENTINEL_F;
        }
    }
    return outside;
}

/* kv_gather of each sequence == its contiguous cache (fp32) or its values code * scale in fp32
 * (int8), head by head (the gathered heads are len * D apart, the cache's cap * D). */
static int check_gather(const fixture *f) {
    vl_backend *cpu = vl_backend_cpu();
    float *want = malloc((size_t)(G * f->cap * D) * sizeof(float));
    int bad = 0;
    for (int s = 0; s < NSEQ; s++)
        for (int v = 0; v < 2; v++) {
            const int64_t dst_hs = f->len[s] * D + 3; /* heads apart by more than a sequence */
            float *got = malloc((size_t)(G * dst_hs) * sizeof(float));
            vl_kv_pages pg = f->pages;
            pg.table = f->table + s * f->max_blocks;
            cpu->kv_gather(cpu, got, dst_hs, v ? f->vp : f->kp, v ? f->vsp : f->ksp, &pg,
                           f->head_stride, f->scale_head_stride, G, f->len[s], D);
            const void *c = v ? f->vc[s] : f->kc[s];
            if (f->int8) {
                const float *sc = v ? f->vsc[s] : f->ksc[s]; /* heads cap apart */
                for (int g = 0; g < G; g++)
                    for (int64_t t = 0; t < f->len[s]; t++)
                        for (int d = 0; d < D; d++) {
                            const int64_t e = (g * f->cap + t) * D + d;
                            want[e] = (float)((const int8_t *)c)[e] * sc[g * f->cap + t];
                        }
            } else
                memcpy(want, c, (size_t)(G * f->cap * D) * sizeof(float));
            for (int g = 0; g < G; g++)
                bad += memcmp(got + g * dst_hs, want + g * f->cap * D,
                              (size_t)(f->len[s] * D) * sizeof(float)) != 0;
            free(got);
        }
    free(want);
    return bad;
}

/* Attention of n_q queries (rows q, stride q_stride) of sequence s: over the pool through its
 * table row when paged, else over its contiguous cache. */
static vl_attn_params attn_params(const fixture *f, int s, const float *q, int64_t q_stride,
                                  int64_t n_q, float *o, int paged) {
    vl_attn_params p = {0};
    p.q = q;
    p.q_stride = q_stride;
    p.kv_tok_stride = D;
    p.o = o;
    p.o_stride = (int64_t)H * D;
    p.n_q = n_q;
    p.n_kv = f->len[s];
    p.n_heads = H;
    p.n_kv_heads = G;
    p.head_dim = D;
    p.scale = 0.125f;
    p.causal = 1;
    p.q_pos0 = f->len[s] - n_q;
    if (paged) {
        p.k = f->kp, p.v = f->vp;
        p.kv_head_stride = f->head_stride;
        p.k_scale = f->ksp, p.v_scale = f->vsp;
        p.kv_scale_head_stride = f->scale_head_stride;
        p.pages = f->pages;
        p.pages.table = f->table + s * f->max_blocks;
    } else {
        p.k = f->kc[s], p.v = f->vc[s];
        p.kv_head_stride = f->cap * D;
        p.k_scale = f->ksc[s], p.v_scale = f->vsc[s];
        p.kv_scale_head_stride = f->cap;
    }
    return p;
}

/* A prefill chunk of 5 queries at q_pos0 = len - 5 > 0 through the pages == over the contiguous
 * cache: flash order, with n_past_dev, and the eager order. Returns the differing calls. */
static int check_chunk_attention(const fixture *f) {
    vl_backend *cpu = vl_backend_cpu();
    const int64_t nq = 5, n = nq * H * D;
    float *want = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
    int bad = 0;
    for (int s = 0; s < NSEQ; s++) {
        const float *q = f->qkv[s] + (f->len[s] - nq) * ROW;
        vl_attn_params pc = attn_params(f, s, q, ROW, nq, want, 0);
        cpu->attention(cpu, &pc);
        vl_attn_params pp = attn_params(f, s, q, ROW, nq, got, 1);
        for (int variant = 0; variant < 3; variant++) {
            memset(got, 0, (size_t)n * sizeof(float));
            vl_attn_params r = pp;
            const int32_t past = (int32_t)(f->len[s] - nq);
            if (variant == 1) r.n_past_dev = &past, r.q_pos0 = 0, r.n_kv = f->cap + 4;
            float *scores = variant == 2 ? malloc((size_t)(H * nq * r.n_kv) * sizeof(float)) : NULL;
            if (variant == 2)
                cpu->attention_naive(cpu, &r, scores);
            else
                cpu->attention(cpu, &r);
            free(scores);
            const int differs = memcmp(got, want, (size_t)n * sizeof(float)) != 0;
            VT_CHECKF(!differs, "sequence %d (%lld tokens): paged chunk attention%s differs", s,
                      (long long)f->len[s],
                      variant == 1   ? " (n_past_dev)"
                      : variant == 2 ? " (naive)"
                                     : "");
            bad += differs;
        }
    }
    free(want), free(got);
    return bad;
}

/* One batched decode attention (query i: sequence i's last token, at n_past_dev[i] = len - 1)
 * == one paged single-sequence call per sequence == the contiguous cache's. */
static void check_batch_attention(const fixture *f) {
    vl_backend *cpu = vl_backend_cpu();
    float q[NSEQ * H * D], got[NSEQ * H * D], one[H * D], flat[H * D];
    int32_t past[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        memcpy(q + s * H * D, f->qkv[s] + (f->len[s] - 1) * ROW, sizeof(float) * H * D);
        past[s] = (int32_t)(f->len[s] - 1);
    }
    memset(got, 0, sizeof got);
    vl_attn_params pb = attn_params(f, 0, q, (int64_t)H * D, NSEQ, got, 1);
    pb.pages.table = f->table;
    pb.n_past_dev = past;
    pb.n_kv = f->cap + 5; /* a bound above every length */
    pb.batch = 1;
    cpu->attention(cpu, &pb);
    for (int s = 0; s < NSEQ; s++) {
        vl_attn_params ps = attn_params(f, s, q + s * H * D, (int64_t)H * D, 1, one, 1);
        ps.n_past_dev = &past[s];
        ps.n_kv = f->cap + 5;
        cpu->attention(cpu, &ps);
        vl_attn_params pc = attn_params(f, s, q + s * H * D, (int64_t)H * D, 1, flat, 0);
        cpu->attention(cpu, &pc);
        VT_CHECKF(memcmp(got + s * H * D, one, sizeof one) == 0,
                  "batched decode: sequence %d differs from its single-sequence call", s);
        VT_CHECKF(memcmp(one, flat, sizeof one) == 0,
                  "decode: sequence %d through pages differs from its contiguous cache", s);
    }
}

static void run_case(int bt, int head_major, int int8, const int64_t len[NSEQ]) {
    fixture f = {.bt = bt, .head_major = head_major, .int8 = int8};
    memcpy(f.len, len, sizeof f.len);
    vt_rng_state = 1000u + (uint64_t)(bt * 4 + head_major * 2 + int8);
    make_pool(&f);
    make_sequences(&f);
    float *pool_rows[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        pool_rows[s] = malloc((size_t)(f.len[s] * ROW) * sizeof(float));
        memcpy(pool_rows[s], f.qkv[s], (size_t)(f.len[s] * ROW) * sizeof(float));
    }
    int rope_diff = 0;
    for (int s = 0; s < NSEQ; s++) rope_diff += prefill(&f, s, pool_rows[s]);
    for (int k = 0; k < NDEC; k++) rope_diff += decode_step(&f, k, pool_rows);
    uint8_t *used = calloc((size_t)(f.n_blocks * G * bt), 1);
    const int bad = compare_caches(&f, used), outside = count_outside_writes(&f, used);
    char what[96];
    snprintf(what, sizeof what, "block_tokens %d, %s pool, %s", bt,
             head_major ? "head-major" : "block-major", int8 ? "int8" : "fp32");
    VT_CHECKF(rope_diff == 0, "%s: %d appends rotated q/k differently", what, rope_diff);
    VT_CHECKF(bad == 0, "%s: %d pool rows differ from the contiguous caches", what, bad);
    VT_CHECKF(outside == 0, "%s: %d values written outside the sequences' rows", what, outside);
    VT_CHECKF(check_gather(&f) == 0, "%s: kv_gather differs from the contiguous cache", what);
    check_chunk_attention(&f);
    check_batch_attention(&f);
    printf("%s: lengths %lld %lld %lld over %lld shuffled blocks checked\n", what,
           (long long)len[0], (long long)len[1], (long long)len[2], (long long)f.n_blocks);
    for (int s = 0; s < NSEQ; s++) free(pool_rows[s]);
    free(used);
    free_fixture(&f);
}

int main(void) {
    const int64_t short_lens[NSEQ] = {13, 7, 22}, long_lens[NSEQ] = {21, 9, 37};
    for (int int8 = 0; int8 < 2; int8++) {
        run_case(4, 0, int8, short_lens);
        run_case(16, 1, int8, long_lens);
    }
    return vt_finish();
}
