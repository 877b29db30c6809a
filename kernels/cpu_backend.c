/* cpu_backend.c: the CPU backend's op table, its memory (host memory, 64-byte aligned) and the
 * plumbing its ops share: parameter conversion to float32 and a small thread split.
 *
 * "Backend memory" is ordinary host memory here, so upload/download/copy are memcpy and sync
 * does nothing; activations are float32, so from_f32/to_f32 are copies too.
 * Leaves out: a thread pool (threads are started per large op; the CPU path is the oracle and
 * the CI path, not the fast one) and memory accounting (the engine's arena ledger does that).
 */
#include "kernels/cpu_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ---- memory ------------------------------------------------------------------------------ */

#define CPU_ALIGN 64 /* a cache line, and enough for any vector load */

static void *cpu_mem_alloc(vl_backend *b, size_t bytes) {
    if (bytes > SIZE_MAX - CPU_ALIGN) return NULL;
    size_t rounded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN; /* aligned_alloc wants it */
    if (rounded == 0) rounded = CPU_ALIGN;
    return aligned_alloc(CPU_ALIGN, rounded);
}

static void cpu_mem_free(vl_backend *b, void *p) {
    free(p);
}

/* memmove rather than memcpy: harmless, and an overlapping copy then stays defined. */
static void cpu_upload(vl_backend *b, void *dst, const void *src_host, size_t bytes) {
    if (bytes) memmove(dst, src_host, bytes);
}

static void cpu_download(vl_backend *b, void *dst_host, const void *src, size_t bytes) {
    if (bytes) memmove(dst_host, src, bytes);
}

static void cpu_copy(vl_backend *b, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_sync(vl_backend *b) {}

static void cpu_from_f32(vl_backend *b, void *dst, const float *src_host, int64_t n) {
    if (n > 0) memmove(dst, src_host, (size_t)n * sizeof(float));
}

static void cpu_to_f32(vl_backend *b, float *dst_host, const void *src, int64_t n) {
    if (n > 0) memmove(dst_host, src, (size_t)n * sizeof(float));
}

/* ---- shared helpers (cpu_internal.h) ------------------------------------------------------ */

void vl_cpu_param_to_f32(float *dst, const void *data, vl_dtype t, int64_t offset, int64_t n) {
    const unsigned char *bytes = data;
    switch (t) {
    case VL_DTYPE_F32:
        memcpy(dst, bytes + offset * 4, (size_t)n * 4);
        return;
    case VL_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, bytes + (offset + i) * 2, 2);
            dst[i] = vl_bf16_to_f32(h);
        }
        return;
    case VL_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, bytes + (offset + i) * 2, 2);
            dst[i] = vl_f16_to_f32(h);
        }
        return;
    default:
        VL_CPU_REQUIRE(0, "parameter dtype %s is not F32, F16 or BF16", vl_dtype_name(t));
    }
}

float vl_cpu_vec_at(const vl_vec *v, int64_t i, float absent) {
    if (!v || !v->data) return absent;
    VL_CPU_REQUIRE(i >= 0 && i < v->n, "element %lld of a vector of %lld", (long long)i,
                   (long long)v->n);
    float f;
    vl_cpu_param_to_f32(&f, v->data, v->dtype, i, 1);
    return f;
}

float *vl_cpu_scratch(int64_t n_floats) {
    if (n_floats < 1) n_floats = 1;
    float *p = malloc((size_t)n_floats * sizeof(float));
    VL_CPU_REQUIRE(p != NULL, "out of memory for %lld floats of scratch", (long long)n_floats);
    return p;
}

typedef struct {
    void (*fn)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
    int64_t begin, end;
} cpu_slice;

static void *cpu_slice_run(void *arg) {
    cpu_slice *s = arg;
    s->fn(s->ctx, s->begin, s->end);
    return NULL;
}

extern const vl_backend_caps vl_caps_cpu; /* backend_caps.c */
static vl_backend cpu_backend;

/* The calling thread's slice in VL_CPU_HEARTBEAT_PIECES pieces, the backend's heartbeat between
 * them (the other threads run theirs whole). */
