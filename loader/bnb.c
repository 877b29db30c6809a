/* bnb.c: recognize a Linear weight that a checkpoint stores pre-quantized by bitsandbytes (the
 * "-bnb-4bit" / "-8bit" checkpoints transformers saves) and describe it as a vl_weight whose
 * pointers lead into the mmapped file.
 *
 * The on-disk layouts (bitsandbytes 0.50.2 through transformers 5; tests/fixtures/tiny-qwen2vl):
 *   4-bit  NAME                               U8 [ceil(n/2), 1]  packed codes (n = rows * cols)
 *          NAME.quant_state.bitsandbytes__nf4 U8 [len]           the quant state as JSON text:
 *                 quant_type, blocksize, dtype, shape [rows, cols], and with double quantization
 *                 nested_blocksize, nested_dtype, nested_offset
 *          NAME.quant_map                     F32 [16]            the 4-bit code table
 *          NAME.absmax                        F32 [n_blocks]      block scales, or with double
 *                                             U8  [n_blocks]      quantization their 8-bit codes
 *          NAME.nested_absmax                 F32 [ceil(n_blocks / 256)]
 *          NAME.nested_quant_map              F32 [256]           the 8-bit code table
 *   8-bit  NAME = PREFIX.weight               I8 [rows, cols]     row-wise int8 (CB)
 *          PREFIX.SCB                         F32 [rows]          row absmax
 *          PREFIX.weight_format               U8 []               0 = row-major (optional)
 * Every piece is checked against the others and against the shape the config expects before
 * any pointer is handed out; what is wrong is reported naming the tensor. The float buffers may
 * sit at any byte offset of the file (safetensors does not align tensors), so readers must not
 * assume 4-byte alignment (kernels/cpu_quant.c reads them with memcpy).
 * Leaves out: FP4 (refused with a message), quant_storage other than uint8, block sizes other
 * than 64 / 256, and int8 weights saved in the old tiled layouts (weight_format != 0). */
#include "loader/loader.h"

#include <cJSON.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BNB_QS_NF4   ".quant_state.bitsandbytes__nf4"
#define BNB_QS_FP4   ".quant_state.bitsandbytes__fp4"
#define BNB_MAX_QS   65536 /* a quant state is ~170 bytes of JSON */
#define BNB_NAME_CAP 1024

/* NAME + suffix, or NULL (error set) when too long. */
static const char *bnb_name(char buf[BNB_NAME_CAP], const char *name, size_t name_len,
                            const char *suffix) {
    int len = snprintf(buf, BNB_NAME_CAP, "%.*s%s", (int)name_len, name, suffix);
    if (len < 0 || len >= BNB_NAME_CAP) {
        vl_error_set("tensor name %.200s... is longer than %d bytes", name, BNB_NAME_CAP - 1);
        return NULL;
    }
    return buf;
}

static const vl_tensor *bnb_find(const vl_checkpoint *ck, const char *name, const char *suffix) {
    char buf[BNB_NAME_CAP];
    const char *full = bnb_name(buf, name, strlen(name), suffix);
    return full ? vl_checkpoint_find(ck, full) : NULL;
}

/* The tensor NAME+suffix with the given dtype and element count, or NULL with the error set. */
static const vl_tensor *bnb_need(const vl_checkpoint *ck, const char *name, const char *suffix,
                                 vl_dtype dtype, int64_t numel, const char *what) {
    const vl_tensor *t = bnb_find(ck, name, suffix);
    if (!t) {
        vl_error_set("tensor %s%s (%s of the bitsandbytes weight %s) is missing", name, suffix,
                     what, name);
        return NULL;
    }
    if (t->dtype != dtype) {
        vl_error_set("tensor %s%s (%s) has dtype %s; expected %s", name, suffix, what,
                     vl_dtype_name(t->dtype), vl_dtype_name(dtype));
        return NULL;
    }
    if (t->numel != numel) {
        vl_error_set("tensor %s%s (%s) has %lld elements; expected %lld", name, suffix, what,
                     (long long)t->numel, (long long)numel);
        return NULL;
    }
    return t;
}

static float bnb_f32_at(const vl_tensor *t, int64_t i) {
    float v;
    memcpy(&v, (const unsigned char *)t->data + i * 4, 4);
    return v;
}

