/* test_image_formats.c: every image format and mode against Pillow, and hostile files.
 *
 *   pillow    tests/fixtures/images/decode/cases.json (make_test_images.py): each file (JPEG,
 *             PNG, GIF, BMP, WebP, TIFF in their modes and variants) must decode to exactly
 *             the bytes of PIL's Image.open(file).convert("RGB"), stored next to it as a PNG;
 *             at least a minimum number of cases per format must be there
 *   hostile   tests/fixtures/images/hostile/: decoder-bug reproducers, resource attacks and
 *             truncated files of every format are refused with a one-line error naming the
 *             file and saying why (run under ASan/UBSan in CI: no crash, no leak); a top-down
 *             BMP decodes equal to its bottom-up twin
 *   fifo      a named pipe is refused at once instead of blocking the read
 * The PNG decode of the expected pixels is itself checked by test_image.c's formula images.
 */
#include "loader/loader.h"
#include "tests/vltest.h"

#include <cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static int load(const char *rel, vl_image *img) {
    vl_error_clear();
    int rc = vl_image_load(img, vt_fixture(rel));
    VT_CHECKF(rc == 0, "%s: %s", rel, vl_error_get());
    return rc;
}

/* ---- every case against Pillow -------------------------------------------------------------- */

static const struct {
    const char *format;
    int min_cases;
} formats[] = {{"JPEG", 13}, {"PNG", 9}, {"GIF", 10}, {"BMP", 22}, {"WEBP", 5}, {"TIFF", 21}};
enum { N_FORMATS = sizeof(formats) / sizeof(formats[0]) };

static int check_case(const cJSON *cs) {
    char file[512], want_file[512];
    snprintf(file, sizeof(file), "images/decode/%s", json_str(cs, "file"));
    snprintf(want_file, sizeof(want_file), "images/decode/%s", json_str(cs, "pil_rgb"));
    vl_image got, want;
    if (load(file, &got)) return 0;
    if (load(want_file, &want)) {
        vl_image_free(&got);
        return 0;
    }
    int same_size = got.w == want.w && got.h == want.h && got.w == json_int(cs, "width") &&
                    got.h == json_int(cs, "height");
    VT_CHECKF(same_size, "%s: %dx%d, PIL %dx%d", file, got.w, got.h, want.w, want.h);
    size_t n = (size_t)want.w * want.h * 3, differ = 0;
    int max_diff = 0;
    for (size_t i = 0; same_size && i < n; i++) {
        int d = abs((int)got.rgb[i] - (int)want.rgb[i]);
        differ += d != 0;
        if (d > max_diff) max_diff = d;
    }
    VT_CHECKF(same_size && differ == 0,
              "%s (%s, PIL mode %s): %zu of %zu bytes differ from PIL, "
              "max %d",
              file, json_str(cs, "what"), json_str(cs, "pil_mode"), differ, n, max_diff);
    vl_image_free(&got);
    vl_image_free(&want);
    return same_size && differ == 0;
}

static void test_against_pillow(void) {
    size_t len = 0;
    char *text = vt_read_all(vt_fixture("images/decode/cases.json"), &len);
    VT_CHECKF(text != NULL, "images/decode/cases.json is missing (make_test_images.py)");
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    VT_CHECK(root != NULL);
    if (!root) return;
    fprintf(stderr, "decode cases from Pillow %s\n",
            json_str(cJSON_GetObjectItem(root, "generator"), "pillow"));
    int count[N_FORMATS] = {0}, exact[N_FORMATS] = {0};
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(root, "cases")) {
        int f = 0;
        while (f < N_FORMATS && strcmp(formats[f].format, json_str(cs, "format")) != 0) f++;
        VT_CHECKF(f < N_FORMATS, "%s: unexpected format %s", json_str(cs, "file"),
                  json_str(cs, "format"));
        if (f == N_FORMATS) continue;
        count[f]++;
        exact[f] += check_case(cs);
    }
    for (int f = 0; f < N_FORMATS; f++) {
        fprintf(stderr, "%-5s %d of %d files decode exactly as PIL\n", formats[f].format, exact[f],
                count[f]);
        VT_CHECKF(count[f] >= formats[f].min_cases, "%s: %d cases, expected at least %d",
                  formats[f].format, count[f], formats[f].min_cases);
    }
    cJSON_Delete(root);
}

