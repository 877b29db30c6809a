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
#include "engine/engine.h"

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

static int logits(const vl_options *o, const logits_opts *lo) {
    int rc = -1;
    vl_model m;
    vl_session s;
    vl_prompt p;
    vl_image_set is;
    logits_sink sink;
    char out_tmp[4200], ids_tmp[4200];
    FILE *ids_f = NULL;
    vl_progress progress;
    memset(&m, 0, sizeof m);
    memset(&s, 0, sizeof s);
    memset(&p, 0, sizeof p);
    memset(&is, 0, sizeof is);
    memset(&sink, 0, sizeof sink);
    sink.path = lo->out;
    sink.bf16 = ends_with(lo->out, ".bf16");

    vl_backend *be = vl_backend_open(o);
    if (!be) return -1;
    /* Files first: an unwritable path fails in a second, not after loading 16 GB. */
    sink.f = open_tmp("--out", lo->out, out_tmp, sizeof out_tmp);
    if (!sink.f) return -1;
    if (lo->ids_out) {
        ids_f = open_tmp("--ids-out", lo->ids_out, ids_tmp, sizeof ids_tmp);
        if (!ids_f) goto done;
    }

    double t0 = vl_now_s();
    if (vl_model_open(&m, o)) goto done;
    m.progress = vl_progress_open(&progress, o); /* NULL unless stderr is a terminal */
    if (vl_image_set_load(&is, o, &m.pre)) goto done;
    char *text = NULL; /* --prompt, --prompt-file or standard input, and --system, as vlrun */
    int bad = vl_prompt_text_read(o, &text) ||
              vl_prompt_build_system(&p, &m, o->system, text, is.list, is.src, is.n_list);
    free(text);
    if (bad) goto done;
    int64_t last_pos = (int64_t)p.n - 1 + p.rope_delta;
    if (last_pos >= m.cfg.max_positions) {
        vl_error_set("vlrun logits: the last position would be %lld, beyond the model's context "
                     "of %d positions; use fewer images",
                     (long long)last_pos, m.cfg.max_positions);
        goto done;
    }
    int64_t max_patches = 0, img_tokens = 0;
    for (int i = 0; i < is.n_list; i++) {
        if (is.list[i].n_patches > max_patches) max_patches = is.list[i].n_patches;
        img_tokens += is.list[i].n_patches / ((int64_t)m.cfg.merge * m.cfg.merge);
    }
    vl_plan_request rq; /* max_tokens 0: nothing is generated, the KV cache holds the prompt */
    vl_plan_request_init(&rq, o, be, p.n, 0, o->chunk, max_patches);
    vl_mem_plan plan;
    vl_plan_memory(&m.cfg, &rq, &plan);
    if (o->mem_budget > 0 && plan.total > (size_t)o->mem_budget) {
        vl_error_set("predicted peak %.2f GiB exceeds --mem-budget %.2f GiB",
                     plan.total / 1073741824.0, (double)o->mem_budget / 1073741824.0);
        goto done;
    }
    if (vl_model_load_weights(&m, o, be)) goto done;
    if (check_quant_applied(&m, o->quant)) goto done;
    if (vl_session_start(&s, &m, &rq.shape)) goto done;
    s.stats.t.load_s = vl_now_s() - t0;
    s.stats.predicted_peak = plan.total;

    sink.row = malloc((size_t)m.cfg.vocab * 4);
    uint8_t *ids_bytes = malloc((size_t)p.n * 4);
    if (!sink.row || !ids_bytes) {
        free(ids_bytes);
        vl_error_set("out of host memory");
        goto done;
    }
    for (int i = 0; i < p.n; i++)
        for (int j = 0; j < 4; j++) ids_bytes[4 * i + j] = (uint8_t)((uint32_t)p.ids[i] >> (8 * j));
    uint64_t ids_hash = fnv1a64(ids_bytes, (size_t)p.n * 4);
    int ids_bad = ids_f && fwrite(ids_bytes, 4, (size_t)p.n, ids_f) != (size_t)p.n;
    free(ids_bytes);
    if (ids_bad) {
        vl_error_set("--ids-out %s: write failed (disk full?)", lo->ids_out);
        goto done;
    }

    double tp = vl_now_s();
    if (vl_prefill_each(&s.seq, &p, write_row, &sink)) goto done;
    double prefill_s = vl_now_s() - tp;
    if (sink.positions != p.n) {
        vl_error_set("vlrun logits: %lld positions written, the prompt has %d",
                     (long long)sink.positions, p.n);
        goto done;
    }
    /* Both files complete: rename them (ids first, so that logits never appear without ids). */
    if (ids_f) {
        FILE *f = ids_f;
        ids_f = NULL;
        if (finish_tmp(f, "--ids-out", lo->ids_out, ids_tmp, 1)) goto done;
    }
    FILE *f = sink.f;
    sink.f = NULL;
    if (finish_tmp(f, "--out", lo->out, out_tmp, 1)) {
        if (lo->ids_out) remove(lo->ids_out);
        goto done;
    }
    printf("{\"positions\": %d, \"vocab\": %d, \"images\": %d, \"image_tokens\": %lld, "
           "\"format\": \"%s\", \"backend\": \"%s\", \"quant\": \"%s\", \"weights\": \"%s\", "
           "\"kv\": \"%s\", \"prefill_s\": %.3f, \"ids_fnv1a64\": \"%016llx\"}\n",
           p.n, m.cfg.vocab, p.n_images, (long long)img_tokens, sink.bf16 ? "bf16" : "f32",
           be->name, quant_name(o->quant), vl_dtype_name(vl_model_linear_dtype(&m)),
           o->kv_int8 ? "int8" : "bf16", prefill_s, (unsigned long long)ids_hash);
    if (vl_stdout_flush()) goto done; /* the JSON line lost: an error, not the summary */
    fprintf(stderr,
            "vlrun logits: %d positions x %d logits (%s backend, --quant %s): load %.2f s, "
            "vision %.2f s, prefill with the LM head on every position %.2f s\n",
            p.n, m.cfg.vocab, be->name, quant_name(o->quant), s.stats.t.load_s, s.stats.t.vision_s,
            prefill_s);
    rc = 0;
done:
    vl_progress_end(m.progress);
    if (sink.f) finish_tmp(sink.f, "--out", lo->out, out_tmp, 0);
    if (ids_f) finish_tmp(ids_f, "--ids-out", lo->ids_out, ids_tmp, 0);
    free(sink.row);
    vl_session_free(&s);
    vl_prompt_free(&p);
    vl_image_set_free(&is);
    vl_model_free(&m);
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

/* Options of `vlrun` that take a value: their values are copied as they are, so that
 * `--prompt --out` stays a prompt. A new value-taking run option belongs here too. */
static int takes_value(const char *a) {
    static const char *const with_value[] = {
        "--model", "--config", "--tokenizer",  "--prompt",      "--max-tokens", "--quant",
        "--kv",    "--attn",   "--backend",    "--temperature", "--top-k",      "--top-p",
        "--seed",  "--chunk",  "--mem-budget", "--dump-logits"};
    for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
        if (strcmp(a, with_value[i]) == 0) return 1;
    return 0;
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
        if (takes_value(a) && i + 1 < argc) rest[n++] = argv[++i];
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
