/* image_orient.c: where each format keeps the orientation Pillow reads, and turning the decoded
 * pixels accordingly, as transformers' load_image does with ImageOps.exif_transpose
 * (Pillow 12, checked against it by tests/fixtures/images/exif, make_exif_images.py).
 *
 *   JPEG  the first APP1 segment starting "Exif\0\0"; else XMP: the last APP1
 *         "http://ns.adobe.com/xap/1.0/\0" segment (segments up to the first SOS)
 *   PNG   EXIF: the last eXIf chunk or tEXt chunk keyed "exif" (chunks after IDAT too: Pillow
 *         reads them when it loads the pixels); else a tEXt / uncompressed iTXt "Raw profile
 *         type exif" (ImageMagick's hex dump, lines from the fourth on); XMP: tEXt / iTXt
 *         "XML:com.adobe.xmp"
 *   WebP  the first EXIF and XMP chunks (libwebp's demuxer, as Pillow)
 *   TIFF  IFD 0 of the file itself (tag 274)
 *   GIF, BMP: none.
 * EXIF wins over XMP when it has an orientation entry at all (exif.c).
 *
 * Leaves out (known differences from Pillow): compressed PNG text (zTXt, compressed iTXt: no
 * zlib here), GIF XMP application extensions, TIFF XMP (tag 700). Broken EXIF is ignored:
 * where Pillow's exif_transpose raises instead (an invalid hex dump, some broken headers in
 * files whose JFIF segment gives a DPI), transformers cannot read the file and we read it
 * upright.
 */
#include "loader/exif.h"
#include "loader/image_orient.h"

#include <stdlib.h>
#include <string.h>
#include <webp/demux.h>

typedef struct {
    const uint8_t *exif, *xmp;
    size_t exif_n, xmp_n;
    uint8_t *owned; /* decoded raw profile */
} orient_meta;

