#!/usr/bin/env python3
"""bitsandbytes 0.50.2's weight quantization (CUDA kernels) emulated in PyTorch on the CPU, for
machines without bitsandbytes (the GPU machine has torch + transformers only).

  NF4     quantize_4bit(w, blocksize=64, quant_type="nf4"): the flattened row-major weight in
          blocks of 64 (the last one padded with zeros), absmax = max |x| per block (fp32),
          code = the number of the kernel's 15 decision midpoints below x * (1 / absmax), two
          codes a byte (element 2j in the high nibble of byte j); dequantized
          bf16(table[code] * absmax).
  NF4+DQ  compress_statistics=True: offset = mean of the block absmax (fp32 sum times the fp32
          factor 1 / n_blocks), (absmax - offset) quantized blockwise in blocks of 256 with the
          signed dynamic 8-bit map (bitsandbytes' binary search with midpoints); the block scale
          is then map[code] * nested_absmax + offset.
  int8    LLM.int8's row-wise weight (CB, SCB): the weight cast to fp16, SCB = max |w| of the
          row, CB = round-half-even(w * __fdividef(127, SCB)). __fdividef is the GPU's
          approximate division: its results are read from kernels/cpu_quant_fdividef.h (measured
          on the GPU by tests/reference/fdividef_table.cu). Dequantized as vlrun multiplies
          (W8A16): bf16(CB * SCB * fp32(1/127)).
Every step is one fp32 operation in the kernels' order, so the results are bit-exact; run as a
script it proves that against the committed goldens of the real bitsandbytes:

usage: bnb_emulation.py [GOLDENS_DIR [FDIVIDEF_HEADER]]   (defaults: tests/fixtures/bnb_goldens,
       kernels/cpu_quant_fdividef.h); exit status 0 only when every buffer is identical.
Leaves out: FP4, blocksizes other than 64 / 256, stochastic rounding, LLM.int8's outlier columns.
"""
import json
import math
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F32 = torch.float32

