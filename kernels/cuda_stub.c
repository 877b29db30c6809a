/* cuda_stub.c: vl_backend_cuda for a build without CUDA (VL_HAVE_CUDA undefined): there is no
 * device to offer, so it says why and returns NULL; vl_backend_free has no CUDA backend to free.
 * Builds with CUDA define both in cuda_backend.cu. */
#include "kernels/kernels.h"

#ifndef VL_HAVE_CUDA
#include <stdio.h>

vl_backend *vl_backend_cuda(const vl_cuda_config *cfg, char *why, size_t why_len) {
    (void)cfg;
    if (why && why_len > 0)
        snprintf(why, why_len,
                 "this vlrun was built without CUDA; rebuild with nvcc or use --backend cpu");
    return NULL;
}

void vl_backend_free(vl_backend *b) {
    (void)b; /* only the static CPU backend exists */
}
#endif
