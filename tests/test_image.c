/* test_image.c: image decoding, smart_resize, PIL bicubic resize, normalization, patch order.
 *
 *   decode      the conv_* fixtures, whose pixels are closed formulas (repeated from
 *               tests/reference/make_test_images.py), through every PNG colour type / depth, BMP
 *               and GIF; refusals (missing, empty, not an image, 0x0 and huge headers written
 *               here, aspect 300, truncated data). Every other format and mode is checked
 *               against Pillow's pixels by test_image_formats.c.
 *   smart_resize the spec's worked example, ties to even, both clamping branches, aspect limit
 *   resize      identity and constant-image properties, argument errors
 *   patches     an image whose pixels encode their coordinates, checked element by element
 *               against the layout decoded from the spec's formula
 *   goldens     tests/fixtures/images/goldens.json (make_preprocess_goldens.py: PIL/transformers):
 *               our decode equals PIL's (PNG and JPEG), our resize equals PIL's bit for bit,
 *               grids equal, pixel_values samples within 1e-6. Skipped when goldens.json is
 *               absent.
 */
#include "loader/loader.h"
#include "tests/vltest.h"

#include <cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static char tmp_dir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int slot;
    char *out = buf[slot++ & 3];
    snprintf(out, 512, "%s/%s", tmp_dir, name);
    return out;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && put == n ? 0 : -1;
}

