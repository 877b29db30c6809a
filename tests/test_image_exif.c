/* test_image_exif.c: EXIF / XMP orientation applied as transformers' load_image applies it.
 *
 *   pillow     tests/fixtures/images/exif/cases.json (make_exif_images.py, expectations from
 *              Pillow 12.3 on the device): each of the 8 orientations in JPEG, big-endian
 *              EXIF, XMP in JPEG and PNG, PNG eXIf before / after IDAT / twice, PNG raw
 *              profile and "exif" text, WebP EXIF chunk, TIFF tag 274, and hostile EXIF (bad
 *              offsets, cut entry tables, counts of 2^32-1, loops, wrong types, repeated
 *              tags...) must decode to exactly exif_transpose(Image.open(f)).convert("RGB");
 *              a file Pillow refuses is read upright
 *   parser     vl_exif_orientation on hand-made TIFF structures: both byte orders, Pillow's
 *              tolerated headers, an entry table ending at the last byte, every numeric type
 *   transpose  the 8 orientations of a 3x2 image against hand-written results
 */
#include "loader/exif.h"
#include "loader/image_orient.h"
#include "tests/vltest.h"

#include <cJSON.h>

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL; /* NULL: absent */
}

static int int_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static int check_case(const cJSON *cs) {
    char rel[256], want_rel[256];
    snprintf(rel, sizeof rel, "images/exif/%s", str_of(cs, "file"));
    vl_image got, want;
    vl_error_clear();
    if (vl_image_load(&got, vt_fixture(rel))) {
        VT_CHECKF(0, "%s: %s", rel, vl_error_get());
        return 0;
    }
    int ok;
    if (!str_of(cs, "pil_rgb")) { /* Pillow refuses the EXIF: we read it upright */
        ok = got.w == int_of(cs, "width") && got.h == int_of(cs, "height");
        VT_CHECKF(ok, "%s: %dx%d, expected upright %dx%d", rel, got.w, got.h, int_of(cs, "width"),
                  int_of(cs, "height"));
    } else {
        snprintf(want_rel, sizeof want_rel, "images/exif/%s", str_of(cs, "pil_rgb"));
        if (vl_image_load(&want, vt_fixture(want_rel))) {
            VT_CHECKF(0, "%s: %s", want_rel, vl_error_get());
            vl_image_free(&got);
            return 0;
        }
        ok = got.w == want.w && got.h == want.h &&
             memcmp(got.rgb, want.rgb, (size_t)got.w * got.h * 3) == 0;
        VT_CHECKF(ok, "%s: %dx%d, Pillow's exif_transpose %dx%d (orientation %d): pixels differ",
                  rel, got.w, got.h, want.w, want.h, int_of(cs, "orientation"));
        vl_image_free(&want);
    }
    vl_image_free(&got);
    return ok;
}

static void test_against_pillow(void) {
    size_t len = 0;
    char *text = vt_read_all(vt_fixture("images/exif/cases.json"), &len);
    VT_CHECKF(text != NULL, "images/exif/cases.json is missing (make_exif_images.py)");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) return;
    int n = 0, exact = 0, turned = 0;
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(root, "cases")) {
        n++;
        exact += check_case(cs);
        turned += int_of(cs, "out_width") != int_of(cs, "width");
    }
    const char *pillow = str_of(cJSON_GetObjectItem(root, "generator"), "pillow");
    fprintf(stderr, "exif: %d of %d files as Pillow %s (%d of them turned by 90 degrees)\n", exact,
            n, pillow ? pillow : "?", turned);
    VT_CHECKF(n >= 33 && turned >= 10, "%d cases, %d turned: fixture set incomplete", n, turned);
    cJSON_Delete(root);
}

/* ---- the parser on hand-made structures ----------------------------------------------------- */

/* TIFF header + IFD 0 at 8 with one entry (tag 0x112) of `type`, `count`, 4-byte field. */
static size_t one_entry(uint8_t *b, int big, const char *head, unsigned type, uint32_t count,
                        const uint8_t field[4]) {
    memcpy(b, head, 4);
    uint8_t le[] = {8, 0, 0, 0, 1, 0, 0x12, 1}, be[] = {0, 0, 0, 8, 0, 1, 1, 0x12};
    memcpy(b + 4, big ? be : le, 8);
    b[12] = big ? 0 : (uint8_t)type, b[13] = big ? (uint8_t)type : 0;
    for (int i = 0; i < 4; i++) b[14 + i] = (uint8_t)(count >> (big ? 24 - 8 * i : 8 * i));
    memcpy(b + 18, field, 4);
    return 22; /* no next-IFD pointer: the table ends at the last byte */
}

static int orient(const uint8_t *b, size_t n, int *found) {
    return vl_exif_orientation(b, n, found);
}

