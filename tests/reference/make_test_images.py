#!/usr/bin/env python3
"""make_test_images.py: writes the small test images of tests/fixtures/images/.

Four groups, all deterministic (fixed seeds, no time):
  - golden images (doc_rgb.png, photo_rgba.png, grey_small.png, palette.png, photo.jpg,
    wide.png): varied modes and sizes that need up- and downscaling; make_preprocess_goldens.py
    runs PIL/transformers on them;
  - conversion images (conv_*): pixel values given by closed formulas that tests/test_image.c
    recomputes, to check the RGB conversion of each PNG colour type / bit depth, BMP and GIF
    without any golden; plus the aspect-ratio images aspect_200x1.png and aspect_300x1.png;
  - decode/: one small file per format and mode the C decoders handle (JPEG grey, 4:2:0, 4:2:2,
    4:4:4, progressive, arithmetic, CMYK plain / Adobe / YCCK, Adobe RGB; PNG Adam7, low and
    16-bit depths, tRNS; GIF frames off the screen's origin, growing it, transparent, local
    palette, interlaced, grey, animated; BMP of every header size, depth, bitfields layout,
    RLE8/RLE4, top-down; WebP lossy/lossless, with alpha, animated; TIFF RGB/RGBA/grey/palette/
    1-bit/CMYK, none/LZW/deflate/PackBits, predictor, big-endian, tiles, associated alpha),
    each with <name>.pil.png = PIL's Image.open(file).convert("RGB"), and decode/cases.json
    listing them; tests/test_image_formats.c requires our decode to equal PIL's exactly;
  - hostile/: reproducers of decoder bugs and resource attacks that must be refused (a JPEG
    whose DHT declares 765 symbols, a progressive JPEG using an undefined Huffman table, one
    with 1200 scans, a JPEG with a marker inside its entropy-coded data, a 35-byte GIF with a
    13000x13000 screen, BMP headers without pixels, an RLE BMP canvas far larger than its
    data, every format truncated), and a top-down BMP with its bottom-up twin.
The last two groups are made by make_decode_fixtures.py (next to this script), the files PIL
cannot write by image_writers.py. Two inputs are made once with libjpeg-turbo's jpegtran and
kept (decode/jpeg_arith*.jpg; remade only when missing and jpegtran is on the PATH); their PIL
pixels are recomputed like the others. Needs numpy + Pillow (with WebP); the committed
outputs do not need rerunning.

Usage: python3 tests/reference/make_test_images.py [OUTDIR]   (default tests/fixtures/images)
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

W_CONV, H_CONV = 23, 17  # conversion images: small odd sizes


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png_raw(path, rows, width, height, bit_depth, color_type):
    """rows: bytes of each scanline (already packed big-endian); filter type 0."""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def coords(w, h):
    y, x = np.mgrid[0:h, 0:w]
    return x.astype(np.int64), y.astype(np.int64)


# ---- conversion images: the formulas are repeated in tests/test_image.c -------------------

def conv_images(out):
    x, y = coords(W_CONV, H_CONV)
    grey = ((x * 11 + y * 7) & 255).astype(np.uint8)
    Image.fromarray(grey, "L").save(os.path.join(out, "conv_grey.png"))

    r, g, b = (x * 10) & 255, (y * 14) & 255, (x * y) & 255
    a = ((x + y) * 5) & 255
    rgba = np.stack([r, g, b, a], -1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "conv_rgba.png"))

    la = np.stack([grey, ((x * 9) & 255).astype(np.uint8)], -1)
    Image.fromarray(la, "LA").save(os.path.join(out, "conv_la.png"))

    # palette entry i = (37i, 255 - 11i, i^2) mod 256, index (x + 2y) mod 64; the tRNS chunk
    # (made from a per-entry alpha list) must not change the colours.
    pal = []
    for i in range(64):
        pal += [(i * 37) & 255, (255 - i * 11) & 255, (i * i) & 255]
    idx = ((x + 2 * y) % 64).astype(np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(pal)
    p.save(os.path.join(out, "conv_palette.png"), transparency=bytes((i * 4) & 255 for i in range(64)))

    # 4-bit palette: index (x + y) mod 16, same palette formula
    idx4 = ((x + y) % 16).astype(np.uint8)
    p4 = Image.fromarray(idx4, "P")
    p4.putpalette(pal[: 16 * 3])
    p4.save(os.path.join(out, "conv_palette4.png"), bits=4)

    # 1-bit grey: (x ^ y) & 1 -> 255 else 0
    bits = (((x ^ y) & 1) * 255).astype(np.uint8)
    Image.fromarray(bits, "L").convert("1").save(os.path.join(out, "conv_grey1.png"))

    # GIF of the 64-entry palette image (the encoder may reorder the palette; colours stay)
    p.save(os.path.join(out, "conv_palette.gif"))

    # 24-bit BMP: (10x, 14y, 200)
    bmp = np.stack([r, g, np.full_like(r, 200)], -1).astype(np.uint8)
    Image.fromarray(bmp, "RGB").save(os.path.join(out, "conv_rgb.bmp"))

    # 16-bit grey: v = (x * y * 300 + x * 7) mod 65536; PIL gives min(v, 255)
    w16, h16 = 9, 7
    x16, y16 = coords(w16, h16)
    v = (x16 * y16 * 300 + x16 * 7) & 0xFFFF
    rows = [b"".join(struct.pack(">H", int(s)) for s in v[j]) for j in range(h16)]
    write_png_raw(os.path.join(out, "conv_grey16.png"), rows, w16, h16, 16, 0)

    # 16-bit RGB: samples (x * 7000 + 1, y * 9000 + 2, (x + y) * 3000 + 3); PIL keeps the high byte
    rgb16 = np.stack([x16 * 7000 + 1, y16 * 9000 + 2, (x16 + y16) * 3000 + 3], -1) & 0xFFFF
    rows = [b"".join(struct.pack(">H", int(s)) for s in rgb16[j].reshape(-1)) for j in range(h16)]
    write_png_raw(os.path.join(out, "conv_rgb16.png"), rows, w16, h16, 16, 2)

    # 8-bit RGB: (10x, 14y, xy), the colour formula of conv_rgba.png without alpha
    Image.fromarray(rgba[..., :3], "RGB").save(os.path.join(out, "conv_rgb.png"))

    for w in (200, 300):
        xs = np.arange(w)
        line = np.stack([xs & 255, (xs * 3) & 255, 255 - (xs & 255)], -1).astype(np.uint8)[None]
        Image.fromarray(line, "RGB").save(os.path.join(out, f"aspect_{w}x1.png"))


# ---- golden images: varied content, compressible, each < 30 KB ----------------------------

def smooth_disc(x, y, cx, cy, rad):
    """coverage 0..1 of an antialiased disc"""
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return np.clip(rad + 0.5 - d, 0.0, 1.0)


def golden_images(out):
    rng = np.random.default_rng(20240611)

    # doc_rgb: a page fragment: title bar, "text" lines of words, a red disc, a gradient strip
    w, h = 260, 220
    x, y = coords(w, h)
    img = np.full((h, w, 3), 255.0)
    img[8:30, 10:250] = [30, 50, 110]
    for line in range(12):
        top = 40 + line * 10
        px = 12
        while px < 170:
            word = int(rng.integers(8, 30))
            shade = float(rng.integers(20, 90))
            img[top : top + 5, px : min(px + word, 170)] = shade
            px += word + int(rng.integers(4, 8))
    cov = smooth_disc(x, y, 212.3, 80.7, 30.2)[..., None]
    img = img * (1 - cov) + cov * np.array([210.0, 40.0, 35.0])
    img[170:200, 10:250] = np.stack(
        [x[170:200, 10:250] - 10, 120 + 0 * x[170:200, 10:250], 250 - x[170:200, 10:250]], -1
    )
    img[205:207, :] = 0
    Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB").save(
        os.path.join(out, "doc_rgb.png"), optimize=True
    )

    # photo_rgba: smooth colours, a disc, alpha ramp with an opaque block
    w, h = 97, 61
    x, y = coords(w, h)
    r = 128 + 100 * np.sin(x / 9.0)
    g = 128 + 100 * np.cos(y / 7.0)
    b = (x * 2 + y * 3) % 256
    cov = smooth_disc(x, y, 60.5, 30.2, 17.3)
    r, g, b = r * (1 - cov) + 250 * cov, g * (1 - cov) + 220 * cov, b * (1 - cov) + 20 * cov
    alpha = np.clip(x * 255 / (w - 1), 0, 255)
    alpha[5:20, 5:30] = 255
    rgba = np.stack([r, g, b, alpha], -1)
    Image.fromarray(np.clip(rgba + 0.5, 0, 255).astype(np.uint8), "RGBA").save(
        os.path.join(out, "photo_rgba.png"), optimize=True
    )

    # grey_small: radial gradient, a checker block, light noise (upscaled by smart_resize)
    w, h = 45, 40
    x, y = coords(w, h)
    grey = 255 - np.sqrt((x - 20.0) ** 2 + (y - 18.0) ** 2) * 6
    grey[25:35, 30:42] = np.where(((x[25:35, 30:42] // 2 + y[25:35, 30:42] // 2) & 1) == 1, 0, 255)
    grey = grey + rng.normal(0, 3, grey.shape)
    Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L").save(
        os.path.join(out, "grey_small.png"), optimize=True
    )

    # palette: a 16-colour bar chart on a grid
    w, h = 120, 90
    x, y = coords(w, h)
    idx = np.zeros((h, w), np.uint8)
    idx[(y % 15) == 0] = 1
    idx[:, 10] = 2
    idx[80, 10:] = 2
    for i, top in enumerate([20, 45, 30, 60, 12, 50]):
        idx[top:80, 14 + i * 17 : 26 + i * 17] = 3 + i
    pal = [255, 255, 255, 210, 210, 210, 0, 0, 0]
    pal += [40, 90, 200, 230, 120, 30, 50, 160, 60, 200, 40, 40, 130, 60, 180, 20, 150, 160]
    pal += [0] * (48 - len(pal))
    p = Image.fromarray(idx, "P")
    p.putpalette(pal)
    p.save(os.path.join(out, "palette.png"), optimize=True)

    # photo.jpg: smooth gradients, a disc and sharp edges (chroma subsampled 4:2:0)
    w, h = 128, 96
    x, y = coords(w, h)
    r = 60 + 150 * x / (w - 1)
    g = 40 + 170 * y / (h - 1)
    b = 128 + 90 * np.sin((x + y) / 11.0)
    cov = smooth_disc(x, y, 40.0, 50.0, 22.0)
    r, g, b = r * (1 - cov) + 240 * cov, g * (1 - cov) + 240 * cov, b * (1 - cov) + 240 * cov
    img = np.stack([r, g, b], -1)
    img[70:90, 80:120] = [20, 30, 160]
    Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB").save(
        os.path.join(out, "photo.jpg"), quality=90
    )

    # wide: 1000 x 6 (aspect 166.7): stripes of three periods
    w, h = 1000, 6
    x, y = coords(w, h)
    img = np.stack(
        [128 + 120 * np.sin(x / 5.0), 128 + 120 * np.sin(x / 37.0 + y), (x // 50 % 2) * 255.0], -1
    )
    Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB").save(
        os.path.join(out, "wide.png"), optimize=True
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures", "images")
    os.makedirs(out, exist_ok=True)
    conv_images(out)
    golden_images(out)
    import make_decode_fixtures

    make_decode_fixtures.decode_fixtures(os.path.join(out, "decode"))
    make_decode_fixtures.hostile_fixtures(os.path.join(out, "decode"), os.path.join(out, "hostile"))
    for folder in (out, os.path.join(out, "decode"), os.path.join(out, "hostile")):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                print(f"{os.path.getsize(path):8d}  {os.path.relpath(path, out)}")


if __name__ == "__main__":
    main()
