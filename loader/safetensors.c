/* safetensors.c: read one .safetensors file of a checkpoint, mmapped read-only and validated
 * before anything reads a tensor, and the checkpoint's tensor table (sorted, unique names;
 * lookup, close). vl_checkpoint_open (a directory or one file) is in safetensors_folder.c.
 *
 * Nothing in a file is trusted: the file must be a regular file (vl_open_regular: a FIFO cannot
 * block the open), the 8-byte header length is checked against the file size and a cap, the
 * header must be one strict JSON object (vl_json_parse: no trailing text, NUL byte or repeated
 * key), every tensor needs a supported dtype, a shape of at most VL_MAX_DIMS non-negative
 * integers and data_offsets whose length is exactly elements x dtype size (overflow-checked).
 * The tensors must tile the data area exactly, the reference loader's rule: sorted by offsets
 * the first starts at 0, each starts where the previous one ended and the last ends at the end
 * of the file (so no bytes are shared and none are left over; empty tensors fit anywhere on the
 * way). Names must be unique across all files of a checkpoint. Messages never quote bytes of a
 * file that is not a safetensors file (an implausible header length is not printed).
 * Leaves out: alignment of tensor data (safetensors only pads the header to 8 bytes, so readers
 * of F32/I64 data must not assume more), UTF-8 validation of the header (names are only
 * compared), big-endian hosts, and dtypes beyond F32/F16/BF16/U8/I8/I32/I64 (F64, FP8,
 * BOOL... are rejected by name). */
#include "loader/safetensors_internal.h"

#include <cJSON.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ST_MAX_HEADER  (100u << 20)       /* the reference implementation's own cap */
#define ST_JSON_MAXINT 9007199254740992.0 /* 2^53: larger integers are not exact in a double */

static const char *const st_dtype_list = "F32, F16, BF16, U8, I8, I32 or I64";

static int st_dtype_parse(const char *s, vl_dtype *out) {
    for (int t = 0; t < VL_DTYPE_COUNT; t++) {
        if (strcmp(s, vl_dtype_name((vl_dtype)t)) == 0) {
            *out = (vl_dtype)t;
            return 0;
        }
    }
    return -1;
}

/* A JSON number that is an exact non-negative integer (shape entries, offsets). */
static int st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_JSON_MAXINT || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* How a rejected JSON value looked, for "got X" in messages. */
static void st_json_describe(const cJSON *j, char *buf, size_t cap) {
    if (!j)
        snprintf(buf, cap, "nothing");
    else if (cJSON_IsNumber(j))
        snprintf(buf, cap, "%.17g", j->valuedouble);
    else if (cJSON_IsString(j))
        snprintf(buf, cap, "\"%.60s\"", j->valuestring);
    else if (cJSON_IsArray(j))
        snprintf(buf, cap, "a list of %d items", cJSON_GetArraySize(j));
    else if (cJSON_IsObject(j))
        snprintf(buf, cap, "an object");
    else if (cJSON_IsBool(j))
        snprintf(buf, cap, "%s", cJSON_IsTrue(j) ? "true" : "false");
    else
        snprintf(buf, cap, "null");
}

