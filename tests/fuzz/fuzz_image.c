/* fuzz_image.c: libFuzzer harness for image files: vl_image_load (PNG, JPEG, BMP, GIF through
 * stb_image) on the input, then vl_preprocess_image with a small max_pixels so that every
 * decoded image stays cheap to preprocess. A decoded image must be within the size limits
 * loader.h states and readable to its last byte; the pixel values must be finite and as many
 * as the grid says.
 * Leaves out: the exactness of pixels against PIL (tests/test_image.c). */
#include "loader/loader.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>

#define FUZZ_MAX_PIXELS (28 * 28 * 16) /* 16 merged tokens */

static void check_image(const vl_image *img) {
    FUZZ_CHECK(img->w > 0 && img->h > 0 && img->rgb != NULL, "image %d x %d", img->w, img->h);
    int64_t big = img->w > img->h ? img->w : img->h, small = img->w > img->h ? img->h : img->w;
    FUZZ_CHECK((int64_t)img->w * img->h <= VL_IMAGE_MAX_PIXELS && big <= 200 * small,
               "image %d x %d passed the size checks", img->w, img->h);
    unsigned sum = 0; /* every byte readable: a short buffer trips AddressSanitizer here */
    for (size_t i = 0, n = (size_t)img->w * img->h * 3; i < n; i++) sum += img->rgb[i];
    (void)sum;
}

static void check_pixels(const vl_pixels *px) {
    FUZZ_CHECK(px->grid_t == 1 && px->n_patches == (int64_t)px->grid_h * px->grid_w &&
                   px->grid_h * 14 == px->resized_h && px->grid_w * 14 == px->resized_w &&
                   px->patch_dim == 1176,
               "grid %d x %d x %d, %lld patches of %d, resized %d x %d", px->grid_t, px->grid_h,
               px->grid_w, (long long)px->n_patches, px->patch_dim, px->resized_w, px->resized_h);
    for (size_t i = 0, n = (size_t)px->n_patches * 1176; i < n; i++)
        FUZZ_CHECK(isfinite(px->pixels[i]), "pixel value %zu is %g", i, (double)px->pixels[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vl_error_clear();
    const char *path = fuzz_write("input.img", data, size);
    vl_image img;
    int rc = vl_image_load(&img, path);
    fuzz_check_error(rc, "vl_image_load");
    if (rc == 0) {
        check_image(&img);
        vl_preproc_config p;
        vl_preproc_config_default(&p);
        p.max_pixels = FUZZ_MAX_PIXELS;
        vl_pixels px;
        int prc = vl_preprocess_image(&img, &p, &px);
        fuzz_check_error(prc, "vl_preprocess_image");
        if (prc == 0) check_pixels(&px);
        vl_pixels_free(&px);
        vl_image_free(&img);
    }
    vl_error_clear();
    return 0;
}
