/* fuzz_options.c: libFuzzer harness for the command line (vl_options_parse). The input split at
 * its NUL bytes gives argv[1..] (argv[0] is "vlrun"); each argument also goes through
 * vl_parse_size. A parse that succeeds must leave the options inside the ranges --help states;
 * one that fails leaves a message. vl_options_free releases everything (leak detection).
 * Leaves out: the subcommands (tokenize, preprocess, synth, logits): their option parsing is
 * either static (cli/inspect_cmds.c's parse_sub) or runs the command as soon as it succeeds
 * (vl_cmd_logits, vl_cmd_synth), so it has no entry point that only parses. */
#include "cli/cli.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 256

static void check_options(const vl_options *o) {
    FUZZ_CHECK(o->request.max_tokens >= 0 && o->request.max_tokens <= (1 << 24), "max_tokens %d",
               o->request.max_tokens);
    FUZZ_CHECK(o->engine.chunk >= 0 && o->engine.chunk <= (1 << 20), "chunk %d", o->engine.chunk);
    FUZZ_CHECK(o->request.top_k >= 0, "top_k %d", o->request.top_k);
    FUZZ_CHECK(o->request.top_p > 0.0f && o->request.top_p <= 1.0f, "top_p %g",
               (double)o->request.top_p);
    FUZZ_CHECK(isfinite(o->request.temperature) && o->request.temperature >= 0.0f, "temperature %g",
               (double)o->request.temperature);
    FUZZ_CHECK(o->engine.mem_budget >= 0, "mem_budget %lld", (long long)o->engine.mem_budget);
    FUZZ_CHECK(!(o->engine.kv_int8 && o->engine.attn_naive),
               "--kv int8 with --attn naive accepted");
    FUZZ_CHECK(o->n_image_args >= 0 && (o->n_image_args == 0 || o->images), "%d images",
               o->n_image_args);
    FUZZ_CHECK(!(o->request.stop_at_eos && o->request.ignore_eos),
               "--stop-at-eos with --ignore-eos accepted");
    FUZZ_CHECK(o->engine.min_pixels >= 0 && o->engine.min_pixels <= 12845056 &&
                   o->engine.max_pixels >= 0 && o->engine.max_pixels <= 12845056 &&
                   !(o->engine.min_pixels && o->engine.max_pixels &&
                     o->engine.min_pixels > o->engine.max_pixels),
               "pixels %lld..%lld", (long long)o->engine.min_pixels,
               (long long)o->engine.max_pixels);
    FUZZ_CHECK(o->request.repetition_penalty == 0.0f || (isfinite(o->request.repetition_penalty) &&
                                                         o->request.repetition_penalty > 0.0f),
               "repetition_penalty %g", (double)o->request.repetition_penalty);
    FUZZ_CHECK(o->ctx >= 0, "ctx %d", o->ctx);
    FUZZ_CHECK(o->request.images == o->images && o->request.n_images == o->n_image_args,
               "request images");
    for (int i = 0; i < o->n_image_args; i++)
        FUZZ_CHECK(o->images[i].path && o->images[i].repeat >= 1 && o->images[i].repeat <= 100000,
                   "image %d repeat %d", i, o->images[i].repeat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    char *buf = fuzz_strndup(data, size); /* NUL-terminated: the last piece ends too */
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "vlrun";
    for (size_t i = 0; i <= size && argc <= MAX_ARGS; i += strlen(buf + i) + 1)
        argv[argc++] = buf + i;
    argv[argc] = NULL;
    for (int i = 1; i < argc; i++) {
        int64_t bytes = vl_parse_size(argv[i]);
        FUZZ_CHECK(bytes >= -1, "vl_parse_size(\"%s\") = %lld", argv[i], (long long)bytes);
    }
    vl_options o;
    vl_options_default(&o);
    int rc = vl_options_parse(&o, argc, argv);
    fuzz_check_error(rc, "vl_options_parse");
    /* --help / --version end the parse where they stand: nothing runs, nothing is checked */
    if (rc == 0 && !o.show_help && !o.show_version) check_options(&o);
    vl_options_free(&o);
    free(buf);
    vl_error_clear();
    return 0;
}
