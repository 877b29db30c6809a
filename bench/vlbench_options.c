/* vlbench_options.c: vlbench's command line (vlb_parse_options, vlbench.h): the usage text and
 * the options, each checked as it is read. Bad options end in one line "vlbench: error: ..."
 * before any GPU work. --cuda-opt KEY=VALUE sets the CUDA backend's configuration through the
 * parser vlrun shares (vl_cuda_config_set, kernels.h).
 */
#include "bench/vlbench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ITERS  20
#define DEFAULT_WARMUP 3
#define MAX_ITERS      100000

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: vlbench [attention|gemv|gemm|all] [options]   (default: all)\n"
        "Times vlrun's CUDA kernels (through the op table) on Qwen2-VL-7B shapes beside\n"
        "cuBLAS bf16 or vlrun's eager attention, and the device's copy bandwidth and bf16\n"
        "peak measured at start. Markdown on stdout, progress on stderr.\n"
        "  attention          prefill causal 28/4 heads d128 at 4096, 16384, 38192 (one call),\n"
        "                     a 2048-query chunk at the end of a 38192 cache, vision 16 heads\n"
        "                     d80 at 5456 (4 segments and one), decode at 1364, 16384, 38192\n"
        "  gemv               m = 1 over N x K: 3584x3584 512x3584 4608x3584 18944x3584\n"
        "                     3584x18944 152064x3584 (lm_head, bf16 only)\n"
        "  gemm               the same shapes at m = 2048 and 5456\n"
        "options:\n"
        "  --iters N          timed runs per case, median reported (default %d)\n"
        "  --warmup N         untimed runs first (default %d)\n"
        "  --shape NxK[,...]  linear weight shapes (N out, K in) instead of the 7B set\n"
        "  --m M[,...]        GEMM rows (default 2048,5456)\n"
        "  --seq N[,...]      attention lengths instead of the defaults: prefill tokens,\n"
        "                     chunk cache, vision tokens, decode cache\n"
        "  --heads HQ[/HKV]   attention query / kv heads for every kind (default 28/4 text,\n"
        "                     16/16 vision)\n"
        "  --head-dim D       attention head dim for every kind (default 128 text, 80 vision)\n"
        "  --kinds LIST       attention kinds: prefill,chunk,vision,decode (default) and\n"
        "                     decode-rt (decode with the cache length read from device\n"
        "                     memory, as in a CUDA graph, under a 38192-token bound)\n"
        "  --quant LIST       weight formats: bf16,nf4,int8 (default all three)\n"
        "  --double-quant     NF4 with double-quantized block scales\n"
        "  --json             one JSON object on stdout instead of markdown\n"
        "  --json-out FILE    also write the JSON object to FILE\n"
        "  --no-ref           skip the CPU reference (no error columns)\n"
        "  --no-flush         do not evict L2 before each timed run\n"
        "  --no-ceilings      do not measure the copy bandwidth, the bf16 peak and the launch\n"
        "                     floor (a run under compute-sanitizer; the %% of ceiling columns\n"
        "                     are then n/a)\n"
        "  --cuda-opt K=V     a CUDA backend option (vl_cuda_config, kernels.h), repeatable:\n"
        "                     gemv_bf16=0, attn_decode_splits=N, attn_prefill_rows=64, ...\n"
        "  --help             this text\n",
        DEFAULT_ITERS, DEFAULT_WARMUP);
}

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("vlbench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* A whole decimal integer in [lo, hi]; -1 when s is anything else. */
static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Splits a comma-separated list into at most VLB_MAX_LIST items of < 64 characters each;
 * the count, or -1 for an empty list, an empty item, or too many or too long items. */
static int split_list(const char *s, char items[VLB_MAX_LIST][64]) {
    int n = 0;
    for (const char *p = s;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= 64 || n == VLB_MAX_LIST) return -1;
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        if (!comma) return n + 1;
        p = comma + 1;
    }
}

/* A comma-separated list of integers in [lo, hi]; -1 on any bad element. */
static int parse_int_list(const char *s, int64_t lo, int64_t hi, int64_t *out, int *n) {
    char items[VLB_MAX_LIST][64];
    *n = split_list(s, items);
    if (*n < 0) return -1;
    for (int i = 0; i < *n; i++)
        if (parse_int(items[i], lo, hi, &out[i])) return -1;
    return 0;
}

