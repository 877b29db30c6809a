/* cli.h: the vlrun command line (cli/): argv mapped onto an engine configuration and a
 * request (engine/vlrun.h), the commands, the reports. Nothing in engine/ reads vl_options;
 * the command-line contract is docs/cli.md. */
#ifndef VL_CLI_H
#define VL_CLI_H

#include "engine/engine.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options (cli/options.c) ------------------------------------------------------------- */

/* The run command's argv: engine and request take what they mean; the rest is the command
 * line's own (output, interaction, where the prompt comes from). */
typedef struct {
    vl_engine_config engine; /* --model, --backend, --quant, --kv, --chunk, --mem-budget, ... */
    vl_request request;      /* the images, --prompt, --system, --max-tokens, sampling */
    const char *prompt_file; /* --prompt-file FILE ("-": standard input) */
    int json;                /* --json */
    const char *dump_logits; /* --dump-logits FILE */
    int chat;                /* --chat: interactive session (cli/chat_cli.c) */
    int ctx;                 /* --ctx N: the chat's KV cache in tokens, 0 = default */
    int quiet;               /* --quiet: no streamed text on stdout, no notices */
    vl_image_arg *images;    /* request.images points here */
    int n_image_args;
    int show_help;    /* --help / -h: print the usage and run nothing */
    int show_version; /* --version: print the version and run nothing */
} vl_options;

void vl_options_default(vl_options *o);
/* Parse the run command's argv (argv[0] is the program). Returns 0, or -1 with the error set. */
int vl_options_parse(vl_options *o, int argc, char **argv);
void vl_options_free(vl_options *o);
/* 1 when run option `a` takes a value (--model, --prompt, ...): for the commands that pass
 * run options through (logits, plan, sweep). */
int vl_option_takes_value(const char *a);
/* --max-tokens, or 512 where a fixed length is planned without it (plan, sweep). */
int vl_options_max_tokens(const vl_options *o);
/* on_text for the commands: the piece to stdout, flushed (a failed write: -1, error set). */
int vl_cli_stream_text(void *ctx, const char *piece, size_t len);
/* on_notice for the commands: the line on stderr. */
void vl_cli_notice(void *ctx, const char *line);
void vl_usage(FILE *f);
/* "24G", "800M", "1.5G", "1048576" -> bytes; -1 when malformed. */
int64_t vl_parse_size(const char *s);

/* The user's text (cli/prompt_text.c): --prompt, or --prompt-file FILE, or standard input
 * for "-"; checked to be UTF-8 without NUL. *text is malloc'ed. */
int vl_prompt_text_read(const vl_options *o, char **text);

/* ---- capacity planning without a device (cli/gpu_table.c, cli/plan_input.c, cli/plan_cmd.c,
 * cli/sweep_cmd.c, cli/svg_plot.c) --------------------------------------------------------- */

/* A card `--gpu NAME` knows: nvidia-smi's memory.total, and cudaMemGetInfo's total where we
 * measured it (0: nvidia-smi's less the driver reserve measured on the H100). */
typedef struct {
    const char *name;    /* "A10", "L4", "A100-40G", "A100-80G", "H100" */
    const char *product; /* as nvidia-smi names it */
    int smi_total_mib;
    int cuda_total_mib;
} vl_gpu_card;
const vl_gpu_card *vl_gpu_cards(int *n);
const vl_gpu_card *vl_gpu_find(const char *name); /* NULL when unknown */
int vl_gpu_driver_reserve_mib(void);              /* nvidia-smi total - cudaMemGetInfo total */

/* What `--gpu A10|24G` means for a plan: bytes a run may use in all (context included). */
typedef struct {
    char label[64];
    size_t total;            /* cudaMemGetInfo's total for a card, or the size given */
    const vl_gpu_card *card; /* NULL for a plain size */
    int measured;            /* the card's total was measured (H100) */
} vl_gpu_budget;
int vl_gpu_budget_parse(const char *arg, vl_gpu_budget *out);

/* The request a plan is made for, without weights or a device: the config, the prompt's text
 * tokens (counted with the tokenizer when there is one, else an upper bound), the requested
 * images and the page size used for "how many fit" (--image-size, else the last image). */
