/* test_safetensors_folder.c: checkpoint directories (loader/safetensors_folder.c): an index and
 * its shards, files that must stay inside the folder (symbolic links in and out of it, the
 * Hugging Face cache's snapshots -> blobs links), FIFOs where files should be (refused, never
 * opened for reading: a watchdog fails the test if an open blocks), and an index with 200k
 * entries (the shard-name de-duplication must not be quadratic; ctest's timeout is the check).
 * Leaves out: the single-file checks (test_safetensors.c). */
#include "vltest_ckpt.h"

#include <unistd.h>

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
    vt_make_dir(dir);
    snprintf(p, sizeof p, "%s/%s", vt_tpath(dir), S1);
    VT_CHECK(vl_safetensors_write(p, s1, 2) == 0);
    snprintf(p, sizeof p, "%s/%s", vt_tpath(dir), S2);
    VT_CHECK(vl_safetensors_write(p, s2, 2) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", vt_tpath(dir));
    vt_write_text(p, index_json);
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
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("sh")) == 0, "%s", vl_error_get());
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
    EXPECT_OPEN_FAIL(vt_tpath("sh_missing"), want);
    /* listed for the wrong shard */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\",\"x.extra\":\"%s\"", S1, S1, S2);
    make_sharded("sh_wrong", index_text(entries));
    snprintf(want, sizeof want, "tensor c is listed in model.safetensors.index.json for shard %s",
             S1);
    EXPECT_OPEN_FAIL(vt_tpath("sh_wrong"), want);
    /* shard names that leave the directory */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"../evil.safetensors\"", S1);
    make_sharded("sh_escape", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_escape"), "../evil.safetensors", "tensor c");
    snprintf(entries, sizeof entries, "\"a\":\"sub/%s\"", S1);
    make_sharded("sh_slash", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_slash"), "sub/", "tensor a");
    snprintf(entries, sizeof entries, "\"a\":\"..\"");
    make_sharded("sh_dotdot", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_dotdot"), "\"..\"");
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"/etc/passwd\"", S1);
    make_sharded("sh_abs", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_abs"), "\"/etc/passwd\"", "tensor c", "absolute");
    snprintf(entries, sizeof entries, "\"a\":\".\"");
    make_sharded("sh_dot", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_dot"), "\".\"", "plain file name");
    /* a shard that does not exist */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"model-00003-of-00002.safetensors\"",
             S1);
    make_sharded("sh_noshard", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_noshard"), "model-00003-of-00002.safetensors");
    /* a shard that is damaged */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    make_sharded("sh_trunc", index_text(entries));
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", vt_tpath("sh_trunc"), S2);
    VT_CHECK(truncate(p, 20) == 0);
    EXPECT_OPEN_FAIL(vt_tpath("sh_trunc"), S2);
    /* the same tensor in two shards */
    make_sharded("sh_dup", index_text(entries));
    static float dup[3] = {0, 0, 0};
    vl_tensor_out again[] = {{"a", VL_DTYPE_F32, 1, {3}, dup}};
    snprintf(p, sizeof p, "%s/%s", vt_tpath("sh_dup"), S2);
    VT_CHECK(vl_safetensors_write(p, again, 1) == 0);
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"b\":\"%s\",\"c\":\"%s\"", S1, S1, S2);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", vt_tpath("sh_dup"));
    vt_write_text(p, index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_dup"), "tensor a appears in both");
    /* broken index files */
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"a\":\"%s\"", S1, S1);
    make_sharded("sh_dupkey", index_text(entries));
    EXPECT_OPEN_FAIL(vt_tpath("sh_dupkey"), "model.safetensors.index.json", "\"a\" twice");
    snprintf(entries, sizeof entries, "\"a\":\"%s\"", S1);
    char trailing[2100];
    snprintf(trailing, sizeof trailing, "%s\n{}", index_text(entries));
    make_sharded("sh_trailing", trailing);
    EXPECT_OPEN_FAIL(vt_tpath("sh_trailing"), "model.safetensors.index.json", "after the JSON");
    make_sharded("sh_badjson", "{\"weight_map\": {\"a\": ");
    EXPECT_OPEN_FAIL(vt_tpath("sh_badjson"), "model.safetensors.index.json", "JSON");
    make_sharded("sh_nomap", "{\"metadata\": {}}");
    EXPECT_OPEN_FAIL(vt_tpath("sh_nomap"), "model.safetensors.index.json", "weight_map");
    make_sharded("sh_emptymap", "{\"weight_map\": {}}");
    EXPECT_OPEN_FAIL(vt_tpath("sh_emptymap"), "weight_map");
    make_sharded("sh_nonstr", "{\"weight_map\": {\"a\": 3}}");
    EXPECT_OPEN_FAIL(vt_tpath("sh_nonstr"), "weight_map entry a");
}