/* A comma-separated list of names; returns the OR of the matching bits, -1 on an unknown one. */
static int parse_names(const char *s, const char *const *names, const int *bits, int count) {
    char items[VLB_MAX_LIST][64];
    int n = split_list(s, items), mask = 0;
    if (n < 0) return -1;
    for (int t = 0; t < n; t++) {
        int i = 0;
        while (i < count && strcmp(items[t], names[i]) != 0) i++;
        if (i == count) return -1;
        mask |= bits[i];
    }
    return mask;
}

/* Shapes "NxK[,NxK...]" (cuBLAS sizes are int). */
static int parse_shapes(const char *s, vlb_options *o) {
    char items[VLB_MAX_LIST][64];
    int n = split_list(s, items);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        char *x = strchr(items[i], 'x');
        if (!x) return -1;
        *x = '\0';
        vlb_shape *sh = &o->shapes[i];
        if (parse_int(items[i], 1, 1 << 30, &sh->n) || parse_int(x + 1, 1, 1 << 30, &sh->k))
            return -1;
        sh->name = "custom";
        sh->bf16_only = 0;
    }
    o->n_shapes = n;
    return 0;
}

/* --heads HQ[/HKV]. */
static int parse_heads(const char *v, vlb_options *o) {
    int64_t hq, hkv;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    if (parse_int(buf, 1, 1024, &hq) || (slash && parse_int(slash + 1, 1, 1024, &hkv)))
        return fail("--heads expects HQ or HQ/HKV (1..1024), got '%s'", v);
    if (!slash) hkv = hq;
    if (hq % hkv != 0) return fail("--heads %s: query heads must be a multiple of kv heads", v);
    o->heads = (int)hq;
    o->kv_heads = (int)hkv;
    return 0;
}

/* Which options the user gave, for the checks against the benchmark chosen. */
typedef struct {
    int shape, m, seq, attn, quant;
} given;

/* The attention and weight-format lists: --kinds, --quant. */
static int parse_lists(const char *a, const char *v, vlb_options *o, given *g) {
    if (strcmp(a, "--kinds") == 0) {
        static const char *const names[] = {"prefill", "chunk", "vision", "decode", "decode-rt"};
        static const int bits[] = {VLB_KIND_PREFILL, VLB_KIND_CHUNK, VLB_KIND_VISION,
                                   VLB_KIND_DECODE, VLB_KIND_DECODE_RT};
        int mask = parse_names(v, names, bits, 5);
        if (mask < 0)
            return fail("--kinds expects a list of prefill, chunk, vision, decode, decode-rt; "
                        "got '%s'",
                        v);
        o->kind_mask = mask;
        g->attn = 1;
        return 0;
    }
    static const char *const names[] = {"bf16", "nf4", "int8"};
    static const int bits[] = {VLB_QUANT_BF16, VLB_QUANT_NF4, VLB_QUANT_INT8};
    int mask = parse_names(v, names, bits, 3);
    if (mask < 0) return fail("--quant expects a list of bf16, nf4, int8; got '%s'", v);
    o->quant_mask = mask;
    g->quant = 1;
    return 0;
}

/* One option with a value (a is known to take one). */
static int parse_value(const char *a, const char *v, vlb_options *o, given *g) {
    int64_t x;
    if (strcmp(a, "--iters") == 0 || strcmp(a, "--warmup") == 0) {
        const int iters = a[2] == 'i';
        if (parse_int(v, iters, MAX_ITERS, &x))
            return fail("%s expects an integer in [%d, %d], got '%s'", a, iters, MAX_ITERS, v);
        *(iters ? &o->iters : &o->warmup) = (int)x;
    } else if (strcmp(a, "--shape") == 0) {
        if (parse_shapes(v, o))
            return fail(
                "--shape expects NxK[,NxK...] with 1 <= N, K <= 2^30 (at most %d), got '%s'",
                VLB_MAX_LIST, v);
        g->shape = 1;
    } else if (strcmp(a, "--m") == 0) {
        if (parse_int_list(v, 1, 1 << 30, o->m, &o->n_m))
            return fail("--m expects M[,M...] with 1 <= M <= 2^30 (at most %d), got '%s'",
                        VLB_MAX_LIST, v);
        g->m = 1;
    } else if (strcmp(a, "--seq") == 0) {
        if (parse_int_list(v, 1, 1 << 24, o->seq, &o->n_seq))
            return fail("--seq expects N[,N...] with 1 <= N <= 2^24 (at most %d), got '%s'",
                        VLB_MAX_LIST, v);
        g->seq = 1;
    } else if (strcmp(a, "--heads") == 0) {
        g->attn = 1;
        return parse_heads(v, o);
    } else if (strcmp(a, "--head-dim") == 0) {
        if (parse_int(v, 1, 512, &x))
            return fail("--head-dim expects an integer in [1, 512], got '%s'", v);
        o->head_dim = (int)x;
        g->attn = 1;
    } else if (strcmp(a, "--kinds") == 0 || strcmp(a, "--quant") == 0) {
        return parse_lists(a, v, o, g);
    } else if (strcmp(a, "--cuda-opt") == 0) {
        char why[512] = "";
        if (vl_cuda_config_set(&o->cuda, v, why, sizeof why)) return fail("%s", why);
    } else { /* --json-out */
        if (!*v) return fail("--json-out expects a file name");
        o->json_out = v;
    }
    return 0;
}

