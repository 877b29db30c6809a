/* logits_cmd.c: `vlrun logits IMAGE... [run options] --out FILE [--ids-out FILE]`: the
 * teacher-forced logits of every prompt position, for comparisons with transformers
 * (tests/reference/teacher_forced.py) and between weight formats (--quant).
 *
 * The prompt is built exactly as `vlrun` builds it (chat template, images, --prompt), prefilled
 * once with the LM head on every position (vl_prefill_each), and each row is streamed to FILE:
 *   FILE ending in .f32:  float32 [n, V], little-endian, row-major (4 n V bytes);
 *   FILE ending in .bf16: bfloat16 [n, V] (round to nearest even), little-endian (2 n V bytes).
 * The cuda backend's LM head writes bf16 (its activation dtype), so .bf16 loses nothing there;
 * on cpu the rounding moves a cosine against another model by ~1e-6, far below the 1e-3 tested.
 * --ids-out FILE: the prompt ids as int32 [n], little-endian. stdout gets one JSON line:
 *   {"positions": n, "vocab": V, "images": k, "image_tokens": t, "format": "bf16",
 *    "backend": "cuda", "quant": "nf4", "weights": "NF4", "prefill_s": ...,
 *    "ids_fnv1a64": "<16 hex digits>"}
 * "weights" is the format the decoder's projections were loaded in; ids_fnv1a64 is the 64-bit
 * FNV-1a hash of the --ids-out bytes (tells whether two runs saw the same sequence).
 * Files appear complete or not at all (FILE.tmp, renamed at the end).
 * Left out: decoding (no tokens are generated: sampling options are accepted and ignored), and
 * the KV cache holds exactly the prompt. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    FILE *f;
    const char *path;
    int bf16;          /* row format: bf16 or float32 */
    uint8_t *row;      /* [V * 4] bytes: one row in file format */
    int64_t positions; /* rows written */
} logits_sink;

/* Open PATH.tmp for writing; the error names the option and the reason. */
static FILE *open_tmp(const char *opt, const char *path, char *tmp, size_t tmp_size) {
    if (snprintf(tmp, tmp_size, "%s.tmp", path) >= (int)tmp_size) {
        vl_error_set("%s %s: path too long", opt, path);
        return NULL;
    }
    if (vl_output_target_check(path, opt)) return NULL;
    return vl_create_fresh(tmp, opt); /* its error names the option, file and reason */
}

/* Close and rename PATH.tmp to PATH; on any failure (or when ok == 0) remove PATH.tmp. */
static int finish_tmp(FILE *f, const char *opt, const char *path, const char *tmp, int ok) {
    int closed = fclose(f) == 0;
    if (ok && !closed) {
        remove(tmp);
        return vl_error_set("%s %s: write failed (disk full?)", opt, path);
    }
    if (!ok) {
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return vl_error_set("%s %s: cannot rename %s (%s)", opt, path, tmp, strerror(e));
    }
    return 0;
}

static int write_row(void *ctx, int64_t pos, const float *logits, int n) {
    logits_sink *k = ctx;
    if (pos != k->positions)
        return vl_error_set("vlrun logits: position %lld arrived out of order (expected %lld)",
                            (long long)pos, (long long)k->positions);
    size_t elt = k->bf16 ? 2 : 4;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        if (k->bf16)
            u = vl_f32_to_bf16(logits[i]);
        else
            memcpy(&u, &logits[i], 4);
        uint8_t *b = k->row + (size_t)i * elt; /* little-endian whatever the host */
        for (size_t j = 0; j < elt; j++) b[j] = (uint8_t)(u >> (8 * j));
    }
    if (fwrite(k->row, elt, (size_t)n, k->f) != (size_t)n)
        return vl_error_set("--out %s: write failed at position %lld (disk full?)", k->path,
                            (long long)pos);
    k->positions++;
    return 0;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

static const char *quant_name(vl_quant q) {
    return q == VL_QUANT_NF4 ? "nf4" : q == VL_QUANT_INT8 ? "int8" : "bf16";
}

/* A --quant nf4/int8 that the engine did not apply would label bf16 logits as quantized: check
 * the format of a decoder projection after loading instead of trusting the option. (--quant
 * bf16 on a bitsandbytes checkpoint keeps its stored format: the summary's "weights" says so.) */
