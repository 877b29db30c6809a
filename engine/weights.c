/* weights.c: the parameters on the backend: one block of backend memory holding every bound
 * parameter, each buffer 256-byte aligned, in one of three ways:
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
 * Which Linears are quantized is what transformers + bitsandbytes do (spec 6.2): every Linear of
 * the decoder and of the vision tower including the merger; the embeddings, the LM head (unless
 * --quant-lm-head), the patch embedding, norms and biases stay bf16. NF4 needs in-features that
 * are a multiple of its 64-element block; a Linear that is not (only tiny test models) stays
 * bf16.
 * Leaves out: the embedding table in host memory (planned, not implemented here). */
#include "engine/engine.h"

#include <stdlib.h>

#define WEIGHTS_ALIGN 256

void vl_weight_plan_from_options(vl_weight_plan *wp, const vl_options *o) {
    memset(wp, 0, sizeof *wp);
    wp->linear = o->quant == VL_QUANT_NF4    ? VL_DTYPE_NF4
                 : o->quant == VL_QUANT_INT8 ? VL_DTYPE_Q8ROW
                                             : VL_DTYPE_BF16;
    wp->double_quant = o->quant_double;
    wp->lm_head = o->quant_lm_head;
    wp->embed_on_host = o->embed_on_host;
}

int vl_weight_plan_quantizes(const vl_weight_plan *wp) {
    return wp && wp->linear != VL_DTYPE_BF16;
}

typedef enum { PLACE_MEASURE, PLACE_COPY, PLACE_RANDOM } place_mode;

typedef struct {
    place_mode mode;
    vl_backend *be; /* NULL when measuring for a plan (bf16 activations assumed) */
    const vl_weight_plan *wp;
    uint8_t *base;
    size_t off;
    void *staging; /* bf16 [staging_elems] on the backend, for quantization */
    int64_t staging_elems;
    uint64_t seed;
    int index; /* parameter number: the random generator's stream */
    uint16_t *host; /* host conversion buffer, host_elems bf16 */
    int64_t host_elems;
} placer;

static int is_quantized(vl_dtype t) {
    return t == VL_DTYPE_NF4 || t == VL_DTYPE_Q8ROW;
}

/* The format matrix w gets on the backend. */
static vl_dtype target_dtype(const placer *p, const char *kind, const vl_weight *w) {
    if (is_quantized(w->dtype)) return w->dtype; /* pre-quantized checkpoint */
    const vl_weight_plan *wp = p->wp;
    int eligible = strcmp(kind, "linear") == 0 || (wp && wp->lm_head && !strcmp(kind, "lm_head"));
    if (wp && eligible && wp->linear != VL_DTYPE_BF16 &&
        !(wp->linear == VL_DTYPE_NF4 && w->cols % VL_NF4_BLOCK != 0))
        return wp->linear;
    return !p->be || p->be->act == VL_DTYPE_BF16 ? VL_DTYPE_BF16 : w->dtype;
}

static size_t take(placer *p, size_t bytes) {
    size_t at = (p->off + WEIGHTS_ALIGN - 1) & ~(size_t)(WEIGHTS_ALIGN - 1);
    p->off = at + bytes;
    return at;
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
    if (be->fill_random_bf16) {
        be->fill_random_bf16(be, dst, n, key, center, half);
        return 0;
    }
    for (int64_t i0 = 0; i0 < n; i0 += p->host_elems) {
        int64_t k = n - i0 < p->host_elems ? n - i0 : p->host_elems;
        for (int64_t i = 0; i < k; i++) {
            double u = vl_random_unit(key + (uint64_t)(i0 + i));
            p->host[i] = vl_f32_to_bf16(center + half * (float)(2.0 * u - 1.0));
        }
        be->upload(be, (uint8_t *)dst + (size_t)i0 * 2, p->host, (size_t)k * 2);
    }
    return 0;
}

/* A backend weight of the cpu backend holds the activation dtype; a bf16 one holds bf16. The
 * buffer for a plain parameter of n elements in dtype `to`. */
static int place_plain(placer *p, const char *kind, const void **data, vl_dtype *dtype,
                       int64_t n, vl_dtype to) {
    size_t bytes = (size_t)n * vl_dtype_size(to);
    size_t at = take(p, bytes);
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
    size_t at_data = take(p, qs.data), at_absmax = take(p, qs.absmax);
    size_t at_code = qs.absmax_code ? take(p, qs.absmax_code) : 0;
    size_t at_map = qs.absmax_map ? take(p, qs.absmax_map) : 0;
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
    size_t at_data = take(p, qs.data), at_absmax = take(p, qs.absmax);
    size_t at_code = dq ? take(p, qs.absmax_code) : 0;
    size_t at_map = dq ? take(p, qs.absmax_map) : 0;
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

static int place_one(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    placer *p = ctx;
    if (v) {
        vl_dtype to = !p->be || p->be->act == VL_DTYPE_BF16 ? VL_DTYPE_BF16 : v->dtype;
        return place_plain(p, kind, &v->data, &v->dtype, v->n, to);
    }
    if (is_quantized(w->dtype)) {
        if (p->mode == PLACE_RANDOM) return vl_error_set("internal: random quantized tensor");
        return place_prequantized(p, w);
    }
    vl_dtype to = target_dtype(p, kind, w);
    if (is_quantized(to)) return place_quantized(p, name, kind, w, to);
    return place_plain(p, kind, &w->data, &w->dtype, w->rows * w->cols, to);
}

size_t vl_model_weights_bytes(vl_model *m, const vl_weight_plan *wp) {
    placer p = {PLACE_MEASURE, NULL, wp, NULL, 0, NULL, 0, 0, 0, NULL, 0};
    /* place_one does not change anything while measuring */
    vl_weights_visit(m, place_one, &p);
    return p.off;
}

size_t vl_weights_bytes(const vl_config *c, const vl_weight_plan *wp) {
    vl_model m;
    memset(&m, 0, sizeof m);
    m.cfg = *c;
    m.w.blocks = calloc((size_t)c->v_depth, sizeof *m.w.blocks);
    m.w.layers = calloc((size_t)c->n_layers, sizeof *m.w.layers);
    size_t bytes = 0;
    if (m.w.blocks && m.w.layers && vl_model_bind_shapes(&m) == 0)
        bytes = vl_model_weights_bytes(&m, wp);
    free(m.w.blocks);
    free(m.w.layers);
    return bytes;
}

int vl_weights_place(vl_model *m, const vl_weight_plan *wp, int random, uint64_t seed) {
    vl_backend *be = m->be;
    placer p = {PLACE_MEASURE, be, wp, NULL, 0, NULL, 0, seed, 0, NULL, 1 << 20};
    vl_weights_visit(m, place_one, &p);
    size_t total = p.off;
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
    p.off = 0;
    int err = vl_weights_visit(m, place_one, &p);
    be->sync(be); /* the staging buffer and host buffer are freed next */
    free(p.host);
    if (p.staging) be->mem_free(be, p.staging);
    if (m->w.lm_head_is_embed) m->w.lm_head = m->w.embed;
    m->weights_bytes = total;
    return err;
}
