/* fuzz_bnb.c: libFuzzer harness for a bitsandbytes quant state (vl_bnb_weight over an in-memory
 * vl_checkpoint). Input: one layout byte, then the bytes of the 4-bit quant-state JSON tensor.
 * The layout byte picks the shape and which companion tensors exist, each heap-allocated to its
 * exact size (so AddressSanitizer sees any read past one):
 *   bits 0-1  [rows, cols]: [4, 32], [3, 64], [1, 1], [5, 7]
 *   bit 2     double quantization pieces (absmax as U8 codes, nested_absmax, nested_quant_map)
 *             instead of F32 absmax
 *   bit 3     no quant_map
 *   bit 4     a nested_absmax next to F32 absmax (inconsistent)
 *   bit 5     the quant state named ...bitsandbytes__fp4
 *   bit 6     a NaN block scale
 *   bit 7     8-bit layout instead: I8 weight + SCB [rows] + weight_format (the JSON's first
 *             byte as its value); no quant state
 * A weight that is accepted must describe exactly the tensors handed in.
 * Leaves out: vl_bnb_weight inside model loading (the engine's tests) and the dequantization. */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME      "m.weight"
#define MAX_TENS  8
#define NAME_SIZE 64

typedef struct {
    vl_checkpoint ck;
    vl_tensor t[MAX_TENS];
    char names[MAX_TENS][NAME_SIZE];
    vl_mapped_file file;
} mem_checkpoint;

/* A tensor of n elements of dtype whose bytes are a heap copy of src (or a pattern). */
static vl_tensor *add(mem_checkpoint *m, const char *name, vl_dtype dtype, int64_t n,
                      const void *src) {
    vl_tensor *t = &m->t[m->ck.n_tensors];
    snprintf(m->names[m->ck.n_tensors], NAME_SIZE, "%s", name);
    m->ck.n_tensors++;
    size_t bytes = (size_t)n * vl_dtype_size(dtype);
    uint8_t *p = malloc(bytes ? bytes : 1);
    FUZZ_CHECK(p != NULL, "out of memory");
    for (size_t i = 0; i < bytes; i++) p[i] = src ? ((const uint8_t *)src)[i] : (uint8_t)(i * 7);
    *t = (vl_tensor){.name = m->names[m->ck.n_tensors - 1],
                     .dtype = dtype,
                     .ndim = 1,
                     .shape = {n},
                     .numel = n,
                     .data = p,
                     .nbytes = bytes,
                     .file = 0};
    return t;
}

static vl_tensor *add_floats(mem_checkpoint *m, const char *name, int64_t n, float value) {
    vl_tensor *t = add(m, name, VL_DTYPE_F32, n, NULL);
    for (int64_t i = 0; i < n; i++) memcpy((uint8_t *)t->data + 4 * i, &value, 4);
    return t;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const vl_tensor *)a)->name, ((const vl_tensor *)b)->name);
}

static void build(mem_checkpoint *m, uint8_t layout, const uint8_t *qs, size_t qs_len, int64_t rows,
                  int64_t cols) {
    memset(m, 0, sizeof *m);
    m->ck.tensors = m->t;
    m->ck.files = &m->file;
    m->ck.n_files = 1;
    m->file.path = "memory";
    const int64_t n = rows * cols, blocks = (n + 63) / 64;
    if (layout & 0x80) {
        vl_tensor *w = add(m, NAME, VL_DTYPE_I8, n, NULL);
        w->ndim = 2, w->shape[0] = rows, w->shape[1] = cols;
        add_floats(m, "m.SCB", rows, (layout & 0x40) ? NAN : 0.5f);
        add(m, "m.weight_format", VL_DTYPE_U8, 1, qs_len ? qs : (const uint8_t *)"\0");
    } else {
        add(m, NAME, VL_DTYPE_U8, (n + 1) / 2, NULL);
        add(m,
            (layout & 0x20) ? NAME ".quant_state.bitsandbytes__fp4"
                            : NAME ".quant_state.bitsandbytes__nf4",
            VL_DTYPE_U8, (int64_t)qs_len, qs);
        if (!(layout & 0x08)) add(m, NAME ".quant_map", VL_DTYPE_F32, 16, vl_nf4_table);
        float scale = (layout & 0x40) ? NAN : 0.25f;
        if (layout & 0x04) {
            add(m, NAME ".absmax", VL_DTYPE_U8, blocks, NULL);
            add_floats(m, NAME ".nested_absmax", (blocks + 255) / 256, scale);
            add_floats(m, NAME ".nested_quant_map", 256, 0.125f);
        } else {
            add_floats(m, NAME ".absmax", blocks, scale);
            if (layout & 0x10) add_floats(m, NAME ".nested_absmax", 1, 1.0f);
        }
    }
    qsort(m->t, (size_t)m->ck.n_tensors, sizeof m->t[0], by_name);
}

static void release(mem_checkpoint *m) {
    for (int i = 0; i < m->ck.n_tensors; i++) free((void *)m->t[i].data);
}

/* An accepted weight points at the tensors it was built from. */
static void check_weight(const mem_checkpoint *m, const vl_weight *w, int64_t rows, int64_t cols) {
    const vl_tensor *packed = vl_checkpoint_find(&m->ck, NAME);
    FUZZ_CHECK(w->rows == rows && w->cols == cols && packed && w->data == packed->data,
               "weight [%lld, %lld] at %p", (long long)w->rows, (long long)w->cols, w->data);
    if (w->dtype == VL_DTYPE_Q8ROW) {
        const vl_tensor *scb = vl_checkpoint_find(&m->ck, "m.SCB");
        FUZZ_CHECK(scb && (const void *)w->absmax == scb->data, "int8 scales elsewhere");
        return;
    }
    FUZZ_CHECK(w->dtype == VL_DTYPE_NF4, "dtype %d", (int)w->dtype);
    const vl_tensor *absmax = vl_checkpoint_find(&m->ck, NAME ".absmax");
    const vl_tensor *nested = vl_checkpoint_find(&m->ck, NAME ".nested_absmax");
    const vl_tensor *nmap = vl_checkpoint_find(&m->ck, NAME ".nested_quant_map");
    if (w->absmax_code) {
        FUZZ_CHECK(absmax && nested && nmap && w->absmax_code == absmax->data &&
                       (const void *)w->absmax == nested->data &&
                       (const void *)w->absmax_map == nmap->data && isfinite(w->absmax_offset),
                   "double-quantized scales elsewhere");
    } else {
        FUZZ_CHECK(absmax && (const void *)w->absmax == absmax->data && !w->absmax_map,
                   "block scales elsewhere");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int64_t shapes[4][2] = {{4, 32}, {3, 64}, {1, 1}, {5, 7}};
    vl_error_clear();
    const uint8_t layout = data[0];
    const int64_t rows = shapes[layout & 3][0], cols = shapes[layout & 3][1];
    mem_checkpoint m;
    build(&m, layout, data + 1, size - 1, rows, cols);
    vl_weight w;
    memset(&w, 0, sizeof w);
    int rc = vl_bnb_weight(&m.ck, NAME, rows, cols, &w);
    FUZZ_CHECK(rc == 1 || rc == -1, "vl_bnb_weight returned %d on bitsandbytes tensors", rc);
    fuzz_check_error(rc == 1 ? 0 : rc, "vl_bnb_weight");
    if (rc == 1) check_weight(&m, &w, rows, cols);
    release(&m);
    vl_error_clear();
    return 0;
}