static uint32_t be16(const uint8_t *p) {
    return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void jpeg_meta(const uint8_t *d, size_t n, orient_meta *m) {
    static const char xmp_ns[] = "http://ns.adobe.com/xap/1.0/"; /* + NUL */
    size_t at = 2;                                               /* after SOI */
    while (at + 4 <= n && d[at] == 0xff) {
        uint8_t marker = d[at + 1];
        if (marker == 0xff) {
            at++;
            continue;
        }                                            /* fill byte */
        if (marker == 0xda || marker == 0xd9) break; /* SOS, EOI */
        if ((marker >= 0xd0 && marker <= 0xd8) || marker == 0x01) {
            at += 2;
            continue;
        }
        size_t len = be16(d + at + 2);
        if (len < 2 || len > n - at - 2) break;
        const uint8_t *s = d + at + 4;
        size_t sn = len - 2;
        if (marker == 0xe1 && sn >= 6 && memcmp(s, "Exif\0\0", 6) == 0 && !m->exif)
            m->exif = s, m->exif_n = sn;
        else if (marker == 0xe1 && sn >= sizeof xmp_ns && memcmp(s, xmp_ns, sizeof xmp_ns) == 0)
            m->xmp = s + sizeof xmp_ns, m->xmp_n = sn - sizeof xmp_ns;
        at += 2 + len;
    }
}

static int hex_digit(uint8_t c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* ImageMagick's "\nexif\n  LENGTH\nHEX...": Python's bytes.fromhex of the lines from the
 * fourth on (whitespace between byte pairs skipped). NULL when not valid hex. */
static uint8_t *raw_profile(const uint8_t *v, size_t n, size_t *out_n) {
    size_t at = 0;
    for (int lines = 0; lines < 3 && at < n; at++) lines += v[at] == '\n';
    uint8_t *out = malloc(n / 2 + 1);
    size_t k = 0;
    while (out && at < n) {
        if (v[at] == ' ' || v[at] == '\n' || v[at] == '\t' || v[at] == '\r' || v[at] == '\v' ||
            v[at] == '\f') {
            at++;
            continue;
        }
        int hi = hex_digit(v[at]), lo = at + 1 < n ? hex_digit(v[at + 1]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[k++] = (uint8_t)(hi << 4 | lo), at += 2;
    }
    *out_n = k;
    return out;
}

/* tEXt (key NUL value) and uncompressed iTXt (key NUL flag method lang NUL tkey NUL value). */
static void png_text(const uint8_t *c, size_t n, int itxt, orient_meta *m, const uint8_t **raw,
                     size_t *raw_n) {
    const uint8_t *nul = memchr(c, 0, n);
    if (!nul) return;
    size_t klen = (size_t)(nul - c), at = klen + 1;
    if (itxt) {
        if (n - at < 2 || c[at] != 0) return; /* compressed: not read (no zlib) */
        at += 2;
        for (int field = 0; field < 2; field++) {
            const uint8_t *z = memchr(c + at, 0, n - at);
            if (!z) return;
            at = (size_t)(z - c) + 1;
        }
    }
    const uint8_t *v = c + at;
    size_t vn = n - at;
    if (!itxt && klen == 4 && memcmp(c, "exif", 4) == 0)
        m->exif = v, m->exif_n = vn;
    else if (klen == 21 && memcmp(c, "Raw profile type exif", 21) == 0)
        *raw = v, *raw_n = vn;
    else if (klen == 17 && memcmp(c, "XML:com.adobe.xmp", 17) == 0)
        m->xmp = v, m->xmp_n = vn;
}

static void png_meta(const uint8_t *d, size_t n, orient_meta *m) {
    const uint8_t *raw = NULL;
    size_t raw_n = 0, at = 8;
    while (at <= n && n - at >= 12) {
        size_t len = be32(d + at);
        const uint8_t *type = d + at + 4, *c = d + at + 8;
        if (len > n - at - 12) break;
        if (memcmp(type, "IEND", 4) == 0) break;
        if (memcmp(type, "eXIf", 4) == 0)
            m->exif = c, m->exif_n = len;
        else if (memcmp(type, "tEXt", 4) == 0 || memcmp(type, "iTXt", 4) == 0)
            png_text(c, len, type[0] == 'i', m, &raw, &raw_n);
        at += 12 + len;
    }
    if (!m->exif && raw && (m->owned = raw_profile(raw, raw_n, &m->exif_n)) != NULL)
        m->exif = m->owned;
}

static void webp_meta(const uint8_t *d, size_t n, orient_meta *m) {
    WebPData data = {d, n};
    WebPDemuxer *demux = WebPDemux(&data);
    if (!demux) return;
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
        m->exif = it.chunk.bytes, m->exif_n = it.chunk.size;
        WebPDemuxReleaseChunkIterator(&it);
    }
    if (WebPDemuxGetChunk(demux, "XMP ", 1, &it)) {
        m->xmp = it.chunk.bytes, m->xmp_n = it.chunk.size;
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(demux); /* the chunk bytes point into d, not into the demuxer */
}

int vl_image_orientation(const uint8_t *d, size_t n, vl_image_format format) {
    orient_meta m = {0};
    switch (format) {
    case VL_FMT_JPEG:
        jpeg_meta(d, n, &m);
        break;
    case VL_FMT_PNG:
        png_meta(d, n, &m);
        break;
    case VL_FMT_WEBP:
        webp_meta(d, n, &m);
        break;
    case VL_FMT_TIFF:
        m.exif = d, m.exif_n = n;
        break;
    default:
        return 1;
    }
    int found = 0, o = m.exif ? vl_exif_orientation(m.exif, m.exif_n, &found) : 1;
    if (!found && m.xmp) {
        int x = vl_xmp_orientation(m.xmp, m.xmp_n);
        if (x) o = x;
    }
    free(m.owned);
    return o;
}

/* Where output pixel (x, y) of the turned image comes from, for PIL's Transpose methods. */
static size_t source_index(int o, int x, int y, int w, int h) {
    int sx, sy;
    switch (o) {
    case 2:
        sx = w - 1 - x, sy = y;
        break; /* FLIP_LEFT_RIGHT */
    case 3:
        sx = w - 1 - x, sy = h - 1 - y;
        break; /* ROTATE_180 */
    case 4:
        sx = x, sy = h - 1 - y;
        break; /* FLIP_TOP_BOTTOM */
    case 5:
        sx = y, sy = x;
        break; /* TRANSPOSE */
    case 6:
        sx = y, sy = h - 1 - x;
        break; /* ROTATE_270 (clockwise 90) */
    case 7:
        sx = w - 1 - y, sy = h - 1 - x;
        break; /* TRANSVERSE */
    case 8:
        sx = w - 1 - y, sy = x;
        break; /* ROTATE_90 (counter-clockwise) */
    default:
        sx = x, sy = y;
    }
    return ((size_t)sy * (size_t)w + (size_t)sx) * 3;
}

int vl_image_apply_orientation(vl_image *img, int orientation, const char *path) {
    if (orientation < 2 || orientation > 8) return 0;
    const int w = img->w, h = img->h, swap = orientation >= 5;
    const int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *out = malloc((size_t)w * (size_t)h * 3);
    if (!out)
        return vl_error_set("out of memory turning image %s (EXIF orientation %d)", path,
                            orientation);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            memcpy(out + ((size_t)y * ow + x) * 3, img->rgb + source_index(orientation, x, y, w, h),
                   3);
    free(img->rgb);
    img->rgb = out;
    img->w = ow, img->h = oh;
    return 0;
}
