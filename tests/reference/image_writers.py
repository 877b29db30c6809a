"""image_writers.py: byte-level writers for the test images Pillow cannot write.

make_test_images.py uses these to control what Pillow's encoders decide for us: Adam7 and
low-bit-depth PNGs, GIF frames placed anywhere on a screen with chosen palettes and
transparency, every BMP header / bit depth / bitfields layout and RLE8/RLE4 streams, TIFFs of
any byte order, photometric, extra samples, compression (none, deflate, PackBits), predictor,
fill order and tiling, and JPEG segments for crafted files. Each writer returns bytes; the
pixels are numpy arrays of sample values. Pure Python + numpy.
"""
import struct
import zlib

import numpy as np


# ---- PNG ----------------------------------------------------------------------------------

def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _pack_rows(samples, bits):
    """samples: H x W x C ints -> list of packed rows (big-endian, MSB-first bits)."""
    rows = []
    for row in samples:
        flat = [int(v) for v in row.reshape(-1)]
        if bits == 16:
            rows.append(b"".join(struct.pack(">H", v) for v in flat))
        elif bits == 8:
            rows.append(bytes(flat))
        else:
            acc, n, out = 0, 0, bytearray()
            for v in flat:
                acc, n = (acc << bits) | v, n + bits
                if n == 8:
                    out.append(acc)
                    acc, n = 0, 0
            if n:
                out.append(acc << (8 - n))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_bytes(samples, bits, color_type, interlace=False, extra_chunks=()):
    """samples: H x W x C array; extra_chunks: (kind, data) written before IDAT."""
    h, w = samples.shape[:2]
    if samples.ndim == 2:
        samples = samples[..., None]
    parts = [(0, 0, 1, 1)] if not interlace else ADAM7
    raw = b""
    for x0, y0, dx, dy in parts:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        raw += b"".join(b"\x00" + r for r in _pack_rows(sub, bits))
    ihdr = struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for kind, data in extra_chunks:
        out += png_chunk(kind, data)
    return out + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")


# ---- GIF ----------------------------------------------------------------------------------

def lzw_uncompressed(indices, min_code):
    """LZW codes that are all literals, with a clear code often enough that the table never
    grows the code size: valid for every decoder and simple to write."""
    clear, end, size = 1 << min_code, (1 << min_code) + 1, min_code + 1
    codes, run = [clear], 0
    for v in indices:
        if run == (1 << min_code) - 2:
            codes.append(clear)
            run = 0
        codes.append(int(v))
        run += 1
    codes.append(end)
    acc, n, out = 0, 0, bytearray()
    for c in codes:
        acc |= c << n
        n += size
        while n >= 8:
            out.append(acc & 255)
            acc, n = acc >> 8, n - 8
    if n:
        out.append(acc & 255)
    return bytes(out)


def _sub_blocks(data):
    return b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255]
                    for i in range(0, len(data), 255)) + b"\x00"


def _gif_palette_flags(pal):
    n = len(pal) // 3
    bits = max(1, (n - 1).bit_length())
    assert n == 1 << bits, "GIF palettes hold a power of two >= 2 entries"
    return 0x80 | (bits - 1)


INTERLACE_PASSES = [(0, 8), (4, 8), (2, 4), (1, 2)]


def gif_bytes(screen, global_pal, frames, background=0):
    """frames: dicts with left, top, indices (h x w), and optionally local_pal, transparent,
    interlace, min_code (default 8)."""
    flags = _gif_palette_flags(global_pal) if global_pal else 0
    out = b"GIF89a" + struct.pack("<HH", *screen) + bytes([flags, background, 0])
    out += bytes(global_pal or b"")
    for fr in frames:
        idx = np.asarray(fr["indices"])
        h, w = idx.shape
        if fr.get("transparent") is not None:
            out += b"!\xf9\x04" + bytes([1, 0, 0, fr["transparent"]]) + b"\x00"
        local = fr.get("local_pal")
        flags = (_gif_palette_flags(local) if local else 0) | (0x40 if fr.get("interlace") else 0)
        out += b"," + struct.pack("<HHHH", fr["left"], fr["top"], w, h) + bytes([flags])
        out += bytes(local or b"")
        rows = range(h)
        if fr.get("interlace"):
            rows = [y for start, step in INTERLACE_PASSES for y in range(start, h, step)]
        order = np.concatenate([idx[y] for y in rows])
        min_code = fr.get("min_code", 8)
        out += bytes([min_code]) + _sub_blocks(lzw_uncompressed(order, min_code))
    return out + b";"


