/* image_png.c: PNG to 8-bit RGB with libpng, as PIL's Image.open(path).convert("RGB").
 *
 * libpng reads from memory; its errors come back through setjmp and our error function and its
 * warnings are dropped (Pillow ignores the same conditions: "known incorrect sRGB profile",
 * extra compressed data...). Limits: our own IHDR check first (sizes, aspect), then libpng's
 * chunk cache and chunk allocation limits; text, ICC and EXIF chunks are skipped unread.
 * The RGB conversion is PIL's, done here on libpng's rows (packed to a byte per sample):
 *   - grey 1/2/4-bit scaled to 0..255 (0x55, 0x11 steps), grey replicated;
 *   - 16-bit colour and grey+alpha keep the high byte of each sample (PIL's ";16B" raw modes);
 *     16-bit grey clips to 255 (PIL opens it as a 16/32-bit integer image whose conversion to
 *     RGB saturates);
 *   - palettes expanded through PLTE; transparency (tRNS) and alpha dropped, never composited.
 *
 * Leaves out (known differences from PIL): a palette index past the PLTE entries gives black
 * (as in Pillow 12; Pillow 9 gives grey i,i,i); a bad CRC on an IDAT chunk is an error (Pillow does
 * not check IDAT CRCs); the rest of the file after the image data (and a missing IEND) is not
 * read, as in Pillow.
 */
#include "loader/image_decode.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const vl_image_file *file;
    size_t pos;
    char message[200]; /* libpng's error, or ours from the read function */
} png_source;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    if (!src->message[0]) snprintf(src->message, sizeof(src->message), "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* Pillow decodes through the same conditions; nothing to report */
}

static void read_from_memory(png_structp png, png_bytep out, size_t len) {
    png_source *src = png_get_io_ptr(png);
    if (len > src->file->size - src->pos) {
        snprintf(src->message, sizeof(src->message), "%s", VL_IMAGE_TRUNCATED);
        png_error(png, src->message);
    }
    memcpy(out, src->file->data + src->pos, len);
    src->pos += len;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One row of libpng's output (after png_set_packing / gray expansion) to RGB. */
typedef struct {
    int color_type, bit_depth;
    uint8_t palette[256][3]; /* entries past PLTE stay black */
} png_layout;

static void row_to_rgb(const png_layout *lay, const uint8_t *in, uint8_t *out, int w) {
    const int wide = lay->bit_depth == 16; /* bytes per sample: 2 (big-endian) or 1 */
    const int step = wide ? 2 : 1;
    switch (lay->color_type) {
    case PNG_COLOR_TYPE_GRAY:
        for (int x = 0; x < w; x++, out += 3) {
            uint8_t v = wide ? (in[2 * x] ? 255 : in[2 * x + 1]) : in[x];
            out[0] = out[1] = out[2] = v;
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        for (int x = 0; x < w; x++, out += 3) out[0] = out[1] = out[2] = in[2 * step * x];
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        const int channels = lay->color_type == PNG_COLOR_TYPE_RGB ? 3 : 4;
        for (int x = 0; x < w; x++, out += 3)
            for (int c = 0; c < 3; c++) out[c] = in[(channels * x + c) * step];
        break;
    }
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++, out += 3) memcpy(out, lay->palette[in[x]], 3);
        break;
    }
}

/* Everything that may longjmp lives here; locals set after setjmp are not used after it. */
static int decode_rows(png_structp png, png_infop info, png_source *src, png_layout *lay,
                       vl_image *out, uint8_t **native) {
    if (setjmp(png_jmpbuf(png))) return -1;
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    lay->color_type = png_get_color_type(png, info);
    lay->bit_depth = png_get_bit_depth(png, info);
    if (lay->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL;
        int n = 0;
        if (png_get_PLTE(png, info, &pal, &n) == 0) png_error(png, "palette image without PLTE");
        for (int i = 0; i < n && i < 256; i++)
            lay->palette[i][0] = pal[i].red, lay->palette[i][1] = pal[i].green,
            lay->palette[i][2] = pal[i].blue;
    }
    if (lay->bit_depth < 8) {
        png_set_packing(png); /* one byte per sample */
        if (lay->color_type == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(png);
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);

    out->rgb = vl_image_alloc_rgb(src->file, (int)w, (int)h);
    if (!out->rgb) return -2;
    out->w = (int)w, out->h = (int)h;
    /* Interlaced images need the whole image at libpng's depth (the passes fill it in); others
     * go one row at a time through a single row buffer. */
    size_t rows_kept = passes > 1 ? h : 1;
    if (rowbytes > SIZE_MAX / rows_kept || !(*native = malloc(rowbytes * rows_kept))) {
        vl_error_set("out of memory decoding image %s (%zu bytes)", src->file->path,
                     rowbytes * rows_kept);
        return -2;
    }
    for (int pass = 0; pass < passes; pass++)
        for (uint32_t y = 0; y < h; y++) {
            uint8_t *row = *native + (passes > 1 ? y * rowbytes : 0);
            png_read_row(png, row, NULL);
            if (pass == passes - 1) row_to_rgb(lay, row, out->rgb + (size_t)y * w * 3, (int)w);
        }
    return 0;
}

int vl_image_decode_png(const vl_image_file *f, vl_image *out) {
    if (f->size < 8 + 8 + 13 || memcmp(f->data + 12, "IHDR", 4) != 0 || be32(f->data + 8) != 13)
        return vl_image_corrupt(f, "PNG", "signature without a valid IHDR chunk");
    if (vl_image_check_size(f, "PNG", be32(f->data + 16), be32(f->data + 20))) return -1;

    png_source src = {.file = f};
    png_layout *lay = calloc(1, sizeof(*lay));
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!lay || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(lay);
        return vl_error_set("out of memory opening image %s", f->path);
    }
    png_set_read_fn(png, &src, read_from_memory);
    /* our size check came first; these bound what libpng allocates for ancillary chunks */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_cache_max(png, 128);
    png_set_chunk_malloc_max(png, (size_t)8 << 20);
    /* a corrupt ancillary chunk before the image is an error, as in Pillow */
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    static const png_byte unread[] = "iCCP\0iTXt\0tEXt\0zTXt\0eXIf\0sPLT";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, unread, 6);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);

    uint8_t *native = NULL;
    int rc = decode_rows(png, info, &src, lay, out, &native);
    if (rc == -1) vl_image_corrupt(f, "PNG", "%s", src.message[0] ? src.message : "libpng error");
    free(native);
    free(lay);
    png_destroy_read_struct(&png, &info, NULL);
    return rc ? -1 : 0;
}