char *vl_st_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int st_map_file(vl_mapped_file *mf, const char *open_path, const char *shown_path,
                       const char *what) {
    int fd;
    int64_t size;
    if (vl_open_regular(open_path, what, &fd, &size) != 0) return -1;
    if (size < 8) {
        close(fd);
        return vl_error_set("%s is %lld bytes, too short for a safetensors file (expected at "
                            "least 8: the header length); the file is empty or truncated",
                            shown_path, (long long)size);
    }
    if ((unsigned long long)size > (unsigned long long)SIZE_MAX) {
        close(fd);
        return vl_error_set("%s is too large to map on this machine", shown_path);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return vl_error_set("cannot mmap %s: %s", shown_path, strerror(e));
    mf->path = strdup(shown_path);
    if (!mf->path) {
        munmap(map, (size_t)size);
        return vl_error_set("out of memory opening %s", shown_path);
    }
    mf->map = map;
    mf->size = (size_t)size;
    return 0;
}

/* One header entry -> t (t->name is strdup'ed only on success). */
static int st_parse_tensor(const char *path, const cJSON *item, const uint8_t *data,
                           uint64_t data_len, int file, vl_tensor *t) {
    const char *name = item->string;
    char got[96];
    if (!cJSON_IsObject(item)) {
        st_json_describe(item, got, sizeof got);
        return vl_error_set("%s: tensor %s: expected an object with dtype, shape and "
                            "data_offsets, got %s",
                            path, name, got);
    }
    memset(t, 0, sizeof *t);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!jd)
        return vl_error_set("%s: tensor %s has no dtype (expected %s)", path, name, st_dtype_list);
    if (!cJSON_IsString(jd) || st_dtype_parse(jd->valuestring, &t->dtype) != 0) {
        st_json_describe(jd, got, sizeof got);
        return vl_error_set("%s: tensor %s has dtype %s, which is not supported (expected %s)",
                            path, name, got, st_dtype_list);
    }
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    int ndim = cJSON_IsArray(js) ? cJSON_GetArraySize(js) : -1;
    if (ndim < 0 || ndim > VL_MAX_DIMS) {
        st_json_describe(js, got, sizeof got);
        return vl_error_set("%s: tensor %s: shape must be a list of at most %d integers, got %s",
                            path, name, VL_MAX_DIMS, got);
    }
    t->ndim = ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        const cJSON *jv = cJSON_GetArrayItem(js, d);
        uint64_t v;
        if (st_json_uint(jv, &v) != 0) {
            st_json_describe(jv, got, sizeof got);
            return vl_error_set("%s: tensor %s: shape[%d] must be a non-negative integer, got %s",
                                path, name, d, got);
        }
        if (v != 0 && (uint64_t)numel > (uint64_t)INT64_MAX / v)
            return vl_error_set("%s: tensor %s: shape has more elements than fit in 64 bits", path,
                                name);
        t->shape[d] = (int64_t)v;
        numel *= (int64_t)v;
    }
    t->numel = numel;
    size_t esize = vl_dtype_size(t->dtype);
    if ((uint64_t)numel > (uint64_t)INT64_MAX / esize || (uint64_t)numel > SIZE_MAX / esize)
        return vl_error_set("%s: tensor %s: byte size overflows", path, name);
    uint64_t nbytes = (uint64_t)numel * esize;

    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        st_json_uint(cJSON_GetArrayItem(jo, 0), &begin) != 0 ||
        st_json_uint(cJSON_GetArrayItem(jo, 1), &end) != 0) {
        st_json_describe(jo, got, sizeof got);
        return vl_error_set("%s: tensor %s: data_offsets must be [begin, end], two non-negative "
                            "integers, got %s",
                            path, name, got);
    }
    if (begin > end)
        return vl_error_set("%s: tensor %s: data_offsets [%llu, %llu] end before they begin", path,
                            name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return vl_error_set("%s: tensor %s: data_offsets [%llu, %llu] run past the data area "
                            "(%llu bytes); the file is truncated or corrupt",
                            path, name, (unsigned long long)begin, (unsigned long long)end,
                            (unsigned long long)data_len);
    if (end - begin != nbytes)
        return vl_error_set("%s: tensor %s: data_offsets span %llu bytes but dtype %s and its "
                            "shape need %llu bytes",
                            path, name, (unsigned long long)(end - begin), vl_dtype_name(t->dtype),
                            (unsigned long long)nbytes);
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    t->file = file;
    t->name = strdup(name);
    if (!t->name) return vl_error_set("out of memory reading %s", path);
    return 0;
}

typedef struct {
    uint64_t begin, end;
    const char *name;
} st_span;