/* ---- symbolic links ------------------------------------------------------------------------ */

/* Move dir/name to `to` (a path) and leave a link `target` in its place. */
static void move_and_link(const char *dir, const char *name, const char *to, const char *target) {
    char from[1100];
    snprintf(from, sizeof from, "%s/%s", vt_tpath(dir), name);
    if (rename(from, to) != 0) {
        perror("rename");
        exit(2);
    }
    vt_symlink(target, from);
}

static void open_ok(int line, const char *dir, int n_tensors) {
    vl_checkpoint ck;
    vl_error_clear();
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath(dir)) == 0, "line %d: %s", line, vl_error_get());
    VT_CHECKF(ck.n_tensors == n_tensors, "line %d: %d tensors", line, ck.n_tensors);
    check_invariants(&ck);
    const vl_tensor *c = vl_checkpoint_find(&ck, "c");
    VT_CHECKF(!n_tensors || (c && ((const float *)c->data)[1] == 6.0f), "line %d: c", line);
    vl_checkpoint_close(&ck);
}

static void test_links_inside(void) {
    char entries[512], to[1100];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    /* a relative link into a subfolder and an absolute link to a file of the folder */
    make_sharded("ln_in", index_text(entries));
    vt_make_dir("ln_in/real");
    snprintf(to, sizeof to, "%s/s2.bin", vt_tpath("ln_in/real"));
    move_and_link("ln_in", S2, to, "real/s2.bin");
    snprintf(to, sizeof to, "%s/s1.bin", vt_tpath("ln_in"));
    move_and_link("ln_in", S1, to, to);
    open_ok(__LINE__, "ln_in", 4);
    /* a link that leaves the folder and comes back is inside */
    make_sharded("ln_back", index_text(entries));
    snprintf(to, sizeof to, "%s/s2.bin", vt_tpath("ln_back"));
    move_and_link("ln_back", S2, to, "../ln_back/s2.bin");
    open_ok(__LINE__, "ln_back", 4);
}

static void test_links_outside(void) {
    char entries[512], to[1100], want[1200];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    vt_make_dir("outside");
    /* a valid shard moved out, linked absolutely and relatively */
    make_sharded("ln_out", index_text(entries));
    snprintf(to, sizeof to, "%s/s2.safetensors", vt_tpath("outside"));
    move_and_link("ln_out", S2, to, to);
    snprintf(want, sizeof want, "shard %s/%s resolves to", vt_tpath("ln_out"), S2);
    EXPECT_OPEN_FAIL(vt_tpath("ln_out"), want, "outside the checkpoint folder");
    make_sharded("ln_rel", index_text(entries));
    snprintf(to, sizeof to, "%s/s2rel.safetensors", vt_tpath("outside"));
    move_and_link("ln_rel", S2, to, "../outside/s2rel.safetensors");
    EXPECT_OPEN_FAIL(vt_tpath("ln_rel"), S2, "outside the checkpoint folder");
    /* a folder whose name is a prefix of the target's folder */
    vt_make_dir("pre_out");
    make_sharded("pre", index_text(entries));
    snprintf(to, sizeof to, "%s/s2.safetensors", vt_tpath("pre_out"));
    move_and_link("pre", S2, to, "../pre_out/s2.safetensors");
    EXPECT_OPEN_FAIL(vt_tpath("pre"), S2, "outside the checkpoint folder");
    /* the single file and the index as links out */
    vt_make_dir("ln_single");
    vt_symlink(vt_tpath("outside/s2.safetensors"), vt_tpath("ln_single/model.safetensors"));
    EXPECT_OPEN_FAIL(vt_tpath("ln_single"), "model.safetensors", "outside the checkpoint folder");
    make_sharded("ln_index", index_text(entries));
    snprintf(to, sizeof to, "%s/index.json", vt_tpath("outside"));
    move_and_link("ln_index", "model.safetensors.index.json", to, to);
    EXPECT_OPEN_FAIL(vt_tpath("ln_index"), "index", "outside the checkpoint folder");
    /* a private file: refused before it is read, so none of its bytes reach the message */
    const char *secret = "XYZZY:x:0:0:XYZZY:/root:/bin/sh\n";
    vt_write_text(vt_tpath("outside/passwd"), secret);
    uint64_t as_length = 0;
    for (int i = 7; i >= 0; i--) as_length = (as_length << 8) | (unsigned char)secret[i];
    char number[32];
    snprintf(number, sizeof number, "%llu", (unsigned long long)as_length);
    make_sharded("ln_secret", index_text(entries));
    char link[1100];
    snprintf(link, sizeof link, "%s/%s", vt_tpath("ln_secret"), S2);
    vt_symlink(vt_tpath("outside/passwd"), link);
    vl_checkpoint ck;
    vl_error_clear();
    VT_CHECK(vl_checkpoint_open(&ck, vt_tpath("ln_secret")) != 0);
    const char *msg = vl_error_get();
    VT_CHECKF(strstr(msg, "outside the checkpoint folder") && !strstr(msg, "XYZZY") &&
                  !strstr(msg, number) && !strchr(msg, '\n'),
              "%s", msg);
}

