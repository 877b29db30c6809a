#!/usr/bin/env python3
"""make_seeds.py: writes the committed seed corpora of tests/fuzz/corpus/<harness>/.

Small, valid (or deliberately borderline) inputs that reach the interesting paths quickly; the
repository's fixtures are used as seeds too, in place (scripts/fuzz.sh links them). Python's
standard library only: images come from the small encoders below (PNG every colour type and
depth, interlaced; BMP 1/4/8/16/24/32 bits and RLE8; GIF with LZW; JPEG baseline, 4:2:0,
restart intervals, progressive), so nothing here needs PIL. The tokenizer seeds take the Qwen2
split pattern from .cache/tokenizer/small_tokenizer.json (scripts/setup.sh makes it).

Deterministic: rerunning gives the same bytes. The outputs are committed; rerun only to change
them.

Usage: python3 tests/fuzz/make_seeds.py [CORPUS_DIR]   (default tests/fuzz/corpus)
"""
import json
import math
import os
import struct
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---- safetensors --------------------------------------------------------------------------


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] -> file bytes (header padded with spaces to 8)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = jdump(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def seeds_safetensors():
    f32 = struct.pack("<3f", 1.0, -2.5, 0.0)
    put("safetensors", "dtypes.safetensors", safetensors([
        ("f32", "F32", [3], f32),
        ("f16", "F16", [2], struct.pack("<2H", 0x3C00, 0xC000)),
        ("bf16", "BF16", [2, 1], struct.pack("<2H", 0x3F80, 0x7F80)),
        ("u8", "U8", [4], bytes([0, 1, 254, 255])),
        ("i8", "I8", [1, 2], bytes([0x80, 0x7F])),
        ("i32", "I32", [1], struct.pack("<i", -7)),
        ("i64", "I64", [1], struct.pack("<q", 1 << 40)),
    ], {"format": "pt"}))
    put("safetensors", "scalar_empty.safetensors", safetensors([
        ("scalar", "F32", [], struct.pack("<f", 3.0)),
        ("empty", "BF16", [0, 3], b""),
        ("model.layers.0.self_attn.q_proj.weight", "BF16", [2, 2], bytes(8)),
    ]))
    put("safetensors", "header_only.safetensors", safetensors([], {"format": "pt"}))
    put("safetensors", "unpadded.safetensors", safetensors([("w", "U8", [3], b"abc")], pad=False))
    put("safetensors", "bnb_pieces.safetensors", safetensors([
        ("m.weight", "U8", [64, 1], bytes(range(64))),
        ("m.weight.absmax", "F32", [2], struct.pack("<2f", 0.5, 1.0)),
        ("m.weight.quant_map", "F32", [16], bytes(64)),
        ("m.weight.quant_state.bitsandbytes__nf4", "U8", [2], b"{}"),
    ]))


# ---- sharded index (shards written by fuzz_index.c at start-up) ---------------------------

S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def seeds_index():
    meta = {"total_size": 40}
    put("index", "two_shards.json", json.dumps({"metadata": meta, "weight_map": {
        "a.weight": S1, "b.bias": S1, "c.weight": S2, "d": S2}}, indent=2))
    put("index", "one_shard.json", jdump({"weight_map": {"a.weight": S1}}))
    put("index", "duplicate_across_shards.json", jdump({"weight_map": {"a.weight": "extra.safetensors", "b.bias": S1}}))
    put("index", "empty_shard.json", jdump({"weight_map": {"c.weight": S2, "x": "empty.safetensors"}}))
    put("index", "wrong_shard.json", jdump({"weight_map": {"a.weight": S2, "c.weight": S2}}))
    put("index", "path_escape.json", jdump({"weight_map": {"a.weight": "../" + S1}}))


# ---- config.json / preprocessor_config.json -----------------------------------------------


def seeds_config():
    text = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "type": "mrope", "rope_theta": 1e6,
                                "mrope_section": [4, 6, 6]}}
    vision = {"depth": 2, "embed_dim": 64, "num_heads": 4, "hidden_size": 128, "mlp_ratio": 4,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "in_channels": 3, "hidden_act": "quick_gelu", "rope_parameters": {"rope_theta": 1e4}}
    ids = {"image_token_id": 4076, "video_token_id": 4077, "vision_start_token_id": 4073,
           "vision_end_token_id": 4074, "vision_token_id": 4075}
    put("config", "nested.json", json.dumps(dict(model_type="qwen2_vl", text_config=dict(
        text, bos_token_id=4064, eos_token_id=[4066, 4064]), vision_config=vision, **ids), indent=1))
    flat = {k: v for k, v in text.items() if k != "rope_parameters"}
    flat.update(rope_theta=1e6, rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
                tie_word_embeddings=True, head_dim=32, bos_token_id=1, eos_token_id=2,
                vision_config={"in_chans": 3, "spatial_patch_size": 14, "embed_dim": 64,
                               "num_heads": 4, "hidden_size": 128, "hidden_act": "gelu"},
                model_type="qwen2_vl", **ids)
    put("config", "flat.json", json.dumps(flat))
    put("config", "minimal.json", jdump({"hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 1, "num_attention_heads": 28, "vocab_size": 152064}))
    # Qwen2.5-VL: a windowed SwiGLU tower (full attention in the first and last block)
    vision25 = {"depth": 4, "hidden_size": 96, "num_heads": 3, "intermediate_size": 200,
                "out_hidden_size": 128, "hidden_act": "silu", "patch_size": 14,
                "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                "fullatt_block_indexes": [0, 3], "tokens_per_second": 2}
    flat25 = dict(flat, model_type="qwen2_5_vl", vision_config=dict(vision25, in_chans=3))
    put("config", "qwen2_5_vl_flat.json", json.dumps(flat25))
    put("config", "qwen2_5_vl_nested.json", json.dumps(dict(model_type="qwen2_5_vl",
        text_config=dict(text, bos_token_id=4064, eos_token_id=4066),
        vision_config=dict(vision25, in_channels=3, fullatt_block_indexes=[]), **ids), indent=1))


def seeds_preproc():
    put("preproc", "transformers5.json", json.dumps({"size": {"shortest_edge": 3136,
        "longest_edge": 1003520}, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}))
    put("preproc", "all_keys.json", json.dumps({"min_pixels": 784, "max_pixels": 12544,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.25, 1e-3], "do_resize": True,
        "do_rescale": True, "do_normalize": True, "resample": 3,
        "rescale_factor": 0.00392156862745098, "patch_size": 7, "merge_size": 3,
        "temporal_patch_size": 1}, indent=2))
    put("preproc", "empty.json", "{}")


# ---- tokenizer.json and texts -------------------------------------------------------------


def byte_symbols():
    """GPT-2's bytes_to_unicode: byte -> the character that spells it in the vocabulary."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    sym, n = {}, 0
    for b in range(256):
        if b in keep:
            sym[b] = chr(b)
        else:
            sym[b] = chr(256 + n)
            n += 1
    return sym


def seeds_tokenizer():
    path = os.path.join(ROOT, ".cache", "tokenizer", "small_tokenizer.json")
    with open(path, encoding="utf-8") as f:
        pre = json.load(f)["pre_tokenizer"]
    sym = byte_symbols()
    vocab = {sym[b]: b for b in range(256)}
    merges = []
    for left, right in [("t", "h"), ("th", "e"), ("\u0120", "the"), ("i", "n"), ("e", "r"),
                        ("\u0120", "t"), ("\u00e4", "\u00b8")]:
        vocab[left + right] = len(vocab)
        merges.append([left, right])
    added = [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True},
             {"id": len(vocab) + 1, "content": "<|im_start|>", "single_word": False,
              "lstrip": False, "rstrip": False, "normalized": False, "special": True}]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": {"type": "NFC"}, "pre_tokenizer": pre, "post_processor": None,
           "decoder": bl, "model": {"type": "BPE", "dropout": None, "unk_token": None,
                                    "continuing_subword_prefix": "", "end_of_word_suffix": "",
                                    "fuse_unk": False, "byte_fallback": False,
                                    "ignore_merges": False, "vocab": vocab, "merges": merges}}
    put("tokenizer", "tiny.json", json.dumps(tok, ensure_ascii=False))
    legacy = json.loads(json.dumps(tok))
    legacy["model"]["merges"] = ["#version: 0.2"] + [a + " " + b for a, b in merges]
    legacy["model"]["ignore_merges"] = True
    legacy["added_tokens"].append({"id": len(vocab) + 2, "content": "caf\u0065\u0301",
                                   "normalized": True, "special": False})
    put("tokenizer", "legacy_merges_normalized.json", json.dumps(legacy))
    plain = json.loads(json.dumps(tok))
    plain["normalizer"] = None
    plain["added_tokens"] = None
    put("tokenizer", "no_normalizer.json", json.dumps(plain, indent=1))


def seeds_tokenize():
    with open(os.path.join(ROOT, "tests", "fixtures", "tokenizer", "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for c in cases:
        if len(c["text"].encode()) <= 2048:
            put("tokenize", "case_" + c["name"] + ".txt", c["text"])
    extra = {
        "combining_after_token.txt": "<|im_end|>\u0338 e\u0301 \u1100\u1161\u11a8 A\u030a\u0323",
        "numbers_ws.txt": "1234567 89\r\n\r\n  \t x's 'S 'll\u00a0\u3000end   ",
        "scripts.txt": "\u4e2d\u6587 \ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \U0001F600\U0001F3FD \u0939\u093f\u0928\u094d\u0926\u0940",
        "nonchar.txt": "\uffff\ufffe\U0010FFFF\u00ad\u200d",
    }
    for name, text in extra.items():
        put("tokenize", name, text)
    put("tokenize", "invalid_utf8.txt", b"ok \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf end")


# ---- images -------------------------------------------------------------------------------


def pixel(x, y, c):
    return (x * 37 + y * 91 + c * 53 + (x * y) % 7) & 0xFF


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png(w, h, depth, ctype, interlace=False, palette=None, trns=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    maxv = (1 << depth) - 1

    def row_bytes(xs, y):
        vals = [pixel(x, y, c) * maxv // 255 for x in xs for c in range(channels)]
        if depth == 16:
            return b"".join(struct.pack(">H", v) for v in vals)
        if depth == 8:
            return bytes(vals)
        bits = "".join(format(v, "0%db" % depth) for v in vals)
        bits += "0" * (-len(bits) % 8)
        return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))

    if not interlace:  # filter type 0 on every row
        raw = b"".join(b"\0" + row_bytes(range(w), y) for y in range(h))
    else:  # Adam7: the seven passes, each a small image of its own
        raw = b""
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            xs = list(range(x0, w, dx))
            if xs:
                raw += b"".join(b"\0" + row_bytes(xs, y) for y in range(y0, h, dy))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    comp = zlib.compress(raw, 9)
    half = len(comp) // 2  # two IDAT chunks
    return out + png_chunk(b"IDAT", comp[:half]) + png_chunk(b"IDAT", comp[half:]) + png_chunk(b"IEND", b"")


def bmp(w, h, bpp, top_down=False, rle8=False):
    ncol = 1 << bpp if bpp <= 8 else 0
    palette = b"".join(bytes([(i * 41) & 255, (i * 83) & 255, (i * 13) & 255, 0]) for i in range(ncol))
    rows = []
    for y in range(h):
        if bpp <= 8:
            vals = [pixel(x, y, 0) % ncol for x in range(w)]
            if rle8:
                r = b""
                for v in vals:
                    r += bytes([1, v])
                rows.append(r + b"\0\0")
                continue
            bits = "".join(format(v, "0%db" % bpp) for v in vals)
            bits += "0" * (-len(bits) % 8)
            r = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        elif bpp == 16:
            r = b"".join(struct.pack("<H", (pixel(x, y, 0) >> 3) << 10 | (pixel(x, y, 1) >> 3) << 5 | pixel(x, y, 2) >> 3) for x in range(w))
        else:
            r = b"".join(bytes([pixel(x, y, 2), pixel(x, y, 1), pixel(x, y, 0)] + ([pixel(x, y, 3)] if bpp == 32 else [])) for x in range(w))
        rows.append(r + b"\0" * (-len(r) % 4))
    if rle8:
        rows[-1] = rows[-1][:-2] + b"\0\1"
    data = b"".join(rows if top_down else rows[::-1])
    comp = 1 if rle8 else 0
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bpp, comp, len(data), 2835, 2835, ncol, 0)
    off = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + palette + data


def lzw_gif(indices, min_code):
    """GIF LZW with a clear code first and no table growth past 12 bits (clear when full)."""
    clear, end = 1 << min_code, (1 << min_code) + 1
    out, nbits, acc = [], 0, 0
    size = min_code + 1

    def emit(code):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8

    table = {bytes([i]): i for i in range(clear)}
    nxt = end + 1
    emit(clear)
    cur = b""
    for i in indices:
        s = cur + bytes([i])
        if s in table:
            cur = s
            continue
        emit(table[cur])
        if nxt < 4096:
            table[s] = nxt
            nxt += 1
            if nxt > (1 << size) and size < 12:
                size += 1
        else:
            emit(clear)
            table = {bytes([k]): k for k in range(clear)}
            nxt, size = end + 1, min_code + 1
        cur = bytes([i])
    if cur:
        emit(table[cur])
    emit(end)
    if nbits:
        out.append(acc & 255)
    data = bytes(out)
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    return bytes([min_code]) + blocks + b"\0"


def gif(w, h, version=b"89a", transparent=False, interlace=False):
    ncol = 16
    pal = b"".join(bytes([(i * 17) & 255, (i * 71) & 255, (i * 29) & 255]) for i in range(ncol))
    rows = list(range(h))
    if interlace:
        rows = list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))
    idx = [pixel(x, y, 0) % ncol for y in rows for x in range(w)]
    out = b"GIF" + version + struct.pack("<HHBBB", w, h, 0xF3, 0, 0) + pal
    if transparent:
        out += b"\x21\xf9\x04\x01\x00\x00\x03\x00"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0x40 if interlace else 0) + lzw_gif(idx, 4)
    return out + b"\x3b"


# JPEG: a small encoder (float DCT, the standard Huffman tables of ITU T.81 annex K).
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
          20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
          58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
Q_LUM = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
         56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
         104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
Q_CHR = [17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5 + [47, 66] + [99] * 38
DC_LUM = ([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], list(range(12)))
DC_CHR = ([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], list(range(12)))
AC_LUM = ([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d], bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a2526"
    "2728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485"
    "868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6"
    "d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"))
AC_CHR = ([0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77], bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f1171819"
    "1a262728292a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a8283"
    "8485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4"
    "d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa"))


def huff_codes(spec):
    counts, symbols = spec
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


class Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value, length):
        for i in range(length - 1, -1, -1):
            self.acc = self.acc << 1 | (value >> i) & 1
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self):
        while self.n:
            self.put(1, 1)
        data, self.out = bytes(self.out), bytearray()
        return data


def magnitude(v):
    s = abs(v).bit_length()
    return s, (v if v >= 0 else v + (1 << s) - 1)


def fdct(block):
    out = [0.0] * 64
    for v in range(8):
        for u in range(8):
            s = sum(block[y * 8 + x] * math.cos((2 * x + 1) * u * math.pi / 16) * math.cos((2 * y + 1) * v * math.pi / 16)
                    for y in range(8) for x in range(8))
            cu = 1 / math.sqrt(2) if u == 0 else 1
            cv = 1 / math.sqrt(2) if v == 0 else 1
            out[v * 8 + u] = 0.25 * cu * cv * s
    return out


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(w, h, color=True, sub=False, restart=0, progressive=False):
    ncomp = 3 if color else 1
    samp = [(2, 2) if sub else (1, 1)] + [(1, 1)] * (ncomp - 1)
    hmax, vmax = max(s[0] for s in samp), max(s[1] for s in samp)
    mcux, mcuy = -(-w // (8 * hmax)), -(-h // (8 * vmax))
    tables = [Q_LUM, Q_CHR, Q_CHR]

    def sample(x, y, c):
        x, y = min(x, w - 1), min(y, h - 1)
        r, g, b = pixel(x, y, 0), pixel(x, y, 1), pixel(x, y, 2)
        if c == 0:
            return 0.299 * r + 0.587 * g + 0.114 * b
        if c == 1:
            return 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
        return 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    blocks = []  # per component: {(bx, by): quantized zigzag coefficients}
    for c in range(ncomp):
        hs, vs = samp[c]
        fx, fy = hmax // hs, vmax // vs
        comp = {}
        for by in range(mcuy * vs):
            for bx in range(mcux * hs):
                px = [sample((bx * 8 + i % 8) * fx, (by * 8 + i // 8) * fy, c) - 128 for i in range(64)]
                coef = fdct(px)
                comp[(bx, by)] = [int(round(coef[ZIGZAG[k]] / tables[c][ZIGZAG[k]])) for k in range(64)]
        blocks.append(comp)

    dc_tabs = [huff_codes(DC_LUM), huff_codes(DC_CHR), huff_codes(DC_CHR)]
    ac_tabs = [huff_codes(AC_LUM), huff_codes(AC_CHR), huff_codes(AC_CHR)]
    out = b"\xff\xd8" + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    out += segment(0xDB, b"\x00" + bytes(Q_LUM[z] for z in ZIGZAG))
    if color:
        out += segment(0xDB, b"\x01" + bytes(Q_CHR[z] for z in ZIGZAG))
    sof = struct.pack(">BHHB", 8, h, w, ncomp) + b"".join(
        bytes([c + 1, samp[c][0] << 4 | samp[c][1], min(c, 1)]) for c in range(ncomp))
    out += segment(0xC2 if progressive else 0xC0, sof)
    for cls, idx, spec in [(0, 0, DC_LUM), (1, 0, AC_LUM)] + ([(0, 1, DC_CHR), (1, 1, AC_CHR)] if color else []):
        out += segment(0xC4, bytes([cls << 4 | idx]) + bytes(spec[0]) + bytes(spec[1]))
    if restart:
        out += segment(0xDD, struct.pack(">H", restart))

    def encode_ac(bits, c, coefs, ss, se):
        run = 0
        last = max([k for k in range(ss, se + 1) if coefs[k]] or [ss - 1])
        for k in range(ss, last + 1):
            if coefs[k] == 0:
                run += 1
                continue
            while run > 15:
                bits.put(*ac_tabs[c][0xF0])
                run -= 16
            s, v = magnitude(coefs[k])
            bits.put(*ac_tabs[c][run << 4 | s])
            bits.put(v, s)
            run = 0
        if last < se:
            bits.put(*ac_tabs[c][0x00])

    def scan(comps, ss, se, body_of_block):
        """One scan over comps (interleaved when several); restart markers every `restart` MCUs."""
        header = bytes([len(comps)]) + b"".join(bytes([c + 1, min(c, 1) << 4 | min(c, 1)]) for c in comps)
        seg = segment(0xDA, header + bytes([ss, se, 0]))
        bits, pred, data, rst = Bits(), [0] * ncomp, b"", 0
        if len(comps) > 1:  # interleaved: MCU by MCU
            units = [(mx, my) for my in range(mcuy) for mx in range(mcux)]
        else:  # one component: its own blocks in raster order

            c = comps[0]
            cw = -(-w * samp[c][0] // hmax)
            ch = -(-h * samp[c][1] // vmax)
            units = [(bx, by) for by in range(-(-ch // 8)) for bx in range(-(-cw // 8))]
        for n, (ux, uy) in enumerate(units):
            if restart and n and n % restart == 0:
                data += bits.flush() + bytes([0xFF, 0xD0 + rst])
                rst, pred = (rst + 1) % 8, [0] * ncomp
            for c in comps:
                hs, vs = samp[c]
                if len(comps) > 1:
                    cells = [(ux * hs + i, uy * vs + j) for j in range(vs) for i in range(hs)]
                else:
                    cells = [(ux, uy)]
                for cell in cells:
                    pred[c] = body_of_block(bits, c, blocks[c][cell], pred[c])
        return seg + data + bits.flush()

    def dc_and_ac(bits, c, coefs, prev, ss=0, se=63):
        if ss == 0:
            s, v = magnitude(coefs[0] - prev)
            bits.put(*dc_tabs[c][s])
            bits.put(v, s)
        if se > 0:
            encode_ac(bits, c, coefs, max(ss, 1), se)
        return coefs[0]

    comps = list(range(ncomp))
    if not progressive:
        out += scan(comps, 0, 63, dc_and_ac)
    else:
        out += scan(comps, 0, 0, lambda b, c, k, p: dc_and_ac(b, c, k, p, 0, 0))
        for c in comps:
            for ss, se in [(1, 5), (6, 63)]:
                out += scan([c], ss, se, lambda b, cc, k, p, ss=ss, se=se: dc_and_ac(b, cc, k, p, ss, se))
    return out + b"\xff\xd9"


def seeds_image():
    put("image", "grey1.png", png(13, 5, 1, 0))
    put("image", "grey4_interlaced.png", png(11, 9, 4, 0, interlace=True))
    put("image", "grey16.png", png(5, 4, 16, 0))
    put("image", "rgb8_interlaced.png", png(17, 10, 8, 2, interlace=True))
    put("image", "rgb16.png", png(4, 3, 16, 2))
    put("image", "ga8.png", png(6, 6, 8, 4))
    put("image", "rgba16.png", png(3, 5, 16, 6))
    pal = bytes((i * 47 + c * 90) & 255 for i in range(16) for c in range(3))
    put("image", "palette4_trns.png", png(9, 7, 4, 3, palette=pal, trns=bytes([0, 128, 255])))
    put("image", "palette2.png", png(7, 3, 2, 3, palette=pal[:12]))
    put("image", "grey_trns.png", png(5, 5, 8, 0, trns=b"\0\x10"))
    put("image", "bmp1.bmp", bmp(13, 4, 1))
    put("image", "bmp4.bmp", bmp(9, 5, 4))
    put("image", "bmp8_topdown.bmp", bmp(7, 6, 8, top_down=True))
    put("image", "bmp8_rle.bmp", bmp(6, 4, 8, rle8=True))
    put("image", "bmp16.bmp", bmp(5, 3, 16))
    put("image", "bmp24.bmp", bmp(7, 5, 24))
    put("image", "bmp32.bmp", bmp(4, 4, 32))
    put("image", "gif87a.gif", gif(10, 6, b"87a"))
    put("image", "gif89a_transparent_interlaced.gif", gif(12, 11, transparent=True, interlace=True))
    put("image", "grey.jpg", jpeg(12, 9, color=False))
    put("image", "color444.jpg", jpeg(16, 8))
    put("image", "color420_restart.jpg", jpeg(20, 18, sub=True, restart=1))
    put("image", "progressive420.jpg", jpeg(17, 11, sub=True, progressive=True))
    put("image", "progressive_grey.jpg", jpeg(9, 16, color=False, progressive=True))


# ---- bitsandbytes quant state: layout byte (fuzz_bnb.c) + JSON ------------------------------


def seeds_bnb():
    shapes = [(4, 32), (3, 64), (1, 1), (5, 7)]
    for i, (r, c) in enumerate(shapes):
        single = {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [r, c]}
        double = dict(single, dtype="float32", nested_blocksize=256, nested_dtype="float32",
                      nested_offset=0.13027667999267578)
        put("bnb", "nf4_%dx%d.bin" % (r, c), bytes([i]) + json.dumps(single).encode())
        put("bnb", "nf4_double_%dx%d.bin" % (r, c), bytes([i | 4]) + json.dumps(double).encode())
    put("bnb", "fp4_name.bin", b"\x20" + jdump({"quant_type": "fp4"}).encode())
    put("bnb", "no_quant_map.bin", b"\x08" + jdump({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [4, 32]}).encode())
    put("bnb", "int8_4x32.bin", b"\x80\x00")
    put("bnb", "int8_format1.bin", b"\x81\x01")


# ---- command lines: arguments separated by NUL bytes ---------------------------------------


def seeds_options():
    lines = [
        ["examples/page.png", "x28", "--max-tokens", "512", "--random-weights", "--config", "c.json"],
        ["--model", "m", "a.png", "b.jpg", "--prompt", "Compare these pages", "--quant", "nf4",
         "--double-quant", "--kv", "int8", "--mem-budget", "24G", "--json"],
        ["--backend", "cpu", "--temperature", "0.7", "--top-k", "40", "--top-p", "0.9", "--seed",
         "18446744073709551615", "--chunk", "8192", "--greedy", "--stop-at-eos", "--quiet", "p.png"],
        ["--attn", "naive", "--quant", "int8", "--quant-lm-head", "--embed-on-host",
         "--no-double-quant", "--dump-logits", "l.f32", "--mem-budget", "1.5GiB", "x.png", "x100000"],
        ["--kv", "int8", "--attn", "naive", "a.png"],
        ["--max-tokens", "0"],
        ["x3"],
    ]
    for i, args in enumerate(lines):
        put("options", "cmdline%d.bin" % i, b"\0".join(a.encode() for a in args))


if __name__ == "__main__":
    seeds_safetensors()
    seeds_index()
    seeds_config()
    seeds_preproc()
    seeds_tokenizer()
    seeds_tokenize()
    seeds_image()
    seeds_bnb()
    seeds_options()
