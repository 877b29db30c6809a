/* image_bmp.c: BMP to 8-bit RGB with a small reader of our own, as Pillow reads BMPs.
 *
 * Why our own: stb_image's BMP reader survived a quick libFuzzer run (ASan + UBSan, 616k runs
 * in 150 s) but is not Pillow's: it scales 16-bit pixels by bit replication (half the bytes of
 * a 5-5-5 or 5-6-5 image come out one level off PIL's v * 255 / 31), refuses RLE and 64-byte
 * headers. BMP is simple enough to read here, every size checked against the file first.
 * What is read, as Pillow's BmpImagePlugin (9.4 to 12) does:
 *   - headers of 12 (OS/2: 16-bit sizes), 40, 52, 56 (newer Pillow), 64, 108 and 124 bytes; a
 *     height whose top byte is 0xff means top-down rows (Pillow's rule), else bottom-up;
 *   - 1/4/8-bit palettes (entries past the palette black), 16-bit 5-5-5 (uncompressed) and the
 *     5-6-5 / 5-5-5 bitfields scaled as v * 255 / 31 (or 63), 24-bit, and 32-bit with the byte
 *     layouts Pillow accepts (alpha dropped); an 8-bit palette that is the grey ramp 0..n-1
 *     makes the index itself the grey level (PIL mode "L");
 *   - RLE8 / RLE4 with Pillow's stream semantics: runs clipped at the row end, end-of-line pads
 *     the row with index 0, delta skips with index 0, end-of-bitmap before the last pixel is an
 *     error ("not enough image data"), absolute runs word-aligned on the file offset.
 * Uncompressed pixel data must be all there (stride * height bytes from the data offset) or
 * the file is truncated, checked before decoding. RLE files are held to the canvas-to-file
 * rule of image_decode.h.
 *
 * Leaves out (known differences from PIL): Pillow misreads a few rare layouts that we decode
 * as the format says: an RLE4 absolute run of odd length (Pillow drops its last pixel), an RLE
 * delta in Pillow 9 (it reads two bytes too many; later versions read it as we do), and a
 * 4-bit grey-ramp or 2-colour black/white palette on 4/8-bit pixels (Pillow decodes the data as
 * 8-bit or 1-bit); a palette index past the palette gives black (as in Pillow 12; Pillow 9
 * gives grey i,i,i); RLE8/RLE4 on pixels of another depth are refused (Pillow accepts them).
 * JPEG/PNG-compressed BMPs and 2/64-bit pixels are refused, as in Pillow.
 */
#include "loader/image_decode.h"

#include <stdlib.h>
#include <string.h>

enum { BMP_RAW = 0, BMP_RLE8 = 1, BMP_RLE4 = 2, BMP_BITFIELDS = 3 };

typedef struct {
    int64_t w, h;
    int top_down, bits, compression;
    size_t data_start;
    int rgb16_565;       /* 16-bit: 5-6-5 instead of 5-5-5 */
    int byte_of[3];      /* 32-bit: which byte holds R, G, B */
    int grey_index;      /* 8-bit grey ramp palette: index = grey level */
    uint8_t pal[256][3]; /* RGB, entries past the palette black */
} bmp_layout;

static uint32_t le16(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const uint8_t *p) {
    return le16(p) | le16(p + 2) << 16;
}

/* 32-bit bitfields Pillow accepts (r, g, b, a masks); all-zero masks mean B, G, R, A bytes. */
static int layout_32(const uint32_t m[4], int byte_of[3]) {
    static const uint32_t ok[][4] = {
        {0xff0000, 0xff00, 0xff, 0},          {0xff000000, 0xff0000, 0xff00, 0},
        {0xff000000, 0xff00, 0xff, 0},        {0xff000000, 0xff0000, 0xff00, 0xff},
        {0xff, 0xff00, 0xff0000, 0xff000000}, {0xff0000, 0xff00, 0xff, 0xff000000},
        {0xff000000, 0xff00, 0xff, 0xff0000}, {0, 0, 0, 0}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (memcmp(m, ok[i], sizeof(ok[i])) != 0) continue;
        for (int c = 0; c < 3; c++) {
            int b = 0;
            while (b < 4 && m[c] != 0xffu << (8 * b)) b++;
            byte_of[c] = b < 4 ? b : 2 - c; /* zero masks: BGR order */
        }
        return 0;
    }
    return -1;
}

