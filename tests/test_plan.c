/* test_plan.c: the memory planner on Qwen2-VL-7B's published config (examples/).
 *
 *   - the KV cache is 57,344 bytes (56 KiB) per token, exactly (spec 6.3);
 *   - activations and workspace do not depend on the number of images once the prompt is longer
 *     than a prefill chunk: only the KV cache grows;
 *   - bf16 weights are the spec's 16,582,751,232 bytes plus at most 256 bytes of alignment per
 *     tensor; NF4 without double quantization the spec's 4,049,436,672 + 2,184,754,176 bytes
 *     (quantized Linears + bf16 rest, spec 6.2), with double quantization less; int8 the spec's
 *     LLM.int8 figure (same storage: int8 + one fp32 per row);
 *   - --attn naive adds the fp32 score matrix of the largest call to the workspace;
 *   - --kv int8: 29,568 bytes per token (codes + one fp32 scale per row), and one layer's K and V
 *     in bf16 as workspace.
 * And the other check made before anything is loaded: the CUDA kernels' shape limits
 * (vl_cuda_check_attention), which take both of 7B's attentions and refuse, in one line naming
 * the value, what lies past them: head_dim 129 without --attn naive, 513 with it, 65536 heads.
 * Plans only: nothing is allocated. */
#include "engine/engine.h"
#include "vltest.h"

#define TENSORS_7B 730

static vl_config cfg;

static int kv_int8; /* plan with --kv int8 */

static vl_mem_plan plan_images(int n_images, int attn_naive, vl_dtype quant) {
    vl_plan_request rq;
    memset(&rq, 0, sizeof rq);
    rq.act = VL_DTYPE_BF16;
    rq.prompt_tokens = 30 + (int64_t)n_images * (1364 + 2);
    rq.max_tokens = 512;
    rq.chunk = 2048;
    rq.max_patches = 5456;
    rq.attn_naive = attn_naive;
    rq.kv_int8 = kv_int8;
    rq.weights.linear = quant;
    rq.weights.double_quant = 0;
    vl_mem_plan p;
    vl_plan_memory(&cfg, &rq, &p);
    return p;
}

/* vl_cuda_check_attention on (heads, kv heads, head_dim, naive): want 0, or -1 with `say` in the
 * message. */
static void check_shape(int h, int g, int d, int naive, const char *say) {
    char why[256] = "";
    vl_attn_shape s = {h, g, d, naive};
    int rc = vl_cuda_check_attention(&s, why, sizeof why);
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

    /* --kv int8: 28 layers x 2 x 4 kv heads x (128 codes + a 4-byte scale) = 29,568 bytes per
     * token (each of the two slices aligned), and one layer's K and V in bf16 (2 x 4 x 128 x 2
     * = 2,048 bytes per token) as workspace for the prefill chunks */
    kv_int8 = 1;
    vl_mem_plan k1 = plan_images(1, 0, VL_DTYPE_BF16), k28 = plan_images(28, 0, VL_DTYPE_BF16);
    kv_int8 = 0;
    check_close_above("int8 kv x1", k1.kv, (size_t)t1 * 29568, 2 * 256);
    check_close_above("int8 kv x28", k28.kv, (size_t)t28 * 29568, 2 * 256);
    check_close_above("int8 kv workspace x28", k28.workspace, p28.workspace + (size_t)t28 * 2048,
                      256);
    VT_CHECK_INT(k28.act, p28.act);
    VT_CHECK_INT(k28.weights, p28.weights);
    test_cuda_shapes();
    return vt_finish();
}