/* The Hugging Face cache: the files of X/snapshots/REV are relative links to X/blobs/HASH. */
static void test_hf_cache(void) {
    static const char *const levels[] = {"hf",
                                         "hf/models--t",
                                         "hf/models--t/blobs",
                                         "hf/models--t/snapshots",
                                         "hf/models--t/snapshots/r1",
                                         "hf/models--t/snapshots/r2",
                                         "hf/models--t/other",
                                         "hf/models--t/notsnap",
                                         "hf/models--t/notsnap/r3"};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) vt_make_dir(levels[i]);
    char entries[512], to[1100];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    const char *snap = "hf/models--t/snapshots/r1";
    make_sharded(snap, index_text(entries));
    static const char *const files[3][2] = {{"model-00001-of-00002.safetensors", "h1"},
                                            {"model-00002-of-00002.safetensors", "h2"},
                                            {"model.safetensors.index.json", "h3"}};
    char target[64];
    for (int i = 0; i < 3; i++) {
        snprintf(to, sizeof to, "%s/%s", vt_tpath("hf/models--t/blobs"), files[i][1]);
        snprintf(target, sizeof target, "../../blobs/%s", files[i][1]);
        move_and_link(snap, files[i][0], to, target);
    }
    open_ok(__LINE__, snap, 4);
    /* a single-file snapshot */
    vt_symlink("../../blobs/h2", vt_tpath("hf/models--t/snapshots/r2/model.safetensors"));
    open_ok(__LINE__, "hf/models--t/snapshots/r2", 2);
    /* only blobs/ is let in, and only for a folder under snapshots/ */
    static float one[1] = {1};
    vl_tensor_out t1[] = {{"one", VL_DTYPE_F32, 1, {1}, one}};
    VT_CHECK(vl_safetensors_write(vt_tpath("hf/models--t/other/h4"), t1, 1) == 0);
    vt_symlink("../../other/h4", vt_tpath("hf/models--t/snapshots/r2/model.safetensors"));
    EXPECT_OPEN_FAIL(vt_tpath("hf/models--t/snapshots/r2"), "outside the checkpoint folder");
    vt_symlink("../../blobs/h2", vt_tpath("hf/models--t/notsnap/r3/model.safetensors"));
    EXPECT_OPEN_FAIL(vt_tpath("hf/models--t/notsnap/r3"), "outside the checkpoint folder");
}

/* ---- FIFOs ---------------------------------------------------------------------------------- */

static void test_fifos(void) {
    vt_watchdog(60); /* an open() that blocks ends the program with a failure */
    vt_mkfifo(vt_tpath("pipe.safetensors"));
    EXPECT_OPEN_FAIL(vt_tpath("pipe.safetensors"), "pipe.safetensors", "FIFO");
    vt_make_dir("fifo_single");
    vt_mkfifo(vt_tpath("fifo_single/model.safetensors"));
    EXPECT_OPEN_FAIL(vt_tpath("fifo_single"), "model.safetensors", "FIFO");
    char entries[512], p[1100];
    snprintf(entries, sizeof entries, "\"a\":\"%s\",\"c\":\"%s\"", S1, S2);
    make_sharded("fifo_index", index_text(entries));
    vt_mkfifo(vt_tpath("fifo_index/model.safetensors.index.json"));
    EXPECT_OPEN_FAIL(vt_tpath("fifo_index"), "model.safetensors.index.json", "FIFO");
    make_sharded("fifo_shard", index_text(entries));
    snprintf(p, sizeof p, "%s/%s", vt_tpath("fifo_shard"), S2);
    vt_mkfifo(p);
    EXPECT_OPEN_FAIL(vt_tpath("fifo_shard"), S2, "FIFO");
    vt_watchdog(0);
}

