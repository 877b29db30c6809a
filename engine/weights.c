/* weights.c: the parameters on the backend: one block of backend memory holding every bound
 * parameter (matrices 256-byte aligned, scales and vectors 16), in one of three ways:
 *   copy      from the mmapped checkpoint (F16/F32 converted to bf16 on a bf16 backend;
 *             pre-quantized bitsandbytes tensors copied as they are);
 *   quantize  --quant nf4|int8: each Linear is copied as bf16 into one staging buffer on the
 *             backend and quantized there into its place (be->quantize), so loading never holds
 *             more than the quantized model plus one bf16 tensor;
 *   random    --random-weights: counter-based values made on the backend (fill_random_bf16),
 *             quantized the same way when asked, so a quantized random run sees exactly the
 *             weights of the bf16 random run, rounded by its format.
 * One walk (place_one) serves measuring and placing, so the size the planner predicts is the
 * size allocated.
 *
 * Which Linears are quantized is what transformers + bitsandbytes do: every Linear of
 * the decoder and of the vision tower including the merger; the embeddings, the LM head (unless
 * --quant-lm-head), the patch embedding, norms and biases stay bf16. Every in-features width
 * is quantized, as bitsandbytes does: NF4 blocks run over the flattened row-major matrix, so a
 * block may straddle two rows and the last one may be partial (kernels.h); every kernel that
 * reads NF4 finds a block's scale from the flat element index.
 * After placing, the decoder's after_place (engine/models/) records q/k/v and gate/up that lie
 * back to back as one matrix each (decode then runs one GEMV instead of three and two; measured
 * +6-8% tokens/s on the H100).
 * --embed-on-host puts the embedding table in pinned host memory instead (place_embed_on_host).
 * Leaves out: the LM head in host memory (it is read whole every token). */
#include "engine/models/models.h"

#include <stdlib.h>

#define WEIGHTS_ALIGN 256

void vl_weight_plan_of(vl_weight_plan *wp, const vl_engine_config *o) {
    memset(wp, 0, sizeof *wp);
    wp->linear = o->quant == VL_QUANT_NF4    ? VL_DTYPE_NF4
                 : o->quant == VL_QUANT_INT8 ? VL_DTYPE_Q8ROW
                                             : VL_DTYPE_BF16;
    wp->double_quant = o->double_quant;
    wp->lm_head = o->quant_lm_head;
    wp->embed_on_host = o->embed_on_host;
}

int vl_weight_plan_quantizes(const vl_weight_plan *wp) {
    return wp && wp->linear != VL_DTYPE_BF16;
}

typedef enum { PLACE_MEASURE, PLACE_COPY, PLACE_RANDOM } place_mode;

/* Three regions, one after the other: matrices (each Linear's weight or packed codes), their
 * scales, and vectors. A layer's q, k and v (and gate and up) then lie back to back with their
 * scales back to back too, so decode can run them as one fused GEMV (vl_weights_fuse). */
enum { REGION_MATRIX, REGION_SCALES, REGION_VECTOR, REGIONS };

typedef struct {
    place_mode mode;
    vl_backend *be; /* NULL when measuring for a plan (bf16 activations assumed) */
    const vl_weight_plan *wp;
    uint8_t *base;
    size_t off[REGIONS];   /* next free byte of each region */
    size_t start[REGIONS]; /* where each region begins (placing; 0 while measuring) */
    void *staging;         /* bf16 [staging_elems] on the backend, for quantization */
    int64_t staging_elems;
    uint64_t seed;
    int index;      /* parameter number: the random generator's stream */
    uint16_t *host; /* host conversion buffer, host_elems bf16 */
    int64_t host_elems;
    void *host_block; /* --embed-on-host: the pinned table */
    size_t host_bytes;
    vl_progress *progress; /* the terminal's line: bytes placed */
} placer;

static int is_quantized(vl_dtype t) {
    return t == VL_DTYPE_NF4 || t == VL_DTYPE_Q8ROW;
}

/* The format matrix w gets on the backend. */
static vl_dtype target_dtype(const placer *p, const char *kind, const vl_weight *w) {
    if (is_quantized(w->dtype)) return w->dtype; /* pre-quantized checkpoint */
    const vl_weight_plan *wp = p->wp;
    int eligible = strcmp(kind, "linear") == 0 || (wp && wp->lm_head && !strcmp(kind, "lm_head"));
    if (wp && eligible && wp->linear != VL_DTYPE_BF16) return wp->linear;
    return !p->be || p->be->act == VL_DTYPE_BF16 ? VL_DTYPE_BF16 : w->dtype;
}

