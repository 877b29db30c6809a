/* image_decode.c: what every per-format decoder (loader/image_<format>.c) shares: the limits
 * checked from the header before any pixel is decoded, the RGB buffer, the wording of errors,
 * and PIL's CMYK -> RGB conversion (JPEG and TIFF use it). image_decode.h is the contract.
 *
 * The limits: no pixels, more than VL_IMAGE_MAX_PIXELS (PIL's decompression-bomb error
 * threshold), aspect ratio over 200 (Qwen2-VL's smart_resize refuses those); for GIF screens
 * and RLE BMPs also a canvas of at most 1 Mpixel + 4096 pixels per byte of file (image_decode.h
 * says why no real file comes near).
 */
#include "loader/image_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_ASPECT 200

int vl_image_check_size(const vl_image_file *f, const char *format, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0)
        return vl_error_set("image %s (%s) has no pixels (header says %lldx%lld)", f->path, format,
                            (long long)w, (long long)h);
    /* each side first, so that the product cannot overflow */
    if (w > VL_IMAGE_MAX_PIXELS || h > VL_IMAGE_MAX_PIXELS || w * h > VL_IMAGE_MAX_PIXELS)
        return vl_error_set("image %s (%s) is %lldx%lld, more than the limit of %lld pixels "
                            "(PIL's decompression-bomb limit); downscale it first",
                            f->path, format, (long long)w, (long long)h,
                            (long long)VL_IMAGE_MAX_PIXELS);
    int64_t big = w > h ? w : h, small = w > h ? h : w;
    if (big > MAX_ASPECT * small)
        return vl_error_set("image %s (%s) is %lldx%lld: aspect ratio %.1f is over the limit %d "
                            "of Qwen2-VL's smart_resize; crop or pad it",
                            f->path, format, (long long)w, (long long)h,
                            (double)big / (double)small, MAX_ASPECT);
    return 0;
}

int vl_image_check_canvas(const vl_image_file *f, const char *format, int64_t w, int64_t h) {
    /* sizes already passed vl_image_check_size, so nothing here overflows */
    int64_t cap = VL_IMAGE_CANVAS_FREE + VL_IMAGE_CANVAS_PER_BYTE * (int64_t)f->size;
    if (w * h > cap)
        return vl_error_set("image %s (%s) declares a %lldx%lld canvas but is only %zu bytes: "
                            "no real %s is that much larger than its data (limit %lld pixels "
                            "+ %d per byte); the file is damaged or crafted, re-export it",
                            f->path, format, (long long)w, (long long)h, f->size, format,
                            (long long)VL_IMAGE_CANVAS_FREE, VL_IMAGE_CANVAS_PER_BYTE);
    return 0;
}

uint8_t *vl_image_alloc_rgb(const vl_image_file *f, int w, int h) {
    uint8_t *rgb = calloc((size_t)w * (size_t)h, 3);
    if (!rgb)
        vl_error_set("out of memory decoding image %s (%dx%d RGB, %zu bytes)", f->path, w, h,
                     (size_t)w * (size_t)h * 3);
    return rgb;
}

int vl_image_corrupt(const vl_image_file *f, const char *format, const char *fmt, ...) {
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    for (char *c = detail; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' '; /* library messages stay on one line */
    return vl_error_set("cannot decode image %s (%s): %s; the file is damaged, export or "
                        "download it again",
                        f->path, format, detail);
}

int vl_image_unsupported(const vl_image_file *f, const char *format, const char *fmt, ...) {
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return vl_error_set("image %s (%s): %s is not supported; convert it to PNG first", f->path,
                        format, detail);
}

void vl_image_cmyk_row_to_rgb(uint8_t *rgb, const uint8_t *cmyk, int n, int stride, int inverted) {
    const int flip = inverted ? 255 : 0;
    for (int x = 0; x < n; x++, cmyk += stride, rgb += 3) {
        int nk = 255 - (cmyk[3] ^ flip);
        for (int c = 0; c < 3; c++) {
            int t = (cmyk[c] ^ flip) * nk + 128; /* PIL's MULDIV255 */
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}
