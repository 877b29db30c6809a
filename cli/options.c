/* options.c: the vlrun command line (docs/cli.md): argv mapped onto the engine configuration
 * and the request (engine/vlrun.h) plus the command line's own settings. Every value is
 * validated here so that a bad option ends in one line naming it, before any file is opened. */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

void vl_options_default(vl_options *o) {
    memset(o, 0, sizeof *o);
    vl_engine_config_default(&o->engine);
    vl_request_default(&o->request);
    o->engine.model_dir = getenv("VLRUN_MODEL");
    if (o->engine.model_dir && !o->engine.model_dir[0]) o->engine.model_dir = NULL;
}

int vl_options_max_tokens(const vl_options *o) {
    return o->request.max_tokens > 0 ? o->request.max_tokens : 512;
}

void vl_options_free(vl_options *o) {
    free(o->images);
    o->images = NULL;
    o->n_image_args = 0;
    o->request.images = NULL;
    o->request.n_images = 0;
}

void vl_usage(FILE *f) {
    fprintf(
        f, "usage: vlrun [OPTIONS] IMAGE [xN] [IMAGE [xN]]...\n"
           "       vlrun --chat [OPTIONS] [IMAGE [xN]]...\n"
           "       vlrun tokenize [--model DIR | --tokenizer FILE] TEXT\n"
           "       vlrun preprocess [--model DIR] IMAGE [--out FILE]\n"
           "       vlrun synth --config FILE --out DIR [--seed S]\n"
           "       vlrun logits IMAGE [xN]... [OPTIONS] --out FILE.f32|FILE.bf16 [--ids-out FILE]\n"
           "       vlrun plan (--config FILE | --model DIR) --gpu CARD|SIZE [IMAGE [xN]]... "
           "[--image-size WxH]\n"
           "       vlrun sweep IMAGE --counts N,N,... [OPTIONS] [--gpu CARD|SIZE] [--out PREFIX]\n"
           "       vlrun serve --model DIR [--host H] [--port N] [--max-batch N] [OPTIONS]\n"
           "options:\n"
           "  --model DIR           checkpoint directory (default: $VLRUN_MODEL)\n"
           "  --random-weights      synthesize weights (deterministic, --seed) with the shapes\n"
           "                        of the config: memory and speed are real, the text is not\n"
           "  --config FILE         config.json for --random-weights without --model\n"
           "  --tokenizer FILE      tokenizer.json (default: MODEL/tokenizer.json)\n"
           "  --prompt TEXT         the user's text after the images (default: \"Describe the "
           "images.\");\n"
           "                        - reads it from standard input\n"
           "  --prompt-file FILE    the user's text from a UTF-8 file (- : standard input); one\n"
           "                        trailing newline is dropped\n"
           "  --system TEXT         the system prompt (default: \"You are a helpful assistant.\")\n"
           "  --assistant-prefix TEXT  the answer starts with TEXT: the model continues it (in\n"
           "                        `vlrun logits`, the prompt's logits run through it: teacher\n"
           "                        forcing); the output holds only what follows\n"
           "  --max-tokens N        generate exactly N tokens (the memory plan covers N); the\n"
           "                        text still ends at the end-of-turn token. Without it,\n"
           "                        generation stops at <|im_end|> / <|endoftext|> or at the\n"
           "                        model's context limit\n"
           "  --stop-at-eos         stop at the end-of-turn token even with --max-tokens\n"
           "  --ignore-eos          never stop at it, and print what follows it too (as\n"
           "                        llama.cpp); 512 tokens unless --max-tokens\n"
           "  --quant bf16|nf4|int8 weights (default bf16): NF4 as bitsandbytes (blocks of 64,\n"
           "                        fp32 scales), int8 one scale per row (W8A16)\n"
           "  --double-quant        NF4 with 8-bit double-quantized block scales (0.3 GiB less\n"
           "                        for 7B, slower decode)\n"
           "  --no-double-quant     fp32 NF4 block scales (the default)\n"
           "  --quant-lm-head       also quantize the LM head (transformers keeps it bf16)\n"
           "  --embed-on-host       keep the embedding table in pinned host memory (the GPU\n"
           "                        reads one row per token): 1 GiB less device memory for 7B\n"
           "  --kv bf16|int8        KV cache type (default bf16); int8: one byte per element and\n"
           "                        an fp32 scale per token and head, about half the memory\n"
           "  --attn flash|naive    naive materializes the score matrix (default flash)\n"
           "  --backend cuda|cpu    (default cuda, or cpu in a build without CUDA; cpu is the\n"
           "                        slow reference)\n"
           "  --greedy              argmax decoding (the default)\n"
           "  --temperature T       sample with temperature T > 0 (0 = greedy)\n"
           "  --top-k K             keep the K most likely tokens (0 = off)\n"
           "  --top-p P             keep the smallest set with probability >= P (1 = off)\n"
           "  --seed S              sampling and --random-weights seed (default 0)\n"
           "  --repetition-penalty P  divide positive and multiply negative logits of the tokens\n"
           "                        already in the sequence by P > 0, as transformers (default:\n"
           "                        the model's generation_config.json, 1 = off)\n"
           "  --chunk N|auto        prefill chunk in tokens (default auto: 8192, or 4096 or\n"
           "                        2048 when the larger does not fit the memory)\n"
           "  --chat                interactive session: one message a line on stdin (a line\n"
           "                        ending in \\ goes on), images on the command line go into\n"
           "                        the first message; /help lists the commands. --max-tokens\n"
           "                        caps each answer (default: until end of turn)\n"
           "  --ctx N               --chat: tokens the conversation may hold (default 4096)\n"
           "  --mem-budget SIZE     refuse before loading if the predicted peak exceeds SIZE\n"
           "  --json                one JSON report on stdout at the end, nothing else there\n"
           "  --dump-logits FILE    float32 logits of the last prompt position\n"
           "  --quiet               no streamed text on stdout, no progress line on stderr\n"
           "  --cuda-opt KEY=VALUE  CUDA backend setting, for benchmarks and tests (repeatable):\n"
           "                        device, no_graphs, gemv_bf16, gemv_bf16_splits,\n"
           "                        gemv_quant_m1, gemv_quant_m1_splits, gemv_rows16,\n"
           "                        gemv_row_tiles, quant_gemv_rows, attn_decode_splits,\n"
           "                        attn_decode_waves, attn_prefill_rows, profile_step\n"
           "                        (docs/cli.md)\n"
           "  --min-pixels N        smallest resized image in pixels (default: the model's\n"
           "                        preprocessor_config.json, else 3136; also for preprocess)\n"
           "  --max-pixels N        largest resized image in pixels (default: the file's, else\n"
           "                        12845056); 1003520 makes a page at most 1280 tokens\n"
           "  -h, --help            this text (vlrun COMMAND --help: that command's)\n"
           "  --version             vlrun's version, commit and build (CUDA or CPU-only)\n");
}