static void test_parser(void) {
    uint8_t b[64];
    int found;
    const uint8_t six_le[4] = {6, 0, 0, 0}, six_be[4] = {0, 6, 0, 0};
    size_t n = one_entry(b, 0, "II*\0", 3, 1, six_le);
    VT_CHECK_INT(orient(b, n, &found), 6);
    VT_CHECK_INT(found, 1);
    VT_CHECK_INT(orient(b, n - 1, &found), 1); /* the entry is cut: not read */
    VT_CHECK_INT(found, 0);
    n = one_entry(b, 1, "MM\0*", 3, 1, six_be);
    VT_CHECK_INT(orient(b, n, &found), 6);
    n = one_entry(b, 1, "MM*\0", 3, 1, six_be); /* Pillow's tolerated variant */
    VT_CHECK_INT(orient(b, n, &found), 6);
    n = one_entry(b, 0, "II+\0", 3, 1, six_le); /* BigTIFF: not EXIF */
    VT_CHECK_INT(orient(b, n, &found), 1);
    VT_CHECK_INT(found, 0);
    const uint8_t seven_le[4] = {7, 0, 0, 0};
    static const unsigned numeric[] = {4, 6, 9, 13}; /* LONG, SBYTE, SLONG, IFD */
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++) {
        n = one_entry(b, 0, "II*\0", numeric[i], 1, seven_le);
        VT_CHECKF(orient(b, n, &found) == 7, "type %u", numeric[i]);
    }
    const uint8_t float7[4] = {0, 0, 0xe0, 0x40}; /* 7.0f little-endian */
    n = one_entry(b, 0, "II*\0", 11, 1, float7);
    VT_CHECK_INT(orient(b, n, &found), 7);
    const uint8_t float65[4] = {0, 0, 0xd0, 0x40}; /* 6.5f: not an orientation */
    n = one_entry(b, 0, "II*\0", 11, 1, float65);
    VT_CHECK_INT(orient(b, n, &found), 1);
    VT_CHECK_INT(found, 1);
    const uint8_t sshort_neg[4] = {0xfa, 0xff, 0, 0}; /* -6 */
    n = one_entry(b, 0, "II*\0", 8, 1, sshort_neg);
    VT_CHECK_INT(orient(b, n, &found), 1);
    /* a count of 2^32-1 SHORTs at offset 8: 8 GiB past a 22-byte buffer, no overflow */
    const uint8_t off8[4] = {8, 0, 0, 0};
    n = one_entry(b, 0, "II*\0", 3, 0xffffffffu, off8);
    VT_CHECK_INT(orient(b, n, &found), 1);
    VT_CHECK_INT(found, 0);
    /* an IFD offset of 2^32-1 */
    n = one_entry(b, 0, "II*\0", 3, 1, six_le);
    memset(b + 4, 0xff, 4);
    VT_CHECK_INT(orient(b, n, &found), 1);
    VT_CHECK_INT(vl_xmp_orientation((const uint8_t *)"tiff:Orientation=\"8\"", 20), 8);
    VT_CHECK_INT(vl_xmp_orientation((const uint8_t *)"tiff:Orientation>x tiff:Orientation>3", 37),
                 3);
    VT_CHECK_INT(vl_xmp_orientation((const uint8_t *)"tiff:Orientation=\"", 18), 0);
    VT_CHECK_INT(vl_xmp_orientation((const uint8_t *)"tiff:Orientation>9", 18), 1);
}

/* ---- the pixel moves ------------------------------------------------------------------------ */

static void test_transpose(void) {
    /* 3x2 image, pixel value = its letter: a b c / d e f */
    static const char *want[9] = {NULL,     "abcdef", "cbafed", "fedcba", "defabc",
                                  "adbecf", "daebfc", "fcebda", "cfbead"};
    static const int want_w[9] = {0, 3, 3, 3, 3, 2, 2, 2, 2};
    for (int o = 1; o <= 8; o++) {
        vl_image img = {3, 2, malloc(18)};
        for (int i = 0; i < 18; i++) img.rgb[i] = (uint8_t)('a' + i / 3);
        VT_CHECK(vl_image_apply_orientation(&img, o, "x") == 0);
        char got[7] = {0};
        for (int i = 0; i < 6; i++) got[i] = (char)img.rgb[3 * i];
        VT_CHECKF(strcmp(got, want[o]) == 0 && img.w == want_w[o] && img.h == 6 / want_w[o],
                  "orientation %d: %s %dx%d, expected %s", o, got, img.w, img.h, want[o]);
        vl_image_free(&img);
    }
}

int main(void) {
    test_against_pillow();
    test_parser();
    test_transpose();
    return vt_finish();
}