static size_t align_up(size_t n) {
    return (n + WEIGHTS_ALIGN - 1) & ~(size_t)(WEIGHTS_ALIGN - 1);
}

/* Offset in the block of `bytes` new bytes of region r. Matrices start on 256 bytes (cuBLAS's
 * preferred alignment); scales and vectors on 16 (the kernels' vector loads), so that a small
 * model's q/k/v biases and scales stay back to back too. */
static size_t take(placer *p, int r, size_t bytes) {
    size_t a = r == REGION_MATRIX ? WEIGHTS_ALIGN : 16;
    size_t at = (p->off[r] + a - 1) & ~(a - 1);
    p->off[r] = at + bytes;
    return p->start[r] + at;
}

static size_t total_bytes(const placer *p) {
    size_t t = 0;
    for (int r = 0; r < REGIONS; r++) t += align_up(p->off[r]);
    return t;
}

/* Host values src[n] (dtype) -> backend dst as bf16, through the host buffer when converting. */
static int upload_bf16(placer *p, void *dst, const void *src, vl_dtype dtype, int64_t n) {
    vl_backend *be = p->be;
    if (dtype == VL_DTYPE_BF16) {
        be->upload(be, dst, src, (size_t)n * 2);
        return 0;
    }
    for (int64_t i0 = 0; i0 < n; i0 += p->host_elems) {
        int64_t k = n - i0 < p->host_elems ? n - i0 : p->host_elems;
        for (int64_t i = 0; i < k; i++) {
            float f = dtype == VL_DTYPE_F32 ? ((const float *)src)[i0 + i]
                                            : vl_f16_to_f32(((const uint16_t *)src)[i0 + i]);
            p->host[i] = vl_f32_to_bf16(f);
        }
        be->upload(be, (uint8_t *)dst + (size_t)i0 * 2, p->host, (size_t)k * 2);
    }
    return 0;
}

/* The random stream of the next parameter (same order and keys whatever the formats). */
static uint64_t next_key(placer *p) {
    return vl_mix64(p->seed * 0x9e3779b97f4a7c15ull + (uint64_t)p->index++);
}

/* Linear and embedding weights ~ uniform with std 0.02 (transformers' init std), norm weights
 * 1 + small noise, biases small: meaningless but well-scaled numbers. */
static void random_range(const char *kind, float *center, float *half) {
    int norm = strcmp(kind, "norm") == 0;
    *center = norm ? 1.0f : 0.0f;
    *half = norm ? 0.05f : 0.02f * 1.7320508f; /* uniform: std * sqrt 3 */
}

/* Values of a random parameter of n elements into backend bf16 memory. */
static int fill_random(placer *p, void *dst, int64_t n, const char *kind, uint64_t key) {
    vl_backend *be = p->be;
    float center, half;
    random_range(kind, &center, &half);
    be->fill_random_bf16(be, dst, n, key, center, half); /* both backends have it */
    return 0;
}

/* A backend weight of the cpu backend holds the activation dtype; a bf16 one holds bf16. The
 * buffer for a plain parameter of n elements in dtype `to`. */
static int place_plain(placer *p, int region, const char *kind, const void **data, vl_dtype *dtype,
                       int64_t n, vl_dtype to) {
    size_t bytes = (size_t)n * vl_dtype_size(to);
    size_t at = take(p, region, bytes);
    if (p->mode == PLACE_MEASURE) return 0;
    uint8_t *dst = p->base + at;
    if (p->mode == PLACE_RANDOM) {
        uint64_t key = next_key(p);
        if (fill_random(p, dst, n, kind, key)) return -1;
    } else if (to == *dtype) {
        p->be->upload(p->be, dst, *data, bytes);
    } else if (upload_bf16(p, dst, *data, *dtype, n)) {
        return -1;
    }
    *data = dst;
    *dtype = to;
    return 0;
}