/* ---- hostile files -------------------------------------------------------------------------- */

static void expect_refused(const char *rel, const char *needle1, const char *needle2) {
    vl_image img = {7, 7, (uint8_t *)&img}; /* garbage: load must reset it */
    const char *path = vt_fixture(rel);
    vl_error_clear();
    int rc = vl_image_load(&img, path);
    const char *e = vl_error_get();
    VT_CHECKF(rc != 0, "%s was accepted (%dx%d)", rel, img.w, img.h);
    if (rc == 0) {
        vl_image_free(&img);
        return;
    }
    VT_CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
    VT_CHECKF(strstr(e, path) != NULL, "%s: error does not name the file: %s", rel, e);
    VT_CHECKF(strstr(e, needle1) != NULL, "%s: expected '%s' in: %s", rel, needle1, e);
    if (needle2) VT_CHECKF(strstr(e, needle2) != NULL, "%s: expected '%s' in: %s", rel, needle2, e);
    VT_CHECKF(strchr(e, '\n') == NULL, "%s: multi-line error: %s", rel, e);
}

static void test_hostile(void) {
    /* stb_image wrote past its Huffman arrays on this one */
    expect_refused("images/hostile/jpeg_dht_765.jpg", "(JPEG)", "Bogus Huffman table");
    /* ... and read uninitialized memory for a progressive scan naming an undefined table */
    expect_refused("images/hostile/jpeg_progressive_undefined_huffman.jpg",
                   "Huffman table 0x03 was not defined", NULL);
    /* valid, but 1200 scans: each one walks every block (the 200-scan twin decodes in
     * decode/cases.json) */
    expect_refused("images/hostile/jpeg_progressive_1200_scans.jpg", "more than 1000", "scans");
    /* a restart marker in the middle of the entropy data: libjpeg would fill the rest grey */
    expect_refused("images/hostile/jpeg_marker_in_data.jpg", "Corrupt JPEG data", NULL);
    /* 35 bytes declaring a 13000x13000 screen (0.5 GB of RGB) */
    expect_refused("images/hostile/gif_screen_13000.gif", "13000x13000", "only 35 bytes");
    /* 54-byte headers: no pixel data at all (stb gave a black image or a huge canvas) */
    expect_refused("images/hostile/bmp_header_13000.bmp", "13000x13000", "truncated");
    expect_refused("images/hostile/bmp_no_pixels.bmp", "23x17", "truncated");
    expect_refused("images/hostile/bmp_rle_13000.bmp", "13000x13000", "only 64 bytes");
    expect_refused("images/hostile/bmp_rle_early_end.bmp", "RLE data ends after 23 of 391", NULL);
    static const char *truncated[] = {"png", "jpg", "gif", "bmp", "webp", "tif"};
    for (size_t i = 0; i < sizeof(truncated) / sizeof(truncated[0]); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "images/hostile/truncated.%s", truncated[i]);
        expect_refused(rel, "truncated", "cannot decode");
    }
    expect_refused("images/hostile/truncated_ifd.tif", "(TIFF)", "truncated");
}

static void test_top_down_twin(void) {
    vl_image up, down;
    if (load("images/hostile/bmp_bottomup.bmp", &up)) return;
    if (load("images/hostile/bmp_topdown.bmp", &down)) {
        vl_image_free(&up);
        return;
    }
    VT_CHECK(up.w == 23 && up.h == 17 && down.w == up.w && down.h == up.h);
    if (down.w == up.w && down.h == up.h)
        VT_CHECK(memcmp(up.rgb, down.rgb, (size_t)up.w * up.h * 3) == 0);
    /* the rows are not all alike, so an upside-down decode could not pass */
    VT_CHECK(memcmp(up.rgb, up.rgb + (size_t)(up.h - 1) * up.w * 3, (size_t)up.w * 3) != 0);
    vl_image_free(&up);
    vl_image_free(&down);
}

/* ---- RLE streams by hand -------------------------------------------------------------------- */

static const uint8_t rle_palette[4][3] = {{10, 20, 30}, {200, 0, 0}, {0, 200, 0}, {0, 0, 200}};

/* A w x h BMP (40-byte header, 4-entry palette) around an RLE stream; pixel data at offset 70,
 * an even one, so that absolute runs align as the format means. */
