/* image_orient.h: the orientation Pillow's ImageOps.exif_transpose applies to a file, and
 * turning decoded pixels by it (loader/image_orient.c), for loader/image.c. Not part of the
 * public API (loader/loader.h). */
#ifndef VL_IMAGE_ORIENT_H
#define VL_IMAGE_ORIENT_H

#include "loader/image_decode.h"

/* The orientation Pillow's exif_transpose applies to this file: 1..8. */
int vl_image_orientation(const uint8_t *data, size_t n, vl_image_format format);
/* Turn decoded pixels as PIL's Image.transpose does for EXIF orientation 2..8 (1: nothing). */
int vl_image_apply_orientation(vl_image *img, int orientation, const char *path);

#endif
