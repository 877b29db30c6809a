/* test_safetensors.c: the checkpoint loader and writer for single files (loader/safetensors.c,
 * loader/safetensors_write.c).
 *
 * Good paths: write/read round trips of every dtype and odd shapes, a directory with
 * model.safetensors, and the tiny Qwen2-VL fixtures (bf16, bnb-nf4 with U8 tensors, bnb-int8
 * with I8 and 0-d tensors). Bad paths: files built at test time in a temporary directory
 * (truncated, corrupted, hand-written headers, strict JSON, tensors that do not tile the data
 * area, a non-safetensors file whose bytes must not reach the message); each must fail with a
 * message naming the file or tensor, never crash. The writer must not write through a FIFO or
 * a symlink left at its temporary name. A small mutation fuzz runs the same checks on random
 * header damage (run it under ASan/UBSan).
 * Leaves out: multi-GB files (offset arithmetic is exercised with absurd values instead) and
 * directories with an index (test_safetensors_folder.c). */
#include "vltest_ckpt.h"

#include <cJSON.h>

#include <unistd.h>

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
    const char *path = vt_tpath("rt.safetensors");
    vl_error_clear();
    VT_CHECKF(vl_safetensors_write(path, ts, n) == 0, "%s", vl_error_get());
    char tmpname[1100];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    VT_CHECK(!vt_exists(tmpname));

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
    vt_make_dir("single");
    VT_CHECK(vl_safetensors_write(vt_tpath("single/model.safetensors"), ts, 3) == 0);
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("single")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 3);
    VT_CHECK(vl_checkpoint_find(&ck, "m.mid") != NULL);
    VT_CHECK(vl_checkpoint_find(&ck, "b.int8") == NULL);
    vl_checkpoint_close(&ck);

    /* no tensors at all is a valid (if useless) file */
    VT_CHECK(vl_safetensors_write(vt_tpath("none.safetensors"), NULL, 0) == 0);
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("none.safetensors")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 0);
    VT_CHECK(vl_checkpoint_find(&ck, "a") == NULL);
    vl_checkpoint_close(&ck);
}

/* ---- corrupted and hand-written files --------------------------------------------------- */

/* A good file spoilt byte-wise: empty, truncated, header lengths, broken JSON, a NUL. */
static void test_corrupt_files(void) {
    float w[4] = {1, 2, 3, 4};
    uint8_t q[3] = {7, 8, 9};
    vl_tensor_out ts[] = {{"w.weight", VL_DTYPE_F32, 2, {2, 2}, w},
                          {"q.tail", VL_DTYPE_U8, 1, {3}, q}};
    const char *good = vt_tpath("good.safetensors");
    VT_CHECK(vl_safetensors_write(good, ts, 2) == 0);
    size_t size;
    unsigned char *g = read_all(good, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | g[i];
    unsigned char *b = malloc(size);

    vt_write_bytes(vt_tpath("empty.safetensors"), "", 0);
    EXPECT_OPEN_FAIL(vt_tpath("empty.safetensors"), "empty.safetensors", "0 bytes");
    vt_write_bytes(vt_tpath("trunc5.safetensors"), g, 5);
    EXPECT_OPEN_FAIL(vt_tpath("trunc5.safetensors"), "trunc5.safetensors");
    vt_write_bytes(vt_tpath("trunchdr.safetensors"), g, 8 + hlen - 3);
    EXPECT_OPEN_FAIL(vt_tpath("trunchdr.safetensors"), "trunchdr.safetensors", "header length");
    vt_write_bytes(vt_tpath("truncdata.safetensors"), g, size - 1); /* q.tail is written last */
    EXPECT_OPEN_FAIL(vt_tpath("truncdata.safetensors"), "truncdata.safetensors", "q.tail");

    memcpy(b, g, size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)size >> (8 * i));
    vt_write_bytes(vt_tpath("longhdr.safetensors"), b, size);
    EXPECT_OPEN_FAIL(vt_tpath("longhdr.safetensors"), "longhdr.safetensors", "header length");
    memcpy(b, g, size);
    b[5] = 1; /* 2^40 */
    vt_write_bytes(vt_tpath("hugehdr.safetensors"), b, size);
    EXPECT_OPEN_FAIL(vt_tpath("hugehdr.safetensors"), "hugehdr.safetensors", "header length");
    memcpy(b, g, size);
    *(unsigned char *)memchr(b + 8, ':', hlen) = '#';
    vt_write_bytes(vt_tpath("badjson.safetensors"), b, size);
    EXPECT_OPEN_FAIL(vt_tpath("badjson.safetensors"), "badjson.safetensors", "JSON");
    memcpy(b, g, size);
    b[8 + hlen - 1] = 0; /* a NUL where the padding was */
    vt_write_bytes(vt_tpath("nul.safetensors"), b, size);
    EXPECT_OPEN_FAIL(vt_tpath("nul.safetensors"), "nul.safetensors", "NUL");
    free(b);
    free(g);
}

/* Hand-written headers, each wrong in one way; first, that write_raw makes files that do open
 * when valid. Then paths that are not checkpoints. */
