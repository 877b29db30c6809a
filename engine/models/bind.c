/* bind.c: the generic machinery that binds an architecture's parameters by name, used by every
 * architecture's binding (engine/models/) and by the visitor.
 *
 * Tensor names come in two spellings: the published one (`model.layers.*`,
 * `visual.*`) and the one re-saved by transformers >= 4.52 (`model.language_model.layers.*`,
 * `model.visual.*`); both are accepted. Every tensor's dtype and shape are checked against the
 * config before anything runs; bitsandbytes tensors (U8/I8 with their quantization state) are
 * taken as they are (vl_bnb_weight). Also here: fused views of matrices placed back to back. */
#include "engine/models/models.h"

#include <stdlib.h>

/* The tensor called `rest` in part `part`, in whichever spelling the checkpoint uses. */
static const vl_tensor *find_spelled(const vl_checkpoint *ck, vl_name_part part, const char *rest,
                                     char *shown, size_t shown_len) {
    static const char *text_prefixes[] = {"model.", "model.language_model."};
    static const char *vision_prefixes[] = {"visual.", "model.visual."};
    static const char *top_prefixes[] = {""};
    const char **pre = part == VL_PART_TEXT     ? text_prefixes
                       : part == VL_PART_VISION ? vision_prefixes
                                                : top_prefixes;
    int n_pre = part == VL_PART_TOP ? 1 : 2;
    char name[512];
    for (int i = 0; i < n_pre; i++) {
        snprintf(name, sizeof name, "%s%s", pre[i], rest);
        const vl_tensor *t = vl_checkpoint_find(ck, name);
        if (t) {
            snprintf(shown, shown_len, "%s", name);
            return t;
        }
    }
    snprintf(shown, shown_len, "%s%s", pre[0], rest);
    return NULL;
}

static int check_float_dtype(const vl_tensor *t, const char *name) {
    if (t->dtype == VL_DTYPE_BF16 || t->dtype == VL_DTYPE_F16 || t->dtype == VL_DTYPE_F32) return 0;
    return vl_error_set("tensor %s has dtype %s; expected BF16, F16 or F32 (quantized "
                        "checkpoints need --quant support for their format)",
                        name, vl_dtype_name(t->dtype));
}

static int shape_error(const vl_tensor *t, const char *name, const char *expected) {
    char got[128] = "";
    size_t len = 0;
    for (int i = 0; i < t->ndim && len < sizeof got - 24; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "",
                                (long long)t->shape[i]);
    return vl_error_set("tensor %s has shape [%s]; the config expects [%s]", name, got, expected);
}

static int after_bind(vl_binder *b, vl_name_part part, const char *rest, const char *kind,
                      vl_weight *w, vl_vec *v) {
    if (!b->fn) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s%s",
             part == VL_PART_TEXT     ? "model."
             : part == VL_PART_VISION ? "visual."
                                      : "",
             rest);
    return b->fn(b->ctx, name, kind, w, v);
}

static const vl_tensor *lookup(vl_binder *b, vl_name_part part, const char *rest, char *name,
                               size_t name_len, int allow_quantized) {
    const vl_tensor *t = find_spelled(b->ck, part, rest, name, name_len);
    if (!t)
        vl_error_set(
            "tensor %s is missing from %s (does the checkpoint match config.json's model_type?)",
            name, b->where);
    else if (allow_quantized && (t->dtype == VL_DTYPE_U8 || t->dtype == VL_DTYPE_I8))
        return t; /* a bitsandbytes tensor: vl_bnb_weight checks it */
    else if (check_float_dtype(t, name))
        return NULL;
    return t;
}

int vl_bind_matrix(vl_binder *b, vl_name_part part, const char *rest, int64_t rows, int64_t cols,
                   vl_weight *w) {
    char name[512];
    const char *kind = strstr(rest, "embed_tokens") ? "embed"
                       : strstr(rest, "lm_head")    ? "lm_head"
                                                    : "linear";
    if (b->mode == VL_BIND_SHAPES) {
        *w = (vl_weight){.data = NULL, .dtype = VL_DTYPE_BF16, .rows = rows, .cols = cols};
    } else if (b->mode == VL_BIND_CHECKPOINT) {
        int linear = strcmp(kind, "linear") == 0;
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name, linear);
        if (!t) return -1;
        if (t->dtype == VL_DTYPE_U8 || t->dtype == VL_DTYPE_I8) {
            /* pre-quantized (bitsandbytes 4-bit or 8-bit, as transformers saves them) */
            int found = vl_bnb_weight(b->ck, name, rows, cols, w);
            if (found < 0) return -1;
            if (found == 0)
                return vl_error_set("tensor %s has dtype %s but no bitsandbytes quantization "
                                    "state; expected BF16, F16 or F32",
                                    name, vl_dtype_name(t->dtype));
        } else {
            if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
                char exp[64];
                snprintf(exp, sizeof exp, "%lld, %lld", (long long)rows, (long long)cols);
                return shape_error(t, name, exp);
            }
            *w = (vl_weight){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols};
        }
    }
    if (w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW) {
        vl_quant_sizes qs;
        vl_quant_sizes_of(w->dtype, w->absmax_code != NULL, rows, cols, &qs);
        b->bytes += qs.total;
    } else {
        b->bytes += (size_t)(rows * cols) * vl_dtype_size(w->dtype);
    }
    return after_bind(b, part, rest, kind, w, NULL);
}

