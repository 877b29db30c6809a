/* image.c: an image file to 8-bit RGB, as PIL's Image.open(path).convert("RGB") gives it.
 *
 * Decoding is stb_image (PNG, JPEG, BMP, GIF first frame); this file adds what the Qwen2-VL
 * reference pipeline sees on top of it:
 *   - channels as PIL's convert("RGB"): grey replicated, alpha dropped without compositing,
 *     palettes expanded (a palette's transparency is ignored);
 *   - 16-bit PNGs as PIL reads them: colour and grey+alpha keep the high byte of each sample
 *     (Pillow's ";16B" raw modes), 16-bit grey clips to 255 (PIL opens it as a 32/16-bit
 *     integer image, whose conversion to RGB saturates);
 *   - the header is checked before decoding: no pixels, more than
 *     VL_IMAGE_MAX_PIXELS (PIL's decompression-bomb error threshold), aspect ratio over 200
 *     (Qwen2-VL's smart_resize refuses those) are errors naming the file.
 *
 * Leaves out (known differences from PIL): JPEG pixels differ by a level or two because stb's
 * IDCT and chroma upsampling are not libjpeg's; EXIF orientation is ignored (as by
 * Image.open + convert; transformers' load_image() would apply it); CMYK JPEGs, GIF transparency
 * (stb fills transparent pixels with black, PIL keeps the palette colour) and colour profiles are
 * not treated as PIL does.
 */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO /* files are read here, so errors can say which file and why */
/* stb's buffers become vl_image.rgb as they are, released by vl_image_free with free(). */
#define STBI_MALLOC(sz)      malloc(sz)
#define STBI_REALLOC(p, sz)  realloc(p, sz)
#define STBI_FREE(p)         free(p)
#define STBI_FAILURE_USERMSG /* stb's longer messages ("Corrupt PNG") rather than codes */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#include "loader/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE_BYTES ((size_t)1 << 30) /* larger than any acceptable image's encoding */
#define MAX_ASPECT     200

typedef enum { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_BMP, FMT_GIF } image_format;

static image_format sniff_format(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return FMT_JPEG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return FMT_GIF;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return FMT_BMP;
    return FMT_UNKNOWN;
}