static void test_corrupt_headers(void) {
    const char *ok_hdr = "{\"__metadata__\":{\"k\":\"v\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"e\":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[8,8]}}    ";
    write_raw(vt_tpath("raw_ok.safetensors"), ok_hdr, 8);
    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("raw_ok.safetensors")) == 0, "%s", vl_error_get());
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
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} x", 1,
         "after the JSON value", ""},
        {"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "\"dtype\" twice", ""},
        {"{\"__metadata__\":{},\"__metadata__\":{},\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
         "\"data_offsets\":[0,1]}}",
         1, "\"__metadata__\" twice", ""},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1, "JSON", ""},
        {"{", 0, "too short", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        const char *p = vt_tpath(name);
        write_raw(p, bad[i].header, bad[i].data_len);
        EXPECT_OPEN_FAIL(p, name, bad[i].needle1, bad[i].needle2);
    }

    /* paths that are not checkpoints */
    EXPECT_OPEN_FAIL(vt_tpath("does-not-exist"), "does-not-exist");
    vt_make_dir("emptydir");
    EXPECT_OPEN_FAIL(vt_tpath("emptydir"), "emptydir", "model.safetensors");
}

/* ---- tiling: the tensors cover the data area exactly ------------------------------------- */

static void test_tiling(void) {
    /* accepted: listed out of order, empty tensors at the start, between and at the end */
    const char *ok_hdr = "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                         "\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[0,4]},"
                         "\"z4\":{\"dtype\":\"U8\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                         "\"z8\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[8,8]}}";
    write_raw(vt_tpath("tile_ok.safetensors"), ok_hdr, 8);
    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("tile_ok.safetensors")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_tensors, 5);
    check_invariants(&ck);
    const vl_tensor *b = vl_checkpoint_find(&ck, "b");
    VT_CHECK(b && ((const uint8_t *)b->data)[0] == 4); /* write_raw's data byte i is i */
    vl_checkpoint_close(&ck);
    write_raw(vt_tpath("tile_empty.safetensors"), "{}      ", 0);
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("tile_empty.safetensors")) == 0, "%s",
              vl_error_get());
    vl_checkpoint_close(&ck);

    static const struct {
        const char *header;
        size_t data_len;
        const char *needle1, *needle2;
    } bad[] = {
        /* a gap before the first tensor, between two, after the last */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, "bytes [0, 4)",
         "a starts at 4"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
         8, "bytes [4, 6)", "b starts at 6, after a"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8, "holds 8 bytes",
         "end at byte 4"},
        {"{}", 3, "holds 3 bytes", "end at byte 0"},
        {"{\"__metadata__\":{\"format\":\"pt\"}}", 1, "holds 1 bytes", ""},
        /* an empty tensor inside another one's bytes, or beyond the data */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,3]}}",
         8, "a [0, 8] and z [3, 3] overlap", ""},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}",
         8, "z", "past the data area"},
        /* the same bytes twice */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
         4, "a [0, 4] and b [0, 4] overlap", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "tile%02zu.safetensors", i);
        const char *p = vt_tpath(name);
        write_raw(p, bad[i].header, bad[i].data_len);
        EXPECT_OPEN_FAIL(p, name, bad[i].needle1, bad[i].needle2);
    }
}

/* A file that is not safetensors (here: the start of a passwd file) must be refused without
 * its bytes showing up in the message, not even as a "header length". */
static void test_no_echo(void) {
    const char *text = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin\n";
    uint64_t as_length = 0;
    for (int i = 7; i >= 0; i--) as_length = (as_length << 8) | (unsigned char)text[i];
    char number[32];
    snprintf(number, sizeof number, "%llu", (unsigned long long)as_length);
    vt_make_dir("echo");
    vt_write_text(vt_tpath("echo/passwd"), text);
    vt_write_text(vt_tpath("echo/model.safetensors"), text);
    const char *paths[] = {vt_tpath("echo/passwd"), vt_tpath("echo")};
    for (int k = 0; k < 2; k++) {
        vl_checkpoint ck;
        vl_error_clear();
        VT_CHECK(vl_checkpoint_open(&ck, paths[k]) != 0);
        const char *msg = vl_error_get();
        VT_CHECKF(strstr(msg, "header length") != NULL, "%s", msg);
        VT_CHECKF(strstr(msg, number) == NULL && strstr(msg, "root") == NULL, "echoed: %s", msg);
    }
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
    /* the engine's fixture models: 8 shards and an index, one file, odd widths (vlrun synth) */
    static const struct {
        const char *dir;
        int n_files;
    } models[] = {{"models/tiny-a", 8}, {"models/tiny-b", 1}, {"models/tiny-odd", 1}};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        VT_CHECKF(vl_checkpoint_open(&ck, vt_fixture(models[m].dir)) == 0, "%s", vl_error_get());
        VT_CHECK_INT(ck.n_files, models[m].n_files);
        VT_CHECKF(vl_checkpoint_find(&ck, "model.embed_tokens.weight") != NULL, "%s",
                  models[m].dir);
        check_invariants(&ck);
        vl_checkpoint_close(&ck);
    }
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
    VT_CHECKF(!vt_exists(tmp), "line %d: %s left behind", line, tmp);
}

