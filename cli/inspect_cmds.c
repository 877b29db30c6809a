/* inspect_cmds.c: the small subcommands: `vlrun tokenize` (token ids of a text, space separated)
 * and `vlrun preprocess` (an image's grid and resized size; float32 pixel values to a file). */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Options shared by the subcommands: --model DIR, --tokenizer FILE, --out FILE, one positional
 * (after `--`, anything is the positional: `vlrun tokenize -- --text`). */
typedef struct {
    const char *model, *tokenizer, *out, *arg;
    int help, version; /* --help / -h, --version: print that, do nothing else */
} sub_opts;

static int parse_sub(const char *cmd, int argc, char **argv, int allow_tok, int allow_out,
                     sub_opts *so) {
    memset(so, 0, sizeof *so);
    so->model = getenv("VLRUN_MODEL");
    if (so->model && !so->model[0]) so->model = NULL;
    int options_end = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        /* "--x" and -h; a single '-' with more after it stays text ("-5") */
        int is_opt = !options_end && ((a[0] == '-' && a[1] == '-') || strcmp(a, "-h") == 0);
        int takes =
            is_opt && (strcmp(a, "--model") == 0 || (allow_tok && strcmp(a, "--tokenizer") == 0) ||
                       (allow_out && strcmp(a, "--out") == 0));
        if (takes) {
            if (!v) return vl_error_set("vlrun %s: option %s needs a value", cmd, a);
            if (a[2] == 'm')
                so->model = v;
            else if (a[2] == 't')
                so->tokenizer = v;
            else
                so->out = v;
            i++;
        } else if (is_opt && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            so->help = 1;
            return 0;
        } else if (is_opt && strcmp(a, "--version") == 0) {
            so->version = 1;
            return 0;
        } else if (is_opt && strcmp(a, "--") == 0) {
            options_end = 1;
        } else if (is_opt) {
            return vl_error_set("vlrun %s: unknown option %s (see vlrun %s --help)", cmd, a, cmd);
        } else if (so->arg) {
            return vl_error_set("vlrun %s: one argument expected, got '%s' and '%s'", cmd, so->arg,
                                a);
        } else {
            so->arg = a;
        }
    }
    if (!so->arg) return vl_error_set("vlrun %s: missing argument (see vlrun %s --help)", cmd, cmd);
    return 0;
}

/* --help / --version of a subcommand: printed on stdout. Returns 1 when one was asked for. */
static int sub_info(const sub_opts *so, const char *usage) {
    if (so->version)
        vl_version_print(stdout);
    else if (so->help)
        fputs(usage, stdout);
    return so->help || so->version;
}

static const char tokenize_usage[] =
    "usage: vlrun tokenize [--model DIR | --tokenizer FILE] [--] TEXT\n"
    "  the token ids of TEXT (no chat template), space separated, on stdout\n"
    "  --model DIR       use DIR/tokenizer.json (default: $VLRUN_MODEL)\n"
    "  --tokenizer FILE  a tokenizer.json\n"
    "  --                what follows is TEXT, even when it starts with '-'\n"
    "  -h, --help        this text; --version: vlrun's version\n";

static const char preprocess_usage[] =
    "usage: vlrun preprocess [--model DIR] [--min-pixels N] [--max-pixels N] IMAGE [--out FILE]\n"
    "  the image's patch grid (t h w), resized size (width height) and patch count on stdout\n"
    "  --model DIR  use DIR/preprocessor_config.json when present (default: $VLRUN_MODEL)\n"
    "  --out FILE   the pixel values, float32 [patches, 1176] little-endian\n"
    "  --min-pixels N, --max-pixels N  resized size bounds (over preprocessor_config.json)\n"
    "  -h, --help   this text; --version: vlrun's version\n";

