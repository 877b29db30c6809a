/* test_safetensors.c: the checkpoint loader and writer (loader/safetensors.c).
 *
 * Good paths: write/read round trips of every dtype and odd shapes, a directory with
 * model.safetensors, a sharded directory with an index, and the tiny Qwen2-VL fixtures (bf16,
 * bnb-nf4 with U8 tensors, bnb-int8 with I8 and 0-d tensors). Bad paths: files built at test
 * time in a temporary directory (truncated, corrupted, hand-written headers, broken indexes);
 * each must fail with a message naming the file or tensor, never crash. A small mutation fuzz
 * runs the same checks on random header damage (run it under ASan/UBSan).
 * Leaves out: multi-GB files (offset arithmetic is exercised with absurd values instead). */
#include "loader/loader.h"
#include "vltest.h"

#include <cJSON.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[512];

/* tmp_root/rel, from a small ring of buffers so several can be alive at once. */
static const char *tpath(const char *rel) {
    static char buf[16][1024];
    static int slot;
    char *out = buf[slot++ & 15];
    snprintf(out, 1024, "%s/%s", tmp_root, rel);
    return out;
}

static void make_dir(const char *rel) {
    mkdir(tpath(rel), 0755);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    if (n && fwrite(data, 1, n, f) != n) exit(2);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

/* A safetensors file from a hand-written header and data_len bytes of data (i & 0xff). */
static void write_raw(const char *path, const char *header, size_t data_len) {
    size_t hlen = strlen(header);
    size_t total = 8 + hlen + data_len;
    unsigned char *b = malloc(total);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    for (size_t i = 0; i < data_len; i++) b[8 + hlen + i] = (unsigned char)i;
    write_bytes(path, b, total);
    free(b);
}

static unsigned char *read_all(const char *path, size_t *n) {
    char *buf = NULL;
    if (vl_read_file(path, (size_t)1 << 30, &buf, n) != 0) {
        fprintf(stderr, "cannot read %s: %s\n", path, vl_error_get());
        exit(2);
    }
    return (unsigned char *)buf;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Opening `path` must fail, leave ck empty, and the message must contain each needle. */
#define EXPECT_OPEN_FAIL(path, ...) expect_open_fail(__LINE__, path, __VA_ARGS__, (char *)NULL)
static void expect_open_fail(int line, const char *path, ...) {
    vl_checkpoint ck;
    vl_error_clear();
    int rc = vl_checkpoint_open(&ck, path);
    const char *msg = vl_error_get();
    VT_CHECKF(rc != 0, "line %d: %s opened but should not", line, path);
    VT_CHECKF(ck.tensors == NULL && ck.files == NULL && ck.n_tensors == 0 && ck.n_files == 0,
              "line %d: checkpoint not emptied after failure", line);
    va_list ap;
    va_start(ap, path);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        VT_CHECKF(strstr(msg, needle) != NULL, "line %d: error \"%s\" lacks \"%s\"", line, msg,
                  needle);
    va_end(ap);
    if (rc == 0) vl_checkpoint_close(&ck);
}

/* Everything a successfully opened checkpoint promises. */
static void check_invariants(const vl_checkpoint *ck) {
    for (int i = 0; i < ck->n_tensors; i++) {
        const vl_tensor *t = &ck->tensors[i];
        VT_CHECK(t->file >= 0 && t->file < ck->n_files);
        if (t->file < 0 || t->file >= ck->n_files) continue;
        const vl_mapped_file *f = &ck->files[t->file];
        const unsigned char *p = t->data, *m = f->map;
        VT_CHECK(p >= m + 8 && p + t->nbytes <= m + f->size);
        VT_CHECK(t->nbytes == (size_t)t->numel * vl_dtype_size(t->dtype));
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
        VT_CHECK(n == t->numel);
        if (i > 0) VT_CHECK(strcmp(ck->tensors[i - 1].name, t->name) < 0);
    }
}

/* ---- round trip ------------------------------------------------------------------------- */

static void test_roundtrip(void) {
    float f32[6] = {1.0f, -2.5f, 3.25f, 1e-30f, -0.0f, 65536.0f};
    uint16_t f16[5] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000};
    uint16_t bf16[8] = {0x3f80, 0xbf80, 0x4049, 0x0001, 0x7f7f, 0xff7f, 0x0000, 0x8000};
    uint8_t u8[7] = {0, 1, 127, 128, 200, 254, 255};
    int8_t i8[9] = {-128, -1, 0, 1, 127, 5, -5, 64, -64};
    int32_t i32[2] = {INT32_MIN, INT32_MAX};
    int64_t i64[2] = {INT64_MIN, 1234567890123LL};
    float scalar = 42.0f;
    /* names deliberately out of order, one with characters JSON must escape */
    vl_tensor_out ts[] = {
        {"z.last.weight", VL_DTYPE_F32, 2, {2, 3}, f32},
        {"a.first", VL_DTYPE_F16, 1, {5}, f16},
        {"m.mid", VL_DTYPE_BF16, 3, {4, 1, 2}, bf16},
        {"q\"uote\\back\tslash", VL_DTYPE_U8, 1, {7}, u8},
        {"b.int8", VL_DTYPE_I8, 2, {3, 3}, i8},
        {"c.i32", VL_DTYPE_I32, 1, {2}, i32},
        {"d.i64", VL_DTYPE_I64, 2, {1, 2}, i64},
        {"e.scalar", VL_DTYPE_F32, 0, {0}, &scalar},
        {"f.empty", VL_DTYPE_F32, 2, {0, 4}, NULL},
        {"g.unicode.\xc3\xa9", VL_DTYPE_U8, 8, {1, 1, 1, 1, 1, 1, 1, 7}, u8},
    };
    const int n = (int)(sizeof ts / sizeof ts[0]);
    const char *path = tpath("rt.safetensors");
    vl_error_clear();
    VT_CHECKF(vl_safetensors_write(path, ts, n) == 0, "%s", vl_error_get());
    char tmpname[1100];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    VT_CHECK(!exists(tmpname));

    /* the raw file: header length, padding, offsets consecutive in the order given */
    size_t size;
    unsigned char *raw = read_all(path, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    VT_CHECK(hlen % 8 == 0 && hlen + 8 <= size);
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, raw + 8, hlen);
    hdr[hlen] = 0;
    cJSON *j = cJSON_Parse(hdr);
    VT_CHECK(j != NULL);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
    cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    VT_CHECK(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "pt") == 0);
    double expect_begin = 0;
    int k = 0;
    for (cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) continue;
        VT_CHECKF(k < n && strcmp(c->string, ts[k].name) == 0, "entry %d is %s", k, c->string);
        cJSON *off = cJSON_GetObjectItemCaseSensitive(c, "data_offsets");
        VT_CHECK(cJSON_GetArrayItem(off, 0)->valuedouble == expect_begin);
        expect_begin = cJSON_GetArrayItem(off, 1)->valuedouble;
        k++;
    }
    VT_CHECK_INT(k, n);
    VT_CHECK((double)(size - 8 - hlen) == expect_begin);
    cJSON_Delete(j);
    free(hdr);
    free(raw);

    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, path) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_files, 1);
    VT_CHECK_INT(ck.n_tensors, n);
    check_invariants(&ck);
    for (int i = 0; i < n; i++) {
        const vl_tensor *t = vl_checkpoint_find(&ck, ts[i].name);
        VT_CHECKF(t != NULL, "%s not found", ts[i].name);
        if (!t) continue;
        VT_CHECK(strcmp(t->name, ts[i].name) == 0);
        VT_CHECK_INT(t->dtype, ts[i].dtype);
        VT_CHECK_INT(t->ndim, ts[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < ts[i].ndim; d++) {
            VT_CHECK_INT(t->shape[d], ts[i].shape[d]);
            numel *= ts[i].shape[d];
        }
        VT_CHECK_INT(t->numel, numel);
        VT_CHECK_INT(t->nbytes, numel * (int64_t)vl_dtype_size(ts[i].dtype));
        VT_CHECK(t->nbytes == 0 || memcmp(t->data, ts[i].data, t->nbytes) == 0);
        VT_CHECK_INT(t->file, 0);
    }
    vl_error_clear();
    VT_CHECK(vl_checkpoint_find(&ck, "no.such.tensor") == NULL);
    VT_CHECK(vl_checkpoint_find(&ck, "") == NULL);
    VT_CHECK(vl_error_get()[0] == '\0'); /* find records nothing */
    VT_CHECK(vl_checkpoint_get(&ck, "no.such.tensor") == NULL);
    VT_CHECK(strstr(vl_error_get(), "tensor no.such.tensor is missing from") != NULL);
    VT_CHECK(strstr(vl_error_get(), "rt.safetensors") != NULL);
    vl_error_clear();
    VT_CHECK(vl_checkpoint_get(&ck, "m.mid") != NULL && vl_error_get()[0] == '\0');
    vl_checkpoint_close(&ck);
    VT_CHECK(ck.tensors == NULL && ck.files == NULL && ck.n_tensors == 0);
    vl_checkpoint_close(&ck); /* closing twice is harmless */

    /* a directory holding model.safetensors */
    make_dir("single");
    VT_CHECK(vl_safetensors_write(tpath("single/model.safetensors"), ts, 3) == 0);
    VT_CHECKF(vl_checkpoint_open(&ck, tpath("single")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 3);
    VT_CHECK(vl_checkpoint_find(&ck, "m.mid") != NULL);
    VT_CHECK(vl_checkpoint_find(&ck, "b.int8") == NULL);
    vl_checkpoint_close(&ck);

    /* no tensors at all is a valid (if useless) file */
    VT_CHECK(vl_safetensors_write(tpath("none.safetensors"), NULL, 0) == 0);
    VT_CHECKF(vl_checkpoint_open(&ck, tpath("none.safetensors")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 0);
    VT_CHECK(vl_checkpoint_find(&ck, "a") == NULL);
    vl_checkpoint_close(&ck);
}

/* ---- corrupted and hand-written files --------------------------------------------------- */

static void test_corrupt_files(void) {
    float w[4] = {1, 2, 3, 4};
    uint8_t q[3] = {7, 8, 9};
    vl_tensor_out ts[] = {{"w.weight", VL_DTYPE_F32, 2, {2, 2}, w},
                          {"q.tail", VL_DTYPE_U8, 1, {3}, q}};
    const char *good = tpath("good.safetensors");
    VT_CHECK(vl_safetensors_write(good, ts, 2) == 0);
    size_t size;
    unsigned char *g = read_all(good, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | g[i];
    unsigned char *b = malloc(size);

    write_bytes(tpath("empty.safetensors"), "", 0);
    EXPECT_OPEN_FAIL(tpath("empty.safetensors"), "empty.safetensors", "0 bytes");
    write_bytes(tpath("trunc5.safetensors"), g, 5);
    EXPECT_OPEN_FAIL(tpath("trunc5.safetensors"), "trunc5.safetensors");
    write_bytes(tpath("trunchdr.safetensors"), g, 8 + hlen - 3);
    EXPECT_OPEN_FAIL(tpath("trunchdr.safetensors"), "trunchdr.safetensors", "header length");
    write_bytes(tpath("truncdata.safetensors"), g, size - 1); /* q.tail is written last */
    EXPECT_OPEN_FAIL(tpath("truncdata.safetensors"), "truncdata.safetensors", "q.tail");

    memcpy(b, g, size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)size >> (8 * i));
    write_bytes(tpath("longhdr.safetensors"), b, size);
    EXPECT_OPEN_FAIL(tpath("longhdr.safetensors"), "longhdr.safetensors", "header length");
    memcpy(b, g, size);
    b[5] = 1; /* 2^40 */
    write_bytes(tpath("hugehdr.safetensors"), b, size);
    EXPECT_OPEN_FAIL(tpath("hugehdr.safetensors"), "hugehdr.safetensors", "header length");
    memcpy(b, g, size);
    *(unsigned char *)memchr(b + 8, ':', hlen) = '#';
    write_bytes(tpath("badjson.safetensors"), b, size);
    EXPECT_OPEN_FAIL(tpath("badjson.safetensors"), "badjson.safetensors", "JSON");
    memcpy(b, g, size);
    b[8 + hlen - 1] = 0; /* a NUL where the padding was */
    write_bytes(tpath("nul.safetensors"), b, size);
    EXPECT_OPEN_FAIL(tpath("nul.safetensors"), "nul.safetensors", "NUL");
    free(b);
    free(g);

    /* hand-written headers; first, that write_raw makes files that do open when valid */
    const char *ok_hdr = "{\"__metadata__\":{\"k\":\"v\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"e\":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[8,8]}}    ";
    write_raw(tpath("raw_ok.safetensors"), ok_hdr, 8);
    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, tpath("raw_ok.safetensors")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 2);
    check_invariants(&ck);
    vl_checkpoint_close(&ck);

    static const struct {
        const char *header;
        size_t data_len;
        const char *needle1, *needle2;
    } bad[] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "t", "past"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "a [0, 8]", "b [4, 12]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "t", "12 bytes"},
        {"{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "t", "F64"},
        {"{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "t", "F8_E4M3"},
        {"{\"t\":{\"dtype\":\"garbage\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, "t", "garbage"},
        {"{\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "t", "f32"},
        {"{\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "t", "dtype"},
        {"{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "t", "dtype"},
        {"{\"d\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"d\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
         8, "d", "twice"},
        {"{\"neg\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "neg", "-1"},
        {"{\"frac\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, "frac", "1.5"},
        {"{\"str\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, "str",
         "shape"},
        {"{\"nine\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         "nine", "at most 8"},
        {"{\"noshape\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "noshape", "shape"},
        {"{\"rev\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "rev", "[8, 4]"},
        {"{\"nooff\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "nooff", "data_offsets"},
        {"{\"three\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2, "three",
         "data_offsets"},
        {"{\"negoff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 2, "negoff",
         "data_offsets"},
        {"{\"big\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}",
         8, "big", "64 bits"},
        {"{\"big2\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904],"
         "\"data_offsets\":[0,8]}}",
         8, "big2", "shape[0]"},
        {"{\"huge\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, "huge",
         "shape[0]"},
        {"{\"bigoff\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[18446744073709551608,"
         "18446744073709551616]}}",
         8, "bigoff", "data_offsets"},
        {"{\"__metadata__\":{\"n\":1},\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
         "\"data_offsets\":[0,1]}}",
         1, "__metadata__", "n"},
        {"{\"__metadata__\":[],\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "__metadata__", "object"},
        {"{\"notobj\":5}", 0, "notobj", "got 5"},
        {"[1,2,3]", 0, "JSON object", ""},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} x", 1, "JSON", ""},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1, "JSON", ""},
        {"{", 0, "too short", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        const char *p = tpath(name);
        write_raw(p, bad[i].header, bad[i].data_len);
        EXPECT_OPEN_FAIL(p, name, bad[i].needle1, bad[i].needle2);
    }

    /* paths that are not checkpoints */
    EXPECT_OPEN_FAIL(tpath("does-not-exist"), "does-not-exist");
    make_dir("emptydir");
    EXPECT_OPEN_FAIL(tpath("emptydir"), "emptydir", "model.safetensors");
}

/* ---- sharded checkpoints ----------------------------------------------------------------- */

static const char *S1 = "model-00001-of-00002.safetensors";
static const char *S2 = "model-00002-of-00002.safetensors";

/* dir/ with shard 1 = {a, b} and shard 2 = {c, x.extra}, and the given index text. */
static void make_sharded(const char *dir, const char *index_json) {
    static float a[3] = {1, 2, 3}, c[2] = {5, 6};
    static uint16_t b[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
    static uint8_t x[2] = {9, 10};
    vl_tensor_out s1[] = {{"a", VL_DTYPE_F32, 1, {3}, a}, {"b", VL_DTYPE_BF16, 2, {2, 2}, b}};
    vl_tensor_out s2[] = {{"c", VL_DTYPE_F32, 1, {2}, c}, {"x.extra", VL_DTYPE_U8, 1, {2}, x}};
    char p[1100];
    make_dir(dir);
    snprintf(p, sizeof p, "%s/%s", tpath(dir), S1);
    VT_CHECK(vl_safetensors_write(p, s1, 2) == 0);
    snprintf(p, sizeof p, "%s/%s", tpath(dir), S2);
    VT_CHECK(vl_safetensors_write(p, s2, 2) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tpath(dir));
    write_text(p, index_json);
}

static char *index_text(const char *entries) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "{\"metadata\":{\"total_size\":123456789},\"weight_map\":{%s}}",
             entries);
    return buf;
}

static void test_sharded(void) {
    char entries[512];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"b\":\"%s\",\"c\":\"%s\"", S1, S1, S2);
    make_sharded("sh", index_text(entries));
    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, tpath("sh")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_files, 2);
    VT_CHECK_INT(ck.n_tensors, 4); /* x.extra is in a shard but not in the index: kept */
    check_invariants(&ck);
    const vl_tensor *a = vl_checkpoint_find(&ck, "a"), *c = vl_checkpoint_find(&ck, "c");
    const vl_tensor *x = vl_checkpoint_find(&ck, "x.extra");
    VT_CHECK(a && c && x);
    if (a && c && x) {
        VT_CHECK(strstr(ck.files[a->file].path, S1) != NULL);
        VT_CHECK(strstr(ck.files[c->file].path, S2) != NULL);
        VT_CHECK_INT(x->file, c->file);
        VT_CHECK(((const float *)c->data)[1] == 6.0f);
        VT_CHECK(((const uint8_t *)x->data)[0] == 9);
    }
    vl_error_clear();
    VT_CHECK(vl_checkpoint_get(&ck, "missing.weight") == NULL);
    VT_CHECK(strstr(vl_error_get(), "tensor missing.weight is missing from") != NULL);
    VT_CHECK(strstr(vl_error_get(), "/sh") != NULL);
    vl_checkpoint_close(&ck);

    /* a listed tensor that its shard lacks */
    char want[512];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"q.proj\":\"%s\",\"c\":\"%s\"", S1, S1, S2);
    make_sharded("sh_missing", index_text(entries));
    snprintf(want, sizeof want,
             "tensor q.proj is listed in model.safetensors.index.json for shard %s but %s does "
             "not contain it",
             S1, S1);
    EXPECT_OPEN_FAIL(tpath("sh_missing"), want);
    /* listed for the wrong shard */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\",\"x.extra\":\"%s\"", S1, S1, S2);
    make_sharded("sh_wrong", index_text(entries));
    snprintf(want, sizeof want, "tensor c is listed in model.safetensors.index.json for shard %s",
             S1);
    EXPECT_OPEN_FAIL(tpath("sh_wrong"), want);
    /* shard names that leave the directory */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"../evil.safetensors\"", S1);
    make_sharded("sh_escape", index_text(entries));
    EXPECT_OPEN_FAIL(tpath("sh_escape"), "../evil.safetensors", "tensor c");
    snprintf(entries, sizeof entries, "\"a\":\"sub/%s\"", S1);
    make_sharded("sh_slash", index_text(entries));
    EXPECT_OPEN_FAIL(tpath("sh_slash"), "sub/", "tensor a");
    snprintf(entries, sizeof entries, "\"a\":\"..\"");
    make_sharded("sh_dotdot", index_text(entries));
    EXPECT_OPEN_FAIL(tpath("sh_dotdot"), "\"..\"");
    /* a shard that does not exist */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"model-00003-of-00002.safetensors\"",
             S1);
    make_sharded("sh_noshard", index_text(entries));
    EXPECT_OPEN_FAIL(tpath("sh_noshard"), "model-00003-of-00002.safetensors");
    /* a shard that is damaged */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    make_sharded("sh_trunc", index_text(entries));
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", tpath("sh_trunc"), S2);
    VT_CHECK(truncate(p, 20) == 0);
    EXPECT_OPEN_FAIL(tpath("sh_trunc"), S2);
    /* the same tensor in two shards */
    make_sharded("sh_dup", index_text(entries));
    static float dup[3] = {0, 0, 0};
    vl_tensor_out again[] = {{"a", VL_DTYPE_F32, 1, {3}, dup}};
    snprintf(p, sizeof p, "%s/%s", tpath("sh_dup"), S2);
    VT_CHECK(vl_safetensors_write(p, again, 1) == 0);
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"b\":\"%s\",\"c\":\"%s\"", S1, S1, S2);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tpath("sh_dup"));
    write_text(p, index_text(entries));
    EXPECT_OPEN_FAIL(tpath("sh_dup"), "tensor a appears in both");
    /* broken index files */
    make_sharded("sh_badjson", "{\"weight_map\": {\"a\": ");
    EXPECT_OPEN_FAIL(tpath("sh_badjson"), "model.safetensors.index.json", "JSON");
    make_sharded("sh_nomap", "{\"metadata\": {}}");
    EXPECT_OPEN_FAIL(tpath("sh_nomap"), "model.safetensors.index.json", "weight_map");
    make_sharded("sh_emptymap", "{\"weight_map\": {}}");
    EXPECT_OPEN_FAIL(tpath("sh_emptymap"), "weight_map");
    make_sharded("sh_nonstr", "{\"weight_map\": {\"a\": 3}}");
    EXPECT_OPEN_FAIL(tpath("sh_nonstr"), "weight_map entry a");
}

/* ---- the committed fixtures ----------------------------------------------------------------- */

static void test_fixtures(void) {
    vl_checkpoint ck;
    const char *dir = vt_fixture("tiny-qwen2vl/tiny-bf16");
    VT_CHECKF(vl_checkpoint_open(&ck, dir) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 58); /* 58 tensors + __metadata__ in the header */
    check_invariants(&ck);
    const vl_tensor *t = vl_checkpoint_find(&ck, "visual.patch_embed.proj.weight");
    VT_CHECK(t != NULL);
    if (t) {
        VT_CHECK_INT(t->dtype, VL_DTYPE_BF16);
        VT_CHECK_INT(t->ndim, 5);
        const int64_t want[5] = {64, 3, 2, 14, 14};
        for (int d = 0; d < 5; d++) VT_CHECK_INT(t->shape[d], want[d]);
        VT_CHECK_INT(t->nbytes, 64 * 3 * 2 * 14 * 14 * 2);
    }
    t = vl_checkpoint_find(&ck, "lm_head.weight");
    VT_CHECK(t && t->ndim == 2 && t->shape[0] == 2048 && t->shape[1] == 128);
    int n_bf16 = 0;
    for (int i = 0; i < ck.n_tensors; i++) n_bf16 += ck.tensors[i].dtype == VL_DTYPE_BF16;
    VT_CHECK_INT(n_bf16, 58);
    vl_checkpoint_close(&ck);

    /* the single file itself, not its directory */
    VT_CHECKF(vl_checkpoint_open(&ck, vt_fixture("tiny-qwen2vl/tiny-bf16/model.safetensors")) == 0,
              "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 58);
    vl_checkpoint_close(&ck);

    VT_CHECKF(vl_checkpoint_open(&ck, vt_fixture("tiny-qwen2vl/tiny-bnb-nf4")) == 0, "%s",
              vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 178);
    check_invariants(&ck);
    t = vl_checkpoint_find(&ck, "model.layers.0.mlp.down_proj.weight");
    VT_CHECK(t && t->dtype == VL_DTYPE_U8 && t->ndim == 2 && t->shape[0] == 16384 &&
             t->shape[1] == 1);
    t = vl_checkpoint_find(&ck, "model.layers.0.mlp.down_proj.weight.quant_map");
    VT_CHECK(t && t->dtype == VL_DTYPE_F32 && t->numel == 16);
    vl_checkpoint_close(&ck);

    VT_CHECKF(vl_checkpoint_open(&ck, vt_fixture("tiny-qwen2vl/tiny-bnb-int8")) == 0, "%s",
              vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 106);
    check_invariants(&ck);
    t = vl_checkpoint_find(&ck, "model.layers.0.mlp.down_proj.weight");
    VT_CHECK(t && t->dtype == VL_DTYPE_I8 && t->shape[0] == 128 && t->shape[1] == 256);
    t = vl_checkpoint_find(&ck, "model.layers.0.mlp.down_proj.weight_format");
    VT_CHECK(t && t->dtype == VL_DTYPE_U8 && t->ndim == 0 && t->numel == 1 && t->nbytes == 1);
    vl_checkpoint_close(&ck);
}

/* ---- writer failures ------------------------------------------------------------------------ */

static void expect_write_fail(int line, const char *path, const vl_tensor_out *ts, int n,
                              const char *needle) {
    vl_error_clear();
    int rc = vl_safetensors_write(path, ts, n);
    VT_CHECKF(rc != 0, "line %d: write succeeded", line);
    VT_CHECKF(strstr(vl_error_get(), needle) != NULL, "line %d: \"%s\" lacks \"%s\"", line,
              vl_error_get(), needle);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    VT_CHECKF(!exists(tmp), "line %d: %s left behind", line, tmp);
}

static void test_write_failures(void) {
    float v[2] = {1, 2};
    vl_tensor_out ok[] = {{"v", VL_DTYPE_F32, 1, {2}, v}};
    expect_write_fail(__LINE__, tpath("no/such/dir/x.safetensors"), ok, 1,
                      "no/such/dir/x.safetensors");
    /* the destination is a directory: the rename fails after the data was written */
    make_dir("isdir.safetensors");
    expect_write_fail(__LINE__, tpath("isdir.safetensors"), ok, 1, "isdir.safetensors");

    vl_tensor_out dup[] = {{"v", VL_DTYPE_F32, 1, {2}, v}, {"v", VL_DTYPE_F32, 1, {1}, v}};
    expect_write_fail(__LINE__, tpath("dup.safetensors"), dup, 2, "tensor v is given twice");
    vl_tensor_out nine[] = {{"n9", VL_DTYPE_F32, 9, {1, 1, 1, 1, 1, 1, 1, 1}, v}};
    expect_write_fail(__LINE__, tpath("nine.safetensors"), nine, 1, "n9");
    vl_tensor_out neg[] = {{"neg", VL_DTYPE_F32, 1, {-2}, v}};
    expect_write_fail(__LINE__, tpath("neg.safetensors"), neg, 1, "neg");
    vl_tensor_out nodata[] = {{"nodata", VL_DTYPE_F32, 1, {2}, NULL}};
    expect_write_fail(__LINE__, tpath("nodata.safetensors"), nodata, 1, "nodata");
    vl_tensor_out badtype[] = {{"bt", VL_DTYPE_COUNT, 1, {2}, v}};
    expect_write_fail(__LINE__, tpath("bt.safetensors"), badtype, 1, "bt");
    vl_tensor_out meta[] = {{"__metadata__", VL_DTYPE_F32, 1, {2}, v}};
    expect_write_fail(__LINE__, tpath("meta.safetensors"), meta, 1, "meta.safetensors");
    VT_CHECK(!exists(tpath("dup.safetensors")) && !exists(tpath("neg.safetensors")));

    /* overwriting an existing file replaces it whole */
    VT_CHECK(vl_safetensors_write(tpath("over.safetensors"), dup, 1) == 0);
    vl_tensor_out other[] = {{"w", VL_DTYPE_F32, 1, {1}, v}};
    VT_CHECK(vl_safetensors_write(tpath("over.safetensors"), other, 1) == 0);
    vl_checkpoint ck;
    VT_CHECK(vl_checkpoint_open(&ck, tpath("over.safetensors")) == 0);
    VT_CHECK(ck.n_tensors == 1 && vl_checkpoint_find(&ck, "w") != NULL);
    vl_checkpoint_close(&ck);
}

/* ---- fuzz: truncations and random header damage ------------------------------------------- */

static void test_fuzz(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {1, 2, 3};
    int8_t i8[5] = {1, -1, 2, -2, 3};
    vl_tensor_out ts[] = {{"model.w", VL_DTYPE_F32, 2, {2, 3}, w},
                          {"model.h", VL_DTYPE_BF16, 1, {3}, h},
                          {"model.i", VL_DTYPE_I8, 1, {5}, i8}};
    const char *path = tpath("fuzz_src.safetensors");
    VT_CHECK(vl_safetensors_write(path, ts, 3) == 0);
    size_t size;
    unsigned char *g = read_all(path, &size);
    const char *fp = tpath("fuzz.safetensors");
    int bad = 0, opened = 0;
    for (size_t len = 0; len < size; len++) { /* every truncation must be refused */
        write_bytes(fp, g, len);
        vl_checkpoint ck;
        vl_error_clear();
        if (vl_checkpoint_open(&ck, fp) == 0) {
            bad++;
            vl_checkpoint_close(&ck);
        } else if (!strstr(vl_error_get(), "fuzz.safetensors")) {
            bad++;
        }
    }
    VT_CHECKF(bad == 0, "%d truncations accepted or unnamed", bad);

    unsigned char *b = malloc(size);
    uint32_t s = 2024u;
    bad = 0;
    static const char alphabet[] = "{}[]\":,0123456789-.eE \\aFUIB";
    for (int it = 0; it < 1500; it++) {
        memcpy(b, g, size);
        s = s * 1664525u + 1013904223u;
        int n_mut = 1 + (int)((s >> 24) % 3);
        for (int m = 0; m < n_mut; m++) {
            s = s * 1664525u + 1013904223u;
            size_t pos = (s >> 8) % (size < 200 ? size : 200); /* the length and the header */
            s = s * 1664525u + 1013904223u;
            b[pos] = (s >> 28) & 1 ? (unsigned char)alphabet[(s >> 8) % (sizeof alphabet - 1)]
                                   : (unsigned char)(s >> 16);
        }
        write_bytes(fp, b, size);
        vl_checkpoint ck;
        vl_error_clear();
        if (vl_checkpoint_open(&ck, fp) == 0) {
            opened++;
            check_invariants(&ck);
            vl_checkpoint_close(&ck);
        } else if (!vl_error_get()[0]) {
            bad++;
        }
    }
    VT_CHECKF(bad == 0, "%d failures without a message", bad);
    VT_CHECK(opened < 1500); /* the damage did reach the parser */
    free(b);
    free(g);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/vl_st_XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 2;
    }
    test_roundtrip();
    test_corrupt_files();
    test_sharded();
    test_fixtures();
    test_write_failures();
    test_fuzz();
    rm_tree(tmp_root);
    return vt_finish();
}