static int read_masks(const vl_image_file *f, bmp_layout *L, size_t hsize, size_t *pos) {
    const uint8_t *hd = f->data + 18; /* header fields after its size */
    uint32_t m[4] = {0, 0, 0, 0};
    if (hsize - 4 >= 48) {
        for (int i = 0; i < (hsize - 4 >= 52 ? 4 : 3); i++) m[i] = le32(hd + 36 + 4 * i);
    } else { /* a 40-byte header: three masks follow it */
        if (f->size - *pos < 12) return vl_image_corrupt(f, "BMP", "%s", VL_IMAGE_TRUNCATED);
        for (int i = 0; i < 3; i++) m[i] = le32(f->data + *pos + 4 * i);
        *pos += 12;
    }
    if (L->bits == 32 && layout_32(m, L->byte_of) == 0) return 0;
    if (L->bits == 24 && m[0] == 0xff0000 && m[1] == 0xff00 && m[2] == 0xff) return 0;
    if (L->bits == 16 && m[1] == 0x7e0 && m[0] == 0xf800 && m[2] == 0x1f)
        return L->rgb16_565 = 1, 0;
    if (L->bits == 16 && m[1] == 0x3e0 && m[0] == 0x7c00 && m[2] == 0x1f) return 0;
    return vl_image_unsupported(f, "BMP", "a %d-bit bitfields layout %08x/%08x/%08x/%08x", L->bits,
                                m[0], m[1], m[2], m[3]);
}

/* The palette (as far as the file has it) at *pos; Pillow reads it right after the header. */
static int read_palette(const vl_image_file *f, bmp_layout *L, uint32_t colors, int entry,
                        size_t *pos) {
    if (colors == 0 || colors > 256)
        return vl_image_unsupported(f, "BMP", "a palette of %u colours", colors);
    size_t want = (size_t)entry * colors, have = f->size - *pos < want ? f->size - *pos : want;
    const uint8_t *p = f->data + *pos;
    int grey = have == want;
    for (size_t i = 0; i < have / entry; i++) {
        L->pal[i][0] = p[entry * i + 2], L->pal[i][1] = p[entry * i + 1],
        L->pal[i][2] = p[entry * i];
        grey &= p[entry * i] == i && p[entry * i + 1] == i && p[entry * i + 2] == i;
    }
    L->grey_index = grey && L->bits == 8;
    *pos += have;
    return 0;
}

static int parse_header(const vl_image_file *f, bmp_layout *L) {
    const uint8_t *b = f->data;
    if (f->size < 18) return vl_image_corrupt(f, "BMP", "%s", VL_IMAGE_TRUNCATED);
    size_t off_bits = le32(b + 10), hsize = le32(b + 14);
    if (hsize != 12 && hsize != 40 && hsize != 52 && hsize != 56 && hsize != 64 && hsize != 108 &&
        hsize != 124)
        return vl_image_unsupported(f, "BMP", "a %zu-byte info header", hsize);
    if (f->size - 14 < hsize) return vl_image_corrupt(f, "BMP", "%s", VL_IMAGE_TRUNCATED);
    const uint8_t *hd = b + 18;
    uint32_t colors = 0;
    if (hsize == 12) {
        L->w = le16(hd), L->h = le16(hd + 2), L->bits = (int)le16(hd + 6);
    } else {
        L->top_down = hd[7] == 0xff;
        L->w = le32(hd);
        L->h = L->top_down ? ((int64_t)1 << 32) - le32(hd + 4) : le32(hd + 4);
        L->bits = (int)le16(hd + 10), L->compression = (int)le32(hd + 12);
        colors = le32(hd + 28);
    }
    const int entry = hsize == 12 ? 3 : 4, bits = L->bits;
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return vl_image_unsupported(f, "BMP", "%d bits per pixel", bits);
    if (!colors && bits <= 8) colors = 1u << bits;
    if (off_bits == 14 + hsize && bits <= 8) off_bits += (size_t)entry * colors;

    size_t pos = 14 + hsize;
    L->byte_of[0] = 2, L->byte_of[1] = 1, L->byte_of[2] = 0; /* BGRX */
    if (L->compression == BMP_BITFIELDS) {
        if (read_masks(f, L, hsize, &pos)) return -1;
    } else if (L->compression == BMP_RLE8 || L->compression == BMP_RLE4) {
        if (bits != (L->compression == BMP_RLE8 ? 8 : 4))
            return vl_image_unsupported(f, "BMP", "RLE compression of %d-bit pixels", bits);
    } else if (L->compression != BMP_RAW) {
        return vl_image_unsupported(f, "BMP", "compression type %d", L->compression);
    }
    if (bits <= 8 && read_palette(f, L, colors, entry, &pos)) return -1;
    L->data_start = off_bits ? off_bits : pos;
    return 0;
}

