/* image_decode.h: the contract of a per-format decoder (loader/image_<format>.c): what it is
 * given, the checks and helpers it shares (image_decode.c), and its entry point, which
 * loader/image.c (reading, sniffing) calls. Not part of the public API (loader/loader.h).
 *
 * Every decoder takes the whole file in memory, reads the image size from the header, calls
 * vl_image_check_size (and vl_image_check_canvas where the format can declare a canvas its data
 * does not fill) BEFORE allocating pixels, and fills a vl_image with 8-bit RGB exactly as
 * PIL's Image.open(path).convert("RGB") gives it. Errors are one line naming the file.
 *
 * Leaves out: the orientation (image_orient.h), resizing and normalization (resize.c,
 * preprocess.c).
 */
#ifndef VL_IMAGE_DECODE_H
#define VL_IMAGE_DECODE_H

#include "loader/loader.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *path;    /* for messages */
    const uint8_t *data; /* the whole file */
    size_t size;
} vl_image_file;

/* The header's size against the limits every format shares: no pixels, more than
 * VL_IMAGE_MAX_PIXELS, aspect ratio over 200. `format` names the format in messages. */
int vl_image_check_size(const vl_image_file *f, const char *format, int64_t w, int64_t h);

/* For formats whose header can declare a canvas far larger than the data can fill (a GIF's
 * logical screen, an RLE-compressed BMP): at most VL_IMAGE_CANVAS_FREE pixels plus
 * VL_IMAGE_CANVAS_PER_BYTE pixels a byte of file. GIF's LZW cannot expand a byte to more than
 * ~2730 pixels (a 12-bit code stands for at most ~4090 of them), and an RLE BMP that
 * encodes its pixels needs a 2-byte run for at most 255 of them, so no real file comes near. */
#define VL_IMAGE_CANVAS_FREE     ((int64_t)1 << 20)
#define VL_IMAGE_CANVAS_PER_BYTE 4096
int vl_image_check_canvas(const vl_image_file *f, const char *format, int64_t w, int64_t h);

/* w * h * 3 bytes, zeroed; on failure records an error naming the file and returns NULL. */
uint8_t *vl_image_alloc_rgb(const vl_image_file *f, int w, int h);

/* Record "cannot decode image PATH (FORMAT): DETAIL; the file is damaged, export ..." */
int vl_image_corrupt(const vl_image_file *f, const char *format, const char *fmt, ...)
    VL_PRINTF(3, 4);
/* Record "image PATH (FORMAT): DETAIL is not supported; convert it to PNG ..." */
int vl_image_unsupported(const vl_image_file *f, const char *format, const char *fmt, ...)
    VL_PRINTF(3, 4);
/* The wording of a file that ends inside the image data, for the DETAIL above. */
#define VL_IMAGE_TRUNCATED "the file ends before the image data does (truncated)"

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb): with nk = 255 - K, each of R, G, B is
 * nk - round(C * nk / 255) computed as PIL's MULDIV255. `inverted` first complements all four
 * samples (PIL's "CMYK;I" raw mode, which it assumes for every 4-component JPEG). */
void vl_image_cmyk_row_to_rgb(uint8_t *rgb, const uint8_t *cmyk, int n, int stride, int inverted);

/* The container format, recognised from the first bytes (image.c). */
typedef enum {
    VL_FMT_UNKNOWN,
    VL_FMT_PNG,
    VL_FMT_JPEG,
    VL_FMT_GIF,
    VL_FMT_BMP,
    VL_FMT_WEBP,
    VL_FMT_TIFF
} vl_image_format;

/* One decoder per format; each fills *out (zeroed by the caller) or records an error. */
int vl_image_decode_png(const vl_image_file *f, vl_image *out);
int vl_image_decode_jpeg(const vl_image_file *f, vl_image *out);
int vl_image_decode_gif(const vl_image_file *f, vl_image *out);
int vl_image_decode_bmp(const vl_image_file *f, vl_image *out);
int vl_image_decode_webp(const vl_image_file *f, vl_image *out);
int vl_image_decode_tiff(const vl_image_file *f, vl_image *out);

#endif