/* A matrix quantized on the backend (from the checkpoint or from random values). */
static int place_quantized(placer *p, const char *name, const char *kind, vl_weight *w,
                           vl_dtype to) {
    vl_quant_sizes qs;
    int dq = to == VL_DTYPE_NF4 && p->wp->double_quant;
    vl_quant_sizes_of(to, dq, w->rows, w->cols, &qs);
    size_t at_data = take(p, REGION_MATRIX, qs.data);
    size_t at_absmax = take(p, REGION_SCALES, qs.absmax);
    size_t at_code = qs.absmax_code ? take(p, REGION_SCALES, qs.absmax_code) : 0;
    size_t at_map = qs.absmax_map ? take(p, REGION_SCALES, qs.absmax_map) : 0;
    int64_t n = w->rows * w->cols;
    if (n > p->staging_elems) p->staging_elems = n;
    if (p->mode == PLACE_MEASURE) return 0;
    if (!p->be->quantize)
        return vl_error_set("--quant: the %s backend cannot quantize (tensor %s)", p->be->name,
                            name);
    if (p->mode == PLACE_RANDOM) {
        if (fill_random(p, p->staging, n, kind, next_key(p))) return -1;
    } else if (upload_bf16(p, p->staging, w->data, w->dtype, n)) {
        return -1;
    }
    vl_weight q = {.data = p->base + at_data, .dtype = to, .rows = w->rows, .cols = w->cols};
    q.absmax = (const float *)(p->base + at_absmax);
    if (dq) {
        q.absmax_code = p->base + at_code;
        q.absmax_map = (const float *)(p->base + at_map);
    }
    p->be->quantize(p->be, &q, p->staging, dq);
    *w = q;
    return 0;
}

/* A pre-quantized checkpoint matrix: its buffers copied as they are. */
static int place_prequantized(placer *p, vl_weight *w) {
    vl_quant_sizes qs;
    int dq = w->absmax_code != NULL;
    vl_quant_sizes_of(w->dtype, dq, w->rows, w->cols, &qs);
    size_t at_data = take(p, REGION_MATRIX, qs.data);
    size_t at_absmax = take(p, REGION_SCALES, qs.absmax);
    size_t at_code = dq ? take(p, REGION_SCALES, qs.absmax_code) : 0;
    size_t at_map = dq ? take(p, REGION_SCALES, qs.absmax_map) : 0;
    if (p->mode == PLACE_MEASURE) return 0;
    vl_backend *be = p->be;
    vl_weight q = *w;
    be->upload(be, p->base + at_data, w->data, qs.data);
    be->upload(be, p->base + at_absmax, w->absmax, qs.absmax);
    q.data = p->base + at_data;
    q.absmax = (const float *)(p->base + at_absmax);
    if (dq) {
        be->upload(be, p->base + at_code, w->absmax_code, qs.absmax_code);
        be->upload(be, p->base + at_map, w->absmax_map, qs.absmax_map);
        q.absmax_code = p->base + at_code;
        q.absmax_map = (const float *)(p->base + at_map);
    }
    *w = q;
    return 0;
}

/* --embed-on-host: the embedding table in pinned host memory that kernels read directly (one
 * row per token), so it costs no device memory. */
static int place_embed_on_host(placer *p, const char *kind, vl_weight *w) {
    int64_t n = w->rows * w->cols;
    size_t bytes = (size_t)n * 2;
    p->host_bytes += bytes;
    if (p->mode == PLACE_MEASURE) return 0;
    void *dev = NULL;
    p->host_block = p->be->host_mapped_alloc(p->be, bytes, &dev);
    if (!p->host_block)
        return vl_error_set("--embed-on-host: cannot pin %.2f GiB of host memory for the "
                            "embedding table; drop the option",
                            (double)bytes / (1 << 30));
    if (p->mode == PLACE_RANDOM) {
        if (fill_random(p, dev, n, kind, next_key(p))) return -1;
    } else if (w->dtype == VL_DTYPE_BF16) {
        memcpy(p->host_block, w->data, bytes);
    } else {
        uint16_t *h = p->host_block;
        for (int64_t i = 0; i < n; i++) {
            float f = w->dtype == VL_DTYPE_F32 ? ((const float *)w->data)[i]
                                               : vl_f16_to_f32(((const uint16_t *)w->data)[i]);
            h[i] = vl_f32_to_bf16(f);
        }
    }
    w->data = dev;
    w->dtype = VL_DTYPE_BF16;
    return 0;
}

static int place_one(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    placer *p = ctx;
    if (w && !strcmp(kind, "embed") && p->wp && p->wp->embed_on_host &&
        (!p->be || p->be->host_mapped_alloc))
        return place_embed_on_host(p, kind, w);
    if (v) {
        vl_dtype to = !p->be || p->be->act == VL_DTYPE_BF16 ? VL_DTYPE_BF16 : v->dtype;
        return place_plain(p, REGION_VECTOR, kind, &v->data, &v->dtype, v->n, to);
    }
    if (is_quantized(w->dtype)) {
        if (p->mode == PLACE_RANDOM) return vl_error_set("internal: random quantized tensor");
        return place_prequantized(p, w);
    }
    vl_dtype to = target_dtype(p, kind, w);
    if (is_quantized(to)) return place_quantized(p, name, kind, w, to);
    return place_plain(p, REGION_MATRIX, kind, &w->data, &w->dtype, w->rows * w->cols, to);
}

