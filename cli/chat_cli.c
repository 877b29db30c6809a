/* chat_cli.c: `vlrun --chat [--model DIR] [IMAGE [xN]...] [OPTIONS]`, an interactive session.
 *
 * One message a line on stdin (a line ending in a backslash goes on with the next one, the
 * backslash becoming a newline); "> " is shown when stdin is a terminal, nothing otherwise, so a
 * session can be scripted. Images on the command line go into the first message; /image PATH
 * attaches one to the next message (decoded and preprocessed at once; a bad file is one error
 * line and the session goes on). Answers stream to stdout; the memory plan (once) and each
 * turn's timings go to stderr unless --quiet. EOF or /quit ends with exit status 0. */
#include "cli/cli.h"

#include <stdlib.h>
#include <unistd.h>

static const char k_help[] =
    "commands:\n"
    "  /image PATH   attach an image to your next message (several: one /image each)\n"
    "  /clear        forget the conversation and the attached images (also /reset)\n"
    "  /tokens       print the conversation's token ids (what the model has seen)\n"
    "  /help         this text\n"
    "  /quit         end the session (also /exit, or end of input)\n"
    "a line ending in \\ goes on with the next line; an empty line sends nothing\n";

/* Images attached to the next message: each file decoded once (uniq, owned), list holds one
 * view per image of the message (IMAGE xN: N views of one, encoded once). */
typedef struct {
    vl_pixels *uniq, *list;
    int *src;
    int n_uniq, n, cap_uniq, cap;
} image_list;

static void images_clear(image_list *l) {
    for (int i = 0; i < l->n_uniq; i++) vl_pixels_free(&l->uniq[i]);
    l->n_uniq = l->n = 0;
}

static void images_free(image_list *l) {
    images_clear(l);
    free(l->uniq);
    free(l->list);
    free(l->src);
    memset(l, 0, sizeof *l);
}

static int images_reserve(image_list *l, int more) {
    if (l->n_uniq + 1 > l->cap_uniq) {
        int cap = l->cap_uniq * 2 + 4;
        vl_pixels *t = realloc(l->uniq, (size_t)cap * sizeof *t);
        if (!t) return vl_error_set("out of host memory");
        l->uniq = t;
        l->cap_uniq = cap;
    }
    if (more > 100000 - l->n) return vl_error_set("too many images (at most 100000 a message)");
    if (l->n + more > l->cap) {
        int cap = (l->n + more) * 2;
        vl_pixels *t = realloc(l->list, (size_t)cap * sizeof *t);
        if (t) l->list = t;
        int *u = t ? realloc(l->src, (size_t)cap * sizeof *u) : NULL;
        if (!u) return vl_error_set("out of host memory");
        l->src = u;
        l->cap = cap;
    }
    return 0;
}

/* Decode and preprocess now, so that a bad file is reported at once; `repeat` views of it. */
static int images_add(image_list *l, const char *path, int repeat, const vl_model *m,
                      int64_t max_patches) {
    if (images_reserve(l, repeat)) return -1;
    vl_image img;
    if (vl_image_load(&img, path)) return -1;
    vl_pixels px;
    int rc = vl_preprocess_image(&img, &m->pre, &px);
    vl_image_free(&img);
    if (rc) return -1;
    if (px.n_patches > max_patches) {
        vl_pixels_free(&px);
        return vl_error_set("%s: %lld patches, more than the %lld this session was planned for",
                            path, (long long)px.n_patches, (long long)max_patches);
    }
    l->uniq[l->n_uniq] = px;
    for (int r = 0; r < repeat; r++, l->n++) {
        l->list[l->n] = px; /* a view: pixels owned by uniq */
        l->src[l->n] = l->n_uniq;
    }
    l->n_uniq++;
    return 0;
}

/* What the commands print (/help, /tokens) on stdout; a failed write is remembered. */
typedef struct {
    int write_failed;
} printer;

static void print_bytes(printer *pr, const char *s, size_t n) {
    if (n && (fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0)) pr->write_failed = 1;
}

/* Each answer token through vl_answer (engine/answer.c): decoded as the one-shot run decodes
 * it and streamed to stdout; a failed write ends the turn with the error set. */
static int answer_token(void *ctx, int32_t id) {
    return vl_answer_add(ctx, id);
}