static uint32_t crc32_bytes(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

/* A PNG that is only a signature and an IHDR (valid CRC) claiming w x h RGB pixels. */
static int write_png_header_only(const char *path, uint32_t w, uint32_t h) {
    uint8_t b[8 + 25] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put_be32(b + 8, 13);
    memcpy(b + 12, "IHDR", 4);
    put_be32(b + 16, w);
    put_be32(b + 20, h);
    b[24] = 8, b[25] = 2, b[26] = b[27] = b[28] = 0; /* 8-bit RGB, no interlace */
    put_be32(b + 29, crc32_bytes(b + 12, 17));
    return write_bytes(path, b, sizeof(b));
}

static int error_has(const char *needle) {
    return strstr(vl_error_get(), needle) != NULL;
}

/* ---- decode: formula fixtures --------------------------------------------------------------- */

typedef void (*pixel_formula)(int x, int y, uint8_t rgb[3]);

static void palette_entry(int i, uint8_t rgb[3]) {
    rgb[0] = (uint8_t)(i * 37), rgb[1] = (uint8_t)(255 - i * 11), rgb[2] = (uint8_t)(i * i);
}
static void f_grey(int x, int y, uint8_t o[3]) {
    o[0] = o[1] = o[2] = (uint8_t)(x * 11 + y * 7);
}
static void f_rgba(int x, int y, uint8_t o[3]) {
    o[0] = (uint8_t)(x * 10), o[1] = (uint8_t)(y * 14), o[2] = (uint8_t)(x * y);
}
static void f_palette(int x, int y, uint8_t o[3]) {
    palette_entry((x + 2 * y) % 64, o);
}
static void f_palette4(int x, int y, uint8_t o[3]) {
    palette_entry((x + y) % 16, o);
}
static void f_grey1(int x, int y, uint8_t o[3]) {
    o[0] = o[1] = o[2] = ((x ^ y) & 1) ? 255 : 0;
}
static void f_bmp(int x, int y, uint8_t o[3]) {
    o[0] = (uint8_t)(x * 10), o[1] = (uint8_t)(y * 14), o[2] = 200;
}
static void f_grey16(int x, int y, uint8_t o[3]) { /* PIL saturates 16-bit grey at 255 */
    int v = (x * y * 300 + x * 7) & 0xffff;
    o[0] = o[1] = o[2] = (uint8_t)(v > 255 ? 255 : v);
}
static void f_rgb16(int x, int y, uint8_t o[3]) { /* PIL keeps the high byte */
    o[0] = (uint8_t)(((x * 7000 + 1) & 0xffff) >> 8);
    o[1] = (uint8_t)(((y * 9000 + 2) & 0xffff) >> 8);
    o[2] = (uint8_t)((((x + y) * 3000 + 3) & 0xffff) >> 8);
}

static void check_formula_image(const char *name, int w, int h, pixel_formula f) {
    vl_image img;
    vl_error_clear();
    int rc = vl_image_load(&img, vt_fixture(name));
    VT_CHECKF(rc == 0, "%s: %s", name, vl_error_get());
    if (rc) return;
    VT_CHECK_INT(img.w, w);
    VT_CHECK_INT(img.h, h);
    int bad = 0;
    for (int y = 0; y < h && img.w == w && img.h == h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t want[3];
            f(x, y, want);
            if (memcmp(img.rgb + ((size_t)y * w + x) * 3, want, 3) != 0) bad++;
        }
    VT_CHECKF(bad == 0, "%s: %d pixels differ from the formula", name, bad);
    vl_image_free(&img);
    VT_CHECK(img.rgb == NULL && img.w == 0);
}

static void test_decode_formulas(void) {
    check_formula_image("images/conv_grey.png", 23, 17, f_grey);
    check_formula_image("images/conv_rgb.png", 23, 17, f_rgba);
    check_formula_image("images/conv_rgba.png", 23, 17, f_rgba);
    check_formula_image("images/conv_la.png", 23, 17, f_grey);
    check_formula_image("images/conv_palette.png", 23, 17, f_palette);
    check_formula_image("images/conv_palette4.png", 23, 17, f_palette4);
    check_formula_image("images/conv_grey1.png", 23, 17, f_grey1);
    check_formula_image("images/conv_palette.gif", 23, 17, f_palette);
    check_formula_image("images/conv_rgb.bmp", 23, 17, f_bmp);
    check_formula_image("images/conv_grey16.png", 9, 7, f_grey16);
    check_formula_image("images/conv_rgb16.png", 9, 7, f_rgb16);
}

/* ---- decode: refusals ----------------------------------------------------------------------- */

static void expect_refused(const char *path, const char *needle1, const char *needle2) {
    vl_image img = {1, 1, (uint8_t *)&img}; /* garbage: load must reset it */
    vl_error_clear();
    int rc = vl_image_load(&img, path);
    VT_CHECKF(rc != 0, "%s was accepted", path);
    VT_CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
    VT_CHECKF(error_has(path), "error does not name the file: %s", vl_error_get());
    VT_CHECKF(error_has(needle1), "expected '%s' in: %s", needle1, vl_error_get());
    if (needle2) VT_CHECKF(error_has(needle2), "expected '%s' in: %s", needle2, vl_error_get());
    VT_CHECKF(strchr(vl_error_get(), '\n') == NULL, "multi-line error: %s", vl_error_get());
}

static void test_refusals(void) {
    expect_refused(tmp_path("missing.png"), "cannot open", NULL);

    const char *text = "this is a text file, not a picture\n";
    VT_CHECK(write_bytes(tmp_path("text.png"), text, strlen(text)) == 0);
    expect_refused(tmp_path("text.png"), "not a PNG, JPEG", NULL);

    VT_CHECK(write_bytes(tmp_path("empty.png"), "", 0) == 0);
    expect_refused(tmp_path("empty.png"), "empty", NULL);

    expect_refused(tmp_dir, "not a regular file", NULL);

    VT_CHECK(write_png_header_only(tmp_path("zero.png"), 0, 0) == 0);
    expect_refused(tmp_path("zero.png"), "no pixels", "0x0");

    VT_CHECK(write_png_header_only(tmp_path("huge.png"), 100000, 100000) == 0);
    expect_refused(tmp_path("huge.png"), "100000x100000", "178956970");

    /* just over PIL's limit (178957506 pixels), aspect ratio fine */
    VT_CHECK(write_png_header_only(tmp_path("bomb.png"), 13378, 13377) == 0);
    expect_refused(tmp_path("bomb.png"), "13378x13377", "178956970");

    VT_CHECK(write_png_header_only(tmp_path("wide4g.png"), 0xffffffffu, 0xffffffffu) == 0);
    expect_refused(tmp_path("wide4g.png"), "4294967295x4294967295", "178956970");

    expect_refused(vt_fixture("images/aspect_300x1.png"), "aspect ratio 300.0", "limit 200");

    /* a valid header whose data stops half way */
    size_t n = 0;
    char *png = vt_read_all(vt_fixture("images/doc_rgb.png"), &n);
    VT_CHECK(png != NULL && n > 100);
    if (png) {
        VT_CHECK(write_bytes(tmp_path("truncated.png"), png, n / 2) == 0);
        expect_refused(tmp_path("truncated.png"), "cannot decode", NULL);
        free(png);
    }

    /* the aspect limit itself is allowed */
    vl_image img;
    vl_error_clear();
    VT_CHECKF(vl_image_load(&img, vt_fixture("images/aspect_200x1.png")) == 0, "%s",
              vl_error_get());
    VT_CHECK(img.w == 200 && img.h == 1);
    if (img.rgb)
        VT_CHECK(img.rgb[3 * 7] == 7 && img.rgb[3 * 7 + 1] == 21 && img.rgb[3 * 7 + 2] == 248);
    vl_image_free(&img);
}

/* ---- smart_resize --------------------------------------------------------------------------- */

static void expect_smart(int h, int w, int64_t mn, int64_t mx, int want_h, int want_w) {
    int oh = -1, ow = -1;
    vl_error_clear();
    int rc = vl_smart_resize(h, w, 28, mn, mx, &oh, &ow);
    VT_CHECKF(rc == 0 && oh == want_h && ow == want_w,
              "smart_resize(%d, %d, min %lld, max %lld) = %dx%d rc %d, expected %dx%d (HxW) %s", h,
              w, (long long)mn, (long long)mx, oh, ow, rc, want_h, want_w, vl_error_get());
}

static void test_smart_resize(void) {
    const int64_t MN = 3136, MX = 12845056;
    expect_smart(1242, 872, MN, MX, 1232, 868); /* examples/page.png: grid 88 x 62 */
    VT_CHECK(1232 / 14 == 88 && 868 / 14 == 62);
    /* H = 14 mod 28: 1.5 -> 2, 2.5 -> 2, 3.5 -> 4 (half-up would give 84 for 70) */
    expect_smart(42, 280, MN, MX, 56, 280);
    expect_smart(70, 280, MN, MX, 56, 280);
    expect_smart(98, 280, MN, MX, 112, 280);
    expect_smart(280, 70, MN, MX, 280, 56);
    /* max branch: beta = sqrt(2e6 / 50176); floor(5.66) = 5, floor(11.31) = 11 */
    expect_smart(1000, 2000, MN, 50176, 140, 308);
    /* max branch with a side floored to 0 -> clamped to 28 */
    expect_smart(28, 5600, MN, 3136, 28, 784);
    /* min branch: beta = sqrt(3136 / 600); ceil(1.63) = 2, ceil(2.45) = 3 */
    expect_smart(20, 30, MN, MX, 56, 84);
    expect_smart(14, 14, MN, MX, 56, 56);
    /* aspect 200 is allowed, 201 is not */
    expect_smart(1, 200, MN, MX, 28, 812);
    expect_smart(200, 1, MN, MX, 812, 28);
    int oh, ow;
    vl_error_clear();
    VT_CHECK(vl_smart_resize(1, 201, 28, MN, MX, &oh, &ow) != 0);
    VT_CHECKF(error_has("201") && error_has("200"), "%s", vl_error_get());
    vl_error_clear();
    VT_CHECK(vl_smart_resize(201, 1, 28, MN, MX, &oh, &ow) != 0);
    vl_error_clear();
    VT_CHECK(vl_smart_resize(0, 10, 28, MN, MX, &oh, &ow) != 0);
    vl_error_clear();
    VT_CHECK(vl_smart_resize(10, 10, 0, MN, MX, &oh, &ow) != 0);
    vl_error_clear();
    VT_CHECK(vl_smart_resize(10, 10, 28, MN, 0, &oh, &ow) != 0);
    /* min_pixels 0 and a side rounding to 0: nothing to resize to */
    vl_error_clear();
    VT_CHECK(vl_smart_resize(10, 1000, 28, 0, MX, &oh, &ow) != 0);
    vl_error_clear();
}

/* ---- resize properties ---------------------------------------------------------------------- */

static void test_resize_properties(void) {
    vl_image src = {37, 23, malloc(37 * 23 * 3)}, dst;
    for (int i = 0; i < 37 * 23 * 3; i++) src.rgb[i] = (uint8_t)(i * 97 + (i >> 5));
    VT_CHECK(vl_image_resize_bicubic(&src, 37, 23, &dst) == 0);
    VT_CHECK(dst.w == 37 && dst.h == 23 && memcmp(dst.rgb, src.rgb, 37 * 23 * 3) == 0);
    VT_CHECK(dst.rgb != src.rgb);
    vl_image_free(&dst);

    /* a constant image stays that constant whatever the sizes (weights sum to one) */
    static const int sizes[][2] = {{37, 23}, {5, 90}, {200, 3}, {1, 1}, {111, 77}, {12, 23}};
    int bad = 0;
    memset(src.rgb, 0, 37 * 23 * 3);
    for (int i = 0; i < 37 * 23; i++) src.rgb[3 * i] = 255, src.rgb[3 * i + 1] = 131;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        if (vl_image_resize_bicubic(&src, sizes[k][0], sizes[k][1], &dst)) {
            bad++;
            continue;
        }
        for (int i = 0; i < dst.w * dst.h; i++)
            bad += dst.rgb[3 * i] != 255 || dst.rgb[3 * i + 1] != 131 || dst.rgb[3 * i + 2] != 0;
        vl_image_free(&dst);
    }
    VT_CHECKF(bad == 0, "%d constant-image pixels changed", bad);

    vl_error_clear();
    VT_CHECK(vl_image_resize_bicubic(&src, 0, 5, &dst) != 0 && dst.rgb == NULL);
    vl_error_clear();
    VT_CHECK(vl_image_resize_bicubic(&src, 100000, 100000, &dst) != 0);
    vl_error_clear();
    free(src.rgb);
}