static int write_rle_bmp(const char *path, int w, int h, int rle4, const uint8_t *stream,
                         size_t n) {
    uint8_t head[70] = {'B', 'M'};
    uint32_t fields[][2] = {
        {2, 70 + (uint32_t)n}, {10, 70},          {14, 40}, {18, (uint32_t)w}, {22, (uint32_t)h},
        {30, rle4 ? 2u : 1u},  {34, (uint32_t)n}, {46, 4}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        for (int b = 0; b < 4; b++) head[fields[i][0] + b] = (uint8_t)(fields[i][1] >> (8 * b));
    head[26] = 1, head[28] = rle4 ? 4 : 8; /* planes, bits */
    for (int i = 0; i < 4; i++)            /* BGRX */
        head[54 + 4 * i] = rle_palette[i][2], head[55 + 4 * i] = rle_palette[i][1],
                      head[56 + 4 * i] = rle_palette[i][0];
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(head, 1, sizeof(head), f) == sizeof(head) && fwrite(stream, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* indices given top row first */
static void check_rle(const char *dir, const char *name, int w, int h, int rle4,
                      const uint8_t *stream, size_t n, const uint8_t *want_indices) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    VT_CHECK(write_rle_bmp(path, w, h, rle4, stream, n) == 0);
    vl_image img;
    vl_error_clear();
    int rc = vl_image_load(&img, path);
    VT_CHECKF(rc == 0, "%s: %s", name, vl_error_get());
    if (rc == 0) {
        VT_CHECK(img.w == w && img.h == h);
        int bad = 0;
        for (int i = 0; i < w * h && img.w == w && img.h == h; i++)
            bad += memcmp(img.rgb + 3 * i, rle_palette[want_indices[i]], 3) != 0;
        VT_CHECKF(bad == 0, "%s: %d pixels differ from the hand-decoded stream", name, bad);
        vl_image_free(&img);
    }
    unlink(path);
}

static void test_rle_by_hand(const char *dir) {
    /* RLE8, 5x3, rows stored bottom first: a run of 2; a delta 1 right, 1 up (skipped pixels
     * are index 0); an absolute run of 3 that runs on into the next row (+ pad byte); a run
     * of 2 clipped away because x is past the row end; end of line; end of bitmap unread. */
    static const uint8_t rle8[] = {2, 1, 0, 2, 1, 1, 0, 3, 2, 3, 2, 0, 2, 3, 0, 0, 0, 1};
    static const uint8_t want8[] = {2, 0, 0, 0, 0, /* top: stored row 2 */
                                    0, 0, 0, 2, 3, 1, 1, 0, 0, 0};
    check_rle(dir, "rle8.bmp", 5, 3, 0, rle8, sizeof(rle8), want8);
    /* RLE4, 4x2: alternating run of 3 (1 2 1), end of line; absolute run of 3 nibbles in 2
     * bytes (Pillow reads only one of them and drops the third pixel), end of line */
    static const uint8_t rle4[] = {3, 0x12, 0, 0, 0, 3, 0x13, 0x20, 0, 0, 0, 1};
    static const uint8_t want4[] = {1, 3, 2, 0, 1, 2, 1, 0};
    check_rle(dir, "rle4.bmp", 4, 2, 1, rle4, sizeof(rle4), want4);
}

static void test_fifo(void) {
    const char *base = getenv("TMPDIR");
    char dir[256], path[300];
    snprintf(dir, sizeof(dir), "%s/vl_test_fifo_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        VT_SKIP("mkdtemp failed");
        return;
    }
    snprintf(path, sizeof(path), "%s/pipe.png", dir);
    if (mkfifo(path, 0600) != 0) {
        VT_SKIP("mkfifo failed");
    } else {
        vl_image img;
        vl_error_clear();
        VT_CHECK(vl_image_load(&img, path) != 0); /* would block forever if opened blocking */
        VT_CHECKF(strstr(vl_error_get(), "FIFO") != NULL, "%s", vl_error_get());
        unlink(path);
    }
    rmdir(dir);
}

int main(void) {
    test_against_pillow();
    test_hostile();
    test_top_down_twin();
    test_fifo();
    const char *base = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/vl_test_rle_XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(dir)) {
        test_rle_by_hand(dir);
        rmdir(dir);
    } else {
        VT_CHECKF(0, "mkdtemp %s failed", dir);
    }
    return vt_finish();
}
