/* image_tiff.c: the first page of a TIFF to 8-bit RGB with libtiff, as Pillow maps it.
 *
 * libtiff reads from memory and undoes the compression (none, LZW, deflate, PackBits), the
 * predictor and the fill order; its errors and warnings go to per-handle handlers (libtiff 4.5
 * TIFFOpenOptions) that record them, never print, together with a cap on any one allocation
 * it makes. The samples are then mapped to RGB as Pillow's TiffImagePlugin does (its OPEN_INFO
 * table, 8-bit samples unless said otherwise):
 *   min-is-black / min-is-white grey of 1, 2, 4 or 8 bits (scaled by 255, 85, 17, 1; inverted
 *   for min-is-white), grey + alpha; RGB with 0-3 extra samples (unassociated alpha and
 *   unspecified extras dropped, associated alpha divided out as PIL's "RGBa" unpacker does:
 *   c * 255 / a, black where a is 0); palette of 1-8 bits (16-bit colour map, high byte),
 *   palette + alpha; CMYK (+ extras) through PIL's CMYK -> RGB.
 * Strips and tiles are read whole, as Pillow reads them. Sizes pass the limits before
 * anything is decoded, and a tile may not be larger than the image rounded up to 16.
 *
 * Leaves out (refused with a clear error): 16-bit and float samples, YCbCr and Lab, JPEG and
 * other compressions, separate colour planes, pages after the first.
 */
#include "loader/image_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
    const vl_image_file *file;
    uint64_t pos;
    int hit_end;       /* a read asked for bytes past the end of the file */
    char message[200]; /* libtiff's last error */
} tiff_source;

static tmsize_t read_proc(thandle_t h, void *buf, tmsize_t n) {
    tiff_source *src = h;
    uint64_t left = src->pos < src->file->size ? src->file->size - src->pos : 0;
    if (n < 0) return -1;
    if ((uint64_t)n > left) src->hit_end = 1, n = (tmsize_t)left;
    memcpy(buf, src->file->data + src->pos, (size_t)n);
    src->pos += (uint64_t)n;
    return n;
}
static tmsize_t write_proc(thandle_t h, void *buf, tmsize_t n) {
    (void)h, (void)buf, (void)n;
    return -1; /* opened read-only */
}
static toff_t seek_proc(thandle_t h, toff_t off, int whence) {
    tiff_source *src = h;
    uint64_t base = whence == SEEK_CUR ? src->pos : whence == SEEK_END ? src->file->size : 0;
    src->pos = base + off;
    return src->pos;
}
static int close_proc(thandle_t h) {
    (void)h;
    return 0;
}
static toff_t size_proc(thandle_t h) {
    return ((tiff_source *)h)->file->size;
}
static int map_proc(thandle_t h, void **base, toff_t *size) {
    (void)h, (void)base, (void)size;
    return 0; /* no mapping: libtiff reads through read_proc */
}
static void unmap_proc(thandle_t h, void *base, toff_t size) {
    (void)h, (void)base, (void)size;
}

static int on_tiff_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)module;
    tiff_source *src = user;
    vsnprintf(src->message, sizeof(src->message), fmt, ap);
    return 1; /* handled: nothing printed */
}
static int on_tiff_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1; /* unknown tags and the like: Pillow decodes through them too */
}

typedef enum {
    TK_GREY,
    TK_GREY_INVERTED,
    TK_RGB,
    TK_RGB_PREMULTIPLIED,
    TK_PALETTE,
    TK_CMYK
} tiff_kind;

typedef struct {
    uint32_t w, h;
    uint16_t bits, samples, photometric;
    tiff_kind kind;
    uint8_t pal[256][3];
} tiff_layout;

/* Extra samples after the colour ones: the first may be alpha (1 associated, 2 not), any
 * others unspecified (0), as in Pillow's table. */
static int extras_ok(uint16_t n, const uint16_t *extra, uint16_t want_n) {
    if (n != want_n) return 0;
    for (uint16_t i = 1; i < n; i++)
        if (extra[i] != 0) return 0;
    return n == 0 || extra[0] <= 2;
}