# ---- BMP ----------------------------------------------------------------------------------

def bmp_stride(w, bits):
    return ((w * bits + 31) >> 3) & ~3


def bmp_bytes(w, h, bits, data, header_size=40, compression=0, palette=None, masks=None,
              top_down=False, colors=None, offset=None):
    """data: the pixel bytes as stored. palette: list of (r, g, b). masks: (r, g, b[, a])."""
    if header_size == 12:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
        entry = 3
    else:
        info = struct.pack("<IiiHHIIiiII", header_size, w, -h if top_down else h, 1, bits,
                           compression, len(data), 2835, 2835,
                           len(palette) if colors is None and palette else (colors or 0), 0)
        entry = 4
        if header_size >= 52 and masks:
            info += struct.pack("<III", *masks[:3])
            if header_size >= 56:
                info += struct.pack("<I", masks[3] if len(masks) > 3 else 0)
        info += b"\x00" * (header_size - len(info))
        if header_size == 40 and masks:
            info += struct.pack("<III", *masks[:3])
    pal = b"".join(bytes([b, g, r]) + (b"\x00" if entry == 4 else b"")
                   for r, g, b in (palette or []))
    start = 14 + len(info) + len(pal)
    data_at = start if offset is None else offset
    head = b"BM" + struct.pack("<IHHI", start + len(data), 0, 0, data_at)
    return head + info + pal + bytes(data)


def bmp_rows(rows_as_bytes, w, bits, top_down=False):
    """Rows top to bottom -> stored data (padded, bottom-up unless top_down)."""
    stride = bmp_stride(w, bits)
    rows = rows_as_bytes if top_down else rows_as_bytes[::-1]
    return b"".join(r + b"\x00" * (stride - len(r)) for r in rows)


def _rle_segment(seg, rle4):
    """Greedy RLE of one stretch of indices: encoded runs (uniform, or alternating nibbles for
    RLE4) of 3+, absolute runs of 3+ literals (even lengths for RLE4), single runs otherwise."""
    out, i, n = bytearray(), 0, len(seg)

    def run_at(i):
        a, b = seg[i], seg[i + 1] if (rle4 and i + 1 < n) else seg[i]
        r = 0
        while i + r < n and r < 255 and seg[i + r] == (a if r % 2 == 0 else b):
            r += 1
        return r, (a << 4 | b) if rle4 else a

    while i < n:
        r, v = run_at(i)
        if r >= 3 or n - i < 3:
            out += bytes([r, v])
            i += r
            continue
        j = i
        while j < n and run_at(j)[0] < 3 and j - i < 254:
            j += 1
        count = j - i
        if rle4:
            count -= count % 2
        if count < 3:
            out += bytes([r, v])
            i += r
            continue
        lit = seg[i : i + count]
        if rle4:
            data = bytes(lit[k] << 4 | lit[k + 1] for k in range(0, count, 2))
        else:
            data = bytes(lit)
        out += bytes([0, count]) + data + (b"\x00" if len(data) % 2 else b"")
        i += count
    return out


def bmp_rle(rows, rle4):
    """rows: index rows top to bottom -> RLE stream, bottom row first, end of line after each
    row and end of bitmap at the end."""
    out = bytearray()
    for row in rows[::-1]:
        out += _rle_segment([int(v) for v in row], rle4) + b"\x00\x00"
    return bytes(out + b"\x00\x01")


# ---- TIFF ---------------------------------------------------------------------------------

