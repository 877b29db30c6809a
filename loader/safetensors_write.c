/* safetensors_write.c: write one .safetensors file (for `vlrun synth` and tests), in the layout
 * the reader (loader/safetensors.c) and the reference loader accept: a JSON header padded with
 * spaces to 8 bytes, then the tensors back to back in the order given, so they tile the data
 * area exactly. The file is written under NAME.tmp (created afresh: never through a FIFO or a
 * symlink left there) and renamed at the end, so a failed write leaves nothing half-written.
 * Leaves out: sharding and an index (one file only), metadata beyond {"format": "pt"}. */
#include "loader/loader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_JSON_MAXINT 9007199254740992.0 /* 2^53: larger integers are not exact in a double */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} st_buf;

static void st_buf_put(st_buf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void st_buf_str(st_buf *b, const char *s) {
    st_buf_put(b, s, strlen(s));
}

static void st_buf_u64(st_buf *b, uint64_t v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    st_buf_put(b, tmp, (size_t)k);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; UTF-8 passes as is. */
static void st_buf_json_string(st_buf *b, const char *s) {
    st_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            st_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            st_buf_put(b, esc, 6);
        } else {
            st_buf_put(b, (const char *)&c, 1);
        }
    }
    st_buf_put(b, "\"", 1);
}

static int st_cstr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check the tensors to write and compute each one's byte size. */
static int st_check_outputs(const char *path, const vl_tensor_out *ts, int n, uint64_t *nbytes) {
    for (int i = 0; i < n; i++) {
        const vl_tensor_out *t = &ts[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
            return vl_error_set("cannot write %s: tensor %d has no usable name", path, i);
        if ((int)t->dtype < 0 || t->dtype >= VL_DTYPE_COUNT)
            return vl_error_set("cannot write %s: tensor %s has an unknown dtype %d", path, t->name,
                                (int)t->dtype);
        if (t->ndim < 0 || t->ndim > VL_MAX_DIMS)
            return vl_error_set("cannot write %s: tensor %s has %d dimensions (expected 0..%d)",
                                path, t->name, t->ndim, VL_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            int64_t v = t->shape[d];
            if (v < 0 || (double)v > ST_JSON_MAXINT)
                return vl_error_set("cannot write %s: tensor %s has shape[%d] = %lld", path,
                                    t->name, d, (long long)v);
            if (v != 0 && numel > (uint64_t)INT64_MAX / (uint64_t)v)
                return vl_error_set("cannot write %s: tensor %s is too large", path, t->name);
            numel *= (uint64_t)v;
        }
        size_t es = vl_dtype_size(t->dtype);
        if (numel > (uint64_t)INT64_MAX / es || numel > SIZE_MAX / es)
            return vl_error_set("cannot write %s: tensor %s is too large", path, t->name);
        nbytes[i] = numel * es;
        if (nbytes[i] > 0 && !t->data)
            return vl_error_set("cannot write %s: tensor %s has no data", path, t->name);
    }
    const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    if (!names) return vl_error_set("out of memory writing %s", path);
    for (int i = 0; i < n; i++) names[i] = ts[i].name;
    qsort(names, (size_t)n, sizeof *names, st_cstr_cmp);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = vl_error_set("cannot write %s: tensor %s is given twice", path, names[i]);
    free(names);
    return rc;
}

int vl_safetensors_write(const char *path, const vl_tensor_out *tensors, int n) {
    if (n < 0 || (n > 0 && !tensors))
        return vl_error_set("cannot write %s: bad tensor list (n = %d)", path, n);
    uint64_t *nbytes = malloc((size_t)(n > 0 ? n : 1) * sizeof *nbytes);
    if (!nbytes) return vl_error_set("out of memory writing %s", path);
    st_buf h = {0};
    char *tmp = NULL;
    FILE *f = NULL;
    int rc = st_check_outputs(path, tensors, n, nbytes);
    if (rc != 0) goto done;

    st_buf_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const vl_tensor_out *t = &tensors[i];
        st_buf_str(&h, ",");
        st_buf_json_string(&h, t->name);
        st_buf_str(&h, ":{\"dtype\":\"");
        st_buf_str(&h, vl_dtype_name(t->dtype));
        st_buf_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) st_buf_str(&h, ",");
            st_buf_u64(&h, (uint64_t)t->shape[d]);
        }
        st_buf_str(&h, "],\"data_offsets\":[");
        st_buf_u64(&h, offset);
        st_buf_str(&h, ",");
        st_buf_u64(&h, offset + nbytes[i]);
        st_buf_str(&h, "]}");
        offset += nbytes[i];
    }
    st_buf_str(&h, "}");
    while (h.n % 8) st_buf_put(&h, " ", 1); /* data starts 8-byte aligned */
    if (h.oom) {
        rc = vl_error_set("out of memory writing %s", path);
        goto done;
    }

    size_t plen = strlen(path);
    tmp = malloc(plen + 5);
    if (!tmp) {
        rc = vl_error_set("out of memory writing %s", path);
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    if (vl_output_target_check(path, "safetensors output") ||
        !(f = vl_create_fresh(tmp, "safetensors output"))) {
        rc = -1;
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
    for (int i = 0; ok && i < n; i++)
        if (nbytes[i]) ok = fwrite(tensors[i].data, 1, (size_t)nbytes[i], f) == nbytes[i];
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    f = NULL;
    if (!ok) {
        rc = vl_error_set("cannot write %s: %s", tmp, strerror(e));
        remove(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = vl_error_set("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        goto done;
    }
done:
    free(tmp);
    free(h.p);
    free(nbytes);
    return rc;
}
