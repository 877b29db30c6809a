/* image_webp.c: WebP (lossy, lossless, with alpha, animated: first frame) to 8-bit RGB.
 *
 * Pillow opens every WebP through libwebp's animation decoder with its default options
 * (non-premultiplied RGBA, no threads) and takes the first frame: a canvas cleared to
 * transparent black with the frame decoded onto it. We do exactly that and drop alpha without
 * compositing, as convert("RGB") does, so the pixels are Pillow's by construction (lossy
 * frames: libwebp's default fancy upsampling). The canvas size comes from the header
 * (WebPGetFeatures) and passes the limits before the decoder allocates anything; the demuxer
 * refuses a file whose chunks run past its end (truncated) before any pixel is decoded.
 *
 * Leaves out: later frames of an animation.
 */
#include "loader/image_decode.h"

#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int vl_image_decode_webp(const vl_image_file *f, vl_image *out) {
    /* RIFF's size field counts the bytes after it: a larger one means a cut-off file */
    uint64_t riff_end = (uint64_t)le32(f->data + 4) + 8;
    if (riff_end > f->size) return vl_image_corrupt(f, "WebP", "%s", VL_IMAGE_TRUNCATED);
    WebPBitstreamFeatures features;
    VP8StatusCode status = WebPGetFeatures(f->data, f->size, &features);
    if (status != VP8_STATUS_OK)
        return vl_image_corrupt(f, "WebP", "cannot read the header (libwebp status %d)",
                                (int)status);
    if (vl_image_check_size(f, "WebP", features.width, features.height)) return -1;

    WebPAnimDecoderOptions options;
    if (!WebPAnimDecoderOptionsInit(&options))
        return vl_error_set("image %s: libwebp version mismatch", f->path);
    options.color_mode = MODE_RGBA;
    options.use_threads = 0;
    WebPData data = {f->data, f->size};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &options);
    if (!dec) return vl_image_corrupt(f, "WebP", "the container or its chunks are malformed");
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int timestamp, rc = -1;
    if (!WebPAnimDecoderGetInfo(dec, &info) || (int)info.canvas_width != features.width ||
        (int)info.canvas_height != features.height)
        vl_image_corrupt(f, "WebP", "the canvas size differs from the header's");
    else if (!WebPAnimDecoderGetNext(dec, &rgba, &timestamp))
        vl_image_corrupt(f, "WebP", "the first frame does not decode");
    else if ((out->rgb = vl_image_alloc_rgb(f, features.width, features.height)) != NULL)
        rc = 0;
    if (!rc) {
        out->w = features.width, out->h = features.height;
        size_t n = (size_t)out->w * (size_t)out->h;
        for (size_t i = 0; i < n; i++) memcpy(out->rgb + 3 * i, rgba + 4 * i, 3);
    }
    WebPAnimDecoderDelete(dec);
    return rc;
}
