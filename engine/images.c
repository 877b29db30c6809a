/* images.c: the request's images: every distinct path decoded and preprocessed once, and the
 * per-image list the prompt uses (a file, or its bytes in memory: a server's upload), where IMAGE
 * xN becomes N views of the same pixels (image_src tells which: the vision encoder then runs once
 * per distinct image). Used by the run and logits commands. Also --min-pixels / --max-pixels over
 * the preprocessor config, and the notice for an image that becomes more than VL_NOTICE_TOKENS
 * tokens (stderr, so --json stays clean). */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>

#define CLASS_DEFAULT_MAX_PIXELS 1003520LL /* transformers' Qwen2-VL class default: 1280 tokens */

int vl_parse_pixels(const char *opt, const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < 1 || x > VL_MAX_PIXELS_OPTION)
        return vl_error_set("option %s: expected a pixel count in [1, %lld] (16384 * 28 * 28, "
                            "the largest the Qwen2-VL family uses), got '%s'",
                            opt, VL_MAX_PIXELS_OPTION, v ? v : "");
    *out = x;
    return 0;
}

int vl_preproc_override_pixels(vl_preproc_config *pre, int64_t min_pixels, int64_t max_pixels) {
    if (min_pixels) pre->min_pixels = min_pixels;
    if (max_pixels) pre->max_pixels = max_pixels;
    if (pre->min_pixels <= pre->max_pixels) return 0;
    return vl_error_set(
        "min_pixels %lld %s is larger than max_pixels %lld %s; pass %s", (long long)pre->min_pixels,
        min_pixels ? "(--min-pixels)" : "(preprocessor_config.json)", (long long)pre->max_pixels,
        max_pixels ? "(--max-pixels)" : "(preprocessor_config.json)",
        min_pixels ? "a smaller --min-pixels or a larger --max-pixels"
                   : "a larger --max-pixels or a smaller --min-pixels");
}

void vl_image_notice(const char *path, const vl_image *img, const vl_pixels *px,
                     const vl_preproc_config *pre, const vl_callbacks *cb) {
    if (!cb || !cb->on_notice) return;
    const int64_t merge2 = (int64_t)pre->merge * pre->merge;
    const int64_t tokens = px->n_patches / merge2;
    if (tokens <= VL_NOTICE_TOKENS) return;
    /* the suggestion: transformers' class default, and what it would give this image */
    int64_t max = CLASS_DEFAULT_MAX_PIXELS, min = pre->min_pixels < max ? pre->min_pixels : 3136;
    int factor = pre->patch * pre->merge, rh = 0, rw = 0;
    if (vl_smart_resize(img->h, img->w, factor, min, max, &rh, &rw)) return;
    const int64_t fewer = (int64_t)rh * rw / ((int64_t)pre->patch * pre->patch) / merge2;
    char extra[48] = "";
    if (min != pre->min_pixels) snprintf(extra, sizeof extra, " --min-pixels %lld", (long long)min);
    char line[4400];
    snprintf(line, sizeof line,
             "note: %s is %dx%d -> %dx%d, %lld tokens (more than %d); --max-pixels %lld%s would "
             "give %dx%d, %lld tokens",
             path, img->w, img->h, px->resized_w, px->resized_h, (long long)tokens,
             VL_NOTICE_TOKENS, (long long)max, extra, rw, rh, (long long)fewer);
    cb->on_notice(cb->ctx, line);
}

void vl_image_set_free(vl_image_set *is) {
    for (int i = 0; i < is->n_uniq; i++) vl_pixels_free(&is->uniq[i]);
    free(is->uniq);
    free(is->list);
    free(is->src);
    free(is->orig_w);
    free(is->orig_h);
    memset(is, 0, sizeof *is);
}

int vl_image_set_load(vl_image_set *is, const vl_image_arg *args, int n_args,
                      const vl_preproc_config *pre, const vl_callbacks *cb) {
    memset(is, 0, sizeof *is);
    int n = 0;
    for (int i = 0; i < n_args; i++) {
        if (args[i].repeat < 1 || args[i].repeat > 100000 - n)
            return vl_error_set("too many images (at most 100000 per request)");
        n += args[i].repeat;
    }
    if (n_args < 1) return 0; /* a text-only request (the command line asks for an image) */
    is->uniq = calloc((size_t)n_args, sizeof *is->uniq);
    is->list = calloc((size_t)n, sizeof *is->list);
    is->src = calloc((size_t)n, sizeof *is->src);
    is->orig_w = calloc((size_t)n_args, sizeof *is->orig_w);
    is->orig_h = calloc((size_t)n_args, sizeof *is->orig_h);
    if (!is->uniq || !is->list || !is->src || !is->orig_w || !is->orig_h)
        return vl_error_set("out of host memory");
    for (int i = 0; i < n_args; i++) {
        vl_image img;
        int lrc = args[i].data
                      ? vl_image_load_bytes(&img, args[i].path, args[i].data, args[i].data_len)
                      : vl_image_load(&img, args[i].path);
        if (lrc) return -1;
        is->orig_w[i] = img.w;
        is->orig_h[i] = img.h;
        int rc = vl_preprocess_image(&img, pre, &is->uniq[i]);
        if (!rc) vl_image_notice(args[i].path, &img, &is->uniq[i], pre, cb);
        vl_image_free(&img);
        if (rc) return -1;
        is->n_uniq = i + 1;
        for (int r = 0; r < args[i].repeat; r++, is->n_list++) {
            is->list[is->n_list] = is->uniq[i]; /* a view: pixels owned by uniq[i] */
            is->src[is->n_list] = i;
        }
    }
    return 0;
}
