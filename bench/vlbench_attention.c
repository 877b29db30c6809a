/* vlbench_attention.c: attention through the op table on the model's layouts and lengths:
 *   prefill  causal, 28 query heads over 4 kv heads, D 128, ONE call with n_q = n_kv
 *            (4096, 16384, 38192 tokens)
 *   chunk    2048 queries at the end of a 38192-token cache (chunked prefill), with a bf16
 *            cache and with an int8 one (the prefill kernels read its codes)
 *   vision   non-causal, 16 heads, D 80, 5456 tokens as 4 images of 1364 (block-diagonal
 *            segments) and as one block
 *   decode   one query over a cache of 1364, 16384, 38192 tokens (flash-decoding), with a bf16
 *            cache and with an int8 one (--kv int8: codes + one fp32 scale per row)
 * Layouts are the engine's: text q/o dense [S, H*D] and K/V head-major caches [G, T, D]
 * (engine/forward.c); vision q, k, v as views into one fused qkv row [S, 3*H*D]
 * (engine/vision.c).
 * Rates: TFLOP/s = 4 D H (query-key pairs the mask lets through) / time; decode is
 * memory-bound: GB/s = (K and V bytes, scales included, plus q and o) / time.
 * Anchor: vlrun's eager attention (scores materialized in fp32) where its scores fit in 4 GB.
 * Reference: VLB_REF_ROWS query rows, every head, through the CPU backend on the same bf16
 * inputs (each query alone: n_q 1 at its own position, or its own segment's keys).
 *   decode-rt (not by default) decode with the cache length read from device memory
 *            (n_past_dev, as in the decode step's CUDA graph) under a 38192-token bound, at
 *            1364 and 38192 keys
 * Leaves out: the KV append before attention.
 */
#include "bench/vlbench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NAIVE_MAX_SCORE_BYTES 4e9

typedef struct {
    const char *name;
    int H, G, D;
    int64_t n_q, n_kv, q_pos0;
    int causal, n_seg, fused_qkv;
    int kv_int8;   /* the cache as int8 codes + one fp32 scale per row (--kv int8) */
    int64_t bound; /* > 0: the length read at run time (n_past_dev), caches of bound positions */
} attn_case;

static const int64_t default_prefill[] = {4096, 16384, 38192};
static const int64_t default_chunk_cache[] = {38192};
static const int64_t default_vision[] = {5456};
static const int64_t default_decode[] = {1364, 16384, 38192};
static const int64_t default_decode_rt[] = {1364, 38192};
#define DECODE_RT_BOUND 38192
#define CHUNK_QUERIES   2048
#define VISION_IMAGES   4

/* Query-key pairs the mask lets through. */
static double visible_pairs(const attn_case *c) {
    if (c->n_seg > 0) {
        double pairs = 0;
        for (int s = 0; s < c->n_seg; s++) {
            double len = (double)(c->n_kv * (s + 1) / c->n_seg - c->n_kv * s / c->n_seg);
            pairs += len * len;
        }
        return pairs;
    }
    if (c->causal) /* query i sees q_pos0 + i + 1 keys */
        return (double)c->n_q * (double)c->q_pos0 + 0.5 * (double)c->n_q * (double)(c->n_q + 1);
    return (double)c->n_q * (double)c->n_kv;
}

typedef struct {
    vl_attn_params p;
    float *scores;
} attn_job;

static void attention_op(vl_backend *gpu, void *ctx) {
    attn_job *j = ctx;
    gpu->attention(gpu, &j->p);
}

static void naive_op(vl_backend *gpu, void *ctx) {
    attn_job *j = ctx;
    vlb_cuda_attention_naive(gpu, &j->p, j->scores);
}

static float *host_f32(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "vlbench: out of host memory\n");
        exit(1);
    }
    return p;
}

/* Elements of a K or V view from its first element to its last. */
static int64_t kv_extent(const vl_attn_params *p) {
    return (p->n_kv - 1) * p->kv_tok_stride + (int64_t)(p->n_kv_heads - 1) * p->kv_head_stride +
           p->head_dim;
}