/* place_one, then the progress line: bytes placed so far */
static int place_one_shown(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    placer *p = ctx;
    int rc = place_one(ctx, name, kind, w, v);
    vl_progress_update(p->progress, (double)(p->off[0] + p->off[1] + p->off[2]));
    return rc;
}

size_t vl_model_weights_bytes(vl_model *m, const vl_weight_plan *wp) {
    placer p;
    memset(&p, 0, sizeof p);
    p.mode = PLACE_MEASURE;
    p.wp = wp;
    /* place_one does not change anything while measuring */
    vl_weights_visit(m, place_one, &p);
    return total_bytes(&p);
}

size_t vl_weights_bytes(const vl_config *c, const vl_weight_plan *wp) {
    const vl_arch *a = vl_arch_find(c->model_type);
    if (!a) return 0;
    void *vw = a->vision->weights_new(c), *tw = a->text->weights_new(c);
    size_t bytes = 0;
    if (vw && tw) {
        placer p;
        memset(&p, 0, sizeof p);
        p.mode = PLACE_MEASURE;
        p.wp = wp;
        int tied = 0;
        vl_binder b = {VL_BIND_SHAPES, NULL, "--random-weights", 0, place_one, &p};
        if (vl_bind_all(&b, a, c, vw, tw, &tied) == 0) bytes = total_bytes(&p);
    }
    if (vw) a->vision->weights_free(vw);
    if (tw) a->text->weights_free(tw);
    return bytes;
}

int vl_weights_place(vl_model *m, const vl_weight_plan *wp, int random, uint64_t seed) {
    vl_backend *be = m->be;
    if (wp->embed_on_host && m->lm_head_is_embed && be->host_mapped_alloc)
        return vl_error_set("--embed-on-host: this model ties its LM head to the embedding "
                            "table, which would then be read over PCIe for every token; drop "
                            "the option");
    placer p;
    memset(&p, 0, sizeof p);
    p.mode = PLACE_MEASURE;
    p.be = be;
    p.wp = wp;
    p.seed = seed;
    p.host_elems = 1 << 20;
    vl_weights_visit(m, place_one, &p);
    size_t total = total_bytes(&p);
    m->weights_mem = be->mem_alloc(be, total ? total : 1);
    if (!m->weights_mem)
        return vl_error_set("out of %s memory: the weights need %.2f GiB; try --quant nf4",
                            be->name, (double)total / (1 << 30));
    if (p.staging_elems > 0) {
        p.staging = be->mem_alloc(be, (size_t)p.staging_elems * 2);
        if (!p.staging)
            return vl_error_set("out of %s memory: quantizing needs %.2f GiB of staging beside "
                                "the %.2f GiB of weights",
                                be->name, (double)p.staging_elems * 2 / (1 << 30),
                                (double)total / (1 << 30));
    }
    p.host = malloc((size_t)p.host_elems * 2);
    if (!p.host) {
        if (p.staging) be->mem_free(be, p.staging);
        return vl_error_set("out of host memory");
    }
    p.mode = random ? PLACE_RANDOM : PLACE_COPY;
    p.base = m->weights_mem;
    for (int r = 0; r < REGIONS; r++) {
        p.start[r] = r ? p.start[r - 1] + align_up(p.off[r - 1]) : 0;
    }
    memset(p.off, 0, sizeof p.off);
    p.host_bytes = 0;
    p.progress = m->progress;
    vl_progress_begin(p.progress, "loading weights", "bytes", (double)total);
    int err = vl_weights_visit(m, place_one_shown, &p);
    be->sync(be); /* the staging buffer and host buffer are freed next */
    vl_progress_end(p.progress);
    free(p.host);
    if (p.staging) be->mem_free(be, p.staging);
    m->weights_bytes = total;
    m->host_weights_mem = p.host_block;
    m->host_weights_bytes = p.host_block ? p.host_bytes : 0;
    /* the tied LM head, and q/k/v (gate/up) that lie back to back as one matrix each */
    if (!err) m->arch->text->after_place(&m->cfg, m->text_w, m->lm_head_is_embed);
    return err;
}