int64_t vl_parse_size(const char *s) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return -1;
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 0:
        break;
    case 'K':
        mult = 1024.0;
        break;
    case 'M':
        mult = 1024.0 * 1024;
        break;
    case 'G':
        mult = 1024.0 * 1024 * 1024;
        break;
    case 'T':
        mult = 1024.0 * 1024 * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (*end) {
        end++;
        if (toupper((unsigned char)*end) == 'I') end++;
        if (toupper((unsigned char)*end) == 'B') end++;
        if (*end) return -1;
    }
    double bytes = v * mult;
    if (bytes > 9.0e18) return -1;
    return (int64_t)bytes;
}

static int parse_int(const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi)
        return vl_error_set("option %s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi,
                            v ? v : "");
    *out = (int)x;
    return 0;
}

static int parse_float(const char *opt, const char *v, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(x >= lo && x <= hi))
        return vl_error_set("option %s: expected a number in [%g, %g], got '%s'", opt, lo, hi,
                            v ? v : "");
    *out = (float)x;
    return 0;
}

/* "xN" after an image: N copies. Returns 1 if `a` has the repeat form, 0 if it is a path. */
static int is_repeat(const char *a) {
    return a[0] == 'x' && a[1] != 0 && !strchr(a, '.');
}

static int add_image(vl_options *o, const char *path) {
    vl_image_arg *t = realloc(o->images, (size_t)(o->n_image_args + 1) * sizeof *t);
    if (!t) return vl_error_set("out of host memory");
    o->images = t;
    o->images[o->n_image_args++] = (vl_image_arg){.path = path, .repeat = 1};
    return 0;
}

