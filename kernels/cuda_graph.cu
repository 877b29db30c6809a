/* cuda_graph.cu: record a sequence of ops as a CUDA graph and replay it (the decode step).
 *
 * Recording is stream capture on the backend's one stream: every op of kernels/ enqueues on that
 * stream and none synchronizes or allocates inside a decode step, so a whole step (about 400
 * kernels for 28 layers) becomes one graph launch and the per-kernel launch cost, which at
 * batch 1 is comparable to the kernels themselves, disappears. What changes between steps
 * (token, positions, cache length) is read by the kernels from the decode state in device
 * memory (kernels.h vl_decode_state), so the recorded parameters never go stale.
 * The backend's profile_step = N (vl_cuda_config) brackets its Nth replay (from 1) with
 * cudaProfilerStart/Stop, so that `ncu --profile-from-start off` times the kernels of exactly
 * one decode step. A backend created with no_graphs has none of these ops.
 * Leaves out: graph updates (cudaGraphExecUpdate) and conditional nodes. */
#include "kernels/cuda_ops.h"

#include <cuda_profiler_api.h>

extern "C" int vl_cuda_graph_begin(vl_backend *b) {
    VL_CUDA_CHECK(
        cudaStreamBeginCapture(vl_cuda_ctx_of(b)->stream, cudaStreamCaptureModeThreadLocal));
    return 0;
}

extern "C" void *vl_cuda_graph_end(vl_backend *b) {
    cudaGraph_t graph = NULL;
    VL_CUDA_CHECK(cudaStreamEndCapture(vl_cuda_ctx_of(b)->stream, &graph));
    cudaGraphExec_t exec = NULL;
    VL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    VL_CUDA_CHECK(cudaGraphDestroy(graph));
    return (void *)exec;
}

extern "C" void vl_cuda_graph_launch(vl_backend *b, void *graph) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    cudaStream_t stream = c->stream;
    const int profiled = ++c->graph_launches == c->cfg.profile_step;
    if (profiled) VL_CUDA_CHECK(cudaProfilerStart());
    VL_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, stream));
    if (profiled) {
        VL_CUDA_CHECK(cudaStreamSynchronize(stream));
        VL_CUDA_CHECK(cudaProfilerStop());
    }
}

extern "C" void vl_cuda_graph_free(vl_backend *b, void *graph) {
    (void)b;
    if (graph) VL_CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}