int vl_cmd_tokenize(int argc, char **argv) {
    sub_opts so;
    if (parse_sub("tokenize", argc, argv, 1, 0, &so)) return -1;
    if (sub_info(&so, tokenize_usage)) return 0;
    char path[4200];
    const char *tp = so.tokenizer;
    if (!tp) {
        if (!so.model) return vl_error_set("vlrun tokenize: pass --tokenizer FILE or --model DIR");
        snprintf(path, sizeof path, "%s/tokenizer.json", so.model);
        tp = path;
    }
    vl_tokenizer *t;
    if (vl_tokenizer_load(&t, tp)) return -1;
    int32_t *ids = NULL;
    int n = 0;
    int rc = vl_tokenizer_encode(t, so.arg, &ids, &n);
    if (!rc) {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    vl_tokenizer_free(t);
    return rc;
}

/* preprocess's --min-pixels N / --max-pixels N, taken out of argv (the rest goes to
 * parse_sub); *kept gets the remaining arguments. */
static int take_pixel_options(int argc, char **argv, int64_t px[2], char **kept, int *n_kept) {
    px[0] = px[1] = 0;
    *n_kept = 0;
    for (int i = 0; i < argc; i++) {
        int which = strcmp(argv[i], "--min-pixels") == 0   ? 0
                    : strcmp(argv[i], "--max-pixels") == 0 ? 1
                                                           : -1;
        if (which < 0 || i < 2) {
            kept[(*n_kept)++] = argv[i];
            continue;
        }
        if (vl_parse_pixels(argv[i], i + 1 < argc ? argv[i + 1] : NULL, &px[which])) return -1;
        i++;
    }
    if (px[0] && px[1] && px[0] > px[1])
        return vl_error_set("--min-pixels %lld is larger than --max-pixels %lld; expected min <= "
                            "max",
                            (long long)px[0], (long long)px[1]);
    return 0;
}

int vl_cmd_preprocess(int argc, char **argv) {
    sub_opts so;
    int64_t pixels[2];
    char **kept = malloc((size_t)(argc + 1) * sizeof *kept);
    int n_kept = 0;
    if (!kept) return vl_error_set("out of host memory");
    int refused = take_pixel_options(argc, argv, pixels, kept, &n_kept) ||
                  parse_sub("preprocess", n_kept, kept, 0, 1, &so);
    free(kept); /* so's strings point into argv, not into kept */
    if (refused) return -1;
    if (sub_info(&so, preprocess_usage)) return 0;
    vl_preproc_config pre;
    vl_preproc_config_default(&pre);
    if (so.model) {
        char path[4200];
        snprintf(path, sizeof path, "%s/preprocessor_config.json", so.model);
        struct stat st; /* present at all: a FIFO there is refused by the loader, not opened */
        if (stat(path, &st) == 0 && vl_preproc_config_load(&pre, path)) return -1;
    }
    if (vl_preproc_override_pixels(&pre, pixels[0], pixels[1])) return -1;
    vl_image img;
    if (vl_image_load(&img, so.arg)) return -1;
    vl_pixels px;
    int rc = vl_preprocess_image(&img, &pre, &px);
    vl_callbacks notice = {.on_notice = vl_cli_notice};
    if (!rc) vl_image_notice(so.arg, &img, &px, &pre, &notice);
    vl_image_free(&img);
    if (rc) return -1;
    printf("grid %d %d %d\nresized %d %d\npatches %lld %d\n", px.grid_t, px.grid_h, px.grid_w,
           px.resized_w, px.resized_h, (long long)px.n_patches, px.patch_dim);
    if (vl_stdout_flush()) { /* before the file: a failed run leaves no output behind */
        vl_pixels_free(&px);
        return -1;
    }
    if (so.out) {
        size_t bytes = (size_t)px.n_patches * (size_t)px.patch_dim * sizeof(float);
        if (vl_write_whole_file(so.out, "vlrun preprocess --out", px.pixels, bytes)) {
            vl_pixels_free(&px);
            return -1;
        }
    }
    vl_pixels_free(&px);
    return 0;
}