static int check_quant_applied(const vl_model *m, vl_quant q) {
    vl_dtype got = vl_model_linear_dtype(m);
    vl_dtype want = q == VL_QUANT_NF4 ? VL_DTYPE_NF4 : VL_DTYPE_Q8ROW;
    if (q != VL_QUANT_BF16 && got != want)
        return vl_error_set("vlrun logits: --quant %s was asked for but the decoder weights are "
                            "%s; this build does not apply --quant %s",
                            quant_name(q), vl_dtype_name(got), quant_name(q));
    return 0;
}

typedef struct {
    const char *out, *ids_out;
} logits_opts;

/* The one JSON line on stdout. */
static void print_summary(const vl_engine *e, const vl_options *o, const vl_result *r, int bf16,
                          uint64_t ids_hash) {
    printf("{\"positions\": %d, \"vocab\": %d, \"images\": %d, \"image_tokens\": %lld, "
           "\"format\": \"%s\", \"backend\": \"%s\", \"quant\": \"%s\", \"weights\": \"%s\", "
           "\"kv\": \"%s\", \"prefill_s\": %.3f, \"ids_fnv1a64\": \"%016llx\"}\n",
           r->prompt_tokens, e->m.cfg.vocab, r->n_images, (long long)r->image_tokens,
           bf16 ? "bf16" : "f32", e->be->name, quant_name(o->engine.quant),
           vl_dtype_name(vl_model_linear_dtype(&e->m)), o->engine.kv_int8 ? "int8" : "bf16",
           r->t.prefill_s, (unsigned long long)ids_hash);
}

/* on_prompt: the ids to --ids-out and their hash for the summary. */
typedef struct {
    logits_sink *sink;
    FILE *ids_f;
    const char *ids_path;
    uint64_t ids_hash;
} logits_run;

static int take_ids(void *ctx, const int32_t *ids, int n) {
    logits_run *lr = ctx;
    uint8_t *bytes = malloc((size_t)n * 4);
    if (!bytes) return vl_error_set("out of host memory");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) bytes[4 * i + j] = (uint8_t)((uint32_t)ids[i] >> (8 * j));
    lr->ids_hash = fnv1a64(bytes, (size_t)n * 4);
    int bad = lr->ids_f && fwrite(bytes, 4, (size_t)n, lr->ids_f) != (size_t)n;
    free(bytes);
    if (bad) return vl_error_set("--ids-out %s: write failed (disk full?)", lr->ids_path);
    return 0;
}

static int each_row(void *ctx, int64_t pos, const float *logits, int n) {
    return write_row(((logits_run *)ctx)->sink, pos, logits, n);
}

/* Both files complete: rename them (ids first, so that logits never appear without ids). */
static int finish_files(logits_sink *sink, FILE **ids_f, const logits_opts *lo, const char *out_tmp,
                        const char *ids_tmp) {
    if (*ids_f) {
        FILE *f = *ids_f;
        *ids_f = NULL;
        if (finish_tmp(f, "--ids-out", lo->ids_out, ids_tmp, 1)) return -1;
    }
    FILE *f = sink->f;
    sink->f = NULL;
    if (finish_tmp(f, "--out", lo->out, out_tmp, 1)) {
        if (lo->ids_out) remove(lo->ids_out);
        return -1;
    }
    return 0;
}