static int classify(TIFF *t, tiff_layout *L) {
    uint16_t n_extra = 0, *extra = NULL, b = L->bits, s = L->samples;
    TIFFGetField(t, TIFFTAG_EXTRASAMPLES, &n_extra, &extra);
    const int low_bits = b == 1 || b == 2 || b == 4 || b == 8;
    switch (L->photometric) {
    case PHOTOMETRIC_MINISWHITE:
    case PHOTOMETRIC_MINISBLACK:
        L->kind = L->photometric == PHOTOMETRIC_MINISWHITE ? TK_GREY_INVERTED : TK_GREY;
        if (s == 1 && n_extra == 0 && low_bits) return 0;
        if (L->photometric == PHOTOMETRIC_MINISBLACK && s == 2 && b == 8 && n_extra == 1 &&
            extra[0] == EXTRASAMPLE_UNASSALPHA)
            return 0;
        break;
    case PHOTOMETRIC_RGB:
        L->kind = TK_RGB;
        if (b != 8 || s < 3 || s > 6) break;
        if ((s == 3 || s == 4) && n_extra == 0) return 0; /* 4: alpha without ExtraSamples */
        if (!extras_ok(n_extra, extra, s - 3)) break;
        if (extra[0] == EXTRASAMPLE_ASSOCALPHA) L->kind = TK_RGB_PREMULTIPLIED;
        return 0;
    case PHOTOMETRIC_PALETTE:
        L->kind = TK_PALETTE;
        if ((s == 1 && n_extra == 0 && low_bits) ||
            (s == 2 && b == 8 && n_extra == 1 && extra[0] == EXTRASAMPLE_UNASSALPHA)) {
            uint16_t *r, *g, *bl;
            if (!TIFFGetField(t, TIFFTAG_COLORMAP, &r, &g, &bl)) return -1;
            for (int i = 0; i < (1 << b); i++)
                L->pal[i][0] = (uint8_t)(r[i] >> 8), L->pal[i][1] = (uint8_t)(g[i] >> 8),
                L->pal[i][2] = (uint8_t)(bl[i] >> 8);
            return 0;
        }
        break;
    case PHOTOMETRIC_SEPARATED:
        L->kind = TK_CMYK;
        if (b == 8 && s >= 4 && s <= 6 && extras_ok(n_extra, extra, s - 4) &&
            (n_extra == 0 || extra[0] == 0))
            return 0;
        break;
    }
    return -1;
}

static unsigned sample(const uint8_t *row, int bits, uint64_t i) {
    if (bits == 8) return row[i];
    uint64_t bit = i * (uint64_t)bits;
    return (unsigned)(row[bit >> 3] >> (8 - bits - (int)(bit & 7))) & ((1u << bits) - 1);
}

static uint8_t unpremultiply(unsigned c, unsigned a) {
    if (a == 0) return 0;
    unsigned v = a == 255 ? c : c * 255 / a;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* n pixels of packed samples (starting at bit 0 of `in`) to RGB. */
static void pixels_to_rgb(const tiff_layout *L, const uint8_t *in, uint8_t *out, uint32_t n) {
    const int bits = L->bits, s = L->samples;
    if (L->kind == TK_CMYK) {
        vl_image_cmyk_row_to_rgb(out, in, (int)n, s, 0);
        return;
    }
    for (uint32_t x = 0; x < n; x++, out += 3) {
        const uint8_t *p = in + (size_t)x * s; /* 8-bit kinds */
        switch (L->kind) {
        case TK_GREY:
        case TK_GREY_INVERTED: {
            unsigned v = sample(in, bits, (uint64_t)x * s) * (255u / ((1u << bits) - 1));
            out[0] = out[1] = out[2] = (uint8_t)(L->kind == TK_GREY ? v : 255 - v);
            break;
        }
        case TK_PALETTE:
            memcpy(out, L->pal[sample(in, bits, (uint64_t)x * s)], 3);
            break;
        case TK_RGB:
            memcpy(out, p, 3);
            break;
        default:
            for (int c = 0; c < 3; c++) out[c] = unpremultiply(p[c], p[3]);
        }
    }
}

static int tiff_failed(const vl_image_file *f, const tiff_source *src) {
    if (src->hit_end) return vl_image_corrupt(f, "TIFF", "%s", VL_IMAGE_TRUNCATED);
    return vl_image_corrupt(f, "TIFF", "%s", src->message[0] ? src->message : "libtiff error");
}

/* Whole strips, as Pillow reads them (a PackBits run may then cross a row end). */
static int read_strips(TIFF *t, const vl_image_file *f, tiff_source *src, const tiff_layout *L,
                       vl_image *out) {
    uint32_t rps = 0;
    TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rps);
    if (rps == 0 || rps > L->h) rps = L->h;
    tmsize_t line = TIFFScanlineSize(t);
    uint8_t *strip = line > 0 ? malloc((size_t)line * rps) : NULL;
    if (!strip) return vl_error_set("out of memory decoding image %s", f->path);
    for (uint32_t s = 0, y0 = 0; y0 < L->h; s++, y0 += rps) {
        uint32_t rows = rps < L->h - y0 ? rps : L->h - y0;
        tmsize_t want = line * (tmsize_t)rows;
        if (TIFFReadEncodedStrip(t, s, strip, want) != want) {
            free(strip);
            return tiff_failed(f, src);
        }
        for (uint32_t r = 0; r < rows; r++)
            pixels_to_rgb(L, strip + (size_t)r * (size_t)line,
                          out->rgb + (size_t)(y0 + r) * L->w * 3, L->w);
    }
    free(strip);
    return 0;
}

