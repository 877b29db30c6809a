#!/usr/bin/env python3
"""make_exif_images.py: the EXIF/XMP orientation fixtures of tests/fixtures/images/exif/.

transformers' load_image() runs PIL.ImageOps.exif_transpose before convert("RGB"); these files
check that vlrun turns each image the same way. One asymmetric 40x24 picture, stored as:
  - jpeg_orient1..8.jpg      every EXIF orientation in a JPEG APP1 "Exif" segment (little endian)
  - jpeg_be_orient6.jpg      big-endian ("MM") EXIF
  - jpeg_xmp_orient6.jpg     no EXIF, an XMP APP1 with tiff:Orientation="6" (Pillow's fallback)
  - png_exif_orient6.png     eXIf chunk before IDAT; png_exif_after_idat_orient3.png after it;
    png_exif_twice.png       6 before IDAT and 3 after (the last one read wins)
  - png_rawprofile_orient8.png  tEXt "Raw profile type exif" (ImageMagick's hex form)
  - png_text_exif_orient2.png   tEXt with the key "exif" (Pillow takes its bytes as EXIF)
  - png_xmp_orient5.png      iTXt "XML:com.adobe.xmp" with <tiff:Orientation>5</...>
  - webp_exif_orient7.webp   VP8X + EXIF chunk;  tiff_orient8.tif: TIFF tag 274 in IFD 0
and hostile EXIF (all JPEG unless named), which Pillow ignores or reads partly:
  hostile_ifd_past_end, hostile_bad_header, hostile_short_header (no usable IFD: upright);
  hostile_entries_cut (65535 entries declared, orientation first: it counts);
  hostile_bad_offset_first (an entry whose data lies past the end stops the walk before the
  orientation); hostile_huge_count (orientation, then a count of 2^32-1 shorts);
  hostile_value9, hostile_byte_type (no turn); hostile_ascii_with_xmp (orientation present as
  text: XMP not consulted); hostile_count0_with_xmp (skipped entry: XMP's 8 applies);
  hostile_rational (12/2 = 6: Pillow turns it); hostile_twice (3 then 6: the last wins);
  hostile_loop (IFD 0's next and Exif pointers point at itself); hostile_second_app1 (only the
  first Exif segment counts); hostile_double_prefix ("Exif\\0\\0Exif\\0\\0": Pillow 12 strips both).
Each file gets <stem>.pil.png = exif_transpose(Image.open(file)).convert("RGB") as this Pillow
gives it (or no PNG when Pillow raises) and cases.json lists them with the outcome.

Usage: python3 tests/reference/make_exif_images.py [OUTDIR] [--expect-only]
       (default tests/fixtures/images/exif; --expect-only keeps the files in OUTDIR and only
       rewrites the .pil.png and cases.json: another Pillow's JPEG encoder would change them)
Needs numpy + Pillow (with WebP). Deterministic.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps, PngImagePlugin

W, H = 40, 24
XMP_ATTR = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="%d"/></rdf:RDF></x:xmpmeta>'
XMP_ELEM = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description><tiff:Orientation>%d</tiff:Orientation></rdf:Description></x:xmpmeta>'


def picture():
    """Asymmetric: a gradient, a red block top-left, a blue bar along the bottom."""
    y, x = np.mgrid[0:H, 0:W]
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = (x * 6) % 256
    a[..., 1] = (y * 10) % 256
    a[..., 2] = 90
    a[2:8, 3:12] = (230, 30, 30)
    a[H - 4:H - 1, 5:W - 2] = (20, 40, 220)
    return Image.fromarray(a, "RGB")


def tiff_ifd(entries, endian="<", next_ifd=0, extra=b""):
    """A TIFF structure: header, IFD 0 at offset 8 with (tag, type, count, 4-byte field)."""
    head = (b"II*\0" if endian == "<" else b"MM\0*") + struct.pack(endian + "I", 8)
    body = struct.pack(endian + "H", len(entries))
    for tag, typ, count, field in entries:
        if isinstance(field, int):
            field = struct.pack(endian + ("H" if typ == 3 and count == 1 else "I"), field)
        body += struct.pack(endian + "HHI", tag, typ, count) + field.ljust(4, b"\0")
    return head + body + struct.pack(endian + "I", next_ifd) + extra


def orient_exif(n, endian="<"):
    return b"Exif\0\0" + tiff_ifd([(0x0112, 3, 1, n)], endian)


def jpeg_with_app1(payloads):
    buf = io.BytesIO()
    picture().save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    segs = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return data[:2] + segs + data[2:]


def png_bytes(before=(), after=()):
    """PNG of the picture with extra (type, data) chunks before IDAT and after it."""
    buf = io.BytesIO()
    picture().save(buf, "PNG")
    data = buf.getvalue()
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    idat = data.index(b"IDAT") - 4
    iend = data.index(b"IEND") - 4
    return (data[:idat] + b"".join(chunk(t, d) for t, d in before) + data[idat:iend] +
            b"".join(chunk(t, d) for t, d in after) + data[iend:])


def raw_profile(exif):
    hexs = exif.hex()
    lines = "\n".join(hexs[i:i + 72] for i in range(0, len(hexs), 72))
    return b"Raw profile type exif\0" + ("\nexif\n%8d\n%s\n" % (len(exif), lines)).encode()


def files():
    out = {}
    for n in range(1, 9):
        out[f"jpeg_orient{n}.jpg"] = jpeg_with_app1([orient_exif(n)])
    out["jpeg_be_orient6.jpg"] = jpeg_with_app1([orient_exif(6, ">")])
    out["jpeg_xmp_orient6.jpg"] = jpeg_with_app1([b"http://ns.adobe.com/xap/1.0/\0" + XMP_ATTR % 6])
    tiff6 = orient_exif(6)[6:]
    out["png_exif_orient6.png"] = png_bytes(before=[(b"eXIf", tiff6)])
    out["png_exif_after_idat_orient3.png"] = png_bytes(after=[(b"eXIf", orient_exif(3)[6:])])
    out["png_exif_twice.png"] = png_bytes([(b"eXIf", tiff6)], [(b"eXIf", orient_exif(3)[6:])])
    out["png_rawprofile_orient8.png"] = png_bytes(before=[(b"tEXt", raw_profile(orient_exif(8)))])
    out["png_text_exif_orient2.png"] = png_bytes(before=[(b"tEXt", b"exif\0" + orient_exif(2))])
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0" + (XMP_ELEM % 5).encode()
    out["png_xmp_orient5.png"] = png_bytes(before=[(b"iTXt", itxt)])
    buf = io.BytesIO()
    picture().save(buf, "WEBP", lossless=True, exif=orient_exif(7))
    out["webp_exif_orient7.webp"] = buf.getvalue()
    buf = io.BytesIO()
    picture().save(buf, "TIFF", tiffinfo={274: 8})
    out["tiff_orient8.tif"] = buf.getvalue()

    E = lambda entries, **kw: b"Exif\0\0" + tiff_ifd(entries, **kw)
    o6 = (0x0112, 3, 1, 6)
    h = {
        "hostile_ifd_past_end": b"Exif\0\0II*\0" + struct.pack("<I", 0xFFFF) + b"\0" * 20,
        "hostile_bad_header": b"Exif\0\0XX*\0" + tiff_ifd([o6])[4:],
        "hostile_short_header": b"Exif\0\0II*\0",
        "hostile_entries_cut": b"Exif\0\0II*\0" + struct.pack("<IH", 8, 65535) +
        struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + b"\1\1\3",
        "hostile_bad_offset_first": E([(0x010E, 2, 100, 0x7FFFFFF0), o6]),
        "hostile_huge_count": E([(0x0112, 3, 1, 3), (0x0110, 3, 0xFFFFFFFF, 8)]),
        "hostile_value9": E([(0x0112, 3, 1, 9)]),
        "hostile_byte_type": E([(0x0112, 1, 1, b"\6")]),
        "hostile_rational": E([(0x0112, 5, 1, 26)], extra=struct.pack("<II", 12, 2)),
        "hostile_twice": E([(0x0112, 3, 1, 3), o6]),
        "hostile_loop": E([o6, (0x8769, 4, 1, 8)], next_ifd=8),
        "hostile_double_prefix": b"Exif\0\0" + orient_exif(6),
    }
    for name, exif in h.items():
        out[name + ".jpg"] = jpeg_with_app1([exif])
    xmp8 = b"http://ns.adobe.com/xap/1.0/\0" + XMP_ATTR % 8
    out["hostile_ascii_with_xmp.jpg"] = jpeg_with_app1([E([(0x0112, 2, 2, b"6\0")]), xmp8])
    out["hostile_count0_with_xmp.jpg"] = jpeg_with_app1([E([(0x0112, 3, 0, 6)]), xmp8])
    out["hostile_second_app1.jpg"] = jpeg_with_app1([E([(0x010F, 2, 4, b"abc\0")]), orient_exif(6)])
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = [a for a in sys.argv[1:] if a != "--expect-only"]
    expect_only = len(args) != len(sys.argv) - 1
    outdir = args[0] if args else os.path.join(here, "..", "fixtures", "images", "exif")
    os.makedirs(outdir, exist_ok=True)
    cases = []
    for name, data in files().items():
        path = os.path.join(outdir, name)
        if expect_only:  # the committed inputs, this Pillow's expectations
            data = open(path, "rb").read()
        elif not os.path.exists(path) or open(path, "rb").read() != data:
            with open(path, "wb") as f:
                f.write(data)
        stem = os.path.splitext(name)[0]
        case = {"file": name}
        try:
            opened = Image.open(path)
            case.update(format=opened.format, width=opened.size[0], height=opened.size[1])
            exif = opened.getexif()
            case["orientation"] = exif.get(0x0112)
            if not isinstance(case["orientation"], (int, type(None))):
                case["orientation"] = repr(case["orientation"])
            rgb = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            rgb.save(os.path.join(outdir, stem + ".pil.png"))
            case.update(pil_rgb=stem + ".pil.png", out_width=rgb.size[0], out_height=rgb.size[1])
        except Exception as e:  # Pillow refuses it: recorded, no PNG
            case["pillow_error"] = f"{type(e).__name__}: {e}"
            png = os.path.join(outdir, stem + ".pil.png")
            if os.path.exists(png):
                os.remove(png)
        cases.append(case)
        print(name, case.get("orientation"), case.get("out_width"), case.get("out_height"),
              case.get("pillow_error", ""))
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump({"generator": {"script": "tests/reference/make_exif_images.py",
                                 "pillow": PIL.__version__}, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
