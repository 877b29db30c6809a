/* cuda_backend.cu: the CUDA backend: a device, one stream, a cuBLAS handle, fixed workspaces,
 * the memory ops and the op table; the device facts each backend asks for itself (SM count,
 * kernel occupancy); plus vl_cuda_fatal, where every CUDA failure ends.
 *
 * Each vl_backend_cuda call creates a backend of its own (table, context, workspaces) on the
 * configured device, freed by vl_backend_free; nothing per device is kept per process, so
 * several backends work side by side. Every op is enqueued on the backend's stream, so ops
 * are ordered without events; download and sync wait for it, and so does upload: its host
 * source may be pageable memory that the caller frees as soon as upload returns. copy is
 * cudaMemcpyAsync: source and destination must not overlap.
 * Fixed workspaces, allocated at start (never in the decode loop):
 *   cuBLAS      CUDA_CUBLAS_WS_BYTES   (32 MiB: what cuBLAS asks for on Hopper)
 *   attention   CUDA_ATTN_WS_BYTES     (64 MiB: split-KV partials of decode; a call that could
 *                                       use more runs with fewer splits)
 *   staging     CUDA_STAGING_FLOATS fp32 (16 MiB: from_f32 / to_f32 chunks)
 *   gemv        CUDA_GEMV_PARTIAL_FLOATS fp32 + CUDA_GEMV_TILES int32 (1 MiB + 64 KiB: K split
 *               over CTAs in the decode GEMV; the counters start zeroed)
 *   quantize    VL_CUDA_QUANT_STATE_BYTES + CUDA_QUANT_SCRATCH_FLOATS fp32 (4 MiB: the in-order
 *               fallback of the double-quantization offset, cuda_quant.cu)
 *   dequant GEMM 2 x CUDA_DQ_SLICE_BYTES (2 x 32 MiB: bf16 slices of a quantized W) carved from
 *               the attention workspace (decode attention and a prefill GEMM never overlap), a
 *               second (high-priority) stream, five events and the cuBLASLt handle (shared with
 *               the biased bf16 GEMM of cuda_linear.cu)
 * CUDA graphs: cuda_graph.cu. Leaves out: splitting one model over GPUs, pinned host buffers,
 * memory accounting (the engine's arena ledger does that).
 */
#include "kernels/cuda_ops.h"
#include "kernels/say.h"

#include <stdlib.h>

#define CUDA_CUBLAS_WS_BYTES      ((size_t)32 << 20)
#define CUDA_ATTN_WS_BYTES        ((size_t)64 << 20)
#define CUDA_STAGING_FLOATS       ((int64_t)4 << 20)
#define CUDA_GEMV_PARTIAL_FLOATS  ((int64_t)1 << 18) /* 1 MiB: 2048 CTA partials of 128 floats */
#define CUDA_GEMV_TILES           ((int64_t)1 << 14) /* counters: N up to 262144 may split K */
#define CUDA_QUANT_SCRATCH_FLOATS ((int64_t)1 << 20) /* block scales per fallback segment */
/* >= 512 rows of K = 18944 per slice; at m = 2048 a slice of 3584 x 3584 or of 1024 x 18944
 * keeps the GEMM busy well past the next slice's dequantization. */
#define CUDA_DQ_SLICE_BYTES ((size_t)32 << 20)
static_assert(CUDA_CUBLAS_WS_BYTES + CUDA_ATTN_WS_BYTES + CUDA_STAGING_FLOATS * 4 +
                      CUDA_GEMV_PARTIAL_FLOATS * 4 + CUDA_GEMV_TILES * 4 +
                      VL_CUDA_QUANT_STATE_BYTES + CUDA_QUANT_SCRATCH_FLOATS * 4 ==
                  VL_CUDA_WORKSPACE_BYTES,
              "kernels.h's VL_CUDA_WORKSPACE_BYTES is what ctx_create allocates");

/* bf16 kernels and the cp.async/mma instructions of the attention kernels need Ampere. */
#define CUDA_MIN_MAJOR 8

void vl_cuda_fatal(const char *call, const char *file, int line, const char *what) {
    fprintf(stderr, "vlrun: cuda backend: %s:%d: %s: %s\n", file, line, call, what);
    fflush(stderr);
    abort();
}

thread_local int vl_cuda_thread_device = -1;

void vl_cuda_use_device(int device) {
    VL_CUDA_CHECK(cudaSetDevice(device));
    vl_cuda_thread_device = device;
}

/* Above this a kernel must opt in to dynamic shared memory (cudaFuncSetAttribute). */
#define CUDA_DEFAULT_SMEM_BYTES ((size_t)48 << 10)