/* ---- patch order ---------------------------------------------------------------------------- */

/* Pixels encode their coordinates: r = x, g = y, b = (x + 3y) mod 256. With mean 0 and std 1 a
 * value is x/255 rounded to float, so round(v * 255) gives the byte back. */
static void check_patch_layout(int w, int h, int P, int T, int m) {
    vl_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)x, p[1] = (uint8_t)y, p[2] = (uint8_t)(x + 3 * y);
        }
    vl_preproc_config cfg = {
        .min_pixels = 1, .max_pixels = (int64_t)w * h, .patch = P, .temporal_patch = T, .merge = m};
    for (int c = 0; c < 3; c++) cfg.mean[c] = 0.0f, cfg.std[c] = 1.0f;
    vl_pixels px;
    vl_error_clear();
    int rc = vl_preprocess_image(&img, &cfg, &px);
    VT_CHECKF(rc == 0, "%s", vl_error_get());
    if (rc) {
        free(img.rgb);
        return;
    }
    const int gh = h / P, gw = w / P, dim = 3 * T * P * P;
    VT_CHECK(px.grid_t == 1 && px.grid_h == gh && px.grid_w == gw);
    VT_CHECK(px.resized_w == w && px.resized_h == h);
    VT_CHECK_INT(px.n_patches, (int64_t)gh * gw);
    VT_CHECK_INT(px.patch_dim, dim);
    int bad = 0;
    for (int64_t r = 0; r < px.n_patches; r++) {
        /* row r = ((bh * (gw/m) + bw) * m + mh) * m + mw */
        int mw = (int)(r % m), mh = (int)(r / m % m);
        int bw = (int)(r / (m * m) % (gw / m)), bh = (int)(r / (m * m) / (gw / m));
        int ph = bh * m + mh, pw = bw * m + mw;
        for (int e = 0; e < dim; e++) {
            /* element e = c*(T*P*P) + t*(P*P) + y*P + x */
            int x = e % P, y = e / P % P, c = e / (P * P * T);
            int col = pw * P + x, row = ph * P + y;
            int want = c == 0 ? col : c == 1 ? row : (col + 3 * row) & 255;
            float v = px.pixels[r * dim + e];
            if ((int)lrintf(v * 255.0f) != (want & 255)) bad++;
        }
    }
    VT_CHECKF(bad == 0, "%dx%d P%d T%d m%d: %d elements out of place", w, h, P, T, m, bad);
    vl_pixels_free(&px);
    VT_CHECK(px.pixels == NULL);
    free(img.rgb);
}

