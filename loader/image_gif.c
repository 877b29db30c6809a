/* image_gif.c: the first frame of a GIF to 8-bit RGB with giflib, placed as Pillow places it.
 *
 * Pillow's first frame (GifImagePlugin, the same in Pillow 9 to 12):
 *   - the canvas is the logical screen, grown to hold the frame if the frame reaches past it;
 *   - the canvas starts filled with the frame's transparent index (graphic control extension)
 *     or else index 0, and the frame's indices are written at its offset, transparent ones
 *     included (transparency is only metadata for frame 0);
 *   - indices map through the frame's local palette, else the global one; with no palette, or
 *     one that is the identity grey ramp, the index itself is the grey level (PIL mode "L").
 * giflib decodes the LZW data from memory (interlaced rows put back in display order here);
 * its error codes become one-line errors. A file that ends inside the frame's data is
 * truncated; one whose data is complete but whose final block terminator and trailer are
 * missing is accepted, as Pillow accepts it. Limits come from the header before decoding,
 * including the canvas-to-file-size rule (image_decode.h) that stops a 35-byte file from
 * declaring a 13000x13000 screen.
 *
 * Leaves out (known differences from PIL): later frames; a palette index past the palette
 * gives black (as in Pillow 12; Pillow 9 gives grey i,i,i); stray bytes between blocks (which
 * Pillow skips one by one) and LZW minimum code sizes over 8 are errors here.
 */
#include "loader/image_decode.h"

#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const vl_image_file *file;
    size_t pos;
    int hit_end; /* a read asked for bytes past the end of the file */
} gif_source;

/* Reads past the end return what is there; a one-byte read exactly at the end returns a 0,
 * the sub-block terminator, so that giflib accepts a file whose pixels are all present but
 * whose terminator and trailer were cut off. Anything else past the end is a short read. */
static int read_from_memory(GifFileType *gif, GifByteType *out, int len) {
    gif_source *src = gif->UserData;
    size_t left = src->file->size - src->pos;
    if (len <= 0) return 0;
    if (left == 0 && len == 1) {
        src->hit_end = 1;
        out[0] = 0;
        return 1;
    }
    size_t n = (size_t)len < left ? (size_t)len : left;
    if (n < (size_t)len) src->hit_end = 1;
    memcpy(out, src->file->data + src->pos, n);
    src->pos += n;
    return (int)n;
}

static int gif_failed(const vl_image_file *f, const gif_source *src, int code) {
    if (src->hit_end) return vl_image_corrupt(f, "GIF", "%s", VL_IMAGE_TRUNCATED);
    const char *why = GifErrorString(code);
    return vl_image_corrupt(f, "GIF", "%s (giflib error %d)", why ? why : "unknown error", code);
}

/* Skip extensions up to the first image descriptor, noting the transparent index of a
 * graphic control extension (the last one with its flag set wins, as in Pillow). */
static int find_first_frame(GifFileType *gif, int *transparent) {
    *transparent = -1;
    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(gif, &type) == GIF_ERROR) return -1;
        if (type == IMAGE_DESC_RECORD_TYPE) return DGifGetImageDesc(gif) == GIF_ERROR ? -1 : 0;
        if (type == TERMINATE_RECORD_TYPE) return 1;
        if (type != EXTENSION_RECORD_TYPE) return -1;
        int code;
        GifByteType *block;
        if (DGifGetExtension(gif, &code, &block) == GIF_ERROR) return -1;
        if (code == GRAPHICS_EXT_FUNC_CODE && block && block[0] >= 4 && (block[1] & 1))
            *transparent = block[4];
        while (block)
            if (DGifGetExtensionNext(gif, &block) == GIF_ERROR) return -1;
    }
}

/* index -> RGB for all 256 indices: the palette, black past its end; or grey = index. */
static void build_colors(const ColorMapObject *map, uint8_t colors[256][3]) {
    int identity = 1;
    for (int i = 0; map && i < map->ColorCount; i++) {
        const GifColorType *c = &map->Colors[i];
        identity &= c->Red == i && c->Green == i && c->Blue == i;
    }
    memset(colors, 0, 256 * 3);
    for (int i = 0; i < 256; i++) {
        if (!map || identity)
            colors[i][0] = colors[i][1] = colors[i][2] = (uint8_t)i;
        else if (i < map->ColorCount)
            colors[i][0] = map->Colors[i].Red, colors[i][1] = map->Colors[i].Green,
            colors[i][2] = map->Colors[i].Blue;
    }
}

/* Row k of the data in display order: interlaced frames come in four passes. */
static int display_row(int k, int h, int interlaced) {
    if (!interlaced) return k;
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    for (int p = 0; p < 4; p++) {
        int rows = h > start[p] ? (h - start[p] + step[p] - 1) / step[p] : 0;
        if (k < rows) return start[p] + k * step[p];
        k -= rows;
    }
    return -1;
}

static int decode_frame(const vl_image_file *f, GifFileType *gif, gif_source *src, vl_image *out) {
    int transparent, found = find_first_frame(gif, &transparent);
    if (found < 0) return gif_failed(f, src, gif->Error);
    if (found > 0) return vl_image_corrupt(f, "GIF", "the file holds no image");
    const GifImageDesc *d = &gif->Image;
    int64_t cw = d->Left + (int64_t)d->Width, ch = d->Top + (int64_t)d->Height;
    if (cw < gif->SWidth) cw = gif->SWidth;
    if (ch < gif->SHeight) ch = gif->SHeight;
    if (vl_image_check_size(f, "GIF", cw, ch) || vl_image_check_canvas(f, "GIF", cw, ch)) return -1;
    if (d->Width <= 0 || d->Height <= 0)
        return vl_image_corrupt(f, "GIF", "the first frame is %dx%d", d->Width, d->Height);

    uint8_t colors[256][3];
    build_colors(d->ColorMap ? d->ColorMap : gif->SColorMap, colors);
    if (!(out->rgb = vl_image_alloc_rgb(f, (int)cw, (int)ch))) return -1;
    out->w = (int)cw, out->h = (int)ch;
    const uint8_t *fill = colors[transparent >= 0 ? transparent : 0];
    for (int64_t i = 0; i < cw * ch; i++) memcpy(out->rgb + 3 * i, fill, 3);

    GifPixelType *line = malloc((size_t)d->Width);
    if (!line) return vl_error_set("out of memory decoding image %s", f->path);
    for (int k = 0; k < d->Height; k++) {
        if (DGifGetLine(gif, line, d->Width) == GIF_ERROR) {
            free(line);
            return gif_failed(f, src, gif->Error);
        }
        uint8_t *row =
            out->rgb + ((size_t)(d->Top + display_row(k, d->Height, d->Interlace)) * (size_t)cw +
                        (size_t)d->Left) *
                           3;
        for (int x = 0; x < d->Width; x++) memcpy(row + 3 * x, colors[line[x]], 3);
    }
    free(line);
    return 0;
}

int vl_image_decode_gif(const vl_image_file *f, vl_image *out) {
    gif_source src = {.file = f};
    int code = 0;
    GifFileType *gif = DGifOpen(&src, read_from_memory, &code);
    if (!gif) return gif_failed(f, &src, code);
    int rc = decode_frame(f, gif, &src, out);
    DGifCloseFile(gif, &code);
    return rc;
}
