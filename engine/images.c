/* images.c: the request's images: every distinct path decoded and preprocessed once, and the
 * per-image list the prompt uses, where IMAGE xN becomes N views of the same pixels (image_src
 * tells which: the vision encoder then runs once per distinct image). Used by the run and logits
 * commands. */
#include "engine/engine.h"

#include <stdlib.h>

void vl_image_set_free(vl_image_set *is) {
    for (int i = 0; i < is->n_uniq; i++) vl_pixels_free(&is->uniq[i]);
    free(is->uniq);
    free(is->list);
    free(is->src);
    free(is->orig_w);
    free(is->orig_h);
    memset(is, 0, sizeof *is);
}

int vl_image_set_load(vl_image_set *is, const vl_options *o, const vl_preproc_config *pre) {
    memset(is, 0, sizeof *is);
    int n = 0;
    for (int i = 0; i < o->n_image_args; i++) {
        if (o->images[i].repeat > 100000 - n)
            return vl_error_set("too many images (at most 100000 per request)");
        n += o->images[i].repeat;
    }
    if (n < 1 || o->n_image_args < 1)
        return vl_error_set("no image given: vlrun [OPTIONS] IMAGE [xN] ... (see vlrun --help)");
    is->uniq = calloc((size_t)o->n_image_args, sizeof *is->uniq);
    is->list = calloc((size_t)n, sizeof *is->list);
    is->src = calloc((size_t)n, sizeof *is->src);
    is->orig_w = calloc((size_t)o->n_image_args, sizeof *is->orig_w);
    is->orig_h = calloc((size_t)o->n_image_args, sizeof *is->orig_h);
    if (!is->uniq || !is->list || !is->src || !is->orig_w || !is->orig_h)
        return vl_error_set("out of host memory");
    for (int i = 0; i < o->n_image_args; i++) {
        vl_image img;
        if (vl_image_load(&img, o->images[i].path)) return -1;
        is->orig_w[i] = img.w;
        is->orig_h[i] = img.h;
        int rc = vl_preprocess_image(&img, pre, &is->uniq[i]);
        vl_image_free(&img);
        if (rc) return -1;
        is->n_uniq = i + 1;
        for (int r = 0; r < o->images[i].repeat; r++, is->n_list++) {
            is->list[is->n_list] = is->uniq[i]; /* a view: pixels owned by uniq[i] */
            is->src[is->n_list] = i;
        }
    }
    return 0;
}