static void test_normalize_values(void) {
    /* 1x1 block of 28x28 with three known bytes; CLIP mean/std */
    vl_image img = {28, 28, calloc(28 * 28 * 3, 1)};
    img.rgb[0] = 255, img.rgb[1] = 0, img.rgb[2] = 128;
    vl_preproc_config cfg = {.min_pixels = 784,
                             .max_pixels = 784,
                             .patch = 14,
                             .temporal_patch = 2,
                             .merge = 2,
                             .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                             .std = {0.26862954f, 0.26130258f, 0.27577711f}};
    vl_pixels px;
    VT_CHECK(vl_preprocess_image(&img, &cfg, &px) == 0);
    if (px.pixels) {
        float r = (1.0f - cfg.mean[0]) / cfg.std[0];
        float g = (0.0f - cfg.mean[1]) / cfg.std[1];
        float b = ((float)(128.0 * (1.0 / 255.0)) - cfg.mean[2]) / cfg.std[2];
        VT_CHECK(px.pixels[0] == r && px.pixels[392] == g && px.pixels[784] == b);
        VT_CHECK(px.pixels[196] == r && px.pixels[588] == g && px.pixels[980] == b); /* t = 1 */
        VT_CHECK(fabsf(r - 1.9303361f) < 1e-6f && fabsf(g + 1.7520971f) < 1e-6f);
    }
    vl_pixels_free(&px);
    cfg.std[1] = 0.0f;
    vl_error_clear();
    VT_CHECK(vl_preprocess_image(&img, &cfg, &px) != 0 && px.pixels == NULL);
    VT_CHECKF(error_has("std"), "%s", vl_error_get());
    vl_error_clear();
    free(img.rgb);
}