#define VL_CPU_HEARTBEAT_PIECES 16
static void run_with_heartbeat(const cpu_slice *s) {
    if (!cpu_backend.heartbeat) {
        s->fn(s->ctx, s->begin, s->end);
        return;
    }
    const int64_t n = s->end - s->begin;
    for (int k = 0; k < VL_CPU_HEARTBEAT_PIECES; k++) {
        int64_t b = s->begin + n * k / VL_CPU_HEARTBEAT_PIECES;
        int64_t e = s->begin + n * (k + 1) / VL_CPU_HEARTBEAT_PIECES;
        if (e > b) s->fn(s->ctx, b, e);
        cpu_backend.heartbeat(cpu_backend.heartbeat_ctx);
    }
}

void vl_cpu_parallel(int64_t n_items, double work, void (*fn)(void *ctx, int64_t, int64_t),
                     void *ctx) {
    if (n_items <= 0) return;
    int n_threads = 1;
    if (work > VL_CPU_PARALLEL_MIN_WORK) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cpus < 1 ? 1 : cpus > VL_CPU_MAX_THREADS ? VL_CPU_MAX_THREADS : (int)cpus;
        if (n_threads > n_items) n_threads = (int)n_items;
    }
    if (n_threads == 1) {
        cpu_slice all = {fn, ctx, 0, n_items};
        run_with_heartbeat(&all);
        return;
    }
    cpu_slice slices[VL_CPU_MAX_THREADS];
    pthread_t threads[VL_CPU_MAX_THREADS];
    int started[VL_CPU_MAX_THREADS] = {0};
    for (int t = 0; t < n_threads; t++) {
        slices[t] = (cpu_slice){fn, ctx, n_items * t / n_threads, n_items * (t + 1) / n_threads};
        /* slice 0 runs on this thread; a thread that cannot start runs here after it */
        if (t > 0) started[t] = pthread_create(&threads[t], NULL, cpu_slice_run, &slices[t]) == 0;
    }
    run_with_heartbeat(&slices[0]);
    for (int t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(threads[t], NULL);
        else
            cpu_slice_run(&slices[t]);
    }
}

/* ---- the table --------------------------------------------------------------------------- */

static vl_backend cpu_backend = {
    .name = "cpu",
    .act = VL_DTYPE_F32,
    .caps = &vl_caps_cpu,
    .ctx = NULL,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .from_f32 = cpu_from_f32,
    .to_f32 = cpu_to_f32,
    .linear = vl_cpu_linear,
    .embed = vl_cpu_embed,
    .rmsnorm = vl_cpu_rmsnorm,
    .add_rmsnorm = vl_cpu_add_rmsnorm,
    .layernorm = vl_cpu_layernorm,
    .add = vl_cpu_add,
    .silu_mul = vl_cpu_silu_mul,
    .silu_mul_rows = vl_cpu_silu_mul_rows,
    .quick_gelu = vl_cpu_quick_gelu,
    .gelu = vl_cpu_gelu,
    .gather_rows = vl_cpu_gather_rows,
    .rope_text = vl_cpu_rope_text,
    .rope_vision = vl_cpu_rope_vision,
    .attention = vl_cpu_attention,
    .attention_naive = vl_cpu_attention_naive,
    .kv_append = vl_cpu_kv_append,
    .rope_kv_append = vl_cpu_rope_kv_append,
    .kv_gather = vl_cpu_kv_gather,
    .sample_token = vl_cpu_sample_token,
    .sample_token_f32 = vl_cpu_sample_token_f32,
    .sample_rows = vl_cpu_sample_rows,
    .mark_seen = vl_cpu_mark_seen,
    .repetition_penalty = vl_cpu_repetition_penalty,
    .quantize = vl_cpu_quantize,
    .dequantize = vl_cpu_dequantize,
    .fill_random_bf16 = vl_cpu_fill_random_bf16,
};

vl_backend *vl_backend_cpu(void) {
    return &cpu_backend;
}