static const char *stop_name(vl_chat_stop s) {
    return s == VL_CHAT_STOP_EOS          ? "end of turn"
           : s == VL_CHAT_STOP_MAX_TOKENS ? "--max-tokens"
                                          : "context full";
}

/* One message and its streamed answer. Returns 0, 1 (not taken: error set) or -1. */
static int send_message(vl_chat *c, const char *text, vl_pixels *px, const int *src, int n_px,
                        int quiet, printer *pr) {
    vl_chat_stats st;
    vl_answer ans;
    vl_answer_init(&ans, c->m, 0, vl_cli_stream_text, NULL); /* end-of-turn tokens never reach it */
    int rc = vl_chat_turn(c, text, px, src, n_px, answer_token, &ans, &st);
    if (!rc && vl_answer_finish(&ans)) rc = -1;
    vl_answer_free(&ans);
    if (rc) return rc;
    print_bytes(pr, "\n", 1);
    if (pr->write_failed) return vl_error_set("writing the answer to standard output failed");
    if (!quiet) {
        double pf = st.prefill_s > 0 ? st.prefill_tokens / st.prefill_s : 0;
        double dt =
            st.decode_s > 0 && st.answer_tokens > 1 ? (st.answer_tokens - 1) / st.decode_s : 0;
        char vision[48] = "";
        if (n_px > 0) snprintf(vision, sizeof vision, ", vision %.3f s", st.vision_s);
        fprintf(stderr,
                "[turn %d: prefill %d tokens in %.3f s (%.0f tok/s%s) | answer %d tokens, %.1f "
                "tok/s | stop: %s | cache %lld/%lld tokens]\n",
                c->turns, st.prefill_tokens, st.prefill_s, pf, vision, st.answer_tokens, dt,
                stop_name(st.stop), (long long)c->s.seq.n_past, (long long)c->s.seq.max_ctx);
    }
    return 0;
}

static void print_tokens(const vl_chat *c, printer *pr) {
    for (int i = 0; i < c->n_conv; i++) {
        char num[16];
        int k = snprintf(num, sizeof num, i ? " %d" : "%d", c->conv[i]);
        print_bytes(pr, num, (size_t)k);
    }
    print_bytes(pr, "\n", 1);
}

/* A message larger than this is refused (the rest of it is skipped), as --prompt-file does. */
#define CHAT_MAX_MESSAGE (64u << 20)

/* One line of stdin without its end of line, at most CHAT_MAX_MESSAGE bytes kept (the rest is
 * read and dropped: *too_long). Returns its length, or -1 at end of input with nothing read. */
