/* cuda_stub.c: vl_backend_cuda for a build without CUDA (VL_HAVE_CUDA undefined): there is no
 * device to offer, so it says why and returns NULL. Builds with CUDA define it in the .cu code.
 */
#include "kernels/kernels.h"

#ifndef VL_HAVE_CUDA
#include <stdio.h>

vl_backend *vl_backend_cuda(char *why, size_t why_len) {
    if (why && why_len > 0)
        snprintf(why, why_len,
                 "this vlrun was built without CUDA; rebuild with nvcc or use --backend cpu");
    return NULL;
}
#endif
