/* fuzz_safetensors.c: libFuzzer harness for one .safetensors file (vl_checkpoint_open on a
 * file path). The input is the whole file; an opened checkpoint must keep every promise of
 * loader.h (fuzz_checkpoint_check.h) and close without leaks; a refused one leaves a message.
 * Leaves out: directories and indexes (fuzz_index.c), multi-GB offsets (no input is that big). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_checkpoint_check.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    const char *path = fuzz_write("input.safetensors", data, size);
    vl_checkpoint ck;
    int rc = vl_checkpoint_open(&ck, path);
    fuzz_check_error(rc, "vl_checkpoint_open");
    if (rc == 0)
        fuzz_check_checkpoint(&ck);
    else
        FUZZ_CHECK(ck.n_files == 0 && ck.tensors == NULL, "a failed open left state behind");
    vl_checkpoint_close(&ck);
    vl_error_clear();
    return 0;
}