/* The explicit choices that change other defaults (--temperature without --greedy). */
typedef struct {
    int explicit_temperature, explicit_greedy, explicit_prompt;
} parse_state;

#define NEEDS_VALUE()                                                                              \
    do {                                                                                           \
        if (!v) return vl_error_set("option %s needs a value (see vlrun --help)", a);              \
        *took = 1;                                                                                 \
    } while (0)

/* The engine's options (model, formats, backend, memory). Returns 1 when `a` is one of them (*took:
 * its value was used), 0 when not, -1 with the error set. */
static int engine_option(vl_options *o, parse_state *ps, const char *a, const char *v, int *took) {
    if (strcmp(a, "--model") == 0) {
        NEEDS_VALUE();
        o->engine.model_dir = v;
    } else if (strcmp(a, "--config") == 0) {
        NEEDS_VALUE();
        o->engine.config_path = v;
    } else if (strcmp(a, "--tokenizer") == 0) {
        NEEDS_VALUE();
        o->engine.tokenizer_path = v;
    } else if (strcmp(a, "--random-weights") == 0) {
        o->engine.random_weights = 1;
    } else if (strcmp(a, "--quant") == 0) {
        NEEDS_VALUE();
        if (strcmp(v, "bf16") == 0)
            o->engine.quant = VL_QUANT_BF16;
        else if (strcmp(v, "nf4") == 0)
            o->engine.quant = VL_QUANT_NF4;
        else if (strcmp(v, "int8") == 0)
            o->engine.quant = VL_QUANT_INT8;
        else
            return vl_error_set("option --quant: expected bf16, nf4 or int8, got '%s'", v);
    } else if (strcmp(a, "--no-double-quant") == 0) {
        o->engine.double_quant = 0;
    } else if (strcmp(a, "--double-quant") == 0) {
        o->engine.double_quant = 1;
    } else if (strcmp(a, "--quant-lm-head") == 0) {
        o->engine.quant_lm_head = 1;
    } else if (strcmp(a, "--embed-on-host") == 0) {
        o->engine.embed_on_host = 1;
    } else if (strcmp(a, "--kv") == 0) {
        NEEDS_VALUE();
        if (strcmp(v, "bf16") == 0)
            o->engine.kv_int8 = 0;
        else if (strcmp(v, "int8") == 0)
            o->engine.kv_int8 = 1;
        else
            return vl_error_set("option --kv: expected bf16 or int8, got '%s'", v);
    } else if (strcmp(a, "--attn") == 0) {
        NEEDS_VALUE();
        if (strcmp(v, "flash") == 0)
            o->engine.attn_naive = 0;
        else if (strcmp(v, "naive") == 0)
            o->engine.attn_naive = 1;
        else
            return vl_error_set("option --attn: expected flash or naive, got '%s'", v);
    } else if (strcmp(a, "--backend") == 0) {
        NEEDS_VALUE();
        if (strcmp(v, "cuda") == 0)
            o->engine.backend = VL_BACKEND_CUDA;
        else if (strcmp(v, "cpu") == 0)
            o->engine.backend = VL_BACKEND_CPU;
        else
            return vl_error_set("option --backend: expected cuda or cpu, got '%s'", v);
    } else if (strcmp(a, "--chunk") == 0) {
        NEEDS_VALUE();
        if (strcmp(v, "auto") == 0)
            o->engine.chunk = 0;
        else if (parse_int(a, v, 1, 1 << 20, &o->engine.chunk)) {
            vl_error_clear(); /* parse_int's record, which does not name auto, would win */
            return vl_error_set("option --chunk: expected auto or a number of tokens in [1, %d], "
                                "got '%s'",
                                1 << 20, v);
        }
    } else if (strcmp(a, "--mem-budget") == 0) {
        NEEDS_VALUE();
        o->engine.mem_budget = vl_parse_size(v);
        if (o->engine.mem_budget <= 0)
            return vl_error_set("option --mem-budget: expected a size like 24G or 800M, got "
                                "'%s'",
                                v);
    } else if (strcmp(a, "--min-pixels") == 0 || strcmp(a, "--max-pixels") == 0) {
        NEEDS_VALUE();
        if (vl_parse_pixels(a, v, a[3] == 'i' ? &o->engine.min_pixels : &o->engine.max_pixels))
            return -1;
    } else if (strcmp(a, "--cuda-opt") == 0) {
        NEEDS_VALUE();
        char why[512];
        if (vl_cuda_config_set(&o->engine.cuda, v, why, sizeof why))
            return vl_error_set("%s (see docs/cli.md)", why);
    } else {
        return 0;
    }
    return 1;
}