/* The CPU backend's answer for query rows `rows` (every head) on host copies of the inputs:
 * ref [nr, H*D]. Each query runs alone, so only its row of q is needed. */
static void reference(vlb_run *run, const vl_attn_params *p, const int32_t *seg_host,
                      const int64_t *rows, int nr, float *ref) {
    vl_backend *gpu = run->gpu;
    const int64_t HD = (int64_t)p->n_heads * p->head_dim, ext = kv_extent(p);
    float *k = host_f32(ext), *v = host_f32(ext), *q = host_f32(HD);
    float *scales = NULL;
    if (p->k_scale) { /* int8 codes, read as bytes, and their scales */
        const int64_t ns = (int64_t)p->n_kv_heads * p->kv_scale_head_stride;
        scales = host_f32(2 * ns);
        gpu->download(gpu, k, p->k, (size_t)ext);
        gpu->download(gpu, v, p->v, (size_t)ext);
        gpu->download(gpu, scales, p->k_scale, (size_t)ns * 4);
        gpu->download(gpu, scales + ns, p->v_scale, (size_t)ns * 4);
    } else {
        gpu->to_f32(gpu, k, p->k, ext);
        gpu->to_f32(gpu, v, p->v, ext);
    }
    for (int r = 0; r < nr; r++) {
        const int64_t i = rows[r];
        gpu->to_f32(gpu, q, (const uint16_t *)p->q + i * p->q_stride, HD);
        vl_attn_params h = *p;
        h.q = q;
        h.o = ref + r * HD;
        h.n_q = 1;
        h.k = k;
        h.v = v;
        h.seg_starts = NULL;
        h.n_seg = 0;
        h.n_past_dev = NULL;
        if (scales) {
            h.k_scale = scales;
            h.v_scale = scales + (int64_t)p->n_kv_heads * p->kv_scale_head_stride;
        }
        if (p->n_seg > 0) { /* the keys of i's own segment, attended without a mask */
            int s = 0;
            while (s + 1 < p->n_seg && seg_host[s + 1] <= i) s++;
            h.k = k + seg_host[s] * p->kv_tok_stride;
            h.v = v + seg_host[s] * p->kv_tok_stride;
            h.n_kv = seg_host[s + 1] - seg_host[s];
        }
        if (p->causal) h.q_pos0 = p->q_pos0 + i;
        run->cpu->attention(run->cpu, &h);
    }
    free(k);
    free(v);
    free(q);
    free(scales);
}

/* max |o - ref| over the reference rows of o, and that over max |ref|. */
static void compare(vl_backend *gpu, const vl_attn_params *p, const int64_t *rows, int nr,
                    const float *ref, double *max_abs, double *max_rel) {
    const int64_t HD = (int64_t)p->n_heads * p->head_dim;
    float *got = host_f32(nr * HD);
    for (int r = 0; r < nr; r++)
        gpu->to_f32(gpu, got + r * HD, (const uint16_t *)p->o + rows[r] * p->o_stride, HD);
    double err = 0, big = 0;
    vlb_compare(got, ref, nr * HD, &err, &big);
    *max_abs = err;
    if (max_rel) *max_rel = big > 0 ? err / big : NAN;
    free(got);
}

