/* vltest_dev.h: device memory for the GPU tests. A test cannot go on without its buffers, so
 * running out ends the program with a FAIL line. */
#ifndef VL_TEST_DEV_H
#define VL_TEST_DEV_H
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>

static inline void *vt_dev_alloc(vl_backend *b, size_t bytes) {
    void *p = b->mem_alloc(b, bytes);
    if (!p) {
        fprintf(stderr, "FAIL: out of device memory for %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

#endif
