/* fuzz_exif.c: libFuzzer harness for the orientation metadata readers (loader/exif.c,
 * loader/image_orient.c) without decoding pixels: the input as a bare EXIF/TIFF structure, as
 * XMP text, and as a JPEG, PNG, WebP and TIFF container whose segments / chunks are walked. The
 * orientation must be 1..8 (0..8 for XMP); a small image is then turned by it and must keep its
 * pixel count. The image harness covers the same code through vl_image_load.
 * Leaves out: agreement with Pillow (tests/test_image_exif.c). */
#include "loader/exif.h"
#include "loader/image_orient.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int found = 0;
    int o = vl_exif_orientation(data, size, &found);
    FUZZ_CHECK(o >= 1 && o <= 8 && (found == 0 || found == 1), "exif orientation %d", o);
    int x = vl_xmp_orientation(data, size);
    FUZZ_CHECK(x >= 0 && x <= 8, "xmp orientation %d", x);
    static const vl_image_format formats[] = {VL_FMT_JPEG, VL_FMT_PNG, VL_FMT_WEBP, VL_FMT_TIFF,
                                              VL_FMT_GIF};
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        int c = vl_image_orientation(data, size, formats[k]);
        FUZZ_CHECK(c >= 1 && c <= 8, "container %d: orientation %d", (int)formats[k], c);
        vl_image img = {3, 2, calloc(18, 1)};
        if (img.rgb && vl_image_apply_orientation(&img, c, "fuzz") == 0)
            FUZZ_CHECK(img.w * img.h == 6, "turned to %d x %d", img.w, img.h);
        vl_image_free(&img);
    }
    return 0;
}