/* The row's name, shape, dimensions and work (flops, bytes moved). */
static void describe(vlb_run *run, const attn_case *c, vlb_row *r) {
    vlb_row_init(r, "attention", "-");
    snprintf(r->name, sizeof r->name, "%s", c->name);
    char segs[48] = "";
    if (c->n_seg > 0) snprintf(segs, sizeof segs, " in %d segments", c->n_seg);
    if (c->bound > 0)
        snprintf(segs, sizeof segs, " (read at run time, bound %lld)", (long long)c->bound);
    snprintf(r->shape, sizeof r->shape, "H=%d/%d D=%d n_q=%lld n_kv=%lld%s", c->H, c->G, c->D,
             (long long)c->n_q, (long long)c->n_kv, segs);
    snprintf(r->dims_json, sizeof r->dims_json,
             "\"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"n_q\": %lld, \"n_kv\": %lld, "
             "\"q_pos0\": %lld, \"causal\": %s, \"n_seg\": %d",
             c->H, c->G, c->D, (long long)c->n_q, (long long)c->n_kv, (long long)c->q_pos0,
             c->causal ? "true" : "false", c->n_seg);
    if (c->bound > 0)
        snprintf(r->dims_json + strlen(r->dims_json), sizeof r->dims_json - strlen(r->dims_json),
                 ", \"bound\": %lld", (long long)c->bound);
    const int64_t HD = (int64_t)c->H * c->D, GD = (int64_t)c->G * c->D;
    r->flops = 4.0 * c->D * c->H * visible_pairs(c);
    r->bytes = 2.0 * (2.0 * (double)c->n_kv * (double)GD + 2.0 * (double)c->n_q * (double)HD);
    if (c->kv_int8) /* one byte per element and 4 per row instead of two per element */
        r->bytes -= 2.0 * (double)c->n_kv * ((double)GD - 4.0 * c->G);
    r->memory_bound = vlb_memory_bound(run, r->flops, r->bytes);
}

/* One [n, (H + 2G) D] row per token: q, then k, then v (the vision tower's fused qkv). */
static int make_fused(vlb_run *run, const attn_case *c, vlb_bufs *bufs, vl_attn_params *p) {
    const int64_t HD = (int64_t)c->H * c->D, GD = (int64_t)c->G * c->D, row = HD + 2 * GD;
    uint16_t *qkv = vlb_alloc(bufs, (size_t)(c->n_kv * row) * 2);
    if (qkv) vlb_fill_random(run->gpu, qkv, c->n_kv * row, 7, 0.0f, 1.0f);
    p->q = qkv;
    p->k = qkv + HD;
    p->v = qkv + HD + GD;
    p->q_stride = p->kv_tok_stride = row;
    p->kv_head_stride = c->D;
    return qkv != NULL;
}

/* int8 head-major caches of `cap` positions: random codes, scales in [0.005, 0.05). */
static int make_int8(vlb_run *run, const attn_case *c, int64_t cap, vlb_bufs *bufs,
                     vl_attn_params *p) {
    vl_backend *gpu = run->gpu;
    const int64_t HD = (int64_t)c->H * c->D, n8 = cap * c->G * c->D, ns = cap * c->G;
    uint16_t *q = vlb_alloc(bufs, (size_t)(c->n_q * HD) * 2);
    int8_t *k = vlb_alloc(bufs, (size_t)n8), *v = vlb_alloc(bufs, (size_t)n8);
    float *ks = vlb_alloc(bufs, (size_t)ns * 4), *vs = vlb_alloc(bufs, (size_t)ns * 4);
    int8_t *codes = malloc((size_t)n8);
    float *scales = host_f32(ns);
    const int ok = q && k && v && ks && vs && codes;
    if (ok) {
        vlb_fill_random(gpu, q, c->n_q * HD, 11, 0.0f, 1.0f);
        for (int kv = 0; kv < 2; kv++) {
            for (int64_t e = 0; e < n8; e++)
                codes[e] = (int8_t)((int)(vl_mix64((uint64_t)(e + kv * n8)) % 255) - 127);
            for (int64_t e = 0; e < ns; e++)
                scales[e] = 0.005f + 0.045f * (float)vl_random_unit((uint64_t)(e + 7 * kv));
            gpu->upload(gpu, kv ? (void *)v : (void *)k, codes, (size_t)n8);
            gpu->upload(gpu, kv ? (void *)vs : (void *)ks, scales, (size_t)ns * 4);
        }
    }
    free(codes);
    free(scales);
    p->q = q;
    p->k = k;
    p->v = v;
    p->k_scale = ks;
    p->v_scale = vs;
    p->kv_scale_head_stride = cap;
    p->q_stride = HD;
    p->kv_tok_stride = c->D;
    p->kv_head_stride = cap * c->D;
    return ok;
}

