/* resize.c: PIL's Image.resize((w, h), Image.BICUBIC) on 8-bit RGB, bit for bit.
 *
 * Qwen2-VL's reference preprocessing (the transformers PIL backend, qwen-vl-utils) resizes with
 * Pillow, so matching its integers exactly keeps our pixel values equal to the reference's.
 * Pillow's resampler (libImaging/Resample.c, unchanged in substance since 2017) is a separable
 * convolution:
 *   - per output position, a window of source samples around the mapped centre, weighted by
 *     the Keys cubic (a = -0.5) stretched by the downscale factor (so downscaling is area-aware,
 *     i.e. antialiased); weights computed in double and normalised to sum 1;
 *   - weights rounded to fixed point with 22 fractional bits (32 - 8 bits of sample - 2 bits of
 *     headroom for the negative lobes), accumulated in integers starting from half a unit, the
 *     sum shifted down and clamped to 0..255;
 *   - horizontal pass first, into an intermediate 8-bit image holding only the source rows the
 *     vertical pass will read, then the vertical pass; a pass whose size does not change is
 *     skipped (so a same-size resize is a plain copy).
 * The double-precision expressions below keep Pillow's order of operations on purpose: a
 * different but mathematically equal order can flip a weight's last bit and then a pixel.
 *
 * Leaves out: other filters, the `box` and `reducing_gap` arguments, modes other than RGB.
 */
#include "loader/loader.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIXED_BITS    22 /* fractional bits of the fixed-point weights */
#define CUBIC_SUPPORT 2.0

/* Keys cubic convolution kernel with a = -0.5 (Catmull-Rom), in Pillow's evaluation order. */
static double cubic_weight(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Fixed-point weights of one resampling axis. */
typedef struct {
    int taps;       /* weights stored per output position (the window's maximum length) */
    int *first;     /* [out] first source index of each window */
    int *count;     /* [out] number of source samples in each window */
    int32_t *coeff; /* [out * taps] weights in units of 2^-FIXED_BITS */
} axis_weights;

static void axis_weights_free(axis_weights *a) {
    free(a->first);
    free(a->count);
    free(a->coeff);
    memset(a, 0, sizeof(*a));
}

static int axis_weights_init(axis_weights *a, int in_size, int out_size) {
    memset(a, 0, sizeof(*a));
    double scale = (double)in_size / out_size;
    double stretch = scale < 1.0 ? 1.0 : scale; /* widen the kernel only when downscaling */
    double support = CUBIC_SUPPORT * stretch;
    double inv_stretch = 1.0 / stretch;
    a->taps = (int)ceil(support) * 2 + 1;

    a->first = malloc((size_t)out_size * sizeof(int));
    a->count = malloc((size_t)out_size * sizeof(int));
    a->coeff = malloc((size_t)out_size * (size_t)a->taps * sizeof(int32_t));
    double *w = malloc((size_t)a->taps * sizeof(double));
    if (!a->first || !a->count || !a->coeff || !w) {
        free(w);
        axis_weights_free(a);
        return vl_error_set("out of memory for the resize weights (%d -> %d samples)", in_size,
                            out_size);
    }
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale;
        /* Window [center - support, center + support], ends rounded half up (truncation
         * after + 0.5, as Pillow does; negatives are clamped right after). */
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        if (n > a->taps) n = a->taps; /* cannot happen (hi - lo <= 2 ceil(support) + 1) */
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            w[i] = cubic_weight((i + lo - center + 0.5) * inv_stretch);
            sum += w[i];
        }
        int32_t *c = a->coeff + (size_t)o * a->taps;
        for (int i = 0; i < a->taps; i++) {
            double v = i < n ? w[i] : 0.0;
            if (i < n && sum != 0.0) v /= sum;
            /* round half away from zero, then truncate: Pillow's rounding of the weights */
            double scaled = v * (double)(1 << FIXED_BITS);
            c[i] = (int32_t)(v < 0 ? scaled - 0.5 : scaled + 0.5);
        }
        a->first[o] = lo;
        a->count[o] = n;
    }
    free(w);
    return 0;
}