static int read_image_file(const char *path, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vl_error_set("cannot open image %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vl_error_set("image %s is not a regular file; pass an image file", path);
    }
    if (st.st_size <= 0) {
        fclose(f);
        return vl_error_set("image %s is empty (0 bytes)", path);
    }
    if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
        fclose(f);
        return vl_error_set("image %s is %lld bytes, more than the %zu-byte limit for an image",
                            path, (long long)st.st_size, MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n);
    if (!buf) {
        fclose(f);
        return vl_error_set("out of memory reading image %s (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int read_err = ferror(f);
    fclose(f);
    if (got != n || read_err) {
        free(buf);
        return vl_error_set("cannot read image %s: got %zu of %zu bytes", path, got, n);
    }
    *out = buf;
    *out_len = n;
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Width and height of an image from its header, without decoding. For PNG the IHDR is read
 * here because stb refuses huge headers with a vague "too large" before we could say how
 * large; the other formats go through stbi_info. */
static int read_header_size(const char *path, const uint8_t *b, size_t n, image_format fmt,
                            int64_t *w, int64_t *h) {
    if (fmt == FMT_PNG) {
        if (n < 8 + 8 + 13 || memcmp(b + 12, "IHDR", 4) != 0 || be32(b + 8) != 13)
            return vl_error_set("image %s: PNG signature without a valid IHDR chunk "
                                "(truncated or corrupt file)",
                                path);
        *w = be32(b + 16);
        *h = be32(b + 20);
        return 0;
    }
    int iw, ih, comp;
    if (n > INT32_MAX || !stbi_info_from_memory(b, (int)n, &iw, &ih, &comp))
        return vl_error_set("image %s: cannot read the header (%s); the file is corrupt or "
                            "an unsupported variant",
                            path, stbi_failure_reason());
    *w = iw;
    *h = ih;
    return 0;
}

static int check_size(const char *path, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0)
        return vl_error_set("image %s has no pixels (header says %lldx%lld)", path, (long long)w,
                            (long long)h);
    /* each side first, so that the product cannot overflow */
    if (w > VL_IMAGE_MAX_PIXELS || h > VL_IMAGE_MAX_PIXELS || w * h > VL_IMAGE_MAX_PIXELS)
        return vl_error_set("image %s is %lldx%lld, more than the limit of %lld pixels "
                            "(PIL's decompression-bomb limit); downscale it first",
                            path, (long long)w, (long long)h, (long long)VL_IMAGE_MAX_PIXELS);
    int64_t big = w > h ? w : h, small = w > h ? h : w;
    if (big > MAX_ASPECT * small)
        return vl_error_set("image %s is %lldx%lld: aspect ratio %.1f is over the limit %d of "
                            "Qwen2-VL's smart_resize; crop or pad it",
                            path, (long long)w, (long long)h, (double)big / (double)small,
                            MAX_ASPECT);
    return 0;
}

/* 16-bit greyscale PNG: PIL saturates each sample at 255 when converting to RGB. */
static uint8_t *decode_grey16_clipped(const uint8_t *b, int n, int *w, int *h) {
    int comp;
    uint16_t *g = stbi_load_16_from_memory(b, n, w, h, &comp, 1);
    if (!g) return NULL;
    size_t count = (size_t)*w * (size_t)*h;
    uint8_t *rgb = malloc(count * 3);
    if (rgb) {
        for (size_t i = 0; i < count; i++) {
            uint8_t v = g[i] > 255 ? 255 : (uint8_t)g[i];
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = v;
        }
    }
    stbi_image_free(g);
    return rgb;
}

int vl_image_load(vl_image *img, const char *path) {
    memset(img, 0, sizeof(*img));
    uint8_t *file;
    size_t n;
    if (read_image_file(path, &file, &n)) return -1;

    int rc = -1;
    uint8_t *pixels = NULL;
    image_format fmt = sniff_format(file, n);
    int64_t hw = 0, hh = 0;
    if (fmt == FMT_UNKNOWN) {
        vl_error_set("image %s is not a PNG, JPEG, BMP or GIF file (unrecognised first bytes)",
                     path);
        goto done;
    }
    if (read_header_size(path, file, n, fmt, &hw, &hh) || check_size(path, hw, hh)) goto done;
    if (n > INT32_MAX) { /* stb takes an int length; MAX_FILE_BYTES keeps us far below */
        vl_error_set("image %s is too large a file for the decoder", path);
        goto done;
    }

    int w = 0, h = 0, comp = 0;
    int grey16 = 0;
    if (fmt == FMT_PNG && stbi_is_16_bit_from_memory(file, (int)n)) {
        int iw, ih;
        grey16 = stbi_info_from_memory(file, (int)n, &iw, &ih, &comp) && comp == 1;
    }
    if (grey16)
        pixels = decode_grey16_clipped(file, (int)n, &w, &h);
    else
        pixels = stbi_load_from_memory(file, (int)n, &w, &h, &comp, 3);
    if (!pixels) {
        vl_error_set("cannot decode image %s: %s; the file is damaged, truncated or an "
                     "unsupported variant",
                     path, stbi_failure_reason());
        goto done;
    }
    if (w != hw || h != hh) {
        vl_error_set("image %s: header says %lldx%lld but the decoder produced %dx%d", path,
                     (long long)hw, (long long)hh, w, h);
        goto done;
    }
    img->rgb = pixels;
    img->w = w;
    img->h = h;
    pixels = NULL;
    rc = 0;
done:
    free(pixels);
    free(file);
    return rc;
}

void vl_image_free(vl_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof(*img));
}