/* Every element finite (and >= 0 when nonneg): scales that are not would poison every output. */
static int bnb_check_f32(const char *name, const char *suffix, const vl_tensor *t, int nonneg) {
    for (int64_t i = 0; i < t->numel; i++) {
        float v = bnb_f32_at(t, i);
        if (!isfinite(v) || (nonneg && v < 0.0f))
            return vl_error_set("tensor %s%s: element %lld is %g; expected a finite%s value", name,
                                suffix, (long long)i, (double)v, nonneg ? ", >= 0" : "");
    }
    return 0;
}

/* An integer JSON member equal to `want`. */
static int bnb_json_int(const cJSON *root, const char *key, double want, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(j))
        return vl_error_set("tensor %s" BNB_QS_NF4 ": \"%s\" is missing or not a number", name,
                            key);
    if (j->valuedouble != want)
        return vl_error_set("tensor %s" BNB_QS_NF4 ": %s %.17g is not supported; expected %.17g",
                            name, key, j->valuedouble, want);
    return 0;
}

/* The parsed quant state of a 4-bit weight. */
typedef struct {
    int double_quant;
    float offset;
} bnb_state;

static int bnb_parse_state(const vl_tensor *qs, const char *name, int64_t rows, int64_t cols,
                           bnb_state *st) {
    if (qs->dtype != VL_DTYPE_U8 || qs->nbytes == 0 || qs->nbytes > BNB_MAX_QS)
        return vl_error_set("tensor %s" BNB_QS_NF4 " is %s of %zu bytes; expected U8 JSON text "
                            "of at most %d bytes",
                            name, vl_dtype_name(qs->dtype), qs->nbytes, BNB_MAX_QS);
    /* one JSON object and nothing after it but blanks */
    char what[320];
    snprintf(what, sizeof what, "tensor %.240s" BNB_QS_NF4 " (a bitsandbytes quant state)", name);
    cJSON *root = NULL;
    if (vl_json_parse(qs->data, qs->nbytes, what, &root)) return -1;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vl_error_set("tensor %s" BNB_QS_NF4 " is not a JSON object (the quant state of "
                            "the bitsandbytes weight is damaged)",
                            name);
    }
    int rc = -1;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "quant_type");
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "shape");
    const cJSON *offset = cJSON_GetObjectItemCaseSensitive(root, "nested_offset");
    const cJSON *nested_bs = cJSON_GetObjectItemCaseSensitive(root, "nested_blocksize");
    const cJSON *nested_dtype = cJSON_GetObjectItemCaseSensitive(root, "nested_dtype");
    if (!cJSON_IsString(type)) {
        vl_error_set("tensor %s" BNB_QS_NF4 ": \"quant_type\" is missing or not a string", name);
        goto done;
    }
    if (strcmp(type->valuestring, "fp4") == 0) {
        vl_error_set("tensor %s: fp4 checkpoints are not supported; use an nf4 one", name);
        goto done;
    }
    if (strcmp(type->valuestring, "nf4") != 0) {
        vl_error_set("tensor %s" BNB_QS_NF4 ": quant_type \"%.40s\" is not supported; expected "
                     "\"nf4\"",
                     name, type->valuestring);
        goto done;
    }
    if (bnb_json_int(root, "blocksize", VL_NF4_BLOCK, name) != 0) goto done;
    if (!cJSON_IsString(dtype) || (strcmp(dtype->valuestring, "float32") != 0 &&
                                   strcmp(dtype->valuestring, "bfloat16") != 0 &&
                                   strcmp(dtype->valuestring, "float16") != 0)) {
        vl_error_set("tensor %s" BNB_QS_NF4 ": \"dtype\" is missing or not float32, bfloat16 "
                     "or float16",
                     name);
        goto done;
    }
    const cJSON *d0 = cJSON_GetArrayItem(shape, 0), *d1 = cJSON_GetArrayItem(shape, 1);
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 || !cJSON_IsNumber(d0) ||
        !cJSON_IsNumber(d1) || d0->valuedouble != (double)rows || d1->valuedouble != (double)cols) {
        char got[64] = "not a list of two numbers";
        if (cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == 2 && cJSON_IsNumber(d0) &&
            cJSON_IsNumber(d1))
            snprintf(got, sizeof got, "[%.0f, %.0f]", d0->valuedouble, d1->valuedouble);
        vl_error_set("tensor %s" BNB_QS_NF4 ": shape is %s; the config expects [%lld, %lld]", name,
                     got, (long long)rows, (long long)cols);
        goto done;
    }
    st->double_quant = offset != NULL || nested_bs != NULL;
    st->offset = 0.0f;
    if (st->double_quant) {
        if (bnb_json_int(root, "nested_blocksize", VL_NF4_DQ_BLOCK, name) != 0) goto done;
        if (!cJSON_IsNumber(offset) || !(fabs(offset->valuedouble) <= FLT_MAX)) {
            vl_error_set("tensor %s" BNB_QS_NF4 ": \"nested_offset\" is missing or not a finite "
                         "number",
                         name);
            goto done;
        }
        if (nested_dtype &&
            (!cJSON_IsString(nested_dtype) || strcmp(nested_dtype->valuestring, "float32") != 0)) {
            vl_error_set("tensor %s" BNB_QS_NF4 ": nested_dtype is not \"float32\"", name);
            goto done;
        }
        st->offset = (float)offset->valuedouble; /* written from a float32: exact */
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

static int bnb_nf4(const vl_checkpoint *ck, const char *name, const vl_tensor *qs, int64_t rows,
                   int64_t cols, vl_weight *out) {
    bnb_state st = {0, 0.0f};
    if (bnb_parse_state(qs, name, rows, cols, &st) != 0) return -1;
    const int64_t n = rows * cols, n_blocks = (n + VL_NF4_BLOCK - 1) / VL_NF4_BLOCK;

    const vl_tensor *packed = vl_checkpoint_find(ck, name);
    if (!packed)
        return vl_error_set("tensor %s is missing (its bitsandbytes quant state is present)", name);
    if (packed->dtype != VL_DTYPE_U8)
        return vl_error_set("tensor %s (packed 4-bit weight) has dtype %s; expected U8 "
                            "(bnb_4bit_quant_storage other than uint8 is not supported)",
                            name, vl_dtype_name(packed->dtype));
    if (packed->nbytes != (size_t)((n + 1) / 2))
        return vl_error_set("tensor %s (packed 4-bit weight) has %zu bytes; expected %lld for "
                            "[%lld, %lld]",
                            name, packed->nbytes, (long long)((n + 1) / 2), (long long)rows,
                            (long long)cols);

    const vl_tensor *qmap = bnb_need(ck, name, ".quant_map", VL_DTYPE_F32, 16, "4-bit code table");
    if (!qmap) return -1;
    for (int i = 0; i < 16; i++)
        if (bnb_f32_at(qmap, i) != vl_nf4_table[i])
            return vl_error_set("tensor %s.quant_map: entry %d is %.9g, not the NF4 value %.9g; "
                                "only the standard NF4 table is supported",
                                name, i, (double)bnb_f32_at(qmap, i), (double)vl_nf4_table[i]);

    memset(out, 0, sizeof *out);
    out->data = packed->data;
    out->dtype = VL_DTYPE_NF4;
    out->rows = rows;
    out->cols = cols;
    const vl_tensor *nested = bnb_find(ck, name, ".nested_absmax");
    if (!st.double_quant) {
        if (nested)
            return vl_error_set("tensor %s.nested_absmax is present but the quant state of %s "
                                "has no nested_offset (double quantization); the checkpoint is "
                                "inconsistent",
                                name, name);
        const vl_tensor *absmax =
            bnb_need(ck, name, ".absmax", VL_DTYPE_F32, n_blocks, "block scales");
        if (!absmax || bnb_check_f32(name, ".absmax", absmax, 1) != 0) return -1;
        out->absmax = absmax->data;
        return 1;
    }
    const vl_tensor *codes =
        bnb_need(ck, name, ".absmax", VL_DTYPE_U8, n_blocks, "8-bit codes of the block scales");
    if (!codes) return -1;
    nested = bnb_need(ck, name, ".nested_absmax", VL_DTYPE_F32,
                      (n_blocks + VL_NF4_DQ_BLOCK - 1) / VL_NF4_DQ_BLOCK, "nested scales");
    if (!nested || bnb_check_f32(name, ".nested_absmax", nested, 0) != 0) return -1;
    const vl_tensor *nmap =
        bnb_need(ck, name, ".nested_quant_map", VL_DTYPE_F32, 256, "8-bit code table");
    if (!nmap || bnb_check_f32(name, ".nested_quant_map", nmap, 0) != 0) return -1;
    out->absmax = nested->data;
    out->absmax_code = codes->data;
    out->absmax_map = nmap->data;
    out->absmax_offset = st.offset;
    return 1;
}

static int bnb_int8(const vl_checkpoint *ck, const char *name, size_t prefix_len,
                    const vl_tensor *scb, int64_t rows, int64_t cols, vl_weight *out) {
    char scb_name[BNB_NAME_CAP], fmt_name[BNB_NAME_CAP];
    if (!bnb_name(scb_name, name, prefix_len, ".SCB") ||
        !bnb_name(fmt_name, name, prefix_len, ".weight_format"))
        return -1;
    const vl_tensor *w = vl_checkpoint_find(ck, name);
    if (!w) return vl_error_set("tensor %s is missing (%s is present)", name, scb_name);
    if (w->dtype != VL_DTYPE_I8)
        return vl_error_set("tensor %s has dtype %s but %s is present; expected the I8 weight "
                            "of bitsandbytes 8-bit",
                            name, vl_dtype_name(w->dtype), scb_name);
    if (w->ndim != 2 || w->shape[0] != rows || w->shape[1] != cols) {
        char got[160] = "[";
        for (int d = 0; d < w->ndim && strlen(got) < 120; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)w->shape[d]);
        strcat(got, "]");
        return vl_error_set("tensor %s (int8 weight) has shape %s; the config expects "
                            "[%lld, %lld]",
                            name, got, (long long)rows, (long long)cols);
    }
    if (scb->dtype != VL_DTYPE_F32 || scb->numel != rows)
        return vl_error_set("tensor %s is %s with %lld elements; expected F32 with %lld (one "
                            "scale per row of %s)",
                            scb_name, vl_dtype_name(scb->dtype), (long long)scb->numel,
                            (long long)rows, name);
    if (bnb_check_f32(scb_name, "", scb, 1) != 0) return -1;
    const vl_tensor *fmt = vl_checkpoint_find(ck, fmt_name);
    if (fmt) {
        int64_t v = -1;
        if (fmt->numel == 1 && fmt->dtype == VL_DTYPE_U8) v = *(const uint8_t *)fmt->data;
        if (fmt->numel == 1 && fmt->dtype == VL_DTYPE_I8) v = *(const int8_t *)fmt->data;
        if (fmt->numel == 1 && fmt->dtype == VL_DTYPE_I64) memcpy(&v, fmt->data, 8);
        if (v != 0)
            return vl_error_set("tensor %s: weight format %lld is not supported; expected 0 "
                                "(row-major, what bitsandbytes >= 0.45 saves)",
                                fmt_name, (long long)v);
    }
    memset(out, 0, sizeof *out);
    out->data = w->data;
    out->dtype = VL_DTYPE_Q8ROW;
    out->rows = rows;
    out->cols = cols;
    out->absmax = scb->data;
    return 1;
}