/* The request's options (prompt, generation length, sampling). Returns 1 when `a` is one of them
 * (*took: its value was used), 0 when not, -1 with the error set. */
static int request_option(vl_options *o, parse_state *ps, const char *a, const char *v, int *took) {
    if (strcmp(a, "--prompt") == 0) {
        NEEDS_VALUE();
        o->request.prompt = v;
        ps->explicit_prompt = 1;
    } else if (strcmp(a, "--system") == 0) {
        NEEDS_VALUE();
        o->request.system = v;
    } else if (strcmp(a, "--assistant-prefix") == 0) {
        NEEDS_VALUE();
        o->request.assistant_prefix = v;
    } else if (strcmp(a, "--max-tokens") == 0) {
        NEEDS_VALUE();
        if (parse_int(a, v, 1, 1 << 24, &o->request.max_tokens)) return -1;
    } else if (strcmp(a, "--stop-at-eos") == 0) {
        o->request.stop_at_eos = 1;
    } else if (strcmp(a, "--ignore-eos") == 0) {
        o->request.ignore_eos = 1;
    } else if (strcmp(a, "--greedy") == 0) {
        ps->explicit_greedy = 1;
    } else if (strcmp(a, "--temperature") == 0) {
        NEEDS_VALUE();
        if (parse_float(a, v, 0.0, 100.0, &o->request.temperature)) return -1;
        ps->explicit_temperature = 1;
    } else if (strcmp(a, "--top-k") == 0) {
        NEEDS_VALUE();
        if (parse_int(a, v, 0, 1 << 30, &o->request.top_k)) return -1;
    } else if (strcmp(a, "--top-p") == 0) {
        NEEDS_VALUE();
        if (parse_float(a, v, 0.0, 1.0, &o->request.top_p) || o->request.top_p <= 0.0f)
            return vl_error_set("option --top-p: expected a number in (0, 1], got '%s'", v);
    } else if (strcmp(a, "--seed") == 0) {
        NEEDS_VALUE();
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-')
            return vl_error_set("option --seed: expected a non-negative integer, got '%s'", v);
        o->request.seed = s; /* sampling, and the weights of --random-weights */
        o->engine.weights_seed = s;
    } else if (strcmp(a, "--repetition-penalty") == 0) {
        NEEDS_VALUE();
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        o->request.repetition_penalty = (float)x;
        if (errno || end == v || *end || !(x > 0.0 && x <= FLT_MAX) ||
            !(o->request.repetition_penalty > 0.0f))
            return vl_error_set("option --repetition-penalty: expected a finite number > 0 "
                                "(1 = off), got '%s'",
                                v);
    } else {
        return 0;
    }
    return 1;
}

/* The command line's own options (output, interaction, the prompt's source). Returns 1 when `a` is
 * one of them (*took: its value was used), 0 when not, -1 with the error set. */
