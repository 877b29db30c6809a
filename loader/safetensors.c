/* safetensors.c: open a checkpoint (one .safetensors file, or a directory with
 * model.safetensors or model.safetensors.index.json + shards), mmapped read-only and validated
 * before anything reads a tensor; and write one .safetensors file.
 *
 * Nothing in a file is trusted: the 8-byte header length is checked against the file size and a
 * cap, the header must be one well-formed JSON object, every tensor needs a supported dtype, a
 * shape of at most VL_MAX_DIMS non-negative integers and data_offsets inside the data area whose
 * length is exactly elements x dtype size (overflow-checked); tensors must not overlap, names
 * must be unique across all shards, and every tensor an index lists must be in the shard it
 * names. Tensors found in shards but absent from the index are kept: they are in the file, and
 * the index is only a map (its total_size is ignored for the same reason).
 * Leaves out: alignment of tensor data (safetensors only pads the header to 8 bytes, so readers
 * of F32/I64 data must not assume more), big-endian hosts, and dtypes beyond
 * F32/F16/BF16/U8/I8/I32/I64 (F64, FP8, BOOL... are rejected by name). */
#include "loader/loader.h"

#include <cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER  (100u << 20) /* the reference implementation's own cap */
#define ST_MAX_INDEX   (100u << 20)
#define ST_INDEX_NAME  "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
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