/* q dense, bf16 K/V head-major caches of `cap` positions. */
static int make_dense(vlb_run *run, const attn_case *c, int64_t cap, vlb_bufs *bufs,
                      vl_attn_params *p) {
    const int64_t HD = (int64_t)c->H * c->D, GD = (int64_t)c->G * c->D;
    uint16_t *q = vlb_alloc(bufs, (size_t)(c->n_q * HD) * 2);
    uint16_t *k = vlb_alloc(bufs, (size_t)(cap * GD) * 2);
    uint16_t *v = vlb_alloc(bufs, (size_t)(cap * GD) * 2);
    const int ok = q && k && v;
    if (ok) {
        vlb_fill_random(run->gpu, q, c->n_q * HD, 11, 0.0f, 1.0f);
        vlb_fill_random(run->gpu, k, cap * GD, 13, 0.0f, 1.0f);
        vlb_fill_random(run->gpu, v, cap * GD, 17, 0.0f, 1.0f);
    }
    p->q = q;
    p->k = k;
    p->v = v;
    p->q_stride = HD;
    p->kv_tok_stride = c->D;
    p->kv_head_stride = cap * c->D;
    return ok;
}

/* The case's inputs and output on the device, its segments (seg_host) and, for a runtime
 * length, the length in device memory with n_kv the bound; 0 when out of device memory. */
static int make_inputs(vlb_run *run, const attn_case *c, vlb_bufs *bufs, vl_attn_params *p,
                       int32_t *seg_host) {
    const int64_t cap = c->bound > 0 ? c->bound : c->n_kv;
    int ok = c->fused_qkv ? make_fused(run, c, bufs, p)
             : c->kv_int8 ? make_int8(run, c, cap, bufs, p)
                          : make_dense(run, c, cap, bufs, p);
    p->o = vlb_alloc(bufs, (size_t)(c->n_q * c->H * c->D) * 2);
    ok = ok && p->o;
    if (ok && c->n_seg > 0) {
        for (int s = 0; s <= c->n_seg; s++) seg_host[s] = (int32_t)(c->n_kv * s / c->n_seg);
        int32_t *seg = vlb_alloc(bufs, (size_t)(c->n_seg + 1) * sizeof(int32_t));
        ok = seg != NULL;
        if (ok) run->gpu->upload(run->gpu, seg, seg_host, (size_t)(c->n_seg + 1) * sizeof(int32_t));
        p->seg_starts = seg;
        p->n_seg = c->n_seg;
    }
    if (ok && c->bound > 0) {
        const int32_t n_past = (int32_t)c->q_pos0;
        int32_t *d = vlb_alloc(bufs, sizeof n_past);
        ok = d != NULL;
        if (ok) run->gpu->upload(run->gpu, d, &n_past, sizeof n_past);
        p->n_past_dev = d;
        p->n_kv = c->bound;
    }
    return ok;
}

static void bench_case(vlb_run *run, const attn_case *c) {
    vl_backend *gpu = run->gpu;
    const vlb_options *o = run->opt;
    vlb_row r;
    describe(run, c, &r);
    vlb_bufs bufs = {.gpu = gpu};
    attn_job j = {.p = {.n_q = c->n_q,
                        .n_kv = c->n_kv,
                        .n_heads = c->H,
                        .n_kv_heads = c->G,
                        .head_dim = c->D,
                        .scale = 1.0f / sqrtf((float)c->D),
                        .causal = c->causal,
                        .q_pos0 = c->q_pos0,
                        .o_stride = (int64_t)c->H * c->D}};
    vl_attn_params *p = &j.p;
    int32_t seg_host[VISION_IMAGES + 1];
    if (!make_inputs(run, c, &bufs, p, seg_host)) {
        snprintf(r.status, sizeof r.status, "n/a: out of device memory");
    } else if (!vlb_cuda_attention_ok(gpu, p)) {
        snprintf(r.status, sizeof r.status, "n/a: no CUDA kernel for these parameters");
    }
    if (r.status[0]) {
        vlb_free_all(&bufs);
        vlb_report_row(run, &r);
        return;
    }

    int64_t rows[VLB_REF_ROWS];
    const int nr = vlb_ref_rows(c->n_q, rows);
    float *ref = o->ref ? host_f32(nr * (int64_t)c->H * c->D) : NULL;
    if (ref) reference(run, p, seg_host, rows, nr, ref);

    /* the eager anchor first: the flash kernel's output is what stays in o (the eager path
     * reads a bf16 cache only); its scores cover the launch bound */
    const double score_bytes = 4.0 * c->H * (double)c->n_q * (double)p->n_kv;
    if (!c->kv_int8 && score_bytes <= NAIVE_MAX_SCORE_BYTES &&
        (j.scores = vlb_alloc(&bufs, (size_t)score_bytes)) != NULL) {
        r.anchor = "vlrun naive (eager)";
        r.anchor_ms = vlb_cuda_time_ms(gpu, naive_op, &j, o->warmup, o->iters, o->flush_l2, NULL);
        if (ref) compare(gpu, p, rows, nr, ref, &r.anchor_max_abs_err, NULL);
    }
    r.ms = vlb_cuda_time_ms(gpu, attention_op, &j, o->warmup, o->iters, o->flush_l2, &r.min_ms);
    if (ref) compare(gpu, p, rows, nr, ref, &r.max_abs_err, &r.max_rel_err);
    free(ref);
    vlb_free_all(&bufs);
    vlb_report_row(run, &r);
}