/* ---- goldens -------------------------------------------------------------------------------- */

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int load_fixture_image(const char *name, vl_image *img) {
    char rel[512];
    snprintf(rel, sizeof(rel), "images/%s", name);
    vl_error_clear();
    int rc = vl_image_load(img, vt_fixture(rel));
    VT_CHECKF(rc == 0, "%s: %s", name, vl_error_get());
    return rc;
}

/* Count of bytes equal and within one level. */
static void compare_images(const vl_image *a, const vl_image *b, size_t *exact, size_t *within1,
                           int *max_diff) {
    size_t n = (size_t)a->w * a->h * 3;
    *exact = *within1 = 0;
    *max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        *exact += d == 0;
        *within1 += d <= 1;
        if (d > *max_diff) *max_diff = d;
    }
}

static size_t g_resize_exact, g_resize_total;

static void check_golden_case(const cJSON *image, const cJSON *cs, const vl_image *decoded,
                              const float mean[3], const float std[3]) {
    const char *name = json_str(image, "file");
    const char *case_name = json_str(cs, "name");
    vl_preproc_config cfg = {
        .min_pixels = (int64_t)cJSON_GetObjectItem(cs, "min_pixels")->valuedouble,
        .max_pixels = (int64_t)cJSON_GetObjectItem(cs, "max_pixels")->valuedouble,
        .patch = 14,
        .temporal_patch = 2,
        .merge = 2};
    memcpy(cfg.mean, mean, sizeof(cfg.mean));
    memcpy(cfg.std, std, sizeof(cfg.std));
    int rw = json_int(cs, "resized_width"), rh = json_int(cs, "resized_height");
    int oh = 0, ow = 0;
    VT_CHECK(
        vl_smart_resize(decoded->h, decoded->w, 28, cfg.min_pixels, cfg.max_pixels, &oh, &ow) == 0);
    VT_CHECKF(oh == rh && ow == rw, "%s %s: smart_resize %dx%d, PIL path %dx%d", name, case_name,
              ow, oh, rw, rh);

    vl_image want, got;
    if (load_fixture_image(json_str(cs, "resized_file"), &want)) return;
    VT_CHECK(want.w == rw && want.h == rh);
    int resized_exact = 0;
    if (vl_image_resize_bicubic(decoded, rw, rh, &got) == 0 && want.w == rw && want.h == rh) {
        size_t exact, within1;
        int max_diff;
        compare_images(&got, &want, &exact, &within1, &max_diff);
        size_t n = (size_t)rw * rh * 3;
        g_resize_exact += exact;
        g_resize_total += n;
        resized_exact = exact == n;
        VT_CHECKF(resized_exact, "%s %s: resize %zu/%zu bytes equal to PIL, max diff %d", name,
                  case_name, exact, n, max_diff);
        vl_image_free(&got);
    } else {
        VT_CHECKF(0, "%s %s: resize failed: %s", name, case_name, vl_error_get());
    }
    vl_image_free(&want);

    vl_pixels px;
    vl_error_clear();
    if (vl_preprocess_image(decoded, &cfg, &px)) {
        VT_CHECKF(0, "%s %s: %s", name, case_name, vl_error_get());
        return;
    }
    const cJSON *grid = cJSON_GetObjectItem(cs, "grid_thw");
    VT_CHECK(cJSON_GetArraySize(grid) == 3);
    VT_CHECK_INT(px.grid_t, cJSON_GetArrayItem(grid, 0)->valueint);
    VT_CHECK_INT(px.grid_h, cJSON_GetArrayItem(grid, 1)->valueint);
    VT_CHECK_INT(px.grid_w, cJSON_GetArrayItem(grid, 2)->valueint);
    VT_CHECK_INT(px.n_patches, json_int(cs, "n_patches"));
    VT_CHECK_INT(px.patch_dim, json_int(cs, "patch_dim"));
    const cJSON *samples = cJSON_GetObjectItem(cs, "samples");
    int n_samples = cJSON_GetArraySize(samples), bad = 0;
    double worst = 0;
    int64_t total = px.n_patches * px.patch_dim;
    for (int i = 0; i < n_samples && resized_exact; i++) {
        const cJSON *s = cJSON_GetArrayItem(samples, i);
        int64_t idx = (int64_t)cJSON_GetArrayItem(s, 0)->valuedouble;
        double v = cJSON_GetArrayItem(s, 1)->valuedouble;
        if (idx < 0 || idx >= total) {
            bad++;
            continue;
        }
        double d = fabs((double)px.pixels[idx] - v);
        if (d > worst) worst = d;
        bad += d > 1e-6;
    }
    if (resized_exact) {
        VT_CHECK(n_samples >= 100);
        VT_CHECKF(bad == 0, "%s %s: %d of %d pixel_values samples off by more than 1e-6 (max %g)",
                  name, case_name, bad, n_samples, worst);
    } else {
        VT_SKIP("pixel_values samples: resized image not exact");
    }
    vl_pixels_free(&px);
}