typedef struct {
    vl_config cfg;
    char model_name[256];
    int64_t text_tokens; /* every prompt token but the images' pads and markers */
    int text_exact;      /* 1: counted with the tokenizer */
    vl_plan_image *imgs; /* the requested images, then the page as the last entry */
    int n_requested;     /* images given (IMAGE xN counted N times) */
    int page_w, page_h;  /* the page before and after smart_resize */
    int page_rw, page_rh;
} vl_plan_input;
/* o: run options (--random-weights is implied: only the config is read); page_w/h > 0: the
 * --image-size page. */
int vl_plan_input_load(vl_plan_input *in, const vl_options *o, int page_w, int page_h);
void vl_plan_input_free(vl_plan_input *in);
/* The plan of the first k images (past the requested ones: pages) with weights `quant` and the
 * KV cache int8 or not; other settings from o. Planned in the layout the engine takes under
 * `budget` (0: none; vl_plan_choose): the largest prefill chunk unless --chunk names one, an int8
 * cache with its dequantized prefill layer unless only the layout without it fits. */
void vl_plan_input_plan(const vl_plan_input *in, const vl_options *o, const vl_backend_caps *be,
                        vl_quant quant, int kv_int8, int k, size_t budget, vl_mem_plan *out);
/* How many pages fit budget (memory) and the model's positions; *by_positions set when the
 * positions are the limit. */
int vl_plan_input_max_images(const vl_plan_input *in, const vl_options *o,
                             const vl_backend_caps *be, vl_quant quant, int kv_int8, size_t budget,
                             int *by_positions);

int vl_cmd_plan(int argc, char **argv);
int vl_cmd_sweep(int argc, char **argv);

/* A line plot as SVG (cli/svg_plot.c). Layout in user units: the plot area spans
 * [VL_SVG_LEFT, VL_SVG_WIDTH - VL_SVG_RIGHT] x [VL_SVG_TOP, VL_SVG_HEIGHT - VL_SVG_BOTTOM]. */
#define VL_SVG_WIDTH  900
#define VL_SVG_HEIGHT 560
#define VL_SVG_LEFT   90
#define VL_SVG_RIGHT  40
#define VL_SVG_TOP    70
#define VL_SVG_BOTTOM 70
typedef enum { VL_SVG_POINTS, VL_SVG_LINE, VL_SVG_HLINE } vl_svg_kind;
typedef struct {
    vl_svg_kind kind;
    const char *label;   /* legend text */
    const char *color;   /* "#1f77b4" */
    const double *x, *y; /* n points (HLINE: y[0] only) */
    int n;
} vl_svg_series;
typedef struct {
    const char *title, *subtitle, *x_label, *y_label;
    double x_min, x_max, y_min, y_max; /* axis ranges; x_max <= x_min: from the data */
    const vl_svg_series *series;
    int n_series;
} vl_svg_plot;
/* Ticks and ranges (from the data unless given), then the SVG text to f. */
int vl_svg_plot_write(FILE *f, const vl_svg_plot *p);

/* ---- commands (cli/run_cmd.c, cli/inspect_cmds.c, cli/synth_cmd.c, cli/logits_cmd.c) ------ */

int vl_cmd_run(int argc, char **argv);
int vl_cmd_tokenize(int argc, char **argv);
int vl_cmd_preprocess(int argc, char **argv);
int vl_cmd_synth(int argc, char **argv);
int vl_cmd_logits(int argc, char **argv);
/* Flush stdout; a failed write there (disk full, a closed stdout) becomes the error (one line
 * naming the reason) and -1, so that no command ends 0 with its output lost. */
int vl_stdout_flush(void);

/* The end-of-run report (cli/report.c): text on stderr, or one JSON object on stdout. */
void vl_report_text(const vl_engine *e, const vl_options *o, const vl_result *r);
void vl_report_json(const vl_engine *e, const vl_options *o, const vl_result *r);
/* vl_json_string (the text as a JSON literal) is in loader/loader.h. */

/* `vlrun --chat ...` (cli/chat_cli.c) */
int vl_cmd_chat(int argc, char **argv);

/* `vlrun serve ...`: the OpenAI-compatible server (cli/serve_cmd.c over server/) */
int vl_cmd_serve(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
