/* commands.c: the small subcommands: `vlrun tokenize` (token ids of a text, space separated)
 * and `vlrun preprocess` (an image's grid and resized size; float32 pixel values to a file). */
#include "engine/engine.h"

#include <stdlib.h>
#include <sys/stat.h>

/* Options shared by the subcommands: --model DIR, --tokenizer FILE, --out FILE, one positional. */
typedef struct {
    const char *model, *tokenizer, *out, *arg;
} sub_opts;

static int parse_sub(const char *cmd, int argc, char **argv, int allow_tok, int allow_out,
                     sub_opts *so) {
    memset(so, 0, sizeof *so);
    so->model = getenv("VLRUN_MODEL");
    if (so->model && !so->model[0]) so->model = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = strcmp(a, "--model") == 0 || (allow_tok && strcmp(a, "--tokenizer") == 0) ||
                    (allow_out && strcmp(a, "--out") == 0);
        if (takes) {
            if (!v) return vl_error_set("vlrun %s: option %s needs a value", cmd, a);
            if (a[2] == 'm') so->model = v;
            else if (a[2] == 't') so->tokenizer = v;
            else so->out = v;
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            return vl_error_set("vlrun %s: unknown option %s (see vlrun --help)", cmd, a);
        } else if (so->arg) {
            return vl_error_set("vlrun %s: one argument expected, got '%s' and '%s'", cmd,
                                so->arg, a);
        } else {
            so->arg = a;
        }
    }
    if (!so->arg) return vl_error_set("vlrun %s: missing argument (see vlrun --help)", cmd);
    return 0;
}

int vl_cmd_tokenize(int argc, char **argv) {
    sub_opts so;
    if (parse_sub("tokenize", argc, argv, 1, 0, &so)) return -1;
    char path[4200];
    const char *tp = so.tokenizer;
    if (!tp) {
        if (!so.model)
            return vl_error_set("vlrun tokenize: pass --tokenizer FILE or --model DIR");
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

int vl_cmd_preprocess(int argc, char **argv) {
    sub_opts so;
    if (parse_sub("preprocess", argc, argv, 0, 1, &so)) return -1;
    vl_preproc_config pre;
    vl_preproc_config_default(&pre);
    if (so.model) {
        char path[4200];
        snprintf(path, sizeof path, "%s/preprocessor_config.json", so.model);
        struct stat st; /* present at all: a FIFO there is refused by the loader, not opened */
        if (stat(path, &st) == 0 && vl_preproc_config_load(&pre, path)) return -1;
    }
    vl_image img;
    if (vl_image_load(&img, so.arg)) return -1;
    vl_pixels px;
    int rc = vl_preprocess_image(&img, &pre, &px);
    vl_image_free(&img);
    if (rc) return -1;
    printf("grid %d %d %d\nresized %d %d\npatches %lld %d\n", px.grid_t, px.grid_h, px.grid_w,
           px.resized_w, px.resized_h, (long long)px.n_patches, px.patch_dim);
    if (so.out) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", so.out);
        FILE *f = vl_create_fresh(tmp, "vlrun preprocess --out");
        size_t n = (size_t)px.n_patches * (size_t)px.patch_dim;
        int bad = !f || fwrite(px.pixels, sizeof(float), n, f) != n;
        if (f) bad |= fclose(f) != 0;
        if (bad || rename(tmp, so.out) != 0) {
            remove(tmp);
            vl_pixels_free(&px);
            return vl_error_set("vlrun preprocess: cannot write %s", so.out);
        }
    }
    vl_pixels_free(&px);
    return 0;
}
