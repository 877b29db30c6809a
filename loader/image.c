/* image.c: an image file to 8-bit RGB as transformers' load_image gives it: PIL's
 * ImageOps.exif_transpose(Image.open(path)).convert("RGB").
 *
 * This file reads the file (vl_read_file: a FIFO or device cannot hang us), or takes the bytes
 * from memory (vl_image_load_bytes: a server's upload), recognises the format from its first bytes
 * and hands the bytes to one decoder, each built on the library that is fuzzed in production and
 * that Pillow itself uses where it matters for the pixels: PNG   libpng       (image_png.c) JPEG
 * libjpeg-turbo (image_jpeg.c) GIF   giflib       (image_gif.c)     WebP  libwebp (image_webp.c)
 *   TIFF  libtiff      (image_tiff.c)    BMP   our own reader (image_bmp.c)
 * What the decoders share (the limits checked from the header before any pixel is decoded,
 * the wording of errors, PIL's CMYK -> RGB conversion) is image_decode.c.
 * Truncated data is an error in every format, as in Pillow (LOAD_TRUNCATED_IMAGES off).
 *
 * The EXIF / XMP orientation is applied after decoding (image_orient.c, exif.c); alpha is
 * dropped, never composited (transformers 5.17's load_image and convert_to_rgb both call
 * convert("RGB"); checked on the device by make_processor_goldens.py).
 * Leaves out (known differences from PIL): colour profiles are not applied (PIL does not
 * either); formats other than the six above; each decoder's file lists its own.
 */
#include "loader/image_decode.h"
#include "loader/image_orient.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES ((size_t)1 << 30) /* larger than any acceptable image's encoding */

static vl_image_format sniff_format(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return VL_FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return VL_FMT_JPEG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return VL_FMT_GIF;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return VL_FMT_BMP;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return VL_FMT_WEBP;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return VL_FMT_TIFF;
    return VL_FMT_UNKNOWN;
}

/* The whole file (vl_read_file: regular files only, so a FIFO cannot hang us). */
static int read_image_file(const char *path, uint8_t **out, size_t *out_len) {
    char *buf;
    *out = NULL;
    if (vl_read_file(path, MAX_FILE_BYTES, &buf, out_len)) return -1;
    if (*out_len == 0) {
        free(buf);
        return vl_error_set("image %s is empty (0 bytes)", path);
    }
    *out = (uint8_t *)buf;
    return 0;
}

int vl_image_load_bytes(vl_image *img, const char *name, const uint8_t *bytes, size_t n) {
    memset(img, 0, sizeof(*img));
    if (n == 0) return vl_error_set("image %s is empty (0 bytes)", name);
    if (n > MAX_FILE_BYTES)
        return vl_error_set("image %s is %zu bytes, more than the %zu an image may take", name, n,
                            MAX_FILE_BYTES);
    vl_image_file f = {name, bytes, n};
    int rc;
    vl_image_format format = sniff_format(bytes, n);
    switch (format) {
    case VL_FMT_PNG:
        rc = vl_image_decode_png(&f, img);
        break;
    case VL_FMT_JPEG:
        rc = vl_image_decode_jpeg(&f, img);
        break;
    case VL_FMT_GIF:
        rc = vl_image_decode_gif(&f, img);
        break;
    case VL_FMT_BMP:
        rc = vl_image_decode_bmp(&f, img);
        break;
    case VL_FMT_WEBP:
        rc = vl_image_decode_webp(&f, img);
        break;
    case VL_FMT_TIFF:
        rc = vl_image_decode_tiff(&f, img);
        break;
    default:
        rc = vl_error_set("image %s is not a PNG, JPEG, GIF, BMP, WebP or TIFF file "
                          "(unrecognised first bytes)",
                          name);
    }
    /* transformers' load_image: ImageOps.exif_transpose before convert("RGB") */
    if (!rc) rc = vl_image_apply_orientation(img, vl_image_orientation(bytes, n, format), name);
    if (rc) vl_image_free(img);
    return rc ? -1 : 0;
}

int vl_image_load(vl_image *img, const char *path) {
    memset(img, 0, sizeof(*img));
    uint8_t *bytes;
    size_t n;
    if (read_image_file(path, &bytes, &n)) return -1;
    int rc = vl_image_load_bytes(img, path, bytes, n);
    free(bytes);
    return rc;
}

void vl_image_free(vl_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof(*img));
}