def packbits(data):
    """PackBits with replicate runs for 3+ equal bytes, literals otherwise."""
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        r = 1
        while i + r < n and r < 128 and data[i + r] == data[i]:
            r += 1
        if r >= 3:
            out += bytes([257 - r, data[i]])
            i += r
            continue
        j = i
        while j < n and j - i < 128 and not (j + 2 < n and data[j] == data[j + 1] == data[j + 2]):
            j += 1
        out += bytes([j - i - 1]) + data[i:j]
        i = j
    return bytes(out)


BITREV = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def tiff_bytes(rows, w, h, bits, spp, photometric, compression=1, predictor=1,
               rows_per_strip=None, big_endian=False, extra_samples=None, colormap=None,
               fill_order=1, tile=None):
    """rows: packed sample rows top to bottom (bytes). tile=(tw, th) writes tiles instead."""
    e = ">" if big_endian else "<"
    row_bytes = (w * spp * bits + 7) // 8

    def encode(chunk_rows):
        raw = b""
        for r in chunk_rows:
            r = bytearray(r)
            if predictor == 2:
                for i in range(len(r) - 1, spp - 1, -1):
                    r[i] = (r[i] - r[i - spp]) & 255
            raw += bytes(r)
        data = {1: raw, 8: zlib.compress(raw, 9), 32773: packbits(raw)}[compression]
        return data.translate(BITREV) if fill_order == 2 else data

    if tile:
        tw, th = tile
        chunks = []
        for ty in range(0, h, th):
            for tx in range(0, w, tw):
                tr = []
                for y in range(ty, ty + th):
                    src = rows[y] if y < h else b"\x00" * row_bytes
                    a, b = tx * spp * bits // 8, (tx + tw) * spp * bits // 8
                    piece = src[a:b]
                    tr.append(piece + b"\x00" * (tw * spp * bits // 8 - len(piece)))
                chunks.append(encode(tr))
    else:
        rps = rows_per_strip or h
        chunks = [encode(rows[y : y + rps]) for y in range(0, h, rps)]

    body, offsets = b"", []
    for c in chunks:
        offsets.append(8 + len(body))
        body += c + (b"\x00" if len(c) % 2 else b"")
    entries = {256: (4, [w]), 257: (4, [h]), 258: (3, [bits] * spp), 259: (3, [compression]),
               262: (3, [photometric]), 277: (3, [spp]), 284: (3, [1])}
    if fill_order != 1:
        entries[266] = (3, [fill_order])
    if predictor != 1:
        entries[317] = (3, [predictor])
    if colormap is not None:
        entries[320] = (3, list(colormap))
    if extra_samples is not None:
        entries[338] = (3, list(extra_samples))
    if tile:
        entries.update({322: (4, [tile[0]]), 323: (4, [tile[1]]), 324: (4, offsets),
                        325: (4, [len(c) for c in chunks])})
    else:
        entries.update({273: (4, offsets), 278: (4, [rows_per_strip or h]),
                        279: (4, [len(c) for c in chunks])})
    ifd_at = 8 + len(body)
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack(e + "H", len(entries)), b""
    for tag in sorted(entries):
        typ, vals = entries[tag]
        fmt = e + ("H" if typ == 3 else "I") * len(vals)
        data = struct.pack(fmt, *vals)
        if len(data) <= 4:
            ifd += struct.pack(e + "HHI", tag, typ, len(vals)) + data + b"\x00" * (4 - len(data))
        else:
            ifd += struct.pack(e + "HHII", tag, typ, len(vals), extra_at + len(extra))
            extra += data + (b"\x00" if len(data) % 2 else b"")
    ifd += struct.pack(e + "I", 0)
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", ifd_at)
    return head + body + ifd + extra


# ---- JPEG segments ------------------------------------------------------------------------

def jpeg_segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_segments(data):
    """(marker, start, end) of each segment from SOI up to and including the first SOS."""
    out, i = [], 2
    while i < len(data):
        marker = data[i + 1]
        end = i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
        out.append((marker, i, end))
        if marker == 0xDA:
            break
        i = end
    return out