/* ---- a large index -------------------------------------------------------------------------- */

#define BIG_N 200000

/* An index of BIG_N entries; entry i names tensor t<i> and the shard name(i). */
static void write_big_index(const char *path, void (*name)(int i, char *out)) {
    size_t cap = (size_t)BIG_N * 64 + 64, n = 0;
    char *text = malloc(cap), shard[40];
    n += (size_t)snprintf(text + n, cap - n, "{\"weight_map\":{");
    for (int i = 0; i < BIG_N; i++) {
        name(i, shard);
        n += (size_t)snprintf(text + n, cap - n, "%s\"t%06d\":\"%s\"", i ? "," : "", i, shard);
    }
    snprintf(text + n, cap - n, "}}");
    vt_write_text(path, text);
    free(text);
}

/* BIG_N distinct shard names in a scrambled order (7919 is prime to BIG_N). */
static void distinct_name(int i, char *out) {
    sprintf(out, "s%06d.safetensors", (int)(((int64_t)i * 7919 + 12345) % BIG_N));
}

static void two_shards_name(int i, char *out) {
    sprintf(out, "half%d.safetensors", i % 2);
}

static void test_big_index(void) {
    /* every shard name distinct: de-duplicated, then the first one listed is missing */
    vt_make_dir("big_distinct");
    write_big_index(vt_tpath("big_distinct/model.safetensors.index.json"), distinct_name);
    EXPECT_OPEN_FAIL(vt_tpath("big_distinct"), "s012345.safetensors", "No such file");

    /* BIG_N entries in two shards of BIG_N / 2 one-byte tensors each */
    vt_make_dir("big_two");
    vl_tensor_out *ts = calloc(BIG_N / 2, sizeof *ts);
    char(*names)[16] = malloc((size_t)BIG_N / 2 * sizeof *names);
    uint8_t *bytes = malloc(BIG_N / 2);
    for (int half = 0; half < 2; half++) {
        for (int k = 0; k < BIG_N / 2; k++) {
            int i = 2 * k + half; /* two_shards_name puts t<i> in half<i % 2> */
            snprintf(names[k], sizeof names[k], "t%06d", i);
            bytes[k] = (uint8_t)(i % 251);
            ts[k] = (vl_tensor_out){names[k], VL_DTYPE_U8, 1, {1}, &bytes[k]};
        }
        char p[1100];
        snprintf(p, sizeof p, "%s/half%d.safetensors", vt_tpath("big_two"), half);
        VT_CHECKF(vl_safetensors_write(p, ts, BIG_N / 2) == 0, "%s", vl_error_get());
    }
    free(ts);
    free(names);
    free(bytes);
    write_big_index(vt_tpath("big_two/model.safetensors.index.json"), two_shards_name);
    vl_checkpoint ck;
    VT_CHECKF(vl_checkpoint_open(&ck, vt_tpath("big_two")) == 0, "%s", vl_error_get());
    VT_CHECK_INT(ck.n_files, 2);
    VT_CHECK_INT(ck.n_tensors, BIG_N);
    static const int probe[] = {0, 1, 2, 77777, BIG_N - 2, BIG_N - 1};
    for (size_t j = 0; j < sizeof probe / sizeof probe[0]; j++) {
        char nm[16];
        snprintf(nm, sizeof nm, "t%06d", probe[j]);
        const vl_tensor *t = vl_checkpoint_find(&ck, nm);
        VT_CHECKF(t && t->file == probe[j] % 2 && *(const uint8_t *)t->data == probe[j] % 251, "%s",
                  nm);
    }
    vl_checkpoint_close(&ck);
}

int main(void) {
    vt_tmp_init("vl_stf");
    test_sharded();
    test_links_inside();
    test_links_outside();
    test_hf_cache();
    test_fifos();
    test_big_index();
    vt_rm_tree(vt_tmp_root);
    return vt_finish();
}
