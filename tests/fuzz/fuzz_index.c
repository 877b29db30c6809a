/* fuzz_index.c: libFuzzer harness for a sharded checkpoint: the input is
 * model.safetensors.index.json in a directory that holds a few small, valid shards written once
 * at start-up (vl_checkpoint_open on the directory). Shards:
 *   model-00001-of-00002.safetensors   a.weight BF16 [2, 3], b.bias F32 [3]
 *   model-00002-of-00002.safetensors   c.weight U8 [4], d I64 [] (0-d)
 *   extra.safetensors                  a.weight F32 [1] (the same name as in shard 1)
 *   empty.safetensors                  no tensors
 * An opened checkpoint must keep loader.h's promises (fuzz_checkpoint_check.h), including that
 * every index entry resolves to a tensor of the shard it names.
 * Leaves out: damaged shards (fuzz_safetensors.c covers one file's bytes). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_checkpoint_check.h"
#include "tests/fuzz/fuzz_common.h"

#include <cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static const char *model_dir;

static void write_shard(const char *name, const vl_tensor_out *t, int n) {
    const char *path = fuzz_path(name); /* in model_dir, removed at exit */
    if (vl_safetensors_write(path, t, n) != 0) {
        fprintf(stderr, "fuzz_index: cannot write %s: %s\n", path, vl_error_get());
        exit(2);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    model_dir = fuzz_tmpdir();
    static const uint16_t a_bf16[6] = {0x3f80, 0x4000, 0x4040, 0xbf80, 0, 0x7f80};
    static const float b_f32[3] = {1.0f, -2.0f, 0.5f}, a_f32[1] = {3.0f};
    static const uint8_t c_u8[4] = {1, 2, 3, 4};
    static const int64_t d_i64 = 42;
    const vl_tensor_out shard1[] = {{"a.weight", VL_DTYPE_BF16, 2, {2, 3}, a_bf16},
                                    {"b.bias", VL_DTYPE_F32, 1, {3}, b_f32}};
    const vl_tensor_out shard2[] = {{"c.weight", VL_DTYPE_U8, 1, {4}, c_u8},
                                    {"d", VL_DTYPE_I64, 0, {0}, &d_i64}};
    const vl_tensor_out extra[] = {{"a.weight", VL_DTYPE_F32, 1, {1}, a_f32}};
    write_shard("model-00001-of-00002.safetensors", shard1, 2);
    write_shard("model-00002-of-00002.safetensors", shard2, 2);
    write_shard("extra.safetensors", extra, 1);
    write_shard("empty.safetensors", NULL, 0);
    vl_error_clear();
    return 0;
}

/* Every weight_map entry of a successfully opened index names a tensor in that shard. Parsed
 * leniently (up to a NUL, trailing text allowed): whatever the loader accepted parses here. */
static void check_index_entries(const vl_checkpoint *ck, const uint8_t *data, size_t size) {
    char *text = fuzz_strndup(data, size);
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    FUZZ_CHECK(cJSON_IsObject(wm), "opened an index without a weight_map object");
    for (const cJSON *e = wm->child; e; e = e->next) {
        FUZZ_CHECK(cJSON_IsString(e), "weight_map entry %s is not a string", e->string);
        const vl_tensor *t = vl_checkpoint_find(ck, e->string);
        FUZZ_CHECK(t != NULL, "weight_map entry %s missing from the checkpoint", e->string);
        const char *file = ck->files[t->file].path, *slash = strrchr(file, '/');
        FUZZ_CHECK(strcmp(slash ? slash + 1 : file, e->valuestring) == 0,
                   "%s is in %s, the index says %s", e->string, file, e->valuestring);
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    fuzz_write("model.safetensors.index.json", data, size);
    vl_checkpoint ck;
    int rc = vl_checkpoint_open(&ck, model_dir);
    fuzz_check_error(rc, "vl_checkpoint_open (index)");
    if (rc == 0) {
        fuzz_check_checkpoint(&ck);
        check_index_entries(&ck, data, size);
    } else {
        FUZZ_CHECK(ck.n_files == 0 && ck.tensors == NULL, "a failed open left state behind");
    }
    vl_checkpoint_close(&ck);
    vl_error_clear();
    return 0;
}
