/* run_cmd.c: `vlrun [OPTIONS] IMAGE [xN]...`: one request on a fresh engine, the answer
 * streamed to stdout, and the report (stderr, or one JSON object on stdout with --json).
 *
 *   argv -> engine configuration + request (options.c) -> prompt text -> engine (pipeline.c)
 *   -> vl_engine_run -> report.
 * Generated text streams to stdout (not with --json or --quiet). */
#include "cli/cli.h"

#include <stdlib.h>
#include <unistd.h>

/* on_last_logits: --dump-logits FILE, the float32 logits of the last prompt position. */
static int dump_logits(void *ctx, int64_t pos, const float *logits, int n) {
    (void)pos;
    return vl_write_whole_file((const char *)ctx, "--dump-logits", logits,
                               (size_t)n * sizeof(float));
}

static int run(vl_options *o) {
    int rc = -1;
    char *user_text = NULL;
    vl_engine *e = NULL;
    vl_result res;
    memset(&res, 0, sizeof res);
    vl_progress progress;

    if (vl_prompt_text_read(o, &user_text)) goto done;
    o->request.prompt = user_text;
    /* a --dump-logits path that will be refused is refused now, not after the run */
    if (o->dump_logits && vl_output_target_check(o->dump_logits, "--dump-logits")) goto done;
    e = vl_engine_open(&o->engine);
    if (!e) goto done;
    const int stream = !o->json && !o->quiet;
    vl_callbacks cb = {0};
    cb.ctx = (void *)o->dump_logits;
    cb.on_text = stream ? vl_cli_stream_text : NULL;
    cb.on_notice = o->quiet ? NULL : vl_cli_notice;
    cb.on_last_logits = o->dump_logits ? dump_logits : NULL;
    cb.progress = vl_progress_open(&progress, o->quiet); /* NULL unless stderr is a terminal */
    /* decode progress only where no streamed text goes to the terminal */
    cb.no_decode_progress = !(o->json || !isatty(STDOUT_FILENO));
    if (vl_engine_run(e, &o->request, &cb, &res)) goto done;
    if (stream) printf("\n");
    if (o->engine.random_weights)
        fprintf(stderr, "note: --random-weights: the generated text means nothing\n");
    if (o->json)
        vl_report_json(e, o, &res);
    else
        vl_report_text(e, o, &res);
    rc = 0;
done:
    vl_result_free(&res);
    vl_engine_close(e);
    free(user_text);
    return rc;
}

int vl_cmd_run(int argc, char **argv) {
    vl_options o;
    vl_options_default(&o);
    if (vl_options_parse(&o, argc, argv)) {
        vl_options_free(&o);
        return -1;
    }
    if (o.show_help || o.show_version) {
        o.show_help ? vl_usage(stdout) : vl_version_print(stdout);
        vl_options_free(&o);
        return 0;
    }
    if (o.chat) { /* the chat parses again with its own defaults (no --max-tokens: no cap) */
        vl_options_free(&o);
        return vl_cmd_chat(argc, argv);
    }
    if (o.n_image_args == 0) {
        vl_options_free(&o);
        return vl_error_set("no image given: vlrun [OPTIONS] IMAGE [xN] ... (see vlrun --help)");
    }
    int rc = run(&o);
    vl_options_free(&o);
    return rc;
}