static char *st_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int st_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int st_map_file(vl_mapped_file *mf, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vl_error_set("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vl_error_set("%s is not a regular file (expected a .safetensors file)", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return vl_error_set("%s is %lld bytes, too short for a safetensors file (expected at "
                            "least 8: the header length); the file is empty or truncated",
                            path, (long long)st.st_size);
    }
    if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        close(fd);
        return vl_error_set("%s is too large to map on this machine", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return vl_error_set("cannot mmap %s: %s", path, strerror(e));
    mf->path = strdup(path);
    if (!mf->path) {
        munmap(map, (size_t)st.st_size);
        return vl_error_set("out of memory opening %s", path);
    }
    mf->map = map;
    mf->size = (size_t)st.st_size;
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

/* No two tensors of one file may share bytes (an empty tensor shares none). */
static int st_check_overlaps(const char *path, const uint8_t *data, const vl_tensor *ts, int n) {
    if (n < 2) return 0;
    st_span *sp = malloc((size_t)n * sizeof *sp);
    if (!sp) return vl_error_set("out of memory reading %s", path);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (ts[i].nbytes == 0) continue;
        uint64_t b = (uint64_t)((const uint8_t *)ts[i].data - data);
        sp[m++] = (st_span){b, b + ts[i].nbytes, ts[i].name};
    }
    qsort(sp, (size_t)m, sizeof *sp, st_span_cmp);
    int rc = 0;
    for (int i = 1; i < m && rc == 0; i++) {
        if (sp[i].begin < sp[i - 1].end)
            rc = vl_error_set("%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap; the "
                              "file is corrupt",
                              path, sp[i - 1].name, (unsigned long long)sp[i - 1].begin,
                              (unsigned long long)sp[i - 1].end, sp[i].name,
                              (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
    }
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

/* Validate the header of ck->files[fi] and append its tensors to ck->tensors. */
static int st_parse_file(vl_checkpoint *ck, int fi) {
    const vl_mapped_file *mf = &ck->files[fi];
    const char *path = mf->path;
    const uint8_t *base = mf->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i]; /* little-endian u64 */
    if (hlen > mf->size - 8)
        return vl_error_set("%s: header length %llu runs past the end of the file (%zu bytes); "
                            "the file is truncated or not a safetensors file",
                            path, (unsigned long long)hlen, mf->size);
    if (hlen > ST_MAX_HEADER)
        return vl_error_set("%s: header length %llu is over the %u-byte limit; not a "
                            "safetensors file?",
                            path, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen < 2)
        return vl_error_set("%s: header length %llu is too short for a JSON object", path,
                            (unsigned long long)hlen);
    const uint8_t *data = base + 8 + hlen;
    uint64_t data_len = mf->size - 8 - hlen;

    char *text = malloc((size_t)hlen + 1);
    if (!text) return vl_error_set("out of memory reading the header of %s", path);
    memcpy(text, base + 8, (size_t)hlen);
    text[hlen] = '\0';
    int rc = 0;
    cJSON *root = NULL;
    if (memchr(text, '\0', (size_t)hlen)) {
        rc = vl_error_set("%s: header contains a NUL byte; the file is corrupt", path);
        goto done;
    }
    const char *stop = NULL;
    root = cJSON_ParseWithOpts(text, &stop, 1);
    if (!root) {
        rc = vl_error_set("%s: header is not valid JSON (error at byte %lld of %llu); the file "
                          "is corrupt or not a safetensors file",
                          path, stop ? (long long)(stop - text) : -1LL, (unsigned long long)hlen);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = vl_error_set("%s: header must be a JSON object of tensors", path);
        goto done;
    }
    int count = 0, n_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) count++;
    vl_tensor *grown =
        realloc(ck->tensors, ((size_t)ck->n_tensors + (size_t)count + 1) * sizeof *ck->tensors);
    if (!grown) {
        rc = vl_error_set("out of memory reading %s", path);
        goto done;
    }
    ck->tensors = grown;
    int first = ck->n_tensors;
    for (const cJSON *c = root->child; c && rc == 0; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (++n_meta > 1)
                rc = vl_error_set("%s: __metadata__ appears twice", path);
            else
                rc = st_check_metadata(path, c);
            continue;
        }
        rc = st_parse_tensor(path, c, data, data_len, fi, &ck->tensors[ck->n_tensors]);
        if (rc == 0) ck->n_tensors++;
    }
    if (rc == 0) rc = st_check_overlaps(path, data, ck->tensors + first, ck->n_tensors - first);
done:
    cJSON_Delete(root);
    free(text);
    return rc;
}

static int st_name_cmp(const void *a, const void *b) {
    return strcmp(((const vl_tensor *)a)->name, ((const vl_tensor *)b)->name);
}

/* Sort by name (for binary search) and reject a name that appears twice. */
static int st_sort_and_check_unique(vl_checkpoint *ck) {
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

static int st_open_single(vl_checkpoint *ck, const char *path) {
    ck->files = calloc(1, sizeof *ck->files);
    if (!ck->files) return vl_error_set("out of memory opening %s", path);
    if (st_map_file(&ck->files[0], path) != 0) return -1;
    ck->n_files = 1;
    if (st_parse_file(ck, 0) != 0) return -1;
    return st_sort_and_check_unique(ck);
}

/* Shard names come from a file: they must name a file inside the checkpoint directory. */
static int st_check_shard_name(const char *index_path, const char *tensor, const char *shard) {
    if (!shard[0] || strchr(shard, '/') || strchr(shard, '\\') || strstr(shard, ".."))
        return vl_error_set("%s: tensor %s names shard \"%s\", which is not a plain file name in "
                            "the checkpoint directory (no '/' or '..' allowed)",
                            index_path, tensor, shard);
    return 0;
}

static int st_open_index(vl_checkpoint *ck, const char *dir, const char *index_path) {
    char *text = NULL;
    cJSON *root = NULL;
    const char **shards = NULL;
    int n_shards = 0, rc = 0;
    if (vl_read_file(index_path, ST_MAX_INDEX, &text, NULL) != 0) return -1;
    const char *stop = NULL;
    root = cJSON_ParseWithOpts(text, &stop, 1);
    if (!root) {
        rc = vl_error_set("%s is not valid JSON (error at byte %lld)", index_path,
                          stop ? (long long)(stop - text) : -1LL);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        rc = vl_error_set("%s: expected a non-empty \"weight_map\" object (tensor name -> shard "
                          "file)",
                          index_path);
        goto done;
    }
    int n_entries = cJSON_GetArraySize(wm);
    shards = malloc((size_t)n_entries * sizeof *shards);
    if (!shards) {
        rc = vl_error_set("out of memory reading %s", index_path);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            rc = vl_error_set("%s: weight_map entry %s must be a shard file name (a string)",
                              index_path, e->string);
            goto done;
        }
        if ((rc = st_check_shard_name(index_path, e->string, e->valuestring)) != 0) goto done;
        int k = 0;
        while (k < n_shards && strcmp(shards[k], e->valuestring) != 0) k++;
        if (k == n_shards) shards[n_shards++] = e->valuestring;
    }
    ck->files = calloc((size_t)n_shards, sizeof *ck->files);
    if (!ck->files) {
        rc = vl_error_set("out of memory opening %s", dir);
        goto done;
    }
    for (int k = 0; k < n_shards; k++) {
        char *p = st_path_join(dir, shards[k]);
        if (!p) {
            rc = vl_error_set("out of memory opening %s", dir);
            goto done;
        }
        rc = st_map_file(&ck->files[k], p);
        free(p);
        if (rc != 0) goto done;
        ck->n_files = k + 1;
        if ((rc = st_parse_file(ck, k)) != 0) goto done;
    }
    if ((rc = st_sort_and_check_unique(ck)) != 0) goto done;
    for (const cJSON *e = wm->child; e; e = e->next) {
        const vl_tensor *t = vl_checkpoint_find(ck, e->string);
        if (!t || strcmp(shards[t->file], e->valuestring) != 0) { /* file k is shards[k] */
            rc = vl_error_set("tensor %s is listed in %s for shard %s but %s does not contain it; "
                              "the checkpoint is incomplete or the index is stale",
                              e->string, ST_INDEX_NAME, e->valuestring, e->valuestring);
            goto done;
        }
    }
done:
    free(shards);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int vl_checkpoint_open(vl_checkpoint *ck, const char *path) {
    memset(ck, 0, sizeof *ck);
    struct stat st;
    if (stat(path, &st) != 0)
        return vl_error_set("cannot open checkpoint %s: %s (expected a directory with "
                            "model.safetensors or %s, or a .safetensors file)",
                            path, strerror(errno), ST_INDEX_NAME);
    int rc;
    if (S_ISDIR(st.st_mode)) {
        char *single = st_path_join(path, ST_SINGLE_NAME);
        char *index = st_path_join(path, ST_INDEX_NAME);
        if (!single || !index) rc = vl_error_set("out of memory opening %s", path);
        /* like transformers: a single model.safetensors wins over an index */
        else if (st_is_file(single))
            rc = st_open_single(ck, single);
        else if (st_is_file(index))
            rc = st_open_index(ck, path, index);
        else
            rc = vl_error_set("checkpoint directory %s holds neither %s nor %s; pass the "
                              "directory of a safetensors checkpoint",
                              path, ST_SINGLE_NAME, ST_INDEX_NAME);
        free(single);
        free(index);
    } else {
        rc = st_open_single(ck, path);
    }
    if (rc != 0) vl_checkpoint_close(ck);
    return rc;
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

/* ---- writing ----------------------------------------------------------------------------- */

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
    f = fopen(tmp, "wb");
    if (!f) {
        rc = vl_error_set("cannot create %s: %s", tmp, strerror(errno));
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
