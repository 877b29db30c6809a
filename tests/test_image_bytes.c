/* test_image_bytes.c: images decoded from memory (a server's upload): vl_image_load_bytes gives
 * PIL's pixels (the .pil.png references written by make_processor_goldens.py) for each format
 * and an EXIF-rotated JPEG, refuses empty and unknown bytes naming the image, and the engine's
 * image set built from bytes (vl_image_arg.data) equals the one built from the files. */
#include "engine/engine.h"
#include "tests/vltest.h"

/* The whole fixture file (malloc'ed) or NULL. */
static uint8_t *fixture_bytes(const char *rel, size_t *n) {
    return (uint8_t *)vt_read_all(vt_fixture(rel), n);
}

static int same_pixels(const vl_image *a, const vl_image *b) {
    return a->w == b->w && a->h == b->h && memcmp(a->rgb, b->rgb, (size_t)a->w * a->h * 3) == 0;
}

/* Each format from memory against PIL's RGB of the same file. */
static void test_formats_from_memory(void) {
    static const char *cases[][2] = {
        {"images/decode/png_rgb_trns.png", "images/decode/png_rgb_trns.pil.png"},
        {"images/decode/gif_grows.gif", "images/decode/gif_grows.pil.png"},
        {"images/decode/bmp_pal8.bmp", "images/decode/bmp_pal8.pil.png"},
        {"images/decode/tiff_1bit.tif", "images/decode/tiff_1bit.pil.png"},
        {"images/decode/webp_lossless.webp", "images/decode/webp_lossless.pil.png"},
        {"images/exif/jpeg_orient6.jpg", "images/exif/jpeg_orient6.pil.png"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        uint8_t *bytes = fixture_bytes(cases[i][0], &n);
        VT_CHECKF(bytes != NULL, "%s", cases[i][0]);
        if (!bytes) continue;
        vl_image got, want;
        int rc = vl_image_load_bytes(&got, "upload", bytes, n);
        VT_CHECKF(rc == 0, "%s: %s", cases[i][0], vl_error_get());
        VT_CHECK(vl_image_load(&want, vt_fixture(cases[i][1])) == 0);
        if (rc == 0) VT_CHECKF(same_pixels(&got, &want), "%s", cases[i][0]);
        vl_image_free(&got);
        vl_image_free(&want);
        free(bytes);
    }
}

static void test_refusals_name_the_image(void) {
    vl_image img;
    vl_error_clear();
    static const uint8_t junk[] = "not an image at all";
    VT_CHECK(vl_image_load_bytes(&img, "upload-3", junk, sizeof junk) != 0);
    VT_CHECKF(strstr(vl_error_get(), "image upload-3 is not a PNG") != NULL, "%s", vl_error_get());
    VT_CHECK(img.rgb == NULL);
    vl_error_clear();
    VT_CHECK(vl_image_load_bytes(&img, "upload-4", junk, 0) != 0);
    VT_CHECKF(strstr(vl_error_get(), "image upload-4 is empty") != NULL, "%s", vl_error_get());
    /* a PNG cut short is an error, as from a file */
    size_t n = 0;
    uint8_t *png = fixture_bytes("images/conv_rgb.png", &n);
    VT_CHECK(png != NULL && n > 64);
    if (png) {
        vl_error_clear();
        VT_CHECK(vl_image_load_bytes(&img, "upload-5", png, n / 2) != 0);
        VT_CHECKF(strstr(vl_error_get(), "upload-5") != NULL, "%s", vl_error_get());
    }
    free(png);
}

/* The engine's image set: data in memory gives the same patches as the file (and repeats). */
static void test_image_set_from_memory(void) {
    vl_preproc_config pre;
    vl_preproc_config_default(&pre);
    pre.max_pixels = 28 * 28 * 16;
    const char *path = vt_fixture("images/doc_rgb.png");
    size_t n = 0;
    uint8_t *bytes = fixture_bytes("images/doc_rgb.png", &n);
    VT_CHECK(bytes != NULL);
    if (!bytes) return;
    vl_image_arg from_file[1] = {{path, 2, NULL, 0}};
    vl_image_arg from_mem[1] = {{"upload-1", 2, bytes, n}};
    vl_image_set a, b;
    VT_CHECK(vl_image_set_load(&a, from_file, 1, &pre, NULL) == 0);
    VT_CHECKF(vl_image_set_load(&b, from_mem, 1, &pre, NULL) == 0, "%s", vl_error_get());
    VT_CHECK_INT(b.n_list, 2);
    VT_CHECK_INT(b.orig_w[0], a.orig_w[0]);
    VT_CHECK_INT(b.uniq[0].n_patches, a.uniq[0].n_patches);
    if (b.n_uniq == 1 && a.n_uniq == 1 && a.uniq[0].n_patches == b.uniq[0].n_patches)
        VT_CHECK(memcmp(a.uniq[0].pixels, b.uniq[0].pixels,
                        (size_t)a.uniq[0].n_patches * a.uniq[0].patch_dim * sizeof(float)) == 0);
    vl_image_set_free(&a);
    vl_image_set_free(&b);
    /* a text-only request has no images: an empty set */
    VT_CHECK(vl_image_set_load(&a, NULL, 0, &pre, NULL) == 0);
    VT_CHECK_INT(a.n_list, 0);
    vl_image_set_free(&a);
    free(bytes);
}

int main(void) {
    test_formats_from_memory();
    test_refusals_name_the_image();
    test_image_set_from_memory();
    printf("%d passed, %d failed\n", vt_passed, vt_failed);
    return vt_failed ? 1 : 0;
}