/* Options without a value: 1 when a is one (set in o), 0 when not. */
static int parse_flag(const char *a, vlb_options *o) {
    if (strcmp(a, "--json") == 0)
        o->json = 1;
    else if (strcmp(a, "--no-ref") == 0)
        o->ref = 0;
    else if (strcmp(a, "--no-flush") == 0)
        o->flush_l2 = 0;
    else if (strcmp(a, "--no-ceilings") == 0)
        o->ceilings = 0;
    else if (strcmp(a, "--double-quant") == 0)
        o->double_quant = 1;
    else
        return 0;
    return 1;
}

/* The benchmark named, and the options that only apply to others. */
static int check_choice(const char *what, vlb_options *o, const given *g) {
    if (!what) what = "all";
    const int all = strcmp(what, "all") == 0;
    o->run_attention = all || strcmp(what, "attention") == 0;
    o->run_gemv = all || strcmp(what, "gemv") == 0;
    o->run_gemm = all || strcmp(what, "gemm") == 0;
    if (!o->run_attention && !o->run_gemv && !o->run_gemm)
        return fail("unknown benchmark '%s'; expected attention, gemv, gemm or all", what);
    const int linear = o->run_gemv || o->run_gemm;
    if ((g->shape || g->quant) && !linear)
        return fail("--shape and --quant apply to gemv and gemm, not %s", what);
    if (g->m && !o->run_gemm) return fail("--m applies to gemm (gemv is m = 1), not %s", what);
    if ((g->seq || g->attn) && !o->run_attention)
        return fail("--seq, --heads, --head-dim and --kinds apply to attention, not %s", what);
    if (o->double_quant && !(o->quant_mask & VLB_QUANT_NF4))
        return fail("--double-quant needs nf4 among --quant");
    return 0;
}

int vlb_parse_options(int argc, char **argv, vlb_options *o) {
    memset(o, 0, sizeof *o);
    o->iters = DEFAULT_ITERS;
    o->warmup = DEFAULT_WARMUP;
    o->ref = 1;
    o->flush_l2 = 1;
    o->ceilings = 1;
    o->quant_mask = VLB_QUANT_BF16 | VLB_QUANT_NF4 | VLB_QUANT_INT8;
    o->kind_mask = VLB_KIND_PREFILL | VLB_KIND_CHUNK | VLB_KIND_VISION | VLB_KIND_DECODE;
    vl_cuda_config_init(&o->cuda);
    const char *what = NULL;
    given g = {0};
    static const char *const with_value[] = {"--iters", "--warmup",   "--shape",    "--m",
                                             "--seq",   "--heads",    "--head-dim", "--kinds",
                                             "--quant", "--json-out", "--cuda-opt"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (what) return fail("one benchmark at a time: got '%s' after '%s'", a, what);
            what = a;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 2;
        }
        if (parse_flag(a, o)) continue;
        int known = 0;
        for (size_t j = 0; j < sizeof with_value / sizeof *with_value; j++)
            known |= strcmp(a, with_value[j]) == 0;
        if (!known) return fail("unknown option '%s' (see vlbench --help)", a);
        if (i + 1 >= argc) return fail("%s needs a value (see vlbench --help)", a);
        if (parse_value(a, argv[++i], o, &g)) return 1;
    }
    return check_choice(what, o, &g);
}
