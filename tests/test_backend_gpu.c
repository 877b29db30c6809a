/* test_backend_gpu.c: CUDA backends are objects, not a process singleton (kernels.h
 * vl_backend_cuda): two backends on one device work side by side, each with its own stream,
 * workspaces and device facts (SM count, occupancy, the shared-memory opt-in), and a freed one
 * leaves the other working; the configuration is read at creation (no_graphs leaves the graph
 * ops out, the caps are the kind's); mem_info and host-mapped memory work per backend.
 * Each backend runs a decode GEMV (which sizes its grid from the SM count and occupancy) and a
 * split-KV decode attention (which also opts in to its shared memory) on inputs whose results
 * the test computes by hand: the GEMV's exactly (small integers), the attention's (a uniform
 * softmax: the mean of V) within one bf16 rounding.
 * Without a CUDA device (or in a build without CUDA) the program says why and exits 77 (skip).
 * Leaves out: two devices (the CI device has one GPU; the code path is the same, cudaSetDevice
 * per backend).
 */
#include "kernels/kernels.h"
#include "vltest.h"
#include "vltest_dev.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define N 64  /* GEMV rows */
#define K 256 /* GEMV columns: |sum| <= 256, exact in bf16 */
#define H 28  /* attention: 7B's decoder heads */
#define G 4
#define D 128
#define T 64 /* keys: the uniform softmax weight 1/64 is exact */

typedef struct {
    uint16_t w[N * K], x[K];
    float y[N];
    uint16_t q[H * D], kv[T * G * D];
    float o[H * D];
} cases;

/* Integers in -1..1 for the GEMV; q = 0 (a uniform softmax) and V rows of small multiples of
 * 1/4 for the attention, whose output is then the mean of V over the keys, exact. */
static void make_cases(cases *c) {
    for (int i = 0; i < N * K; i++) c->w[i] = vl_f32_to_bf16((float)((int)(vt_rng_next() % 3) - 1));
    for (int i = 0; i < K; i++) c->x[i] = vl_f32_to_bf16((float)((int)(vt_rng_next() % 3) - 1));
    for (int r = 0; r < N; r++) {
        int sum = 0;
        for (int k = 0; k < K; k++)
            sum += (int)vl_bf16_to_f32(c->w[r * K + k]) * (int)vl_bf16_to_f32(c->x[k]);
        c->y[r] = (float)sum;
    }
    for (int i = 0; i < H * D; i++) c->q[i] = 0;
    for (int i = 0; i < T * G * D; i++)
        c->kv[i] = vl_f32_to_bf16(0.25f * (float)((int)(vt_rng_next() % 9) - 4));
    for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
            int sum = 0; /* in quarters */
            for (int t = 0; t < T; t++)
                sum += (int)(4.0f * vl_bf16_to_f32(c->kv[(t * G + h / (H / G)) * D + d]));
            c->o[h * D + d] = (float)sum / (4.0f * T);
        }
}

static void *upload(vl_backend *b, const void *host, size_t bytes) {
    void *d = vt_dev_alloc(b, bytes);
    b->upload(b, d, host, bytes);
    return d;
}

/* |got - want| <= rel |want| + abs for each output (0, 0: exact). */
static void check_bf16(const char *what, vl_backend *b, const void *dev, const float *want, int n,
                       double rel, double abs) {
    uint16_t *got = malloc((size_t)n * 2);
    b->download(b, got, dev, (size_t)n * 2);
    int bad = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (fabs(vl_bf16_to_f32(got[i]) - want[i]) > rel * fabs(want[i]) + abs && bad++ == 0)
            first = i;
    VT_CHECKF(bad == 0, "%s: %d of %d outputs wrong (first %d: %g, want %g)", what, bad, n, first,
              first >= 0 ? vl_bf16_to_f32(got[first]) : 0.0, first >= 0 ? want[first] : 0.0);
    free(got);
}

