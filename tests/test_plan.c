/* test_plan.c: the memory planner on Qwen2-VL-7B's published config (examples/).
 *
 *   - the KV cache is 57,344 bytes (56 KiB) per token, exactly (28 layers x 2 x 4 KV heads x 128 x
 * 2 bytes);
 *   - activations and workspace do not depend on the number of images once the prompt is longer
 *     than a prefill chunk: only the KV cache grows;
 *   - bf16 weights are the checkpoint's 16,582,751,232 bytes plus at most 256 bytes of alignment
 * per tensor; NF4 without double quantization bitsandbytes' 4,049,436,672 + 2,184,754,176 bytes
 *     (quantized Linears + bf16 rest), with double quantization less; int8 bitsandbytes'
 *     LLM.int8 figure (same storage: int8 + one fp32 per row);
 *   - --attn naive adds the fp32 score matrix of the largest call to the workspace;
 *   - --kv int8: 29,568 bytes per token (codes + one fp32 scale per row), exactly, and a
 *     workspace of one layer dequantized (2,048 bytes per token) with kv_int8_copy, none
 *     without (a prefill chunk's attention then reads the int8 cache itself);
 *   - a batch's paged pool (pool_blocks > 0) has the kv_gather workspace, one layer's K and V of
 *     ctx tokens in bf16: 2,048 bytes per token, exactly, with a bf16 or an int8 pool;
 *   - tests/fixtures/models/tiny-odd (every Linear's in-features is not a multiple of 64): with
 *     --quant nf4, nf4 --double-quant and int8 all 24 Linears are quantized, and the bytes the
 *     CPU backend allocates for the weights are the planned bytes exactly; the plan is the
 *     tensors' own sizes (spec formulas: ceil(n / 2) + 4 ceil(n / 64) for NF4, ...) plus at
 *     most the alignment padding.
 * And the other check made before anything is loaded: the CUDA kernels' shape limits
 * (vl_backend_check_attention), which take both of 7B's attentions and refuse, in one line naming
 * the value, what lies past them: head_dim 129 without --attn naive, 513 with it, 65536 heads.
 * And one more sequence (vl_plan_add_sequence) priced against the arena of a context with two
 * sequence slots on tiny-a, group by group.
 * And the layout a run takes (vl_plan_choose), 7B x28 NF4 + int8 cache: under a room of exactly
 * each layout's total, the first layout of the order (copy 8192, 4096, 2048, then without the
 * copy) that fits, to the byte; nothing fits: the smallest, reported; no room known or the
 * naive attention: 2048; a given chunk is kept; a short prompt clamps the chunk.
 * Plans only for 7B; tiny-odd and tiny-a are loaded. */
#include "engine/engine.h"
#include "vltest.h"

#define TENSORS_7B 730

static vl_config cfg;

static int kv_int8;         /* plan with --kv int8 */
static int kv_int8_copy;    /* ... and one layer dequantized for prefill chunks */
static int64_t pool_blocks; /* plan a batch's paged pool of this many blocks of 16 (0: a slot) */

static vl_mem_plan plan_images(int n_images, int attn_naive, vl_dtype quant) {
    vl_plan_request rq;
    memset(&rq, 0, sizeof rq);
    rq.act = VL_DTYPE_BF16;
    rq.shape.prompt_tokens = 30 + (int64_t)n_images * (1364 + 2);
    rq.shape.max_tokens = 512;
    rq.shape.chunk = 2048;
    rq.shape.max_patches = 5456;
    rq.shape.attn_naive = attn_naive;
    rq.shape.kv_int8 = kv_int8;
    rq.shape.kv_int8_copy = kv_int8_copy;
    rq.shape.pool_blocks = pool_blocks;
    rq.shape.block_tokens = 16;
    rq.weights.linear = quant;
    rq.weights.double_quant = 0;
    vl_mem_plan p;
    vl_plan_memory(&cfg, &rq, &p);
    return p;
}

/* vl_backend_check_attention with the CUDA caps on (heads, kv heads, head_dim, naive): want 0, or
 * -1 with `say` in the message. */
static void check_shape(int h, int g, int d, int naive, const char *say) {
    char why[256] = "";
    vl_attn_shape s = {h, g, d, naive};
    int rc = vl_backend_check_attention(vl_backend_caps_of(VL_BACKEND_CUDA), &s, why, sizeof why);
    VT_CHECKF(say ? rc == -1 && strstr(why, say) && !strchr(why, '\n') : rc == 0 && !why[0],
              "shape %d/%d heads, head_dim %d%s: rc %d, \"%s\"", h, g, d, naive ? " naive" : "", rc,
              why);
}