int vl_bnb_weight(const vl_checkpoint *ck, const char *name, int64_t rows, int64_t cols,
                  vl_weight *out) {
    if (rows <= 0 || cols <= 0 || rows > INT64_MAX / cols)
        return vl_error_set("tensor %s: expected shape [%lld, %lld] is not a matrix", name,
                            (long long)rows, (long long)cols);
    if (strlen(name) + 64 > BNB_NAME_CAP)
        return vl_error_set("tensor name %.200s... is longer than %d bytes", name,
                            BNB_NAME_CAP - 64);
    if (bnb_find(ck, name, BNB_QS_FP4))
        return vl_error_set("tensor %s: fp4 checkpoints are not supported; use an nf4 one", name);
    const vl_tensor *qs = bnb_find(ck, name, BNB_QS_NF4);
    if (qs) return bnb_nf4(ck, name, qs, rows, cols, out);

    /* 8-bit: the scales belong to the module (PREFIX.SCB for PREFIX.weight) */
    size_t len = strlen(name), suffix = strlen(".weight");
    if (len > suffix && strcmp(name + len - suffix, ".weight") == 0) {
        char buf[BNB_NAME_CAP];
        const char *scb_name = bnb_name(buf, name, len - suffix, ".SCB");
        const vl_tensor *scb = scb_name ? vl_checkpoint_find(ck, scb_name) : NULL;
        if (scb) return bnb_int8(ck, name, len - suffix, scb, rows, cols, out);
    }

    /* pieces of a quantized weight without the piece that says how to read them */
    const vl_tensor *w = vl_checkpoint_find(ck, name);
    if (bnb_find(ck, name, ".absmax") || bnb_find(ck, name, ".quant_map"))
        return vl_error_set("tensor %s.absmax or .quant_map is present but %s" BNB_QS_NF4
                            " is missing; the bitsandbytes 4-bit checkpoint is incomplete",
                            name, name);
    if (w && w->dtype == VL_DTYPE_I8)
        return vl_error_set("tensor %s is I8 but its row scales (.SCB next to it) are missing; "
                            "the bitsandbytes 8-bit checkpoint is incomplete",
                            name);
    return 0;
}