static int st_span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* The tensors of one file, sorted by (begin, end), must cover [0, data_len) exactly once. */
static int st_check_tiling(const char *path, const uint8_t *data, uint64_t data_len,
                           const vl_tensor *ts, int n) {
    st_span *sp = malloc((size_t)(n > 0 ? n : 1) * sizeof *sp);
    if (!sp) return vl_error_set("out of memory reading %s", path);
    for (int i = 0; i < n; i++) {
        uint64_t b = (uint64_t)((const uint8_t *)ts[i].data - data);
        sp[i] = (st_span){b, b + ts[i].nbytes, ts[i].name};
    }
    qsort(sp, (size_t)n, sizeof *sp, st_span_cmp);
    int rc = 0;
    uint64_t at = 0; /* where the next tensor must start */
    for (int i = 0; i < n && rc == 0; i++) {
        if (sp[i].begin < at) /* i > 0 here: the first tensor cannot start below 0 */
            rc = vl_error_set("%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap; the "
                              "file is corrupt",
                              path, sp[i - 1].name, (unsigned long long)sp[i - 1].begin,
                              (unsigned long long)sp[i - 1].end, sp[i].name,
                              (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
        else if (sp[i].begin > at)
            rc = vl_error_set("%s: bytes [%llu, %llu) of the data area belong to no tensor (%s "
                              "starts at %llu, after %s); the file is corrupt",
                              path, (unsigned long long)at, (unsigned long long)sp[i].begin,
                              sp[i].name, (unsigned long long)sp[i].begin,
                              i > 0 ? sp[i - 1].name : "the start of the data area");
        at = sp[i].end;
    }
    if (rc == 0 && at != data_len)
        rc = vl_error_set("%s: the data area holds %llu bytes but its tensors end at byte %llu; "
                          "the last %llu bytes belong to no tensor (the file is corrupt or "
                          "padded by a non-standard writer)",
                          path, (unsigned long long)data_len, (unsigned long long)at,
                          (unsigned long long)(data_len - at));
    free(sp);
    return rc;
}

/* __metadata__ is a map of strings that we read past. */
static int st_check_metadata(const char *path, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return vl_error_set("%s: __metadata__ must be an object of strings", path);
    for (const cJSON *c = meta->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return vl_error_set("%s: __metadata__ entry %s must be a string", path, c->string);
    return 0;
}

/* Room for `more` tensors after ck->n_tensors; the table grows by doubling, so that many small
 * shards cost linear time, not quadratic. */
static int st_reserve_tensors(vl_checkpoint *ck, size_t more, const char *path) {
    size_t have = (size_t)ck->n_tensors, need = have + more;
    if (need > (size_t)INT_MAX)
        return vl_error_set("%s: the checkpoint holds more than %d tensors", path, INT_MAX);
    size_t cap = 1;
    while (cap < have) cap *= 2; /* the capacity the table was given: a power of two */
    if (have > 0 && need <= cap) return 0;
    while (cap < need) cap *= 2;
    vl_tensor *grown = realloc(ck->tensors, cap * sizeof *ck->tensors);
    if (!grown) return vl_error_set("out of memory reading %s", path);
    ck->tensors = grown;
    return 0;
}

/* The header length in the first 8 bytes, checked before anything else is believed. Its value
 * is not quoted when it is implausible: the file may be anything (never echo its bytes). */
static int st_header_length(const vl_mapped_file *mf, uint64_t *out) {
    const uint8_t *base = mf->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i]; /* little-endian u64 */
    if (hlen > mf->size - 8)
        return vl_error_set("%s: the header length (its first 8 bytes) runs past the end of the "
                            "file (%zu bytes); the file is truncated or not a safetensors file",
                            mf->path, mf->size);
    if (hlen > ST_MAX_HEADER)
        return vl_error_set("%s: the header length (its first 8 bytes) is over the %u-byte "
                            "limit; not a safetensors file?",
                            mf->path, ST_MAX_HEADER);
    if (hlen < 2)
        return vl_error_set("%s: the header length (its first 8 bytes) is too short for a JSON "
                            "object; not a safetensors file?",
                            mf->path);
    *out = hlen;
    return 0;
}

/* Validate the header of ck->files[fi] and append its tensors to ck->tensors. */
static int st_parse_file(vl_checkpoint *ck, int fi) {
    const vl_mapped_file *mf = &ck->files[fi];
    const char *path = mf->path;
    uint64_t hlen = 0;
    if (st_header_length(mf, &hlen) != 0) return -1;
    const uint8_t *data = (const uint8_t *)mf->map + 8 + hlen;
    uint64_t data_len = mf->size - 8 - hlen;

    size_t wlen = strlen(path) + 16;
    char *what = malloc(wlen);
    if (!what) return vl_error_set("out of memory reading %s", path);
    snprintf(what, wlen, "the header of %s", path);
    cJSON *root = NULL;
    int rc = vl_json_parse((const char *)mf->map + 8, (size_t)hlen, what, &root);
    free(what);
    if (rc != 0) return -1;
    if (!cJSON_IsObject(root)) {
        rc = vl_error_set("%s: header must be a JSON object of tensors", path);
        goto done;
    }
    size_t count = 0;
    for (const cJSON *c = root->child; c; c = c->next) count++;
    if ((rc = st_reserve_tensors(ck, count, path)) != 0) goto done;
    int first = ck->n_tensors;
    for (const cJSON *c = root->child; c && rc == 0; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) { /* once: vl_json_parse refuses repeats */
            rc = st_check_metadata(path, c);
            continue;
        }
        rc = st_parse_tensor(path, c, data, data_len, fi, &ck->tensors[ck->n_tensors]);
        if (rc == 0) ck->n_tensors++;
    }
    if (rc == 0)
        rc = st_check_tiling(path, data, data_len, ck->tensors + first, ck->n_tensors - first);
done:
    cJSON_Delete(root);
    return rc;
}

int vl_st_add_file(vl_checkpoint *ck, int fi, const char *open_path, const char *shown_path,
                   const char *what) {
    if (st_map_file(&ck->files[fi], open_path, shown_path, what) != 0) return -1;
    ck->n_files = fi + 1;
    return st_parse_file(ck, fi);
}

static int st_name_cmp(const void *a, const void *b) {
    return strcmp(((const vl_tensor *)a)->name, ((const vl_tensor *)b)->name);
}

/* Sort by name (for binary search) and reject a name that appears twice. */
int vl_st_sort_and_check_unique(vl_checkpoint *ck) {
    if (ck->n_tensors > 1)
        qsort(ck->tensors, (size_t)ck->n_tensors, sizeof *ck->tensors, st_name_cmp);
    for (int i = 1; i < ck->n_tensors; i++) {
        const vl_tensor *a = &ck->tensors[i - 1], *b = &ck->tensors[i];
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->file == b->file)
            return vl_error_set("%s: tensor %s appears twice in the header; the file is corrupt",
                                ck->files[a->file].path, a->name);
        return vl_error_set("tensor %s appears in both %s and %s; a checkpoint must hold each "
                            "tensor once",
                            a->name, ck->files[a->file].path, ck->files[b->file].path);
    }
    return 0;
}