static void test_cuda_shapes(void) {
    check_shape(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, 0, NULL); /* 7B: 28/4 x 128 */
    check_shape(cfg.v_heads, cfg.v_heads, cfg.v_head_dim, 0, NULL);  /* 16 x 80 */
    check_shape(3, 1, 16, 0, NULL);                                  /* tiny-odd */
    check_shape(2, 2, 20, 0, NULL);
    check_shape(5, 1, 6, 0, NULL);
    check_shape(1, 1, 1, 0, NULL);
    check_shape(4, 2, 128, 0, NULL);
    check_shape(4, 2, 129, 0, "head_dim 129 is above 128");
    check_shape(4, 2, 129, 0, "use --attn naive");
    check_shape(4, 2, 129, 1, NULL);
    check_shape(4, 2, 512, 1, NULL);
    check_shape(4, 2, 513, 1, "head_dim 513 is outside 1..512");
    check_shape(4, 2, 0, 0, "head_dim 0 is outside");
    check_shape(65535, 65535, 8, 0, NULL);
    check_shape(65536, 65536, 8, 0, "65536 heads is above 65535");
    check_shape(65536, 65536, 8, 1, "65536 heads is above 65535");
    check_shape(6, 4, 8, 0, "6 query heads over 4 kv heads");
}

static void check_close_above(const char *what, size_t got, size_t want, size_t slack) {
    printf("%s: %zu bytes (reference %zu, +%zd)\n", what, got, want, (ssize_t)(got - want));
    VT_CHECKF(got >= want && got - want <= slack, "%s: %zu bytes, expected %zu + at most %zu", what,
              got, want, slack);
}

/* ---- tiny-odd: quantized layers of any width, placed exactly as planned -------------------- */

typedef struct {
    int quantized;  /* Linears in NF4 / Q8ROW */
    int tensors;    /* everything placed */
    size_t raw;     /* the tensors' own bytes, unaligned */
    int64_t nf4_dq; /* Linears with double-quantized scales */
} odd_count;

static int count_placed(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    odd_count *c = ctx;
    c->tensors++;
    if (v) {
        c->raw += (size_t)v->n * vl_dtype_size(v->dtype);
        return 0;
    }
    if (w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW) {
        c->quantized += strcmp(kind, "linear") == 0;
        c->nf4_dq += w->absmax_code != NULL;
        int64_t n = w->rows * w->cols, blocks = (n + 63) / 64;
        if (w->dtype == VL_DTYPE_Q8ROW)
            c->raw += (size_t)n + 4 * (size_t)w->rows; /* int8 + one fp32 per row */
        else if (w->absmax_code)                       /* codes + nested absmax + map */
            c->raw +=
                (size_t)(n + 1) / 2 + (size_t)blocks + 4 * (size_t)((blocks + 255) / 256) + 1024;
        else
            c->raw += (size_t)(n + 1) / 2 + 4 * (size_t)blocks;
    } else {
        c->raw += (size_t)(w->rows * w->cols) * vl_dtype_size(w->dtype);
    }
    (void)name;
    return 0;
}

static void tiny_odd(vl_quant quant, int dq) {
    const char *what = quant == VL_QUANT_INT8 ? "int8" : dq ? "nf4 double-quant" : "nf4";
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = vt_fixture("models/tiny-odd");
    o.quant = quant;
    o.double_quant = dq;
    o.backend = VL_BACKEND_CPU;
    vl_model m;
    memset(&m, 0, sizeof m);
    if (vl_model_load(&m, &o, vl_backend_cpu()) != 0) {
        VT_CHECKF(0, "tiny-odd %s: %s", what, vl_error_get());
        vl_model_free(&m);
        return;
    }
    vl_weight_plan wp;
    vl_weight_plan_of(&wp, &o);
    size_t planned = vl_weights_bytes(&m.cfg, &wp);
    size_t allocated = m.weights_bytes; /* read first: a visit recounts the checkpoint's bytes */
    odd_count c = {0, 0, 0, 0};
    vl_weights_visit(&m, count_placed, &c);
    printf("tiny-odd %s: %d Linears quantized, weights allocated %zu bytes, planned %zu\n", what,
           c.quantized, allocated, planned);
    /* 2 layers x 7 + 2 vision blocks x 4 + the merger's 2; none has in-features % 64 == 0 */
    VT_CHECK_INT(c.quantized, 24);
    VT_CHECK_INT(c.nf4_dq, dq ? 24 : 0);
    VT_CHECK_INT(allocated, planned);
    /* padding: matrices start on 256 bytes and the three regions end on 256; scales and
     * vectors on 16 */
    check_close_above("tiny-odd weights", planned, c.raw, 256ULL * (size_t)(c.tensors + 3));
    vl_model_free(&m);
}

