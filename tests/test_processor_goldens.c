/* test_processor_goldens.c: our pixel_values equal transformers' for every format and mode.
 *
 * tests/fixtures/images/processor_goldens.json (make_processor_goldens.py on the device:
 * transformers 5.17 load_image = Pillow 12 exif_transpose + convert("RGB"), then the Qwen2-VL
 * PIL-backend image processor) holds, for each committed image (the 80 decode fixtures: JPEG
 * grey / 4:2:0 / 4:2:2 / 4:4:4 / progressive / arithmetic / CMYK / YCCK / Adobe, PNG depths,
 * palettes, alpha, GIF, BMP, WebP lossy / lossless / alpha, TIFF; the EXIF set; the six golden
 * images) and two (min_pixels, max_pixels) cases (7B-Instruct's, and 784/784 which forces a
 * resize to 28x28), the grid and the sha256 of the whole float32 array. vl_image_load +
 * vl_preprocess_image must give the same bytes; a mismatch reports the first sampled value
 * that differs. The default transformers processor (torchvision backend) differs from the PIL
 * one by up to 2 levels (its resize); the generator records that difference, not compared here.
 */
#include "loader/loader.h"
#include "tests/vltest.h"
#include "tests/vltest_sha256.h"

#include <cJSON.h>

static const cJSON *item(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int int_at(const cJSON *arr, int i) {
    const cJSON *v = cJSON_GetArrayItem(arr, i);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The first sample that differs, for the failure message. */
static void describe_samples(const cJSON *samples, const vl_pixels *px, char *out, size_t cap) {
    size_t total = (size_t)px->n_patches * (size_t)px->patch_dim;
    const cJSON *s;
    snprintf(out, cap, "all %d samples equal", cJSON_GetArraySize(samples));
    cJSON_ArrayForEach(s, samples) {
        double idx = cJSON_GetArrayItem(s, 0)->valuedouble;
        float want = (float)cJSON_GetArrayItem(s, 1)->valuedouble;
        if (idx < 0 || idx >= (double)total) continue;
        float got = px->pixels[(size_t)idx];
        if (got != want) {
            snprintf(out, cap, "pixel_values[%.0f] = %.9g, transformers %.9g", idx, got, want);
            return;
        }
    }
}

static int check_case(const char *file, const vl_image *img, const cJSON *cs) {
    vl_preproc_config pre;
    vl_preproc_config_default(&pre);
    pre.min_pixels = (int64_t)item(cs, "min_pixels")->valuedouble;
    pre.max_pixels = (int64_t)item(cs, "max_pixels")->valuedouble;
    const cJSON *want = item(cs, "pil"), *grid = item(want, "grid_thw");
    vl_pixels px;
    vl_error_clear();
    if (vl_preprocess_image(img, &pre, &px)) {
        VT_CHECKF(0, "%s: %s", file, vl_error_get());
        return 0;
    }
    int same_grid = px.grid_t == int_at(grid, 0) && px.grid_h == int_at(grid, 1) &&
                    px.grid_w == int_at(grid, 2);
    VT_CHECKF(same_grid, "%s %s: grid %d %d %d, transformers %d %d %d", file,
              item(cs, "name")->valuestring, px.grid_t, px.grid_h, px.grid_w, int_at(grid, 0),
              int_at(grid, 1), int_at(grid, 2));
    char hex[65], why[160];
    vt_sha256_hex(px.pixels, (size_t)px.n_patches * px.patch_dim * sizeof(float), hex);
    int same = same_grid && strcmp(hex, item(want, "sha256")->valuestring) == 0;
    if (!same) describe_samples(item(want, "samples"), &px, why, sizeof why);
    VT_CHECKF(same, "%s %s (%dx%d -> %dx%d): pixel_values differ from transformers': %s", file,
              item(cs, "name")->valuestring, img->w, img->h, px.resized_w, px.resized_h,
              same_grid ? why : "grid");
    vl_pixels_free(&px);
    return same;
}

static int contains(const char *s, const char *part) {
    return strstr(s, part) != NULL;
}

int main(void) {
    char abc[65];
    vt_sha256_hex("abc", 3, abc); /* FIPS 180-4's example */
    VT_CHECK(strcmp(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    size_t len = 0;
    char *text = vt_read_all(vt_fixture("images/processor_goldens.json"), &len);
    VT_CHECKF(text != NULL, "images/processor_goldens.json missing (make_processor_goldens.py)");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) return vt_finish();
    const cJSON *gen = item(root, "generator"), *e;
    fprintf(stderr,
            "goldens: transformers %s, Pillow %s, reference Qwen2VLImageProcessorPil "
            "(default class %s)\n",
            item(gen, "transformers")->valuestring, item(gen, "pillow")->valuestring,
            item(gen, "default_processor")->valuestring);
    /* the cases the closing note names must be among the passing ones */
    static const char *named[] = {
        "exif/jpeg_orient6", "decode/jpeg_cmyk_adobe", "decode/jpeg_ycck",    "decode/jpeg_arith",
        "decode/webp_lossy", "decode/webp_lossless",   "decode/tiff_rgb_lzw", "decode/gif_",
        "decode/bmp_"};
    enum { N_NAMED = sizeof named / sizeof named[0] };
    int named_ok[N_NAMED] = {0}, images = 0, cases = 0, exact = 0;
    cJSON_ArrayForEach(e, item(root, "images")) {
        const char *file = item(e, "file")->valuestring;
        char rel[512];
        snprintf(rel, sizeof rel, "images/%s", file);
        vl_image img;
        vl_error_clear();
        VT_CHECKF(item(e, "cases") != NULL, "%s: transformers could not read it", file);
        if (!item(e, "cases")) continue;
        if (vl_image_load(&img, vt_fixture(rel))) {
            VT_CHECKF(0, "%s: %s", file, vl_error_get());
            continue;
        }
        images++;
        int all = 1;
        const cJSON *cs;
        cJSON_ArrayForEach(cs, item(e, "cases")) {
            int ok = check_case(file, &img, cs);
            cases++, exact += ok, all &= ok;
        }
        for (int k = 0; k < N_NAMED; k++) named_ok[k] |= all && contains(file, named[k]);
        vl_image_free(&img);
    }
    fprintf(stderr, "goldens: %d of %d cases (%d images) bit-exact\n", exact, cases, images);
    VT_CHECKF(images >= 119, "only %d images in the golden set", images);
    for (int k = 0; k < N_NAMED; k++) VT_CHECKF(named_ok[k], "no exact golden for %s", named[k]);
    cJSON_Delete(root);
    return vt_finish();
}