void vl_checkpoint_close(vl_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_tensors; i++) free(ck->tensors[i].name);
    free(ck->tensors);
    for (int i = 0; i < ck->n_files; i++) {
        if (ck->files[i].map) munmap(ck->files[i].map, ck->files[i].size);
        free(ck->files[i].path);
    }
    free(ck->files);
    memset(ck, 0, sizeof *ck);
}

const vl_tensor *vl_checkpoint_find(const vl_checkpoint *ck, const char *name) {
    int lo = 0, hi = ck->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->tensors[mid].name, name);
        if (c == 0) return &ck->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const vl_tensor *vl_checkpoint_get(const vl_checkpoint *ck, const char *name) {
    const vl_tensor *t = vl_checkpoint_find(ck, name);
    if (t) return t;
    if (ck->n_files == 1) {
        vl_error_set("tensor %s is missing from %s", name, ck->files[0].path);
    } else if (ck->n_files > 1) { /* shards: name their directory */
        const char *p = ck->files[0].path, *slash = strrchr(p, '/');
        int len = slash ? (int)(slash - p) : 1;
        vl_error_set("tensor %s is missing from %.*s", name, len, slash ? p : ".");
    } else {
        vl_error_set("tensor %s is missing from the checkpoint (none is open)", name);
    }
    return NULL;
}