/* The planner's price of one more sequence (vl_plan_add_sequence) against the arena a context
 * of two sequence slots really carves (tiny-a on the CPU backend), group by group: the KV cache
 * and a slot's decode state double, the shared scratch does not. */
static void two_sequences(void) {
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = vt_fixture("models/tiny-a");
    o.backend = VL_BACKEND_CPU;
    vl_model m;
    if (vl_model_load(&m, &o, vl_backend_cpu()) != 0) {
        VT_CHECKF(0, "tiny-a: %s", vl_error_get());
        vl_model_free(&m);
        return;
    }
    vl_plan_request rq;
    vl_plan_request_init(&rq, &o, m.be->caps, 300, 40, 64, 1200);
    rq.shape.rep_penalty = 1.1f;
    vl_mem_plan one, two;
    vl_plan_memory(&m.cfg, &rq, &one);
    vl_plan_add_sequence(&m.cfg, &rq, &two);
    vl_context cx;
    vl_shape sh = rq.shape;
    sh.n_sequences = 2;
    int rc = vl_context_start(&cx, &m, &sh, NULL);
    VT_CHECKF(rc == 0, "context: %s", vl_error_get());
    if (rc == 0) {
        printf("two sequences: kv %zu, activations %zu, workspace %zu bytes (one: %zu, %zu, %zu)\n",
               two.kv, two.act, two.workspace, one.kv, one.act, one.workspace);
        VT_CHECK_INT(two.kv, cx.arena.peak[VL_MEM_KV]);
        VT_CHECK_INT(two.act, cx.arena.peak[VL_MEM_ACT]);
        VT_CHECK_INT(two.workspace, cx.arena.peak[VL_MEM_WORKSPACE] + m.be->workspace_bytes);
        VT_CHECK_INT(two.kv + two.act + (two.workspace - m.be->workspace_bytes), cx.arena.cap);
        VT_CHECK_INT(two.kv, 2 * one.kv);
        VT_CHECK(two.act > one.act && two.act < 2 * one.act);
        VT_CHECK_INT(two.weights, one.weights);
        vl_sequence a, b, c;
        VT_CHECK(vl_sequence_open(&a, &cx) == 0 && vl_sequence_open(&b, &cx) == 0);
        VT_CHECK(vl_sequence_open(&c, &cx) != 0);
        VT_CHECK((uint8_t *)b.mem.kv >= (uint8_t *)a.mem.kv + one.kv ||
                 (uint8_t *)a.mem.kv >= (uint8_t *)b.mem.kv + one.kv);
        vl_sequence_close(&a);
        vl_sequence_close(&b);
    }
    vl_context_free(&cx);
    vl_model_free(&m);
}

/* 7B, x28 page-sized images, NF4 weights, int8 cache with its copy asked for, chunk `chunk`. */
static vl_plan_request choose_request(int chunk, int n_images) {
    vl_plan_request rq;
    memset(&rq, 0, sizeof rq);
    rq.act = VL_DTYPE_BF16;
    rq.shape.prompt_tokens = 30 + (int64_t)n_images * (1364 + 2);
    rq.shape.max_tokens = 512;
    rq.shape.chunk = chunk;
    rq.shape.max_patches = 5456;
    rq.shape.kv_int8 = rq.shape.kv_int8_copy = 1;
    rq.weights.linear = VL_DTYPE_NF4;
    rq.context_bytes = VL_CUDA_CONTEXT_BYTES;
    return rq;
}

