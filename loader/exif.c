/* exif.c: the orientation tag of EXIF and XMP data, read as Pillow 12 reads it for
 * ImageOps.exif_transpose (which transformers' load_image calls).
 *
 * EXIF is a TIFF structure: an 8-byte header ("II*\0", "MM\0*" or Pillow's two tolerated
 * variants "II\0*", "MM*\0"), then IFD 0: a 16-bit entry count and 12-byte entries (tag, type,
 * count, 4 bytes holding the value or, when it needs more, its offset). We walk only IFD 0, as
 * Image.getexif()[0x0112] does, with Pillow's rules (ImageFileDirectory_v2.load):
 *   - an entry of an unknown type, or with no data (count 0), is skipped;
 *   - an entry whose data lies past the end, or an entry table cut short, ends the walk: the
 *     entries read so far count, later ones do not;
 *   - a repeated tag: the last one read wins;
 *   - the orientation is the first value, used when it is exactly an integer 2..8 in a numeric
 *     type (SHORT, LONG, SBYTE, SSHORT, SLONG, IFD, LONG8, FLOAT, DOUBLE, and RATIONAL /
 *     SRATIONAL whose quotient is an integer); BYTE, ASCII and UNDEFINED values are stored by
 *     Pillow as bytes or text and never turn the image, but still count as "present".
 * Sub-IFDs and next-IFD links are never followed, so loops cannot happen; sizes are 64-bit, so
 * a count of 2^32-1 cannot overflow. Broken headers give "no EXIF" (Pillow raises from
 * exif_transpose on some of them; we go on upright, see image_orient.c).
 *
 * XMP: Pillow's fallback when EXIF has no orientation entry: the first match of the regular
 * expression tiff:Orientation(="|>)([0-9]).
 */
#include "loader/exif.h"

#include <math.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n;
    int big; /* big-endian ("MM") */
} tiff_view;

static uint32_t get16(const tiff_view *t, size_t at) {
    const uint8_t *b = t->p + at;
    return t->big ? (uint32_t)b[0] << 8 | b[1] : (uint32_t)b[1] << 8 | b[0];
}

static uint32_t get32(const tiff_view *t, size_t at) {
    const uint8_t *b = t->p + at;
    return t->big ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
                  : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static uint64_t get64(const tiff_view *t, size_t at) {
    uint64_t a = get32(t, at), b = get32(t, at + 4);
    return t->big ? a << 32 | b : b << 32 | a;
}

/* Bytes per value of each TIFF type Pillow loads; 0 for types it skips. */
static unsigned type_size(unsigned type) {
    static const unsigned size[] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8};
    return type < sizeof(size) / sizeof(size[0]) ? size[type] : 0;
}

/* The orientation a value of `type` at `at` stands for: 2..8, or 1 for "no turn". */
static int orientation_value(const tiff_view *t, unsigned type, size_t at) {
    double v;
    switch (type) {
    case 3:
        v = get16(t, at);
        break;
    case 4:
    case 13:
        v = get32(t, at);
        break;
    case 6:
        v = (int8_t)t->p[at];
        break;
    case 8:
        v = (int16_t)get16(t, at);
        break;
    case 9:
        v = (int32_t)get32(t, at);
        break;
    case 16:
        v = (double)get64(t, at);
        break;
    case 11: {
        uint32_t bits = get32(t, at);
        float f;
        memcpy(&f, &bits, sizeof f);
        v = f;
        break;
    }
    case 12: {
        uint64_t bits = get64(t, at);
        memcpy(&v, &bits, sizeof v);
        break;
    }
    case 5:
    case 10: {
        int64_t num = type == 5 ? (int64_t)get32(t, at) : (int32_t)get32(t, at);
        int64_t den = type == 5 ? (int64_t)get32(t, at + 4) : (int32_t)get32(t, at + 4);
        if (den == 0 || num % den != 0) return 1; /* nan or not an integer */
        v = (double)(num / den);
        break;
    }
    default:
        return 1; /* BYTE, ASCII, UNDEFINED: bytes or text in Pillow */
    }
    return v >= 2 && v <= 8 && v == floor(v) ? (int)v : 1;
}

/* IFD 0 of a TIFF structure at `ifd`: *found = 1 if an orientation entry was stored. */
static int walk_ifd0(const tiff_view *t, uint64_t ifd, int *found) {
    int orientation = 1;
    *found = 0;
    if (ifd > t->n || t->n - ifd < 2) return 1;
    uint32_t entries = get16(t, (size_t)ifd);
    size_t at = (size_t)ifd + 2;
    for (uint32_t i = 0; i < entries; i++, at += 12) {
        if (t->n - at < 12) break; /* table cut short */
        uint32_t tag = get16(t, at), type = get16(t, at + 2), count = get32(t, at + 4);
        unsigned unit = type_size(type);
        if (!unit) continue;
        uint64_t size = (uint64_t)count * unit;
        size_t data = at + 8;
        if (size > 4) {
            uint64_t off = get32(t, at + 8);
            if (off > t->n || size > t->n - off) break; /* "Truncated File Read" */
            data = (size_t)off;
        }
        if (size == 0) continue;
        if (tag == 0x0112) {
            *found = 1;
            orientation = orientation_value(t, type, data);
        }
    }
    return orientation;
}

int vl_exif_orientation(const uint8_t *p, size_t n, int *found) {
    *found = 0;
    while (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) p += 6, n -= 6;
    if (n < 8) return 1;
    static const char *const heads[] = {"II*\0", "MM\0*", "II\0*", "MM*\0"};
    int ok = 0;
    for (int k = 0; k < 4; k++) ok |= memcmp(p, heads[k], 4) == 0;
    if (!ok) return 1; /* not a TIFF header (BigTIFF included): Pillow has no EXIF either */
    tiff_view t = {p, n, p[0] == 'M'};
    return walk_ifd0(&t, get32(&t, 4), found);
}

int vl_xmp_orientation(const uint8_t *p, size_t n) {
    static const char key[] = "tiff:Orientation";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; n >= k + 2 && i <= n - k - 2; i++) {
        if (memcmp(p + i, key, k) != 0) continue;
        size_t at = i + k;
        if (p[at] == '>')
            at += 1;
        else if (p[at] == '=' && p[at + 1] == '"')
            at += 2;
        else
            continue;
        if (at < n && p[at] >= '0' && p[at] <= '9') {
            int v = p[at] - '0';
            return v >= 2 && v <= 8 ? v : 1;
        }
    }
    return 0;
}