int vl_bind_vec(vl_binder *b, vl_name_part part, const char *rest, int64_t n, vl_vec *v) {
    char name[512];
    if (b->mode == VL_BIND_SHAPES) {
        *v = (vl_vec){NULL, VL_DTYPE_BF16, n};
    } else if (b->mode == VL_BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name, 0);
        if (!t) return -1;
        if (t->ndim != 1 || t->shape[0] != n) {
            char exp[32];
            snprintf(exp, sizeof exp, "%lld", (long long)n);
            return shape_error(t, name, exp);
        }
        *v = (vl_vec){t->data, t->dtype, n};
    }
    b->bytes += (size_t)n * vl_dtype_size(v->dtype);
    size_t len = strlen(rest);
    const char *kind = len > 5 && strcmp(rest + len - 5, ".bias") == 0 ? "bias" : "norm";
    return after_bind(b, part, rest, kind, NULL, v);
}

int vl_bind_conv5(vl_binder *b, vl_name_part part, const char *rest, const int64_t want[5],
                  vl_weight *w) {
    char name[512];
    int64_t cols = want[1] * want[2] * want[3] * want[4];
    if (b->mode == VL_BIND_SHAPES) {
        *w = (vl_weight){.data = NULL, .dtype = VL_DTYPE_BF16, .rows = want[0], .cols = cols};
    } else if (b->mode == VL_BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name, 0);
        if (!t) return -1;
        int ok = t->ndim == 5;
        for (int i = 0; ok && i < 5; i++) ok = t->shape[i] == want[i];
        if (!ok) {
            char exp[96];
            snprintf(exp, sizeof exp, "%lld, %lld, %lld, %lld, %lld", (long long)want[0],
                     (long long)want[1], (long long)want[2], (long long)want[3],
                     (long long)want[4]);
            return shape_error(t, name, exp);
        }
        *w = (vl_weight){.data = t->data, .dtype = t->dtype, .rows = want[0], .cols = cols};
    }
    b->bytes += (size_t)(want[0] * cols) * vl_dtype_size(w->dtype);
    return after_bind(b, part, rest, "patch_embed", w, NULL);
}

int vl_bind_tied(const vl_binder *b, int tie, int *tied) {
    if (b->mode != VL_BIND_VISIT)
        *tied = tie && (!b->ck || !vl_checkpoint_find(b->ck, "lm_head.weight"));
    return *tied;
}

int vl_bind_all(vl_binder *b, const vl_arch *a, const vl_config *c, void *vision_w, void *text_w,
                int *lm_head_is_embed) {
    if (a->vision->bind(b, c, vision_w)) return -1;
    return a->text->bind(b, c, text_w, lm_head_is_embed);
}

int vl_weights_visit(vl_model *m, vl_weight_fn fn, void *ctx) {
    vl_binder b = {VL_BIND_VISIT, NULL, m->model_path, 0, fn, ctx};
    int rc = vl_bind_all(&b, m->arch, &m->cfg, m->vision_w, m->text_w, &m->lm_head_is_embed);
    if (!rc) m->weights_bytes = b.bytes;
    return rc;
}

static int is_quantized(vl_dtype t) {
    return t == VL_DTYPE_NF4 || t == VL_DTYPE_Q8ROW;
}

/* Bytes of a matrix's data and of its scales as placed. */
static void matrix_bytes(const vl_weight *w, size_t *data, size_t *scales) {
    if (is_quantized(w->dtype)) {
        vl_quant_sizes qs;
        vl_quant_sizes_of(w->dtype, 0, w->rows, w->cols, &qs);
        *data = qs.data;
        *scales = qs.absmax;
    } else {
        *data = (size_t)(w->rows * w->cols) * vl_dtype_size(w->dtype);
        *scales = 0;
    }
}

/* out = the matrices a[0..n) as one [sum rows, cols] weight when they lie back to back in the
 * same format (data and scales), with one bias vector when theirs do too (or none has one).
 * NF4 blocks run over each tensor's own flattened elements, so the concatenation is one NF4
 * matrix only when every part but the last ends on a block boundary. */
void vl_weights_fuse(vl_weight *out, vl_vec *out_b, const vl_weight *const *a,
                     const vl_vec *const *b, int n) {
    memset(out, 0, sizeof *out);
    if (out_b) memset(out_b, 0, sizeof *out_b);
    vl_weight f = *a[0];
    if (f.absmax_code || !f.data) return; /* double-quantized scales differ per tensor */
    const uint8_t *data_end = a[0]->data, *scale_end = (const uint8_t *)a[0]->absmax;
    for (int i = 0; i < n; i++) {
        const vl_weight *w = a[i];
        size_t db, sb;
        matrix_bytes(w, &db, &sb);
        if (w->dtype != f.dtype || w->cols != f.cols || w->absmax_code || w->data != data_end ||
            (const uint8_t *)w->absmax != scale_end)
            return;
        if (w->dtype == VL_DTYPE_NF4 && i + 1 < n && (w->rows * w->cols) % VL_NF4_BLOCK != 0)
            return;
        data_end += db;
        scale_end = scale_end ? scale_end + sb : NULL;
        if (i) f.rows += w->rows;
    }
    vl_vec fb = {NULL, VL_DTYPE_BF16, 0};
    if (b && b[0]->data) {
        const uint8_t *end = b[0]->data;
        for (int i = 0; i < n; i++) {
            if (!b[i]->data || b[i]->data != end || b[i]->dtype != b[0]->dtype) return;
            end += (size_t)b[i]->n * vl_dtype_size(b[i]->dtype);
            fb.n += b[i]->n;
        }
        fb.data = b[0]->data;
        fb.dtype = b[0]->dtype;
    } else if (b) {
        for (int i = 0; i < n; i++)
            if (b[i]->data) return;
    }
    *out = f;
    if (out_b) *out_b = fb;
}