static int logits(vl_options *o, const logits_opts *lo) {
    int rc = -1;
    vl_engine *e = NULL;
    vl_result res;
    logits_sink sink;
    char out_tmp[4200], ids_tmp[4200], *text = NULL;
    FILE *ids_f = NULL;
    vl_progress progress;
    memset(&res, 0, sizeof res);
    memset(&sink, 0, sizeof sink);
    sink.path = lo->out;
    sink.bf16 = ends_with(lo->out, ".bf16");

    /* Files first: an unwritable path fails in a second, not after loading 16 GB. */
    sink.f = open_tmp("--out", lo->out, out_tmp, sizeof out_tmp);
    if (!sink.f) return -1;
    if (lo->ids_out && !(ids_f = open_tmp("--ids-out", lo->ids_out, ids_tmp, sizeof ids_tmp)))
        goto done;
    /* --prompt, --prompt-file or standard input, and --system, as vlrun */
    if (vl_prompt_text_read(o, &text)) goto done;
    o->request.prompt = text;
    o->request.prefill_only = 1; /* the KV cache holds the prompt, nothing is generated */
    if (!(e = vl_engine_open(&o->engine))) goto done;
    sink.row = malloc((size_t)e->m.cfg.vocab * 4);
    if (!sink.row) {
        vl_error_set("out of host memory");
        goto done;
    }
    logits_run lr = {&sink, ids_f, lo->ids_out, 0};
    vl_callbacks cb = {.ctx = &lr, .on_prompt = take_ids, .on_each_logits = each_row};
    cb.on_notice = o->quiet ? NULL : vl_cli_notice;
    cb.progress = vl_progress_open(&progress, o->quiet); /* NULL unless stderr is a terminal */
    if (vl_engine_run(e, &o->request, &cb, &res)) goto done;
    if (check_quant_applied(&e->m, o->engine.quant)) goto done;
    if (sink.positions != res.prompt_tokens) {
        vl_error_set("vlrun logits: %lld positions written, the prompt has %d",
                     (long long)sink.positions, res.prompt_tokens);
        goto done;
    }
    if (finish_files(&sink, &ids_f, lo, out_tmp, ids_tmp)) goto done;
    print_summary(e, o, &res, sink.bf16, lr.ids_hash);
    if (vl_stdout_flush()) goto done; /* the JSON line lost: an error, not the summary */
    fprintf(stderr,
            "vlrun logits: %d positions x %d logits (%s backend, --quant %s): load %.2f s, "
            "vision %.2f s, prefill with the LM head on every position %.2f s\n",
            res.prompt_tokens, e->m.cfg.vocab, e->be->name, quant_name(o->engine.quant),
            res.t.load_s, res.t.vision_s, res.t.prefill_s);
    rc = 0;
done:
    if (sink.f) finish_tmp(sink.f, "--out", lo->out, out_tmp, 0);
    if (ids_f) finish_tmp(ids_f, "--ids-out", lo->ids_out, ids_tmp, 0);
    free(sink.row);
    free(text);
    vl_result_free(&res);
    vl_engine_close(e);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: vlrun logits IMAGE [xN]... [OPTIONS] --out FILE.bf16|FILE.f32 "
               "[--ids-out FILE]\n"
               "  teacher-forced logits of every prompt position: [positions, vocab] little-endian "
               "bf16 or float32\n"
               "  (by the extension of --out); --ids-out: the prompt ids, int32 [positions].\n"
               "  OPTIONS: those of `vlrun` that shape the prompt and the model (--model, "
               "--random-weights, --config,\n"
               "  --tokenizer, --prompt, --quant, --kv, --attn, --backend, --seed, --chunk, "
               "--mem-budget).\n"
               "  -h, --help: this text; --version: vlrun's version\n");
}

int vl_cmd_logits(int argc, char **argv) {
    logits_opts lo = {NULL, NULL};
    /* argv[1] is "logits": hand the rest, less --out/--ids-out, to the run options parser. */
    char **rest = calloc((size_t)argc, sizeof *rest);
    if (!rest) return vl_error_set("out of host memory");
    int n = 0;
    rest[n++] = argv[0];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "--version") == 0) {
            if (a[2] == 'v')
                vl_version_print(stdout);
            else
                usage(stdout);
            free(rest);
            return 0;
        }
        if (strcmp(a, "--out") == 0 || strcmp(a, "--ids-out") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == 0) {
                free(rest);
                return vl_error_set("vlrun logits: option %s needs a value", a);
            }
            *(a[2] == 'o' ? &lo.out : &lo.ids_out) = argv[++i];
            continue;
        }
        rest[n++] = argv[i];
        if (vl_option_takes_value(a) && i + 1 < argc) rest[n++] = argv[++i];
    }
    vl_options o;
    vl_options_default(&o);
    int rc = vl_options_parse(&o, n, rest);
    free(rest);
    if (rc == 0 && !lo.out)
        rc = vl_error_set("vlrun logits: --out FILE.bf16 or FILE.f32 is required");
    if (rc == 0 && !ends_with(lo.out, ".bf16") && !ends_with(lo.out, ".f32"))
        rc = vl_error_set("vlrun logits: --out %s: expected a name ending in .bf16 or .f32 (the "
                          "format)",
                          lo.out);
    if (rc == 0 && lo.ids_out && strcmp(lo.ids_out, lo.out) == 0)
        rc = vl_error_set("vlrun logits: --ids-out and --out are the same file");
    if (rc == 0 && o.n_image_args == 0)
        rc = vl_error_set("vlrun logits: no image given (vlrun logits IMAGE... --out FILE)");
    if (rc == 0) rc = logits(&o, &lo);
    vl_options_free(&o);
    return rc;
}