static void test_goldens(void) {
    size_t len = 0;
    char *text = vt_read_all(vt_fixture("images/goldens.json"), &len);
    if (!text) {
        VT_SKIP("tests/fixtures/images/goldens.json absent (make_preprocess_goldens.py)");
        return;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    VT_CHECK(root != NULL);
    if (!root) return;
    const cJSON *gen = cJSON_GetObjectItem(root, "generator");
    fprintf(stderr, "goldens: Pillow %s, pixel_values from %s\n", json_str(gen, "pillow"),
            json_str(gen, "pixel_values_source"));
    float mean[3], std[3];
    const cJSON *jm = cJSON_GetObjectItem(root, "image_mean"),
                *js = cJSON_GetObjectItem(root, "image_std");
    VT_CHECK(cJSON_GetArraySize(jm) == 3 && cJSON_GetArraySize(js) == 3);
    for (int c = 0; c < 3; c++) {
        mean[c] = (float)cJSON_GetArrayItem(jm, c)->valuedouble;
        std[c] = (float)cJSON_GetArrayItem(js, c)->valuedouble;
    }
    const cJSON *image;
    int n_images = 0;
    cJSON_ArrayForEach(image, cJSON_GetObjectItem(root, "images")) {
        const char *name = json_str(image, "file");
        vl_image ours, pil;
        if (load_fixture_image(name, &ours)) continue;
        if (load_fixture_image(json_str(image, "pil_rgb"), &pil)) {
            vl_image_free(&ours);
            continue;
        }
        n_images++;
        VT_CHECK_INT(ours.w, json_int(image, "width"));
        VT_CHECK_INT(ours.h, json_int(image, "height"));
        VT_CHECK(ours.w == pil.w && ours.h == pil.h);
        if (ours.w == pil.w && ours.h == pil.h) {
            size_t exact, within1, n = (size_t)pil.w * pil.h * 3;
            int max_diff;
            compare_images(&ours, &pil, &exact, &within1, &max_diff);
            VT_CHECKF(exact == n,
                      "%s (%s): decode differs from PIL's convert('RGB') in %zu of %zu bytes "
                      "(max %d)",
                      name, json_str(image, "pil_mode"), n - exact, n, max_diff);
        }
        /* The resize is compared on PIL's own decode, so a JPEG checks the resize too. */
        const cJSON *cs;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItem(image, "cases")) {
            check_golden_case(image, cs, &pil, mean, std);
        }
        vl_image_free(&ours);
        vl_image_free(&pil);
    }
    VT_CHECK(n_images >= 6);
    fprintf(stderr, "goldens: resize bit-exact on %zu of %zu bytes\n", g_resize_exact,
            g_resize_total);
    cJSON_Delete(root);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/vl_test_image_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_decode_formulas();
    test_refusals();
    test_smart_resize();
    test_resize_properties();
    check_patch_layout(56, 84, 14, 2, 2);  /* Qwen2-VL: 6 x 4 patches, 3 x 2 merge windows */
    check_patch_layout(252, 28, 14, 2, 2); /* one merge row */
    check_patch_layout(36, 24, 4, 3, 3);   /* general strides: P 4, T 3, merge 3 */
    test_normalize_values();
    test_goldens();

    static const char *made[] = {"text.png", "empty.png",  "zero.png",     "huge.png",
                                 "bomb.png", "wide4g.png", "truncated.png"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) unlink(tmp_path(made[i]));
    rmdir(tmp_dir);
    return vt_finish();
}