static int read_tiles(TIFF *t, const vl_image_file *f, tiff_source *src, const tiff_layout *L,
                      vl_image *out) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
    if (tw == 0 || th == 0 || tw > ((L->w + 15) & ~15u) || th > ((L->h + 15) & ~15u))
        return vl_image_corrupt(f, "TIFF", "%ux%u tiles for a %ux%u image", tw, th, L->w, L->h);
    tmsize_t tile_bytes = TIFFTileSize(t), row_bytes = TIFFTileRowSize(t);
    uint8_t *tile = tile_bytes > 0 ? malloc((size_t)tile_bytes) : NULL;
    if (!tile) return vl_error_set("out of memory decoding image %s", f->path);
    for (uint32_t ty = 0; ty < L->h; ty += th)
        for (uint32_t tx = 0; tx < L->w; tx += tw) {
            if (TIFFReadEncodedTile(t, TIFFComputeTile(t, tx, ty, 0, 0), tile, tile_bytes) !=
                tile_bytes) {
                free(tile);
                return tiff_failed(f, src);
            }
            for (uint32_t r = 0; r < th && ty + r < L->h; r++)
                pixels_to_rgb(L, tile + (size_t)r * (size_t)row_bytes,
                              out->rgb + ((size_t)(ty + r) * L->w + tx) * 3,
                              tw < L->w - tx ? tw : L->w - tx);
        }
    free(tile);
    return 0;
}

static int decode_page(TIFF *t, const vl_image_file *f, tiff_source *src, vl_image *out) {
    tiff_layout *L = calloc(1, sizeof(*L));
    if (!L) return vl_error_set("out of memory opening image %s", f->path);
    uint16_t compression = 0, planar = 0, format = 0;
    int rc = -1;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &L->w);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &L->h);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &L->bits);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &L->samples);
    TIFFGetFieldDefaulted(t, TIFFTAG_COMPRESSION, &compression);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &format);
    TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &L->photometric);
    if (vl_image_check_size(f, "TIFF", L->w, L->h)) goto done;
    if (compression != COMPRESSION_NONE && compression != COMPRESSION_LZW &&
        compression != COMPRESSION_ADOBE_DEFLATE && compression != COMPRESSION_DEFLATE &&
        compression != COMPRESSION_PACKBITS) {
        vl_image_unsupported(f, "TIFF", "compression %u", compression);
        goto done;
    }
    if ((planar != PLANARCONFIG_CONTIG && L->samples > 1) || format != SAMPLEFORMAT_UINT ||
        classify(t, L)) {
        vl_image_unsupported(f, "TIFF", "photometric %u with %u %s%u-bit samples%s", L->photometric,
                             L->samples, format != SAMPLEFORMAT_UINT ? "non-integer " : "", L->bits,
                             planar != PLANARCONFIG_CONTIG ? " in separate planes" : "");
        goto done;
    }
    if (!(out->rgb = vl_image_alloc_rgb(f, (int)L->w, (int)L->h))) goto done;
    out->w = (int)L->w, out->h = (int)L->h;
    rc = TIFFIsTiled(t) ? read_tiles(t, f, src, L, out) : read_strips(t, f, src, L, out);
done:
    free(L);
    return rc;
}

int vl_image_decode_tiff(const vl_image_file *f, vl_image *out) {
    tiff_source src = {.file = f};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) return vl_error_set("out of memory opening image %s", f->path);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_tiff_error, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_tiff_warning, &src);
    /* libtiff's own buffers hold compressed strips and tag arrays, all bounded by the file */
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)f->size + ((tmsize_t)16 << 20));
    TIFF *t = TIFFClientOpenExt(f->path, "rm", &src, read_proc, write_proc, seek_proc, close_proc,
                                size_proc, map_proc, unmap_proc, opts);
    TIFFOpenOptionsFree(opts);
    if (!t) return tiff_failed(f, &src);
    int rc = decode_page(t, f, &src, out);
    TIFFClose(t);
    return rc;
}
