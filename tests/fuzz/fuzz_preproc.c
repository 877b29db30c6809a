/* fuzz_preproc.c: libFuzzer harness for preprocessor_config.json (vl_preproc_config_load from a
 * file). A loaded config must have min_pixels <= max_pixels, positive finite std and finite
 * mean; when the work is small (a fixed 37x23 image resized to at most 2^16 pixels, patch
 * rows of at most 2^16 floats), the config also preprocesses that image, and the pixel values
 * must be finite and laid out as the grid says.
 * Leaves out: configs whose smart_resize would allocate hundreds of MB (that is a request for
 * big images, not a parsing bug; libFuzzer would report it as out-of-memory). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>
#include <stdlib.h>

#define IMG_W 37
#define IMG_H 23

static uint8_t img_rgb[IMG_W * IMG_H * 3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (size_t i = 0; i < sizeof img_rgb; i++) img_rgb[i] = (uint8_t)(i * 37 + (i >> 5));
    return 0;
}

static void check_pixels(const vl_preproc_config *p, const vl_pixels *px) {
    const int f = p->patch * p->merge;
    FUZZ_CHECK(px->grid_t == 1 && px->grid_h * p->patch == px->resized_h &&
                   px->grid_w * p->patch == px->resized_w && px->resized_h % f == 0 &&
                   px->resized_w % f == 0,
               "grid %d x %d x %d for resized %d x %d, patch %d merge %d", px->grid_t, px->grid_h,
               px->grid_w, px->resized_w, px->resized_h, p->patch, p->merge);
    FUZZ_CHECK(px->n_patches == (int64_t)px->grid_h * px->grid_w &&
                   px->patch_dim == 3 * p->temporal_patch * p->patch * p->patch,
               "%lld patches of %d", (long long)px->n_patches, px->patch_dim);
    size_t n = (size_t)px->n_patches * (size_t)px->patch_dim;
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(isfinite(px->pixels[i]), "pixel value %zu is %g", i, (double)px->pixels[i]);
}

static void try_preprocess(const vl_preproc_config *p) {
    int rh, rw;
    if (p->patch > 256 || p->merge > 16 || p->temporal_patch > 16) return; /* refused anyway */
    if (vl_smart_resize(IMG_H, IMG_W, p->patch * p->merge, p->min_pixels, p->max_pixels, &rh,
                        &rw) != 0) {
        vl_error_clear();
        return;
    }
    if ((int64_t)rh * rw > (1 << 16) || 3 * p->temporal_patch * p->patch * p->patch > (1 << 16))
        return;
    vl_image img = {IMG_W, IMG_H, img_rgb};
    vl_pixels px;
    int rc = vl_preprocess_image(&img, p, &px);
    fuzz_check_error(rc, "vl_preprocess_image");
    if (rc == 0) check_pixels(p, &px);
    vl_pixels_free(&px);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    const char *path = fuzz_write("preprocessor_config.json", data, size);
    vl_preproc_config p;
    vl_preproc_config_default(&p);
    int rc = vl_preproc_config_load(&p, path);
    fuzz_check_error(rc, "vl_preproc_config_load");
    if (rc == 0) {
        FUZZ_CHECK(p.min_pixels >= 0 && p.min_pixels <= p.max_pixels && p.max_pixels > 0,
                   "min_pixels %lld max_pixels %lld", (long long)p.min_pixels,
                   (long long)p.max_pixels);
        FUZZ_CHECK(p.patch > 0 && p.temporal_patch > 0 && p.merge > 0, "patch %d %d %d", p.patch,
                   p.temporal_patch, p.merge);
        for (int c = 0; c < 3; c++)
            FUZZ_CHECK(isfinite(p.mean[c]) && isfinite(p.std[c]) && p.std[c] > 0,
                       "channel %d mean %g std %g", c, (double)p.mean[c], (double)p.std[c]);
        try_preprocess(&p);
    }
    vl_error_clear();
    return 0;
}