static void test_write_failures(void) {
    float v[2] = {1, 2};
    vl_tensor_out ok[] = {{"v", VL_DTYPE_F32, 1, {2}, v}};
    expect_write_fail(__LINE__, vt_tpath("no/such/dir/x.safetensors"), ok, 1,
                      "no/such/dir/x.safetensors");
    /* the destination is a directory: the rename fails after the data was written */
    vt_make_dir("isdir.safetensors");
    expect_write_fail(__LINE__, vt_tpath("isdir.safetensors"), ok, 1, "isdir.safetensors");

    vl_tensor_out dup[] = {{"v", VL_DTYPE_F32, 1, {2}, v}, {"v", VL_DTYPE_F32, 1, {1}, v}};
    expect_write_fail(__LINE__, vt_tpath("dup.safetensors"), dup, 2, "tensor v is given twice");
    vl_tensor_out nine[] = {{"n9", VL_DTYPE_F32, 9, {1, 1, 1, 1, 1, 1, 1, 1}, v}};
    expect_write_fail(__LINE__, vt_tpath("nine.safetensors"), nine, 1, "n9");
    vl_tensor_out neg[] = {{"neg", VL_DTYPE_F32, 1, {-2}, v}};
    expect_write_fail(__LINE__, vt_tpath("neg.safetensors"), neg, 1, "neg");
    vl_tensor_out nodata[] = {{"nodata", VL_DTYPE_F32, 1, {2}, NULL}};
    expect_write_fail(__LINE__, vt_tpath("nodata.safetensors"), nodata, 1, "nodata");
    vl_tensor_out badtype[] = {{"bt", VL_DTYPE_COUNT, 1, {2}, v}};
    expect_write_fail(__LINE__, vt_tpath("bt.safetensors"), badtype, 1, "bt");
    vl_tensor_out meta[] = {{"__metadata__", VL_DTYPE_F32, 1, {2}, v}};
    expect_write_fail(__LINE__, vt_tpath("meta.safetensors"), meta, 1, "meta.safetensors");
    VT_CHECK(!vt_exists(vt_tpath("dup.safetensors")) && !vt_exists(vt_tpath("neg.safetensors")));

    /* a FIFO or a symlink left at NAME.tmp: replaced, never opened (the FIFO would block, the
     * link would redirect the write) */
    vt_mkfifo(vt_tpath("fifo.safetensors.tmp"));
    vt_watchdog(60);
    VT_CHECKF(vl_safetensors_write(vt_tpath("fifo.safetensors"), ok, 1) == 0, "%s", vl_error_get());
    vt_watchdog(0);
    VT_CHECK(!vt_exists(vt_tpath("fifo.safetensors.tmp")));
    vt_write_text(vt_tpath("victim.txt"), "keep");
    vt_symlink(vt_tpath("victim.txt"), vt_tpath("link.safetensors.tmp"));
    VT_CHECKF(vl_safetensors_write(vt_tpath("link.safetensors"), ok, 1) == 0, "%s", vl_error_get());
    size_t vn = 0;
    unsigned char *victim = read_all(vt_tpath("victim.txt"), &vn);
    VT_CHECK(vn == 4 && memcmp(victim, "keep", 4) == 0);
    free(victim);
    vl_checkpoint lk;
    VT_CHECKF(vl_checkpoint_open(&lk, vt_tpath("link.safetensors")) == 0, "%s", vl_error_get());
    VT_CHECK(lk.n_tensors == 1 && vl_checkpoint_find(&lk, "v") != NULL);
    vl_checkpoint_close(&lk);

    /* overwriting an existing file replaces it whole */
    VT_CHECK(vl_safetensors_write(vt_tpath("over.safetensors"), dup, 1) == 0);
    vl_tensor_out other[] = {{"w", VL_DTYPE_F32, 1, {1}, v}};
    VT_CHECK(vl_safetensors_write(vt_tpath("over.safetensors"), other, 1) == 0);
    vl_checkpoint ck;
    VT_CHECK(vl_checkpoint_open(&ck, vt_tpath("over.safetensors")) == 0);
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
    const char *path = vt_tpath("fuzz_src.safetensors");
    VT_CHECK(vl_safetensors_write(path, ts, 3) == 0);
    size_t size;
    unsigned char *g = read_all(path, &size);
    const char *fp = vt_tpath("fuzz.safetensors");
    int bad = 0, opened = 0;
    for (size_t len = 0; len < size; len++) { /* every truncation must be refused */
        vt_write_bytes(fp, g, len);
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
        vt_write_bytes(fp, b, size);
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
    vt_tmp_init("vl_st");
    test_roundtrip();
    test_corrupt_files();
    test_corrupt_headers();
    test_tiling();
    test_no_echo();
    test_fixtures();
    test_write_failures();
    test_fuzz();
    vt_rm_tree(vt_tmp_root);
    return vt_finish();
}
