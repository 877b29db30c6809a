/* preprocess.c: an RGB image to Qwen2-VL pixel_values, as transformers' Qwen2-VL image
 * processor (its PIL backend) computes them.
 *
 *   smart_resize    target size: multiples of patch*merge, pixel count within [min, max],
 *                   with Python's rounding (round() ties to even, floor/ceil on doubles)
 *   resize          PIL bicubic (resize.c), skipped when the size already fits
 *   normalize       as the transformers PIL backend: x * (1/255) in double, rounded to float,
 *                   then (v - mean) / std in float
 *   patches         the frame repeated temporal_patch times, cut into patch x patch squares
 *                   ordered by merge window (the 9-D permute of the reference processor)
 *
 * Leaves out: videos (grid_t > 1), the torchvision backend's fused normalisation (which can
 * differ by a float ulp), preprocessor options Qwen2-VL checkpoints do not use.
 */
#include "loader/loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ASPECT   200
#define RGB_CHANNELS 3

int vl_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                    int *out_w) {
    *out_h = *out_w = 0;
    if (h <= 0 || w <= 0) return vl_error_set("smart_resize: image size %dx%d has no pixels", w, h);
    if (factor <= 0 || min_pixels < 0 || max_pixels <= 0)
        return vl_error_set("smart_resize: bad parameters factor %d, min_pixels %lld, max_pixels "
                            "%lld (expected positive values); check preprocessor_config.json",
                            factor, (long long)min_pixels, (long long)max_pixels);
    int big = h > w ? h : w, small = h > w ? w : h;
    if ((int64_t)big > (int64_t)MAX_ASPECT * small)
        return vl_error_set("smart_resize: image %dx%d has aspect ratio %.1f, over the limit %d; "
                            "crop or pad it",
                            w, h, (double)big / small, MAX_ASPECT);

    /* Python's round() on a float: ties to even, which nearbyint() does in the default
     * rounding mode. Matters when a side is 14 mod 28. */
    double rh = nearbyint((double)h / factor) * factor;
    double rw = nearbyint((double)w / factor) * factor;
    double pixels = (double)h * (double)w; /* exact: < 2^53 */
    if (rh * rw > (double)max_pixels) {
        double beta = sqrt(pixels / (double)max_pixels);
        rh = floor((double)h / beta / factor) * factor;
        rw = floor((double)w / beta / factor) * factor;
        if (rh < factor) rh = factor;
        if (rw < factor) rw = factor;
    } else if (rh * rw < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / pixels);
        rh = ceil((double)h * beta / factor) * factor;
        rw = ceil((double)w * beta / factor) * factor;
    }
    /* All values above are integers far below 2^53, so the double products are exact. */
    if (rh < factor || rw < factor || rh * rw > (double)VL_IMAGE_MAX_PIXELS)
        return vl_error_set("smart_resize: image %dx%d would be resized to %.0fx%.0f (expected "
                            "1..%lld pixels in multiples of %d); check min_pixels %lld and "
                            "max_pixels %lld",
                            w, h, rw, rh, (long long)VL_IMAGE_MAX_PIXELS, factor,
                            (long long)min_pixels, (long long)max_pixels);
    *out_h = (int)rh;
    *out_w = (int)rw;
    return 0;
}

static int check_preproc_config(const vl_preproc_config *p) {
    if (p->patch < 1 || p->patch > 256 || p->merge < 1 || p->merge > 16 || p->temporal_patch < 1 ||
        p->temporal_patch > 16)
        return vl_error_set("preprocess: patch_size %d, merge_size %d, temporal_patch_size %d out "
                            "of range (expected 1..256, 1..16, 1..16); check "
                            "preprocessor_config.json",
                            p->patch, p->merge, p->temporal_patch);
    for (int c = 0; c < RGB_CHANNELS; c++)
        if (!(p->std[c] != 0.0f) || !isfinite(p->std[c]) || !isfinite(p->mean[c]))
            return vl_error_set("preprocess: image_mean/image_std channel %d is %g/%g (expected "
                                "finite values, std not 0); check preprocessor_config.json",
                                c, p->mean[c], p->std[c]);
    return 0;
}

/* The transformers PIL backend: rescale in float64, cast to float32, then normalize in float32
 * (mean and std as float32 arrays). Only 256 inputs per channel, so a table. */
static void build_normalize_table(const vl_preproc_config *p, float table[RGB_CHANNELS][256]) {
    const double rescale = 1.0 / 255.0;
    for (int c = 0; c < RGB_CHANNELS; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * rescale);
            table[c][v] = (x - p->mean[c]) / p->std[c];
        }
}

int vl_preprocess_image(const vl_image *img, const vl_preproc_config *p, vl_pixels *out) {
    memset(out, 0, sizeof(*out));
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
        return vl_error_set("preprocess: the image is empty; load an image first");
    if (check_preproc_config(p)) return -1;
    const int P = p->patch, T = p->temporal_patch, m = p->merge;
    int rh, rw;
    if (vl_smart_resize(img->h, img->w, P * m, p->min_pixels, p->max_pixels, &rh, &rw)) return -1;

    vl_image resized = {0};
    const vl_image *src = img;
    if (rw != img->w || rh != img->h) {
        if (vl_image_resize_bicubic(img, rw, rh, &resized)) return -1;
        src = &resized;
    }

    const int gh = rh / P, gw = rw / P; /* smart_resize gives multiples of P*m */
    const int patch_dim = RGB_CHANNELS * T * P * P;
    const int64_t n_patches = (int64_t)gh * gw;
    const size_t plane = (size_t)P * P; /* one channel of one frame of a patch */
    float *pixels = malloc((size_t)n_patches * (size_t)patch_dim * sizeof(float));
    if (!pixels) {
        vl_image_free(&resized);
        return vl_error_set("out of memory for pixel values (%lld patches x %d)",
                            (long long)n_patches, patch_dim);
    }
    float table[RGB_CHANNELS][256];
    build_normalize_table(p, table);

    /* Rows go merge window by merge window (bh, bw), and inside a window row-major (mh, mw),
     * so that the merger's groups of m*m consecutive rows are spatial m x m blocks. Inside a
     * row: [channel][frame][y][x]; every frame is the same image. */
    float *row = pixels;
    for (int bh = 0; bh < gh / m; bh++)
        for (int bw = 0; bw < gw / m; bw++)
            for (int mh = 0; mh < m; mh++)
                for (int mw = 0; mw < m; mw++, row += patch_dim) {
                    const int y0 = (bh * m + mh) * P, x0 = (bw * m + mw) * P;
                    for (int c = 0; c < RGB_CHANNELS; c++) {
                        float *frame0 = row + (size_t)c * T * plane;
                        for (int y = 0; y < P; y++) {
                            const uint8_t *in = src->rgb + ((size_t)(y0 + y) * rw + x0) * 3 + c;
                            for (int x = 0; x < P; x++) frame0[y * P + x] = table[c][in[3 * x]];
                        }
                        for (int t = 1; t < T; t++)
                            memcpy(frame0 + t * plane, frame0, plane * sizeof(float));
                    }
                }
    vl_image_free(&resized);

    out->grid_t = 1;
    out->grid_h = gh;
    out->grid_w = gw;
    out->resized_w = rw;
    out->resized_h = rh;
    out->n_patches = n_patches;
    out->patch_dim = patch_dim;
    out->pixels = pixels;
    return 0;
}

void vl_pixels_free(vl_pixels *px) {
    if (!px) return;
    free(px->pixels);
    memset(px, 0, sizeof(*px));
}