static int cli_option(vl_options *o, parse_state *ps, const char *a, const char *v, int *took) {
    if (strcmp(a, "--prompt-file") == 0) {
        NEEDS_VALUE();
        o->prompt_file = v;
    } else if (strcmp(a, "--chat") == 0) {
        o->chat = 1;
    } else if (strcmp(a, "--ctx") == 0) {
        NEEDS_VALUE();
        if (parse_int(a, v, 1, 1 << 24, &o->ctx)) return -1;
    } else if (strcmp(a, "--json") == 0) {
        o->json = 1;
    } else if (strcmp(a, "--dump-logits") == 0) {
        NEEDS_VALUE();
        o->dump_logits = v;
    } else if (strcmp(a, "--quiet") == 0) {
        o->quiet = 1;
    } else {
        return 0;
    }
    return 1;
}

#undef NEEDS_VALUE

int vl_option_takes_value(const char *a) {
    /* ask the parsers themselves on a scratch struct: they mark the value taken before they
     * check it, and a refused value's error (with none set before) is forgotten */
    vl_options scratch;
    vl_options_default(&scratch);
    parse_state ps = {0, 0, 0};
    int took = 0, had_error = vl_error_get()[0] != 0;
    int r = engine_option(&scratch, &ps, a, "", &took);
    if (r == 0) r = request_option(&scratch, &ps, a, "", &took);
    if (r == 0) r = cli_option(&scratch, &ps, a, "", &took);
    if (!had_error) vl_error_clear();
    return took;
}

int vl_options_parse(vl_options *o, int argc, char **argv) {
    parse_state ps = {0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took = 0, r = engine_option(o, &ps, a, v, &took);
        if (r == 0) r = request_option(o, &ps, a, v, &took);
        if (r == 0) r = cli_option(o, &ps, a, v, &took);
        if (r < 0) return -1;
        i += took;
        if (r > 0) continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->show_help = 1;
            return 0; /* nothing after it matters */
        } else if (strcmp(a, "--version") == 0) {
            o->show_version = 1;
            return 0;
        } else if (a[0] == '-' && a[1] != 0) {
            return vl_error_set("unknown option %s (see vlrun --help)", a);
        } else if (is_repeat(a)) {
            if (o->n_image_args == 0)
                return vl_error_set("'%s' must follow an image path (IMAGE xN)", a);
            char *end;
            errno = 0;
            long n = strtol(a + 1, &end, 10);
            if (errno || *end || end == a + 1 || n < 1 || n > 100000)
                return vl_error_set("'%s': the repeat count after an image must be an integer "
                                    "in [1, 100000] (e.g. page.png x28)",
                                    a);
            if (o->images[o->n_image_args - 1].repeat != 1)
                return vl_error_set("'%s': an image takes one repeat count", a);
            o->images[o->n_image_args - 1].repeat = (int)n;
        } else {
            if (add_image(o, a)) return -1;
        }
    }
    o->request.images = o->images;
    o->request.n_images = o->n_image_args;
    if (ps.explicit_temperature && !ps.explicit_greedy)
        o->request.greedy = o->request.temperature <= 0.0f;
    if (o->engine.min_pixels && o->engine.max_pixels && o->engine.min_pixels > o->engine.max_pixels)
        return vl_error_set("--min-pixels %lld is larger than --max-pixels %lld; expected min <= "
                            "max",
                            (long long)o->engine.min_pixels, (long long)o->engine.max_pixels);
    if (ps.explicit_prompt && o->prompt_file)
        return vl_error_set("--prompt and --prompt-file both give the prompt; pass one of them");
    if (o->request.stop_at_eos && o->request.ignore_eos)
        return vl_error_set("--stop-at-eos and --ignore-eos contradict each other; pass one");
    if (o->engine.kv_int8 && o->engine.attn_naive)
        return vl_error_set("--kv int8 with --attn naive: the naive baseline reads a bf16 cache; "
                            "drop one of the two");
    return 0;
}
