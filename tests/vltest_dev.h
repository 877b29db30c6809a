/* vltest_dev.h: the GPU tests' CUDA backend and device memory. A test cannot go on without its
 * buffers, so running out ends the program with a FAIL line. */
#ifndef VL_TEST_DEV_H
#define VL_TEST_DEV_H
#include "kernels/kernels.h"
#include "vltest.h"

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

/* The CUDA backend, or NULL after saying why and counting a skip (no device, or a build without
 * CUDA): the caller then returns vt_finish(), which exits 77. */
static inline vl_backend *vt_gpu_or_skip(void) {
    char why[256] = "";
    vl_backend *gpu = vl_backend_cuda(NULL, why, sizeof why);
    if (!gpu) {
        printf("no CUDA backend: %s\n", why[0] ? why : "(no reason given)");
        VT_SKIP(why);
    }
    return gpu;
}

#ifdef VL_HAVE_CUDA
#include <cuda_runtime.h>
/* 1 when device 0, the tests' backend's, has compute capability 9.0 (where the Hopper kernels
 * run); its capability in *major and *minor (0 where unknown). */
static inline int vt_device_sm90(int *major, int *minor) {
    *major = *minor = 0;
    return cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess &&
           cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, 0) == cudaSuccess &&
           *major == 9 && *minor == 0;
}
#endif

#endif