/* Accumulator (started at half a unit) back to an 8-bit sample: floor shift, clamp. */
static inline uint8_t fixed_to_u8(int64_t acc) {
    if (acc < 0) return 0;
    int64_t v = acc >> FIXED_BITS;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* dst[y][x] for rows y in [0, rows) from src rows y + row0, resampling along x. */
static void resample_rows(const uint8_t *src, int src_w, int row0, int rows, uint8_t *dst,
                          int dst_w, const axis_weights *a) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)(y + row0) * src_w * 3;
        uint8_t *out = dst + (size_t)y * dst_w * 3;
        for (int x = 0; x < dst_w; x++) {
            const int32_t *c = a->coeff + (size_t)x * a->taps;
            const uint8_t *p = in + (size_t)a->first[x] * 3;
            int64_t r = 1 << (FIXED_BITS - 1), g = r, b = r;
            for (int i = 0; i < a->count[x]; i++) {
                r += (int64_t)p[3 * i + 0] * c[i];
                g += (int64_t)p[3 * i + 1] * c[i];
                b += (int64_t)p[3 * i + 2] * c[i];
            }
            out[3 * x + 0] = fixed_to_u8(r);
            out[3 * x + 1] = fixed_to_u8(g);
            out[3 * x + 2] = fixed_to_u8(b);
        }
    }
}

/* dst row y from src rows first[y] - row0 ..., resampling along y; width w unchanged. */
static void resample_columns(const uint8_t *src, int row0, int w, uint8_t *dst, int dst_h,
                             const axis_weights *a) {
    size_t stride = (size_t)w * 3;
    for (int y = 0; y < dst_h; y++) {
        const int32_t *c = a->coeff + (size_t)y * a->taps;
        const uint8_t *in = src + (size_t)(a->first[y] - row0) * stride;
        uint8_t *out = dst + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int64_t acc = 1 << (FIXED_BITS - 1);
            for (int i = 0; i < a->count[y]; i++) acc += (int64_t)in[(size_t)i * stride + x] * c[i];
            out[x] = fixed_to_u8(acc);
        }
    }
}

int vl_image_resize_bicubic(const vl_image *src, int w, int h, vl_image *dst) {
    memset(dst, 0, sizeof(*dst));
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0)
        return vl_error_set("resize: the source image is empty; load an image first");
    if (w <= 0 || h <= 0 || (int64_t)w * h > VL_IMAGE_MAX_PIXELS)
        return vl_error_set("resize: target size %dx%d is out of range (expected 1..%lld pixels)",
                            w, h, (long long)VL_IMAGE_MAX_PIXELS);
    size_t out_bytes = (size_t)w * (size_t)h * 3;
    uint8_t *out = malloc(out_bytes);
    if (!out) return vl_error_set("out of memory for a %dx%d resized image", w, h);

    int do_x = w != src->w, do_y = h != src->h;
    if (!do_x && !do_y) {
        memcpy(out, src->rgb, out_bytes);
        dst->w = w, dst->h = h, dst->rgb = out;
        return 0;
    }
    axis_weights ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    int rc = 0;
    if (do_x && axis_weights_init(&ax, src->w, w)) goto fail;
    if (do_y && axis_weights_init(&ay, src->h, h)) goto fail;

    if (do_x && !do_y) {
        resample_rows(src->rgb, src->w, 0, h, out, w, &ax);
    } else if (!do_x) {
        resample_columns(src->rgb, 0, w, out, h, &ay);
    } else {
        /* Only the source rows some output row reads go through the horizontal pass. */
        int row0 = ay.first[0];
        int row1 = ay.first[h - 1] + ay.count[h - 1];
        tmp = malloc((size_t)(row1 - row0) * (size_t)w * 3);
        if (!tmp) {
            vl_error_set("out of memory for a %dx%d resize intermediate", w, row1 - row0);
            goto fail;
        }
        resample_rows(src->rgb, src->w, row0, row1 - row0, tmp, w, &ax);
        resample_columns(tmp, row0, w, out, h, &ay);
    }
    dst->w = w, dst->h = h, dst->rgb = out;
    goto done;
fail:
    rc = -1;
    free(out);
done:
    free(tmp);
    axis_weights_free(&ax);
    axis_weights_free(&ay);
    return rc;
}