static void test_choose(void) {
    /* the order of vl_plan_choose, from the fastest */
    const struct {
        int copy, chunk;
    } order[] = {{1, 8192}, {1, 4096}, {1, 2048}, {0, 8192}, {0, 4096}, {0, 2048}};
    const int n = (int)(sizeof order / sizeof order[0]);
    size_t total[6];
    for (int i = 0; i < n; i++) {
        vl_plan_request q = choose_request(order[i].chunk, 28);
        q.shape.kv_int8_copy = order[i].copy;
        vl_mem_plan mp;
        vl_plan_memory(&cfg, &q, &mp);
        total[i] = mp.total;
        VT_CHECK_INT(mp.chunk, order[i].chunk);
        printf("choose: copy %d chunk %d: %zu bytes\n", order[i].copy, order[i].chunk, mp.total);
    }
    /* a chunk's activations grow with it; the copy is 2,048 bytes per cached token */
    VT_CHECK(total[0] > total[1] && total[1] > total[2] && total[3] > total[4] &&
             total[4] > total[5]);
    VT_CHECK_INT(total[2] - total[5], (30 + 28 * 1366 + 512) * 2048LL);
    for (int r = 0; r < n; r++) {
        for (int below = 0; below <= 1; below++) {
            const size_t room = total[r] - (size_t)below;
            int want = -1;
            for (int i = 0; i < n && want < 0; i++)
                if (total[i] <= room) want = i;
            vl_plan_request q = choose_request(0, 28);
            vl_mem_plan mp;
            const int fits = vl_plan_choose(&cfg, &q, room, &mp);
            const int w = want >= 0 ? want : n - 1; /* none fits: the smallest */
            VT_CHECKF(fits == (want >= 0) && mp.total == total[w] && mp.chunk == order[w].chunk &&
                          q.shape.chunk == order[w].chunk && q.shape.kv_int8_copy == order[w].copy,
                      "room %zu: fits %d, %zu bytes, chunk %d copy %d; want layout %d (%zu)", room,
                      fits, mp.total, mp.chunk, q.shape.kv_int8_copy, w, total[w]);
        }
    }
    vl_plan_request q = choose_request(0, 28); /* no room known: today's small chunk, the copy */
    vl_mem_plan mp;
    VT_CHECK(vl_plan_choose(&cfg, &q, 0, &mp) == 1 && mp.total == total[2] && mp.chunk == 2048);
    q = choose_request(0, 28); /* the naive attention's scores grow with the chunk: 2048 */
    q.shape.attn_naive = 1;
    VT_CHECK(vl_plan_choose(&cfg, &q, (size_t)1 << 50, &mp) == 1 && mp.chunk == 2048);
    q = choose_request(4096, 28); /* a given chunk stays, whatever fits */
    VT_CHECK(vl_plan_choose(&cfg, &q, (size_t)1 << 50, &mp) == 1 && mp.chunk == 4096 &&
             q.shape.kv_int8_copy == 1 && mp.total == total[1]);
    q = choose_request(4096, 28);
    VT_CHECK(vl_plan_choose(&cfg, &q, total[4], &mp) == 1 && mp.chunk == 4096 &&
             q.shape.kv_int8_copy == 0);
    q = choose_request(4096, 28);
    VT_CHECK(vl_plan_choose(&cfg, &q, 1, &mp) == 0 && mp.chunk == 4096 &&
             q.shape.kv_int8_copy == 0 && mp.total == total[4]);
    q = choose_request(0, 1); /* 1,396 prompt tokens: every chunk is the prompt */
    VT_CHECK(vl_plan_choose(&cfg, &q, (size_t)1 << 50, &mp) == 1 && mp.chunk == 1396);
}