static void set_pixel_index(const bmp_layout *L, uint8_t *px, unsigned idx) {
    if (L->grey_index)
        px[0] = px[1] = px[2] = (uint8_t)idx;
    else
        memcpy(px, L->pal[idx], 3);
}

static void bgr16_to_rgb(const uint8_t *in, uint8_t *out, int w, int is_565) {
    for (int x = 0; x < w; x++, out += 3) {
        unsigned v = le16(in + 2 * x);
        if (is_565)
            out[0] = (uint8_t)((v >> 11 & 31) * 255 / 31),
            out[1] = (uint8_t)((v >> 5 & 63) * 255 / 63);
        else
            out[0] = (uint8_t)((v >> 10 & 31) * 255 / 31),
            out[1] = (uint8_t)((v >> 5 & 31) * 255 / 31);
        out[2] = (uint8_t)((v & 31) * 255 / 31);
    }
}

/* One stored row (uncompressed) to RGB; one loop per depth. */
static void row_to_rgb(const bmp_layout *L, const uint8_t *in, uint8_t *out, int w) {
    switch (L->bits) {
    case 1:
        for (int x = 0; x < w; x++)
            set_pixel_index(L, out + 3 * x, in[x >> 3] >> (7 - (x & 7)) & 1);
        break;
    case 4:
        for (int x = 0; x < w; x++)
            set_pixel_index(L, out + 3 * x, in[x >> 1] >> (x & 1 ? 0 : 4) & 15);
        break;
    case 8:
        for (int x = 0; x < w; x++) set_pixel_index(L, out + 3 * x, in[x]);
        break;
    case 16:
        bgr16_to_rgb(in, out, w, L->rgb16_565);
        break;
    case 24:
        for (int x = 0; x < w; x++, out += 3, in += 3)
            out[0] = in[2], out[1] = in[1], out[2] = in[0];
        break;
    default: {
        const int r = L->byte_of[0], g = L->byte_of[1], b = L->byte_of[2];
        for (int x = 0; x < w; x++, out += 3, in += 4)
            out[0] = in[r], out[1] = in[g], out[2] = in[b];
    }
    }
}

static uint64_t raw_stride(const bmp_layout *L) {
    return (((uint64_t)L->w * (uint64_t)L->bits + 31) >> 3) & ~(uint64_t)3;
}

/* Before allocating: the rows must all be in the file. */
static int check_raw_size(const vl_image_file *f, const bmp_layout *L) {
    uint64_t need = raw_stride(L) * (uint64_t)L->h;
    uint64_t have = L->data_start < f->size ? f->size - L->data_start : 0;
    if (have < need)
        return vl_image_corrupt(f, "BMP",
                                "%lldx%lld pixels need %llu bytes of pixel data, the file holds "
                                "%llu (truncated)",
                                (long long)L->w, (long long)L->h, (unsigned long long)need,
                                (unsigned long long)have);
    return 0;
}