int vl_cuda_ctas_per_sm(vl_cuda_ctx *c, const void *kernel, int threads, size_t smem) {
    size_t i = ((uintptr_t)kernel >> 4) % VL_CUDA_KERNEL_FACTS;
    for (size_t probes = 0; probes < VL_CUDA_KERNEL_FACTS; probes++) {
        vl_cuda_kernel_fact *f = &c->kernels[i];
        if (f->kernel == kernel) return f->ctas_per_sm;
        if (f->kernel == NULL) {
            if (smem > CUDA_DEFAULT_SMEM_BYTES)
                VL_CUDA_CHECK(cudaFuncSetAttribute(
                    kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
            int n = 0;
            VL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
            f->kernel = kernel;
            f->ctas_per_sm = n > 0 ? n : 1;
            return f->ctas_per_sm;
        }
        i = (i + 1) % VL_CUDA_KERNEL_FACTS;
    }
    vl_cuda_fatal("vl_cuda_ctas_per_sm", __FILE__, __LINE__,
                  "more kernels than VL_CUDA_KERNEL_FACTS");
    return 1;
}

/* ---- memory ------------------------------------------------------------------------------ */

static void *cuda_mem_alloc(vl_backend *b, size_t bytes) {
    (void)vl_cuda_ctx_of(b); /* its device current */
    void *p = NULL;
    /* cudaMalloc(0) may give NULL, which would read as "out of memory" */
    if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        /* clear the error, or the next VL_CUDA_LAUNCH_CHECK would report this failure */
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cuda_mem_free(vl_backend *b, void *p) {
    (void)vl_cuda_ctx_of(b); /* its device current */
    if (p) VL_CUDA_CHECK(cudaFree(p));
}

static void cuda_upload(vl_backend *b, void *dst, const void *src_host, size_t bytes) {
    if (!bytes) return;
    cudaStream_t stream = vl_cuda_ctx_of(b)->stream;
    VL_CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, stream));
    VL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

static void cuda_download(vl_backend *b, void *dst_host, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaStream_t stream = vl_cuda_ctx_of(b)->stream;
    VL_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, stream));
    VL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

static void cuda_copy(vl_backend *b, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    VL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, vl_cuda_ctx_of(b)->stream));
}

static void cuda_sync(vl_backend *b) {
    VL_CUDA_CHECK(cudaStreamSynchronize(vl_cuda_ctx_of(b)->stream));
}

/* ---- attention: the kernels live in cuda_attention_prefill.cu / cuda_attention_decode.cu
 * ----------------------- */

static void cuda_attention(vl_backend *b, const vl_attn_params *p) {
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    /* the engine refuses models whose shapes the kernels lack before loading them
     * (vl_backend_check_attention), so an unsupported call here is a broken invariant */
    VL_CUDA_REQUIRE(vl_cuda_attention_supported(p),
                    "no CUDA attention kernel for head_dim %d, %d query heads over %d kv heads, "
                    "n_q %lld, n_kv %lld, causal %d, %d segments; use --backend cpu",
                    p->head_dim, p->n_heads, p->n_kv_heads, (long long)p->n_q, (long long)p->n_kv,
                    p->causal, p->n_seg);
    /* A workspace smaller than vl_cuda_attention_workspace_bytes(p) (very many heads) only
     * means fewer decode splits: the launcher fits them to what it is given. */
    vl_cuda_attention(b, p, c->attn_ws, c->attn_ws_bytes, c->stream);
}

/* ---- the table --------------------------------------------------------------------------- */

