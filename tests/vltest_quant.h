/* vltest_quant.h: a quantized weight with its own buffers, for the quantization tests (CPU and
 * GPU), sized by vl_quant_sizes_of. */
#ifndef VL_TEST_QUANT_H
#define VL_TEST_QUANT_H
#include "kernels/kernels.h"

#include <string.h>

typedef struct {
    vl_weight w;
    vl_quant_sizes sz;
} qweight;

/* fmt (NF4 / Q8ROW, double-quantized scales when dq) [rows, cols], every buffer from
 * alloc(bytes): zeroed host memory, poisoned device memory, ... (absmax_code and absmax_map only
 * where the format has them). */
static inline void qweight_make(qweight *q, vl_dtype fmt, int dq, int64_t rows, int64_t cols,
                                void *(*alloc)(size_t bytes)) {
    memset(q, 0, sizeof *q);
    vl_quant_sizes_of(fmt, dq, rows, cols, &q->sz);
    q->w.dtype = fmt;
    q->w.rows = rows;
    q->w.cols = cols;
    q->w.data = alloc(q->sz.data);
    q->w.absmax = alloc(q->sz.absmax);
    q->w.absmax_code = q->sz.absmax_code ? alloc(q->sz.absmax_code) : NULL;
    q->w.absmax_map = q->sz.absmax_map ? alloc(q->sz.absmax_map) : NULL;
}

#endif