NF4_TABLE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=F32)
# the thresholds of bitsandbytes' NF4 decision tree (a strict '>' each), as float32
NF4_MIDPOINTS = torch.tensor([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=F32)
BLOCK, NESTED_BLOCK = 64, 256
FLT_MAX = torch.finfo(F32).max


def block_absmax(x):
    """max |x| over the last dim as the kernels reduce it: from -FLT_MAX, NaN skipped."""
    a = x.abs()
    return torch.where(torch.isnan(a), torch.full_like(a, -FLT_MAX), a).amax(dim=-1)


def padded_blocks(flat, size):
    """flat [n] -> [ceil(n / size), size], zeros past the end (the kernels' padded loads)."""
    n = flat.numel()
    nb = (n + size - 1) // size
    out = torch.zeros(nb * size, dtype=F32)
    out[:n] = flat
    return out.view(nb, size)


def dynamic_map():
    """create_dynamic_map(signed=True): 7 exponent levels of linspace midpoints, both signs,
    0 and 1, sorted (torch.linspace in float32, times the level's power of ten)."""
    values = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2 ** i + 1, dtype=F32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        values += ((10 ** (i - 6)) * means).tolist()
        values += (-(10 ** (i - 6)) * means).tolist()
    values += [0.0, 1.0]
    assert len(values) == 256
    return torch.tensor(sorted(values), dtype=F32)


def dynamic_codes(qmap, x):
    """bitsandbytes' dQuantize: 7 halvings from index 127, then the nearer neighbour by the
    float32 midpoint (strict '>' upwards, strict '<' downwards)."""
    pivot = torch.full(x.shape, 127, dtype=torch.long)
    upper_i = torch.full(x.shape, 255, dtype=torch.long)
    lower_i = torch.zeros(x.shape, dtype=torch.long)
    upper = torch.full(x.shape, 1.0, dtype=F32)
    lower = torch.full(x.shape, -1.0, dtype=F32)
    val = qmap[pivot]
    for step in (64, 32, 16, 8, 4, 2, 1):
        up = x > val
        lower_i = torch.where(up, pivot, lower_i)
        lower = torch.where(up, val, lower)
        upper_i = torch.where(up, upper_i, pivot)
        upper = torch.where(up, upper, val)
        pivot = torch.where(up, pivot + step, pivot - step)
        val = qmap[pivot]
    upper = torch.where(upper_i == 255, qmap[255], upper)
    lower = torch.where(lower_i == 0, qmap[0], lower)
    go_up = torch.where(x > (upper + val) * 0.5, upper_i, pivot)
    go_down = torch.where(x < (lower + val) * 0.5, lower_i, pivot)
    return torch.where(x > val, go_up, go_down).to(torch.uint8)


def nf4_quantize(w, double_quant=False):
    """w: a bf16 tensor of any shape. Returns a dict: packed (uint8 [ceil(n/2)]), and absmax
    (fp32 [n_blocks]) or with double_quant absmax_code (uint8), nested_absmax (fp32), offset
    (a float32 value), nested_map (fp32 [256])."""
    flat = w.reshape(-1).to(F32)
    n = flat.numel()
    x = padded_blocks(flat, BLOCK)
    absmax = block_absmax(x)
    q = x * (torch.ones_like(absmax) / absmax)[:, None]
    codes = (q[..., None] > NF4_MIDPOINTS).sum(-1).to(torch.uint8).reshape(-1)
    packed = (codes[0::2] << 4) | codes[1::2]
    out = dict(packed=packed[:(n + 1) // 2].contiguous(), n=n)
    if not double_quant:
        out["absmax"] = absmax
        return out
    nb = absmax.numel()
    # the exact sum rounded once (the CPU twin's in-order double sum, exact for real scales)
    total = torch.tensor(math.fsum(absmax.double().tolist()), dtype=F32)
    offset = total * (torch.tensor(1.0, dtype=F32) / torch.tensor(float(nb), dtype=F32))
    shifted = absmax - offset
    blocks = padded_blocks(shifted, NESTED_BLOCK)
    nested = block_absmax(blocks)
    scaled = (blocks * (torch.ones_like(nested) / nested)[:, None]).reshape(-1)[:nb]
    qmap = dynamic_map()
    out.update(absmax_code=dynamic_codes(qmap, scaled), nested_absmax=nested,
               offset=offset, nested_map=qmap)
    return out


def nf4_block_scales(state):
    if "absmax" in state:
        return state["absmax"]
    nb = state["absmax_code"].numel()
    nested = state["nested_absmax"].repeat_interleave(NESTED_BLOCK)[:nb]
    return state["nested_map"][state["absmax_code"].long()] * nested + state["offset"]


def nf4_dequantize(state, shape):
    """The bf16 weight bitsandbytes' dequantize_4bit gives for a bf16 quant state."""
    packed = state["packed"].long()
    codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:state["n"]]
    scales = nf4_block_scales(state).repeat_interleave(BLOCK)[:state["n"]]
    return (NF4_TABLE[codes] * scales).to(torch.bfloat16).reshape(shape)


def fdividef_table(header=None):
    """The measured __fdividef(127, 1 + i/1024) bits and the special cases, from the header."""
    header = header or os.path.join(ROOT, "kernels", "cpu_quant_fdividef.h")
    text = open(header).read()
    zero = int(re.search(r"VL_FDIVIDEF127_OF_ZERO\s+0x([0-9a-f]{8})u", text).group(1), 16)
    inf = int(re.search(r"VL_FDIVIDEF127_OF_INF\s+0x([0-9a-f]{8})u", text).group(1), 16)
    body = text[text.index("vl_fdividef127_bits"):]
    table = [int(h, 16) for h in re.findall(r"0x([0-9a-f]{8})u", body)]
    assert len(table) == 1024, header
    as_f32 = lambda bits: torch.tensor(bits, dtype=torch.int64).to(torch.int32).view(F32)  # noqa
    return as_f32(table), as_f32([zero])[0], as_f32([inf])[0]


def fdividef_127(a, table):
    """__fdividef(127, a) for fp16 values a >= 0 (fp32 tensor): table[i] * 2^-e."""
    values, of_zero, of_inf = table
    mant, e = torch.frexp(a)  # a = mant * 2^e, mant in [0.5, 1)
    bits = (mant * 2).view(torch.int32)
    assert bool(((bits & 0x1FFF) == 0).all()), "absmax is not an fp16 value"
    idx = ((bits >> 13) & 1023).long()
    scale = values[idx] * torch.pow(torch.tensor(2.0, dtype=torch.float64), 1 - e).to(F32)
    scale = torch.where(a == 0, of_zero, scale)
    return torch.where(torch.isinf(a), of_inf, scale)


def int8_quantize(w, table):
    """w: bf16 [rows, cols]. Returns (CB int8 [rows, cols], SCB fp32 [rows])."""
    h = w.to(torch.float16).to(F32)
    a = h.abs()
    scb = torch.where(torch.isnan(a), torch.zeros_like(a), a).amax(dim=1)
    y = h * fdividef_127(scb, table)[:, None]
    cb = torch.round(y).clamp(-128, 127)  # __float2int_rn: half to even
    cb = torch.where(torch.isnan(y), torch.zeros_like(cb), cb)
    return cb.to(torch.int8), scb


def int8_dequantize(cb, scb):
    """vlrun's W8A16 weight: bf16(CB * SCB * fp32(1/127)), one fp32 rounding a step."""
    inv127 = torch.tensor(1.0, dtype=F32) / torch.tensor(127.0, dtype=F32)
    return ((cb.to(F32) * scb[:, None]) * inv127).to(torch.bfloat16)


# ---- the proof against bitsandbytes' own output ---------------------------------------------

def read_raw(directory, entry):
    dtypes = dict(bfloat16=torch.bfloat16, float32=F32, uint8=torch.uint8, int8=torch.int8)
    raw = bytearray(open(os.path.join(directory, entry["file"]), "rb").read())
    return torch.frombuffer(raw, dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])


def same_bits(ours, theirs):
    """Number of equal elements, comparing bit patterns (so -0 != +0, NaN == same NaN)."""
    a, b = ours.contiguous().reshape(-1), theirs.contiguous().reshape(-1)
    if a.numel() != b.numel():
        return -1
    if a.dtype != b.dtype:
        return -1
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[a.element_size()]
    return int((a.view(view) == b.view(view)).sum())


def check_goldens(directory, header=None):
    index = json.load(open(os.path.join(directory, "index.json")))
    table = fdividef_table(header)
    failures = 0
    qmap_ok = None
    for case in index["cases"]:
        n, k = case["n"], case["k"]
        w = read_raw(directory, case["weight"])
        results = []
        g = case["nf4"]
        st = nf4_quantize(w)
        results += [("nf4 packed", st["packed"], read_raw(directory, g["packed"])),
                    ("nf4 absmax", st["absmax"], read_raw(directory, g["absmax"])),
                    ("nf4 dequant", nf4_dequantize(st, (n, k)), read_raw(directory, g["dequant"]))]
        g = case["nf4_double"]
        st = nf4_quantize(w, double_quant=True)
        theirs_offset = torch.tensor(g["offset"], dtype=F32)
        results += [
            ("dq packed", st["packed"], read_raw(directory, g["packed"])),
            ("dq absmax codes", st["absmax_code"], read_raw(directory, g["absmax_u8"])),
            ("dq nested absmax", st["nested_absmax"], read_raw(directory, g["nested_absmax"])),
            ("dq offset", st["offset"].reshape(1), theirs_offset.reshape(1)),
            ("dq dequant", nf4_dequantize(st, (n, k)), read_raw(directory, g["dequant"]))]
        if qmap_ok is None:
            theirs_table = torch.tensor(case["nf4"]["code"], dtype=F32)
            qmap_ok = same_bits(NF4_TABLE, theirs_table) == 16
            theirs_map = torch.tensor(g["nested_code"], dtype=F32)
            qmap_ok = qmap_ok and same_bits(st["nested_map"], theirs_map) == 256
            failures += not qmap_ok
        g = case["int8_rowwise"]
        cb, scb = int8_quantize(w, table)
        results += [("int8 CB", cb, read_raw(directory, g["CB"])),
                    ("int8 SCB", scb, read_raw(directory, g["SCB"]))]
        line = []
        for name, ours, theirs in results:
            same = same_bits(ours, theirs)
            ok = same == theirs.numel()
            failures += not ok
            line.append(f"{name} {same}/{theirs.numel()}" + ("" if ok else " DIFFERENT"))
        print(f"{n}x{k}: " + ", ".join(line))
    print("NF4 table and dynamic map:", "identical" if qmap_ok else "DIFFERENT")
    print("bnb_emulation vs bitsandbytes goldens:", "IDENTICAL" if not failures else
          f"{failures} buffers differ")
    return failures == 0


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "bnb_goldens")
    sys.exit(0 if check_goldens(d, sys.argv[2] if len(sys.argv) > 2 else None) else 1)