/* Undo a partial start-up (the fields still NULL were never created). */
static void ctx_release(vl_cuda_ctx *c) {
    if (c->cublas) cublasDestroy(c->cublas);
    if (c->cublas_ws) cudaFree(c->cublas_ws);
    if (c->attn_ws) cudaFree(c->attn_ws);
    if (c->staging) cudaFree(c->staging);
    if (c->gemv.partials) cudaFree(c->gemv.partials);
    if (c->gemv.tile_counters) cudaFree(c->gemv.tile_counters);
    if (c->quant_scratch) cudaFree(c->quant_scratch);
    for (int j = 0; j < 2; j++) {
        if (c->dq_ready[j]) cudaEventDestroy(c->dq_ready[j]);
        if (c->dq_consumed[j]) cudaEventDestroy(c->dq_consumed[j]);
    }
    if (c->dq_start) cudaEventDestroy(c->dq_start);
    if (c->dq_stream) cudaStreamDestroy(c->dq_stream);
    if (c->dq_lt) cublasLtDestroy(c->dq_lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    *c = vl_cuda_ctx{};
}

/* Creates the device state; on failure says why (one line) and returns -1. */
static int ctx_create(vl_cuda_ctx *c, const vl_cuda_config *cfg, char *why, size_t why_len) {
    *c = vl_cuda_ctx{};
    c->cfg = *cfg;
    const int dev = cfg->device;
    cudaError_t err;
    cudaDeviceProp prop;
    if ((err = cudaSetDevice(dev)) != cudaSuccess ||
        (err = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
        (void)cudaGetLastError();
        vl_say(why, why_len, "CUDA device %d is not usable (%s); use --backend cpu", dev,
               cudaGetErrorString(err));
        return -1;
    }
    vl_cuda_thread_device = dev;
    if (prop.major < CUDA_MIN_MAJOR) {
        vl_say(why, why_len,
               "GPU %s has compute capability %d.%d; the CUDA backend needs %d.0 or newer (bf16); "
               "use --backend cpu",
               prop.name, prop.major, prop.minor, CUDA_MIN_MAJOR);
        return -1;
    }
    c->device = dev;
    c->sm_count = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    c->cc_major = prop.major;
    c->cc_minor = prop.minor;
    snprintf(c->device_name, sizeof c->device_name, "%s", prop.name);
    c->cublas_ws_bytes = CUDA_CUBLAS_WS_BYTES;
    c->attn_ws_bytes = CUDA_ATTN_WS_BYTES;
    c->staging_floats = CUDA_STAGING_FLOATS;
    const char *step = "cudaStreamCreate";
    err = cudaStreamCreate(&c->stream);
    if (err == cudaSuccess) step = "cudaMalloc of the workspaces";
    if (err == cudaSuccess) err = cudaMalloc(&c->cublas_ws, c->cublas_ws_bytes);
    if (err == cudaSuccess) err = cudaMalloc(&c->attn_ws, c->attn_ws_bytes);
    if (err == cudaSuccess) err = cudaMalloc((void **)&c->staging, (size_t)c->staging_floats * 4);
    if (err == cudaSuccess)
        err = cudaMalloc((void **)&c->gemv.partials, (size_t)CUDA_GEMV_PARTIAL_FLOATS * 4);
    if (err == cudaSuccess)
        err = cudaMalloc((void **)&c->gemv.tile_counters, (size_t)CUDA_GEMV_TILES * 4);
    if (err == cudaSuccess) err = cudaMemset(c->gemv.tile_counters, 0, (size_t)CUDA_GEMV_TILES * 4);
    if (err == cudaSuccess) {
        c->gemv.partial_floats = CUDA_GEMV_PARTIAL_FLOATS;
        c->gemv.n_tile_counters = CUDA_GEMV_TILES;
    }
    if (err == cudaSuccess)
        err = cudaMalloc(&c->quant_scratch,
                         VL_CUDA_QUANT_STATE_BYTES + (size_t)CUDA_QUANT_SCRATCH_FLOATS * 4);
    /* The dequant GEMM's two slices live in the attention workspace: only decode attention
     * (one query) uses that, and it never runs while a prefill GEMM is in flight (both are
     * ordered on the main stream), so the two never hold data at the same time. */
    static_assert(2 * CUDA_DQ_SLICE_BYTES <= CUDA_ATTN_WS_BYTES, "slices fit the attention ws");
    for (int j = 0; j < 2 && err == cudaSuccess; j++)
        c->dq_slice[j] = (vl_bf16 *)((uint8_t *)c->attn_ws + (size_t)j * CUDA_DQ_SLICE_BYTES);
    if (err == cudaSuccess) {
        c->quant_scratch_floats = CUDA_QUANT_SCRATCH_FLOATS;
        c->dq_slice_bytes = CUDA_DQ_SLICE_BYTES;
        step = "the dequant GEMM's stream and events";
        int lowest = 0, highest = 0; /* the side stream's work is short and others wait on it */
        err = cudaDeviceGetStreamPriorityRange(&lowest, &highest);
        if (err == cudaSuccess)
            err = cudaStreamCreateWithPriority(&c->dq_stream, cudaStreamNonBlocking, highest);
    }
    cudaEvent_t *events[5] = {&c->dq_start, &c->dq_ready[0], &c->dq_ready[1], &c->dq_consumed[0],
                              &c->dq_consumed[1]};
    for (int j = 0; j < 5 && err == cudaSuccess; j++)
        err = cudaEventCreateWithFlags(events[j], cudaEventDisableTiming);
    if (err != cudaSuccess) {
        vl_say(why, why_len, "CUDA start-up failed at %s (%s); use --backend cpu", step,
               cudaGetErrorString(err));
        ctx_release(c);
        return -1;
    }
    cublasStatus_t st = cublasCreate(&c->cublas);
    /* SetStream before SetWorkspace: cublasSetStream resets the workspace to the default pool.
     * DISALLOW_REDUCED_PRECISION_REDUCTION keeps split-K partial sums in fp32 instead of bf16,
     * so every output is rounded to bf16 once, as in the CPU twin. */
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(c->cublas, c->stream);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasSetWorkspace(c->cublas, c->cublas_ws, c->cublas_ws_bytes);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasSetMathMode(
            c->cublas,
            (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtCreate(&c->dq_lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        vl_say(why, why_len, "cuBLAS start-up failed (%s); use --backend cpu",
               cublasGetStatusString(st));
        ctx_release(c);
        return -1;
    }
    return 0;
}

/* The op table of a started context. */
static void fill_table(vl_backend *b, vl_cuda_ctx *c) {
    b->name = "cuda";
    b->act = VL_DTYPE_BF16;
    b->caps = vl_backend_caps_of(VL_BACKEND_CUDA);
    b->ctx = c;
    b->mem_alloc = cuda_mem_alloc;
    b->mem_free = cuda_mem_free;
    b->upload = cuda_upload;
    b->download = cuda_download;
    b->copy = cuda_copy;
    b->sync = cuda_sync;
    b->from_f32 = vl_cuda_from_f32;
    b->to_f32 = vl_cuda_to_f32;
    b->linear = vl_cuda_linear;
    b->embed = vl_cuda_embed;
    b->rmsnorm = vl_cuda_rmsnorm;
    b->add_rmsnorm = vl_cuda_add_rmsnorm;
    b->layernorm = vl_cuda_layernorm;
    b->add = vl_cuda_add;
    b->silu_mul = vl_cuda_silu_mul;
    b->silu_mul_rows = vl_cuda_silu_mul_rows;
    b->quick_gelu = vl_cuda_quick_gelu;
    b->gelu = vl_cuda_gelu;
    b->gather_rows = vl_cuda_gather_rows;
    b->rope_text = vl_cuda_rope_text;
    b->rope_vision = vl_cuda_rope_vision;
    b->attention = cuda_attention;
    b->attention_naive = vl_cuda_attention_naive_op;
    b->kv_append = vl_cuda_kv_append;
    b->rope_kv_append = vl_cuda_rope_kv_append;
    b->kv_gather = vl_cuda_kv_gather;
    b->fill_random_bf16 = vl_cuda_fill_random_bf16;
    b->sample_token = vl_cuda_sample_token;
    b->sample_token_f32 = vl_cuda_sample_token_f32;
    b->sample_rows = vl_cuda_sample_rows;
    b->mark_seen = vl_cuda_mark_seen;
    b->repetition_penalty = vl_cuda_repetition_penalty;
    if (!c->cfg.no_graphs) { /* else the engine runs decode steps eagerly */
        b->graph_begin = vl_cuda_graph_begin;
        b->graph_end = vl_cuda_graph_end;
        b->graph_launch = vl_cuda_graph_launch;
        b->graph_free = vl_cuda_graph_free;
    }
    b->mem_info = vl_cuda_mem_info;
    b->host_mapped_alloc = vl_cuda_host_mapped_alloc;
    b->host_mapped_free = vl_cuda_host_mapped_free;
    b->quantize = vl_cuda_quantize;
    b->dequantize = vl_cuda_dequantize;
    b->workspace_bytes = c->cublas_ws_bytes + c->attn_ws_bytes + (size_t)c->staging_floats * 4 +
                         (size_t)c->gemv.partial_floats * 4 + (size_t)c->gemv.n_tile_counters * 4 +
                         VL_CUDA_QUANT_STATE_BYTES +
                         (size_t)c->quant_scratch_floats * 4; /* dq slices: in attn_ws */
    b->device_name = c->device_name;
}

extern "C" vl_backend *vl_backend_cuda(const vl_cuda_config *cfg, char *why, size_t why_len) {
    vl_cuda_config defaults;
    vl_cuda_config_init(&defaults);
    if (!cfg) cfg = &defaults;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        if (err == cudaSuccess || err == cudaErrorNoDevice)
            vl_say(why, why_len, "no CUDA device found; use --backend cpu");
        else /* e.g. a driver older than the runtime: say so rather than "no device" */
            vl_say(why, why_len, "no CUDA device found (%s); use --backend cpu",
                   cudaGetErrorString(err));
        return NULL;
    }
    if (cfg->device < 0 || cfg->device >= count) {
        vl_say(why, why_len,
               "CUDA device %d does not exist (this machine has %d); use --backend cpu",
               cfg->device, count);
        return NULL;
    }
    vl_backend *b = (vl_backend *)calloc(1, sizeof *b);
    vl_cuda_ctx *c = (vl_cuda_ctx *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        vl_say(why, why_len, "out of host memory starting the CUDA backend");
        return NULL;
    }
    if (ctx_create(c, cfg, why, why_len)) {
        free(b);
        free(c);
        return NULL;
    }
    fill_table(b, c);
    return b;
}

extern "C" void vl_backend_free(vl_backend *b) {
    if (!b || !b->caps || b->caps->kind != VL_BACKEND_CUDA) return;
    vl_cuda_ctx *c = vl_cuda_ctx_of(b);
    VL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    ctx_release(c);
    free(c);
    free(b);
}