static long read_line(char **buf, size_t *cap, int *too_long, int *has_nul) {
    size_t n = 0;
    int ch = EOF;
    while ((ch = getc(stdin)) != EOF && ch != '\n') {
        if (n + 2 > *cap) {
            if (*cap >= CHAT_MAX_MESSAGE) {
                *too_long = 1;
                continue;
            }
            size_t nc = *cap ? *cap * 2 : 256;
            char *t = realloc(*buf, nc);
            if (!t) {
                *too_long = 1;
                continue;
            }
            *buf = t;
            *cap = nc;
        }
        *has_nul |= ch == 0;
        (*buf)[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) return -1;
    while (n > 0 && (*buf)[n - 1] == '\r') n--;
    (*buf)[n] = 0;
    return (long)n;
}

/* Read one message: lines joined while they end in a backslash. NULL at end of input. A message
 * with a NUL byte or over CHAT_MAX_MESSAGE comes back with *refused set (an error to report). */
static char *read_message(int interactive, char **line, size_t *line_cap, const char **refused) {
    char *msg = NULL;
    size_t len = 0;
    int too_long = 0, has_nul = 0;
    *refused = NULL;
    for (int first = 1;; first = 0) {
        if (interactive) {
            fputs(first ? "> " : "... ", stdout);
            fflush(stdout);
        }
        long n = read_line(line, line_cap, &too_long, &has_nul);
        if (n < 0) break;
        int more = n > 0 && (*line)[n - 1] == '\\';
        if (len + (size_t)n > CHAT_MAX_MESSAGE) too_long = 1;
        if (!too_long) {
            char *t = realloc(msg, len + (size_t)n + 2);
            if (!t) {
                too_long = 1;
            } else {
                msg = t;
                memcpy(msg + len, *line, (size_t)n);
                len += (size_t)n;
                if (more) msg[len - 1] = '\n';
                msg[len] = 0;
            }
        }
        if (!more) break;
    }
    if (too_long || has_nul) {
        *refused = too_long ? "the message is longer than 64 MiB; send it in parts"
                            : "the message holds a NUL byte; send text";
        if (!msg) msg = calloc(1, 1);
        return msg;
    }
    if (!msg && interactive) fputs("\n", stdout);
    return msg; /* the last message when input ends inside a continuation */
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

/* The /word of a command line and its argument (leading and trailing blanks dropped). */
static int is_command(const char *msg, const char *name, const char **arg) {
    size_t n = strlen(name);
    if (strncmp(msg, name, n) != 0 || (msg[n] && msg[n] != ' ' && msg[n] != '\t')) return 0;
    const char *a = msg + n;
    while (*a == ' ' || *a == '\t') a++;
    if (arg) *arg = a;
    return 1;
}

typedef struct {
    vl_chat *c;
    const vl_model *m;
    image_list pending;
    int quiet;
    printer pr;
} session_ui;

static void report_error(void) {
    fprintf(stderr, "error: %s\n", vl_error_get());
}

/* A command line (starting with '/'): 0 go on, 1 quit, -1 failed. */
static int run_command(session_ui *ui, char *msg) {
    const char *arg;
    if (is_command(msg, "/quit", NULL) || is_command(msg, "/exit", NULL)) return 1;
    if (is_command(msg, "/help", NULL)) {
        print_bytes(&ui->pr, k_help, strlen(k_help));
    } else if (is_command(msg, "/clear", NULL) || is_command(msg, "/reset", NULL)) {
        vl_chat_clear(ui->c);
        images_clear(&ui->pending);
        if (!ui->quiet) fprintf(stderr, "[conversation cleared]\n");
    } else if (is_command(msg, "/tokens", NULL)) {
        print_tokens(ui->c, &ui->pr);
    } else if (is_command(msg, "/image", &arg)) {
        size_t n = strlen(arg);
        while (n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t')) msg[arg - msg + --n] = 0;
        if (!arg[0]) {
            fprintf(stderr, "error: /image needs a path: /image PATH\n");
        } else if (images_add(&ui->pending, arg, 1, ui->m, ui->c->shape.max_patches)) {
            fprintf(stderr, "error: /image %s: %s\n", arg, vl_error_get());
        } else if (!ui->quiet) {
            const vl_pixels *px = &ui->pending.list[ui->pending.n - 1];
            int64_t m2 = (int64_t)ui->m->cfg.merge * ui->m->cfg.merge;
            fprintf(stderr,
                    "[image %s: resized to %dx%d, %lld tokens; %d attached to the next "
                    "message]\n",
                    arg, px->resized_w, px->resized_h, (long long)(px->n_patches / m2),
                    ui->pending.n);
        }
    } else {
        fprintf(stderr, "error: unknown command '%s' (/help lists them)\n", msg);
    }
    return ui->pr.write_failed ? vl_error_set("writing to standard output failed") : 0;
}

static int chat_loop(session_ui *ui) {
    int interactive = isatty(STDIN_FILENO);
    char *line = NULL, *msg = NULL;
    size_t line_cap = 0;
    int rc = 0;
    const char *refused = NULL;
    while (rc == 0 && (msg = read_message(interactive, &line, &line_cap, &refused))) {
        vl_error_clear(); /* errors before this message were reported */
        if (refused) {
            vl_error_set("%s", refused);
            report_error(); /* the session goes on */
        } else if (msg[0] == '/') {
            rc = run_command(ui, msg);
        } else if (!is_blank(msg)) {
            int r = send_message(ui->c, msg, ui->pending.list, ui->pending.src, ui->pending.n,
                                 ui->quiet, &ui->pr);
            images_clear(&ui->pending); /* sent, or dropped with a message that was not taken */
            if (r > 0) report_error();
            rc = r < 0 ? -1 : 0;
        }
        free(msg);
        msg = NULL;
    }
    free(msg);
    free(line);
    return rc < 0 ? -1 : 0;
}

/* The largest image the preprocessor lets through: smart_resize keeps h * w <= max_pixels with
 * both sides multiples of patch * merge. */
static int64_t max_image_patches(const vl_preproc_config *pre) {
    int64_t f = (int64_t)pre->patch * pre->merge;
    return pre->max_pixels / (f * f) * pre->merge * pre->merge;
}

static int refuse_options(const vl_options *o) {
    if (o->json) return vl_error_set("--json is not available with --chat: answers go to stdout");
    if (o->dump_logits) return vl_error_set("--dump-logits is not available with --chat");
    if (o->request.assistant_prefix)
        return vl_error_set("--assistant-prefix is not available with --chat: each answer is the "
                            "model's own");
    if (o->engine.attn_naive)
        return vl_error_set("--attn naive is not available with --chat: its score matrix for "
                            "the largest image the session allows would not fit");
    return 0;
}

/* The session's plan, once, on stderr; --mem-budget applies to it. */
static int plan_session(vl_engine *e, const vl_options *o, const vl_chat_shape *sh) {
    const vl_model *m = &e->m;
    const vl_backend *be = e->be;
    vl_mem_plan plan;
    vl_chat_plan(e, &o->request, sh, &plan);
    if (o->engine.mem_budget > 0 && plan.total > (size_t)o->engine.mem_budget)
        return vl_budget_error(&plan, o->engine.mem_budget,
                               "use a smaller --ctx, --quant nf4 or --kv int8");
    if (o->quiet) return 0;
    int64_t m2 = (int64_t)m->cfg.merge * m->cfg.merge;
    char answers[64];
    if (sh->max_answer > 0)
        snprintf(answers, sizeof answers, "at most %d tokens", sh->max_answer);
    else
        snprintf(answers, sizeof answers, "until end of turn");
    fprintf(stderr,
            "chat: context %lld tokens, answers %s, images up to %lld pixels (%lld tokens), "
            "%s backend\n",
            (long long)sh->ctx, answers, (long long)m->pre.max_pixels,
            (long long)(sh->max_patches / m2), be->name);
    vl_plan_print(stderr, &plan);
    if (o->engine.random_weights)
        fprintf(stderr, "note: --random-weights: the answers mean nothing\n");
    fprintf(stderr, "type /help for the commands\n");
    return 0;
}

static int chat_main(const vl_options *o) {
    int rc = -1;
    vl_engine *e = NULL;
    vl_chat c;
    session_ui ui;
    memset(&c, 0, sizeof c);
    memset(&ui, 0, sizeof ui);
    if (refuse_options(o) || !(e = vl_engine_open(&o->engine))) goto done;
    vl_model *m = &e->m;
    if (!m->tok) {
        vl_error_set("--chat needs a tokenizer: pass --tokenizer FILE (or --model DIR with a "
                     "tokenizer.json)");
        goto done;
    }
    /* The context: 4096 tokens unless --ctx, never past the model's positions (a position is at
     * most the token's index, so the cache then never outruns them). */
    vl_chat_shape sh;
    sh.ctx = o->ctx > 0 ? o->ctx : 4096;
    if (o->ctx == 0 && sh.ctx > m->cfg.max_positions) sh.ctx = m->cfg.max_positions;
    sh.max_answer = o->request.max_tokens; /* 0: not given */
    sh.chunk = o->engine.chunk; /* clamped to the context by vl_shape_chunk; auto: 2048 */
    sh.max_patches = max_image_patches(&m->pre);
    for (int i = 0; i < o->n_image_args; i++)
        if (images_add(&ui.pending, o->images[i].path, o->images[i].repeat, m, sh.max_patches))
            goto done;
    if (plan_session(e, o, &sh)) goto done;
    if (vl_engine_place_weights(e)) goto done;
    if (vl_chat_start(&c, e, &o->request, &sh)) goto done;
    ui.c = &c;
    ui.m = m;
    ui.quiet = o->quiet;
    rc = chat_loop(&ui);
done:
    images_free(&ui.pending);
    vl_chat_free(&c);
    vl_engine_close(e);
    return rc;
}

int vl_cmd_chat(int argc, char **argv) {
    vl_options o;
    vl_options_default(&o);
    int rc = vl_options_parse(&o, argc, argv);
    if (rc == 0) rc = chat_main(&o);
    vl_options_free(&o);
    return rc;
}