static void decode_raw(const vl_image_file *f, const bmp_layout *L, vl_image *out) {
    const uint64_t stride = raw_stride(L);
    for (int64_t r = 0; r < L->h; r++) {
        int64_t y = L->top_down ? r : L->h - 1 - r;
        row_to_rgb(L, f->data + L->data_start + (size_t)r * stride,
                   out->rgb + (size_t)(y * L->w * 3), (int)L->w);
    }
}

/* RLE state: pos counts the pixels of the stored rows so far (Pillow's len(data)). */
typedef struct {
    const bmp_layout *L;
    uint8_t *rgb;
    int64_t pos, total;
} rle_out;

static void rle_put(rle_out *o, unsigned idx) {
    if (o->pos < o->total) {
        int64_t r = o->pos / o->L->w, x = o->pos % o->L->w;
        int64_t y = o->L->top_down ? r : o->L->h - 1 - r;
        set_pixel_index(o->L, o->rgb + (size_t)((y * o->L->w + x) * 3), idx);
    }
    o->pos++;
}

static int decode_rle(const vl_image_file *f, const bmp_layout *L, vl_image *out) {
    const int rle4 = L->compression == BMP_RLE4;
    rle_out o = {L, out->rgb, 0, L->w * L->h};
    for (int64_t i = 0; i < o.total; i++) set_pixel_index(L, out->rgb + 3 * i, 0);
    size_t p = L->data_start;
    int64_t x = 0;
    while (o.pos < o.total && p + 2 <= f->size) {
        unsigned count = f->data[p], value = f->data[p + 1];
        p += 2;
        if (count) { /* a run of `count` pixels, clipped at the row's end */
            int64_t n = x + count > L->w ? (L->w - x > 0 ? L->w - x : 0) : count;
            for (int64_t k = 0; k < n; k++)
                rle_put(&o, rle4 ? (k & 1 ? value & 15 : value >> 4) : value);
            x += n;
        } else if (value == 0) { /* end of line */
            o.pos = (o.pos + L->w - 1) / L->w * L->w;
            x = 0;
        } else if (value == 1) { /* end of bitmap */
            break;
        } else if (value == 2) { /* delta: right, up (skipped pixels are index 0) */
            if (p + 2 > f->size) break;
            o.pos += f->data[p] + (int64_t)f->data[p + 1] * L->w;
            x = o.pos % L->w;
            p += 2;
        } else { /* absolute: `value` literal pixels, then align to an even file offset */
            size_t bytes = rle4 ? (value + 1) / 2 : value;
            if (f->size - p < bytes) break;
            for (unsigned k = 0; k < value; k++)
                rle_put(&o, rle4 ? (k & 1 ? f->data[p + k / 2] & 15 : f->data[p + k / 2] >> 4)
                                 : f->data[p + k]);
            x += value;
            p += bytes + ((p + bytes) & 1);
        }
    }
    if (o.pos < o.total)
        return vl_image_corrupt(f, "BMP", "the RLE data ends after %lld of %lld pixels%s",
                                (long long)o.pos, (long long)o.total,
                                p + 2 > f->size ? " (truncated)" : "");
    return 0;
}

int vl_image_decode_bmp(const vl_image_file *f, vl_image *out) {
    bmp_layout *L = calloc(1, sizeof(*L));
    if (!L) return vl_error_set("out of memory opening image %s", f->path);
    int rc = parse_header(f, L);
    const int rle = L->compression == BMP_RLE8 || L->compression == BMP_RLE4;
    if (!rc) rc = vl_image_check_size(f, "BMP", L->w, L->h);
    if (!rc) rc = rle ? vl_image_check_canvas(f, "BMP", L->w, L->h) : check_raw_size(f, L);
    if (!rc && !(out->rgb = vl_image_alloc_rgb(f, (int)L->w, (int)L->h))) rc = -1;
    if (!rc) {
        out->w = (int)L->w, out->h = (int)L->h;
        if (rle)
            rc = decode_rle(f, L, out);
        else
            decode_raw(f, L, out);
    }
    free(L);
    return rc ? -1 : 0;
}
