/* image_jpeg.c: JPEG to 8-bit RGB with libjpeg-turbo, exactly as Pillow decodes it.
 *
 * Pillow decodes JPEG with libjpeg-turbo too, so using its settings gives its pixels: the
 * library defaults (JDCT_ISLOW, fancy upsampling on, block smoothing on) and the output colour
 * space Pillow asks for from the number of components in the frame header:
 *   1 -> JCS_GRAYSCALE (grey replicated), 3 -> JCS_RGB (libjpeg's YCbCr -> RGB, or none for an
 *   Adobe/"RGB" file), 4 -> JCS_CMYK (libjpeg's YCCK -> CMYK when Adobe says so), then every
 *   sample inverted, as Pillow assumes Adobe's inverted CMYK for all 4-component JPEGs
 *   ("CMYK;I"), and PIL's CMYK -> RGB formula.
 * Library errors come back through error_exit + longjmp. Warnings are errors too when they
 * mean corrupt or missing entropy data (premature end of file or of a data segment, bad Huffman
 * or arithmetic code, lost restart marker): libjpeg would "recover" by filling grey, Pillow
 * refuses a file that ends early. Warnings about headers that still decode completely
 * (extraneous bytes between markers, unknown JFIF version or Adobe transform code, odd SOS
 * fields, an inconsistent progression) are ignored, as Pillow ignores every warning.
 * A progressive file may hold at most MAX_SCANS scans: each scan walks every block of the image,
 * so thousands of tiny scans would make a small file cost minutes (real files have ~10).
 *
 * Leaves out (known differences from PIL): corrupt entropy data (bad code, lost restart
 * marker, a segment that ends early) is an error here and grey or garbage pixels in Pillow; a
 * progressive file of more than 1000 scans is refused; 12-bit, lossless and 2-component JPEGs
 * are refused (Pillow refuses them too).
 */
#include "loader/image_decode.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define MAX_SCANS 1000

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us this pointer */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void fail(j_common_ptr c) {
    jpeg_failure *e = (jpeg_failure *)c->err;
    if (!e->message[0]) {
        if (c->err->msg_code == JWRN_JPEG_EOF)
            snprintf(e->message, sizeof(e->message), "%s", VL_IMAGE_TRUNCATED);
        else
            (*c->err->format_message)(c, e->message);
    }
    longjmp(e->jump, 1);
}

static void on_error_exit(j_common_ptr c) {
    fail(c);
}

static void on_emit_message(j_common_ptr c, int level) {
    if (level >= 0) return; /* trace messages */
    switch (c->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA: /* bytes skipped between segments */
    case JWRN_JFIF_MAJOR:      /* unknown JFIF version */
    case JWRN_ADOBE_XFORM:     /* unknown Adobe transform code */
    case JWRN_NOT_SEQUENTIAL:  /* odd SOS fields in a sequential file */
    case JWRN_BOGUS_PROGRESSION:
        return; /* the data still decodes completely: the pixels are Pillow's */
    default:
        fail(c); /* corrupt or missing data */
    }
}

static void on_output_message(j_common_ptr c) {
    (void)c; /* nothing is ever printed */
}

static void limit_scans(j_common_ptr c) {
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > MAX_SCANS) {
        jpeg_failure *e = (jpeg_failure *)c->err;
        snprintf(e->message, sizeof(e->message),
                 "more than %d progressive scans (real files have ~10)", MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

/* The output colour space Pillow asks for, from the frame's component count; 0 if none. */
static J_COLOR_SPACE pillow_out_space(int components) {
    return components == 1   ? JCS_GRAYSCALE
           : components == 3 ? JCS_RGB
           : components == 4 ? JCS_CMYK
                             : JCS_UNKNOWN;
}

static void scanline_to_rgb(const uint8_t *in, uint8_t *out, int w, int components) {
    if (components == 1)
        for (int x = 0; x < w; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
    else if (components == 4)
        vl_image_cmyk_row_to_rgb(out, in, w, 4, 1);
}

/* Everything that may longjmp lives here; after a longjmp only heap state is looked at. */
static int decode(j_decompress_ptr cinfo, jpeg_failure *err, const vl_image_file *f, vl_image *out,
                  uint8_t **scanline) {
    if (setjmp(err->jump)) return -1;
    jpeg_create_decompress(cinfo);
    struct jpeg_progress_mgr *progress = (*cinfo->mem->alloc_small)(
        (j_common_ptr)cinfo, JPOOL_PERMANENT, sizeof(struct jpeg_progress_mgr));
    memset(progress, 0, sizeof(*progress));
    progress->progress_monitor = limit_scans;
    cinfo->progress = progress;
    jpeg_mem_src(cinfo, f->data, (unsigned long)f->size);
    jpeg_read_header(cinfo, TRUE);

    int w = (int)cinfo->image_width, h = (int)cinfo->image_height;
    if (vl_image_check_size(f, "JPEG", w, h)) return -2;
    int components = cinfo->num_components;
    if (pillow_out_space(components) == JCS_UNKNOWN) {
        vl_image_unsupported(f, "JPEG", "a %d-component JPEG", components);
        return -2;
    }
    cinfo->out_color_space = pillow_out_space(components);
    cinfo->dct_method = JDCT_ISLOW; /* the library defaults Pillow decodes with */
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);
    if ((int)cinfo->output_width != w || (int)cinfo->output_height != h ||
        cinfo->output_components != components) {
        vl_image_corrupt(f, "JPEG", "unexpected output geometry");
        return -2;
    }
    if (!(out->rgb = vl_image_alloc_rgb(f, w, h))) return -2;
    out->w = w, out->h = h;
    if (components != 3 && !(*scanline = malloc((size_t)w * components))) {
        vl_error_set("out of memory decoding image %s", f->path);
        return -2;
    }
    while ((int)cinfo->output_scanline < h) {
        uint8_t *rgb_row = out->rgb + (size_t)cinfo->output_scanline * w * 3;
        JSAMPROW row = components == 3 ? rgb_row : *scanline;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            vl_image_corrupt(f, "JPEG", "%s", VL_IMAGE_TRUNCATED);
            return -2;
        }
        scanline_to_rgb(row, rgb_row, w, components);
    }
    jpeg_finish_decompress(cinfo);
    return 0;
}

int vl_image_decode_jpeg(const vl_image_file *f, vl_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure err;
    memset(&cinfo, 0, sizeof(cinfo));
    memset(&err, 0, sizeof(err));
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error_exit;
    err.pub.emit_message = on_emit_message;
    err.pub.output_message = on_output_message;

    uint8_t *scanline = NULL;
    int rc = decode(&cinfo, &err, f, out, &scanline);
    if (rc == -1) vl_image_corrupt(f, "JPEG", "%s", err.message);
    jpeg_destroy_decompress(&cinfo);
    free(scanline);
    return rc ? -1 : 0;
}
