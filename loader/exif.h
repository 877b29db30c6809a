/* exif.h: the orientation tag of EXIF and XMP data (loader/exif.c), for image_orient.c.
 * Not part of the public API (loader/loader.h). */
#ifndef VL_EXIF_H
#define VL_EXIF_H

#include <stddef.h>
#include <stdint.h>

/* EXIF orientation: a TIFF structure, "Exif\0\0" prefixes allowed; returns 2..8 to
 * turn, 1 for none; *found = 1 when IFD 0 has an orientation entry at all (then XMP is not
 * consulted). vl_xmp_orientation: 0 when XMP has no tiff:Orientation, else 1..8. */
int vl_exif_orientation(const uint8_t *p, size_t n, int *found);
int vl_xmp_orientation(const uint8_t *p, size_t n);
#endif
