/* cuda_tensor_map.cu: the tensor maps the Hopper kernels' TMA loads read (cuda_attention_wgmma.cu,
 * cuda_dequant_gemm_wgmma.cu), made by the driver's cuTensorMapEncodeTiled. The function is
 * found through the runtime (no link to libcuda), once per backend. */
#include "kernels/cuda_ops.h"

typedef CUresult (*EncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

static EncodeTiled encode_tiled(vl_cuda_ctx *c) {
    if (c->tensor_map_encode == NULL) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        VL_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                       cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || fn == NULL)
            vl_cuda_fatal("cudaGetDriverEntryPointByVersion", __FILE__, __LINE__,
                          "the driver has no cuTensorMapEncodeTiled");
        c->tensor_map_encode = fn;
    }
    return (EncodeTiled)c->tensor_map_encode;
}

void vl_cuda_tensor_map(vl_cuda_ctx *c, CUtensorMap *map, int esz, int rank, const void *base,
                        const uint64_t *dims, const uint64_t *strides_bytes, const uint32_t *box,
                        int swizzle_128b) {
    cuuint64_t d[3], st[2];
    cuuint32_t bx[3], elem_strides[3] = {1, 1, 1};
    VL_CUDA_REQUIRE(rank >= 1 && rank <= 3 && (esz == 1 || esz == 2), "tensor map rank %d esz %d",
                    rank, esz);
    for (int i = 0; i < rank; i++) {
        d[i] = dims[i];
        bx[i] = box[i];
        if (i + 1 < rank) st[i] = strides_bytes[i];
    }
    const CUresult r = encode_tiled(c)(
        map, esz == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_UINT8,
        (cuuint32_t)rank, const_cast<void *>(base), d, st, bx, elem_strides,
        CU_TENSOR_MAP_INTERLEAVE_NONE,
        swizzle_128b ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "CUresult %d (esz %d, rank %d, dims %llu x %llu x %llu)",
                 (int)r, esz, rank, (unsigned long long)d[0],
                 rank > 1 ? (unsigned long long)d[1] : 1ull,
                 rank > 2 ? (unsigned long long)d[2] : 1ull);
        vl_cuda_fatal("cuTensorMapEncodeTiled", __FILE__, __LINE__, what);
    }
}