/* Both ops on backend b, results checked against the hand-made values. */
static void run_ops(const char *who, vl_backend *b, const cases *c) {
    void *dw = upload(b, c->w, sizeof c->w), *dx = upload(b, c->x, sizeof c->x);
    void *dy = vt_dev_alloc(b, N * 2);
    vl_weight w = {.data = dw, .dtype = VL_DTYPE_BF16, .rows = N, .cols = K};
    b->linear(b, dy, dx, 1, &w, NULL);
    char what[96];
    snprintf(what, sizeof what, "%s: linear m=1 [%d, %d]", who, N, K);
    check_bf16(what, b, dy, c->y, N, 0, 0);

    void *dq = upload(b, c->q, sizeof c->q), *dkv = upload(b, c->kv, sizeof c->kv);
    void *d_o = vt_dev_alloc(b, sizeof c->q);
    vl_attn_params p = {.q = dq,
                        .q_stride = H * D,
                        .k = dkv,
                        .v = dkv,
                        .kv_tok_stride = G * D,
                        .kv_head_stride = D,
                        .o = d_o,
                        .o_stride = H * D,
                        .n_q = 1,
                        .n_kv = T,
                        .n_heads = H,
                        .n_kv_heads = G,
                        .head_dim = D,
                        .scale = 0.088388f,
                        .causal = 1,
                        .q_pos0 = T - 1};
    b->attention(b, &p);
    snprintf(what, sizeof what, "%s: decode attention %d/%d heads, %d keys", who, H, G, T);
    /* the split-KV partials divide by each split's key count: one bf16 rounding of the result
     * and fp32 drift in the combine */
    check_bf16(what, b, d_o, c->o, H * D, 1.0 / 256, 1.0 / 4096);
    void *bufs[] = {dw, dx, dy, dq, dkv, d_o};
    for (int i = 0; i < 6; i++) b->mem_free(b, bufs[i]);
}

/* mem_info sees an allocation (on an otherwise idle device), and a host-mapped table is read by
 * a kernel through its device address (embed, as --embed-on-host does). */
static void check_memory(vl_backend *b) {
    size_t free0 = 0, total = 0, free1 = 0;
    b->mem_info(b, &free0, &total);
    VT_CHECK(total > 0 && free0 <= total);
    const size_t big = (size_t)256 << 20;
    void *p = vt_dev_alloc(b, big);
    b->mem_info(b, &free1, &total);
    VT_CHECKF(free1 + big <= free0, "mem_info: %zu free before a 256 MiB allocation, %zu after",
              free0, free1);
    b->mem_free(b, p);

    enum { ROWS = 5, COLS = 24 };
    void *dev_table = NULL;
    uint16_t *table = b->host_mapped_alloc(b, ROWS * COLS * 2, &dev_table);
    VT_CHECK(table != NULL && dev_table != NULL);
    if (!table) return;
    for (int i = 0; i < ROWS * COLS; i++) table[i] = vl_f32_to_bf16((float)i);
    const int32_t ids[2] = {3, 1};
    int32_t *d_ids = upload(b, ids, sizeof ids);
    void *dy = vt_dev_alloc(b, 2 * COLS * 2);
    vl_weight t = {.data = dev_table, .dtype = VL_DTYPE_BF16, .rows = ROWS, .cols = COLS};
    b->embed(b, dy, &t, d_ids, 2);
    float want[2 * COLS];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < COLS; c++) want[r * COLS + c] = (float)(ids[r] * COLS + c);
    check_bf16("embed from host-mapped memory", b, dy, want, 2 * COLS, 0, 0);
    b->mem_free(b, dy);
    b->mem_free(b, d_ids);
    b->host_mapped_free(b, table);
}

int main(void) {
    vt_rng_state = 0xbac0e2d5ULL;
    vl_backend *a = vt_gpu_or_skip();
    if (!a) return vt_finish();
    static cases c;
    make_cases(&c);

    vl_cuda_config cfg;
    vl_cuda_config_init(&cfg);
    char why[256] = "";
    VT_CHECK(vl_cuda_config_set(&cfg, "no_graphs=1", why, sizeof why) == 0);
    vl_backend *b = vl_backend_cuda(&cfg, why, sizeof why);
    VT_CHECKF(b != NULL, "a second backend on device 0: %s", why);
    if (!b) return vt_finish();
    VT_CHECK(a != b && a->ctx != b->ctx);
    VT_CHECK(a->caps == vl_backend_caps_of(VL_BACKEND_CUDA) && b->caps == a->caps);
    VT_CHECK(a->graph_begin != NULL && b->graph_begin == NULL && b->graph_launch == NULL);

    /* interleaved: each backend's first call of each kernel asks its own device facts */
    run_ops("backend a", a, &c);
    run_ops("backend b", b, &c);
    check_memory(b);
    run_ops("backend a again", a, &c);
    vl_backend_free(b);
    run_ops("backend a after b was freed", a, &c);

    /* a backend created after another was freed starts clean */
    vl_backend *d = vl_backend_cuda(NULL, why, sizeof why);
    VT_CHECKF(d != NULL, "a backend after a free: %s", why);
    if (d) {
        run_ops("backend d", d, &c);
        vl_backend_free(d);
    }
    vl_backend_free(NULL);
    vl_backend_free(a);
    return vt_finish();
}