void vlb_bench_attention(vlb_run *run) {
    const vlb_options *o = run->opt;
    const int tH = o->heads ? o->heads : 28, tG = o->heads ? o->kv_heads : 4;
    const int tD = o->head_dim ? o->head_dim : 128;
    const int vH = o->heads ? o->heads : 16, vG = o->heads ? o->kv_heads : 16;
    const int vD = o->head_dim ? o->head_dim : 80;
#define LENGTHS(def)                                                                               \
    (o->n_seq ? o->seq : (def)), (o->n_seq ? o->n_seq : (int)(sizeof(def) / sizeof *(def)))
    struct {
        int kind;
        const int64_t *n;
        int count;
    } lists[] = {{VLB_KIND_PREFILL, LENGTHS(default_prefill)},
                 {VLB_KIND_CHUNK, LENGTHS(default_chunk_cache)},
                 {VLB_KIND_VISION, LENGTHS(default_vision)},
                 {VLB_KIND_DECODE, LENGTHS(default_decode)},
                 {VLB_KIND_DECODE_RT, LENGTHS(default_decode_rt)}};
#undef LENGTHS
    for (size_t l = 0; l < sizeof lists / sizeof *lists; l++) {
        if (!(o->kind_mask & lists[l].kind)) continue;
        for (int i = 0; i < lists[l].count; i++) {
            const int64_t n = lists[l].n[i];
            attn_case c = {.H = tH, .G = tG, .D = tD, .n_q = n, .n_kv = n, .causal = 1};
            switch (lists[l].kind) {
            case VLB_KIND_PREFILL:
                c.name = "prefill causal";
                bench_case(run, &c);
                break;
            case VLB_KIND_CHUNK:
                c.name = "chunk at cache end";
                c.n_q = n < CHUNK_QUERIES ? n : CHUNK_QUERIES;
                c.q_pos0 = n - c.n_q;
                bench_case(run, &c);
                c.name = "chunk at cache end, int8 cache";
                c.kv_int8 = 1;
                bench_case(run, &c);
                break;
            case VLB_KIND_VISION:
                c = (attn_case){.H = vH, .G = vG, .D = vD, .n_q = n, .n_kv = n, .fused_qkv = 1};
                if (n >= VISION_IMAGES) {
                    c.name = "vision 4 images";
                    c.n_seg = VISION_IMAGES;
                    bench_case(run, &c);
                }
                c.name = "vision one block";
                c.n_seg = 0;
                bench_case(run, &c);
                break;
            case VLB_KIND_DECODE_RT:
                c.name = "decode, length at run time";
                c.n_q = 1;
                c.q_pos0 = n - 1;
                c.bound = n > DECODE_RT_BOUND ? n : DECODE_RT_BOUND;
                bench_case(run, &c);
                break;
            default:
                c.name = "decode";
                c.n_q = 1;
                c.q_pos0 = n - 1;
                bench_case(run, &c);
                c.name = "decode int8 cache";
                c.kv_int8 = 1;
                bench_case(run, &c);
            }
        }
    }
}