int main(void) {
    const char *root = getenv("VL_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/../../examples/qwen2-vl-7b-instruct.json",
             root ? root : "tests/fixtures");
    if (vl_config_load(&cfg, path)) {
        VT_CHECKF(0, "%s", vl_error_get());
        return vt_finish();
    }
    vl_mem_plan p1 = plan_images(1, 0, VL_DTYPE_BF16), p2 = plan_images(2, 0, VL_DTYPE_BF16),
                p28 = plan_images(28, 0, VL_DTYPE_BF16), p60 = plan_images(60, 0, VL_DTYPE_BF16);
    int64_t t1 = 30 + 1366 + 512, t28 = 30 + 28 * 1366 + 512;
    VT_CHECK_INT(p1.kv, t1 * 57344);
    VT_CHECK_INT(p28.kv, t28 * 57344);
    /* one image is a shorter prompt than a chunk: its chunk (and activations) are smaller */
    VT_CHECK(p1.act < p2.act);
    VT_CHECK_INT(p2.act, p28.act);
    VT_CHECK_INT(p2.act, p60.act);
    VT_CHECK_INT(p1.workspace, p60.workspace);
    VT_CHECK_INT(p60.kv - p28.kv, 32LL * 1366 * 57344);
    printf("activations %.1f MiB for any number of images from 2 on\n", p2.act / 1048576.0);
    VT_CHECKF(p2.act < ((size_t)400 << 20), "activations %zu bytes", p2.act);

    check_close_above("bf16 weights", p1.weights, 16582751232ULL, 256ULL * TENSORS_7B);
    vl_mem_plan q = plan_images(1, 0, VL_DTYPE_NF4);
    /* per quantized Linear: packed codes + fp32 absmax, each aligned separately */
    check_close_above("nf4 weights", q.weights, 4049436672ULL + 2184754176ULL,
                      2 * 256ULL * TENSORS_7B);
    vl_plan_request rq;
    memset(&rq, 0, sizeof rq);
    rq.weights.linear = VL_DTYPE_NF4;
    rq.weights.double_quant = 1;
    size_t dq = vl_weights_bytes(&cfg, &rq.weights);
    printf("nf4 double-quant weights: %.3f GiB\n", dq / 1073741824.0);
    VT_CHECKF(dq < q.weights && dq > q.weights - 350000000ULL, "nf4+dq %zu vs nf4 %zu", dq,
              q.weights);
    vl_mem_plan i8 = plan_images(1, 0, VL_DTYPE_Q8ROW);
    check_close_above("int8 weights", i8.weights, 7206070272ULL + 2184754176ULL,
                      2 * 256ULL * TENSORS_7B);

    vl_mem_plan naive = plan_images(28, 1, VL_DTYPE_BF16);
    size_t scores = (size_t)28 * 2048 * (size_t)t28 * 4;
    VT_CHECKF(naive.workspace >= p28.workspace + scores &&
                  naive.workspace <= p28.workspace + scores + 256,
              "naive workspace %zu, flash %zu, scores %zu", naive.workspace, p28.workspace, scores);

    /* The workspace group holds only the naive attention's scores (off here) and a pool's
     * kv_gather buffer (no pool here), and these requests add no backend workspace (0 bytes):
     * the flash plans have none. */
    VT_CHECK_INT(p1.workspace, 0);
    VT_CHECK_INT(p28.workspace, 0);

    /* --kv int8: 28 layers x 2 x 4 kv heads = 224 rows per token, each 128 one-byte codes and a
     * 4-byte scale: 28,672 + 896 = 29,568 bytes per token. The two slices (codes, scales) are
     * each padded to 256 bytes: 28,672 = 112 x 256, and 896 t is a multiple of 256 for an even
     * t (896 = 3.5 x 256); t1 = 1,908 and t28 = 38,790 are even, so no padding at all. Without
     * the dequantized copy (kv_int8_copy 0: attention reads the codes of a prefill chunk too)
     * nothing else changes, the workspace stays 0; with it (the engine's first choice) the
     * workspace holds one layer's K and V of ctx tokens in bf16: 2 x 4 x 128 x 2 = 2,048 bytes
     * per token, one slice, a multiple of 256. */
    kv_int8 = 1;
    vl_mem_plan k1 = plan_images(1, 0, VL_DTYPE_BF16), k28 = plan_images(28, 0, VL_DTYPE_BF16);
    kv_int8_copy = 1;
    vl_mem_plan c1 = plan_images(1, 0, VL_DTYPE_BF16), c28 = plan_images(28, 0, VL_DTYPE_BF16);
    kv_int8 = kv_int8_copy = 0;
    VT_CHECK_INT(k1.kv, t1 * 29568);
    VT_CHECK_INT(k28.kv, t28 * 29568);
    VT_CHECK_INT(k1.workspace, 0);
    VT_CHECK_INT(k28.workspace, 0);
    VT_CHECK_INT(k28.act, p28.act);
    VT_CHECK_INT(k28.weights, p28.weights);
    VT_CHECK_INT(c1.kv, k1.kv);
    VT_CHECK_INT(c28.kv, k28.kv);
    VT_CHECK_INT(c1.workspace, t1 * 2048);
    VT_CHECK_INT(c28.workspace, t28 * 2048);
    VT_CHECK_INT(c28.act, p28.act);

    /* A batch's paged pool (pool_blocks > 0) still gathers a prefill chunk's sequence into one
     * layer's K and V of ctx = t28 tokens in bf16, dequantized from an int8 pool: 2 (K, V) x 4 kv
     * heads x 128 x 2 bytes = 2,048 bytes per token, one slice, a multiple of 256. */
    pool_blocks = 64;
    vl_mem_plan b28 = plan_images(28, 0, VL_DTYPE_BF16);
    kv_int8 = 1;
    vl_mem_plan bk28 = plan_images(28, 0, VL_DTYPE_BF16);
    kv_int8 = 0;
    pool_blocks = 0;
    VT_CHECK_INT(b28.workspace, t28 * 2048);
    VT_CHECK_INT(bk28.workspace, t28 * 2048);

    tiny_odd(VL_QUANT_NF4, 0);
    tiny_odd(VL_QUANT_NF4, 1);
    tiny_odd(VL_QUANT_INT8, 0);
    two_sequences();
    test_cuda_shapes();
    test_choose();
    return vt_finish();
}
