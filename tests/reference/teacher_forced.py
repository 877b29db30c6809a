#!/usr/bin/env python3
"""teacher_forced.py: the engine's logits at every position of a long multimodal prompt against
transformers, on a random checkpoint with the real Qwen2-VL-7B or Qwen2.5-VL-7B shapes (--config
picks: its model_type; runs on the GPU machine: torch, transformers 5.17, tokenizers, Pillow,
numpy; no network).

Steps (one process; the GPU holds one model at a time, plus the quantize-dequantized copies of
its Linear weights during an emulated run: 16.6 + 14.4 GB at the 7B):
  1. A random Qwen2VLForConditionalGeneration from the published 7B config.json
     (--config, default examples/qwen2-vl-7b-instruct.json; with model_type qwen2_5_vl, e.g.
     examples/qwen2.5-vl-7b-instruct.json, a Qwen2_5_VLForConditionalGeneration; both
     families read by qwen_configs.py), built in bf16 on the GPU with a fixed seed:
     transformers' own init (normal std 0.02, unit norms, zero biases), then biases and norm
     weights perturbed (N(0, --perturb)) so that a parameter the engine ignored would show.
     save_pretrained (~16.6 GB of safetensors) + tokenizer.json + preprocessor_config.json
     (min_pixels 3136, max_pixels 12845056: the published 7B-Instruct values).
  2. `vlrun logits` on that directory: every position's logits (.bf16) and the prompt ids.
     With --quant-compare, again with --quant nf4 (double-quantized scales: engine_nf4),
     --quant nf4 --no-double-quant (fp32 block scales: engine_nf4_nodq) and --quant int8.
  3. transformers bf16 (sdpa), teacher-forced on the engine's ids with its own preprocessing
     of the same image (Qwen2VLImageProcessorPil): the logits of every position. With
     --quant-compare (unless --no-quant-emul), the same loaded model again with every Linear
     that bitsandbytes quantizes replaced by its quantize-dequantize (below): hf_nf4_emul and
     hf_int8_emul. The same bf16 model once more with transformers' eager attention instead
     of SDPA (unless --no-attn-floor): hf_bf16_eager. Then the model in fp32 (unless
     --no-fp32): the reference both bf16
     implementations are judged by.
  4. Per position: cosine (float64 sums of float32 values), top-1 agreement, max abs diff.
     The gate (exit 1 when it fails): engine bf16 vs transformers bf16, cosine >= 0.999 at
     every position and top-1 agreement >= 99%. Also checked: the engine's prompt ids equal the
     Qwen2-VL chat template through `tokenizers`, and the image pad count equals the grid.
     Next to the gate, two noise floors: transformers bf16 vs transformers fp32, and
     transformers bf16 vs itself with only the attention kernel changed; the floor check
     (a failure too) holds the engine to the second: at most --floor-slack (1.5) times its
     distance from cosine 1, top-1 at most --floor-top1-slack (3 points) below it.
  5. Quant checks (--quant-compare): engine_nf4_nodq vs hf_nf4_emul and engine_int8 vs
     hf_int8_emul see the same weights (bit for bit when both follow bitsandbytes), so they
     may differ only as much as two bf16 implementations do: mean and min cosine must stay
     within --quant-slack times the distance of engine_bf16 vs hf_bf16 from 1 (a failure
     otherwise). engine_nf4 (double quantization: scales off by < 1%) vs hf_nf4_emul and
     hf_*_emul vs hf_bf16 (what the format itself costs on this checkpoint) are reported only.

Why the emulation: a random 28-layer network amplifies weight noise, so "engine NF4 vs engine
bf16" cannot tell NF4's own error from a bug; transformers with the dequantized weights
bitsandbytes would produce can, and needs no bitsandbytes. The quantizers follow
kernels/cpu_quant.c: NF4 in blocks of 64 of the flattened row-major weight, fp32
absmax, x * (1 / absmax) in fp32, the code chosen on the float32 midpoints of the table with a
strict '>', dequantized bf16(table[code] * absmax); int8 per row on the weight cast to fp16,
code round-half-even(w * (127 * (1 / absmax))), dequantized bf16(code * absmax * (1 / 127)).
Quantized: every nn.Linear of the decoder and vision tower (merger included); not lm_head,
the embeddings, the Conv3d patch embedding, norms or biases. Before use they are checked on
the device against bitsandbytes' own output (tests/fixtures/bnb_goldens): NF4 bit for bit,
int8 codes except at exact ties k + 0.5 (bitsandbytes' approximate reciprocal). The engine
now follows bitsandbytes there too (tests/reference/bnb_emulation.py has the exact rule), so at
such ties it may differ from this simpler emulation by one code, on a handful of weights.

Why the fp32 run: random weights give nearly Gaussian logits over 152k tokens, whose top two
differ by about 1/25 of the top value, while one bf16 step is 1/256 to 1/128 of it: at ~10% of
positions the top-1 is decided by rounding. "transformers bf16 vs fp32" measures how much top-1
agreement bf16 arithmetic alone allows on this checkpoint, next to the engine's figure; and
"decisive" positions (fp32 top-1 ahead by > 2^-6 of its value) give top-1 without those ties.

Writes OUT/teacher_forced.json (every comparison's summary) and OUT/teacher_forced.tsv (one
row per position). Logits and the checkpoint go to the work directory: a new temporary one,
deleted at the end unless --keep, or --work DIR (kept; reuse its checkpoint with --model).
Exit: 0 gate passed, 1 gate (or the floor check, a requested quant run or quant check) failed,
2 could not run.

usage: teacher_forced.py --vlrun PATH --tokenizer TOKENIZER_JSON [--config CONFIG_JSON]
       [--out DIR] [--quant-compare]
       [--no-quant-emul] [--model DIR (reuse a checkpoint)] [--work DIR] [--keep]
       [--image PNG]... [--prompt TEXT]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen_configs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MIN_PIXELS, MAX_PIXELS = 3136, 12845056
SYSTEM = "You are a helpful assistant."
# bitsandbytes' NF4 table and the float32 midpoints its quantize kernel decides on, as
# kernels/cpu_quant.c spells them (each midpoint is exactly (t[i] + t[i + 1]) / 2 in float32)
NF4_TABLE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
             -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
             0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
             0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)
NF4_MIDPOINTS = (-0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
                 -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
                 -0.045525018125772476, 0.03979014977812767, 0.1202552504837513,
                 0.2035212516784668, 0.2920137718319893, 0.3893125355243683, 0.5016634166240692,
                 0.6427869200706482, 0.8614784181118011)
NF4_BLOCK = 64
GOLDENS = os.path.join(ROOT, "tests", "fixtures", "bnb_goldens")
# engine runs of --quant-compare: tag -> vlrun arguments
QUANT_RUNS = (("engine_nf4", ["--quant", "nf4", "--double-quant"]),
              ("engine_nf4_nodq", ["--quant", "nf4", "--no-double-quant"]),
              ("engine_int8", ["--quant", "int8"]))
# quant checks: (engine run, emulation it must match, gated); double quantization changes the
# block scales by < 1%, so engine_nf4 is only reported against the fp32-scale emulation
QUANT_CHECKS = (("engine_nf4_nodq", "hf_nf4_emul", True), ("engine_int8", "hf_int8_emul", True),
                ("engine_nf4", "hf_nf4_emul", False))


class Failure(Exception):
    """A step that could not run: exit 2 with this message."""


def log(*a):
    print(*a, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vlrun", required=True, help="the vlrun binary (CUDA build)")
    p.add_argument("--tokenizer", required=True, help="the Qwen2 tokenizer.json")
    p.add_argument("--config", default=os.path.join(ROOT, "examples", "qwen2-vl-7b-instruct.json"),
                   help="the published 7B config.json; its model_type (qwen2_vl, qwen2_5_vl) "
                   "picks transformers' model class")
    p.add_argument("--image", action="append", help="image(s), in prompt order "
                   "(default examples/page.png: 1364 image tokens)")
    p.add_argument("--prompt", default="Describe this page.")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/teacher-forced"))
    p.add_argument("--work", help="where the checkpoint and logits go (default: a new temp dir)")
    p.add_argument("--model", help="reuse this checkpoint directory instead of making one")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--perturb", type=float, default=0.1,
                   help="std of the noise added to biases and norm weights (0: transformers init)")
    p.add_argument("--backend", default="cuda")
    p.add_argument("--vlrun-arg", action="append", default=[],
                   help="extra argument for every vlrun run (repeat: --vlrun-arg=--chunk ...)")
    p.add_argument("--quant-compare", action="store_true",
                   help="also run the engine with --quant nf4 (with and without double "
                   "quantization) and --quant int8")
    p.add_argument("--no-quant-emul", action="store_true",
                   help="with --quant-compare: skip transformers with emulated NF4 / int8 weights")
    p.add_argument("--quant-slack", type=float, default=2.0,
                   help="quant checks: engine vs emulation may be this many times further from "
                   "cosine 1 than engine bf16 vs transformers bf16")
    p.add_argument("--no-fp32", action="store_true", help="skip the transformers fp32 run")
    p.add_argument("--floor-slack", type=float, default=1.5,
                   help="floor check: engine vs transformers bf16 may be this many times further "
                   "from cosine 1 than transformers eager vs SDPA")
    p.add_argument("--floor-top1-slack", type=float, default=0.03,
                   help="floor check: top-1 agreement may be this much below the floor's")
    p.add_argument("--no-attn-floor", action="store_true",
                   help="skip transformers bf16 with eager attention")
    p.add_argument("--min-cosine", type=float, default=0.999)
    p.add_argument("--min-top1", type=float, default=0.99)
    p.add_argument("--timeout", type=int, default=480, help="seconds per vlrun run")
    a = p.parse_args()
    a.image = a.image or [os.path.join(ROOT, "examples", "page.png")]
    return a


def published_config(path):
    """The published flat config.json as transformers' config (Qwen2VLConfig or
    Qwen2_5_VLConfig by its model_type), checked to hold the 7B's shapes."""
    try:
        cfg, model_type = qwen_configs.published_config(path)
    except (OSError, ValueError, KeyError) as e:
        raise Failure(f"--config {path}: {e}")
    bad = qwen_configs.check_7b(cfg, model_type, path)
    if bad:
        raise Failure(bad)
    return cfg, model_type


def image_processor():
    try:
        from transformers import Qwen2VLImageProcessorPil as P
    except ImportError:
        try:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
                Qwen2VLImageProcessorPil as P)
        except ImportError:
            from transformers import Qwen2VLImageProcessor as P
    return P(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def make_checkpoint(a, d):
    cfg, model_type = published_config(a.config)
    t0 = time.time()
    torch.manual_seed(a.seed)
    torch.cuda.manual_seed_all(a.seed)
    with torch.device("cuda"):
        model = qwen_configs.model_class(model_type)._from_config(cfg, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    if a.perturb > 0:
        g = torch.Generator(device="cuda").manual_seed(a.seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias") or "norm" in name or "ln_q" in name:
                    p.add_(torch.randn(p.shape, generator=g, device="cuda", dtype=torch.float32)
                           .mul_(a.perturb).to(p.dtype))
    log(f"random model: {n_params / 1e9:.3f}B parameters in {time.time() - t0:.1f} s")
    t0 = time.time()
    model.save_pretrained(d)
    del model
    torch.cuda.empty_cache()
    junk = os.path.join(d, "generation_config.json")
    if os.path.exists(junk):
        os.remove(junk)
    log(f"saved {d} in {time.time() - t0:.1f} s ({dir_gb(d):.1f} GB)")
    return n_params


def dir_gb(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 1e9


def run_vlrun(a, model_dir, work, out, tag, quant_args=()):
    """vlrun logits -> (summary dict, logits path, ids path); raises Failure on error."""
    lp, ip = os.path.join(work, f"{tag}.bf16"), os.path.join(work, f"{tag}.ids.i32")
    cmd = [a.vlrun, "logits", "--backend", a.backend, "--model", model_dir, *a.image,
           "--prompt", a.prompt, "--out", lp, "--ids-out", ip, *a.vlrun_arg, *quant_args]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"vlrun ({tag}) ran past {a.timeout} s")
    with open(os.path.join(out, f"vlrun_{tag}.log"), "w") as f:
        f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    if r.returncode != 0:
        raise Failure(f"vlrun ({tag}) exit {r.returncode}: {r.stderr.strip()[-600:]}")
    try:
        s = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failure(f"vlrun ({tag}): no JSON summary on stdout: {r.stdout[-300:]!r}")
    s["wall_s"] = round(time.time() - t0, 2)
    log(f"vlrun {tag}: {s}")
    return s, lp, ip


def read_logits(path, n, V):
    raw = np.fromfile(path, dtype="<i2")
    if raw.size != n * V:
        raise Failure(f"{path}: {raw.size} values, expected {n} x {V}")
    return torch.from_numpy(raw.reshape(n, V)).view(torch.bfloat16)


def template_ids(tokenizer_path, grids, prompt):
    """The Qwen2-VL chat template, encoded by `tokenizers` (independent of the engine)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    text = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    for t, h, w in grids:
        text += "<|vision_start|>" + "<|image_pad|>" * (t * h * w // 4) + "<|vision_end|>"
    text += f"{prompt}<|im_end|>\n<|im_start|>assistant\n"
    return tok.encode(text, add_special_tokens=False).ids


def load_hf(model_dir, dtype):
    """transformers' model (the class of the checkpoint's model_type) on the GPU as `dtype`
    (sdpa) -> (model, seconds)."""
    cls = qwen_configs.model_class(qwen_configs.model_type_of(os.path.join(model_dir, "config.json")))
    t0 = time.time()
    kw = dict(dtype=dtype, attn_implementation="sdpa")
    try:
        model = cls.from_pretrained(model_dir, device_map="cuda", **kw)
    except (ImportError, ValueError, RuntimeError) as e:
        log(f"device_map='cuda' failed ({e!r}); loading on the host, then moving")
        model = cls.from_pretrained(model_dir, **kw).to("cuda")
    model.eval()
    return model, time.time() - t0


def set_attention(model, impl):
    """Switch a loaded model's attention implementation ("sdpa", "eager")."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        for m in model.modules():
            cfg = getattr(m, "config", None)
            if cfg is not None and hasattr(cfg, "_attn_implementation"):
                cfg._attn_implementation = impl


def hf_forward(model, dtype, ids, pv, grid, image_token_id):
    """Logits of every position, teacher-forced, on the CPU host as `dtype` -> (logits, s)."""
    x = torch.tensor([ids], device="cuda")
    t0 = time.time()
    with torch.no_grad():
        out = model(input_ids=x, attention_mask=torch.ones_like(x),
                    mm_token_type_ids=(x == image_token_id).long(),
                    pixel_values=pv.to("cuda", dtype), image_grid_thw=grid.to("cuda"),
                    use_cache=False)
    torch.cuda.synchronize()
    fwd_s = time.time() - t0
    logits = out.logits[0].to(dtype).cpu()
    del out
    return logits, fwd_s


def hf_logits(model_dir, dtype, ids, pv, grid, image_token_id):
    """transformers' logits of every position (a model loaded, used once, freed)."""
    model, load_s = load_hf(model_dir, dtype)
    logits, fwd_s = hf_forward(model, dtype, ids, pv, grid, image_token_id)
    del model
    torch.cuda.empty_cache()
    log(f"transformers {dtype}: load {load_s:.1f} s, forward {fwd_s:.2f} s, logits "
        f"{tuple(logits.shape)}")
    return logits, dict(load_s=round(load_s, 2), forward_s=round(fwd_s, 3))


# ---- emulated bitsandbytes quantization --------------------------------------------------------

def nf4_quantize_dequantize(w):
    """bf16 [out, in] -> (the bf16 weight bitsandbytes' NF4 dequantizes to (blocks of 64 of the
    flattened weight, fp32 absmax, no double quantization), block absmax, codes)."""
    flat = w.reshape(-1).float()
    n = flat.numel()
    pad = (-n) % NF4_BLOCK  # bitsandbytes pads the last block with zeros
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    blocks = flat.view(-1, NF4_BLOCK)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    # fp32 reciprocal, then one fp32 product: the kernel's x * (1 / absmax), not x / absmax
    x = blocks * torch.reciprocal(absmax)
    mid = torch.tensor(NF4_MIDPOINTS, dtype=torch.float32, device=w.device)
    # bucketize (right=False) counts the midpoints strictly below x: the decision tree's code
    # with its strict '>' (an exact midpoint stays with the lower entry)
    code = torch.bucketize(x, mid)
    del x
    table = torch.tensor(NF4_TABLE, dtype=torch.float32, device=w.device)
    deq = (table[code] * absmax).to(torch.bfloat16)  # fp32 product, one rounding to bf16
    return deq.reshape(-1)[:n].view(w.shape), absmax.reshape(-1), code.reshape(-1)[:n]


def int8_quantize_dequantize(w):
    """bf16 [out, in] -> (the bf16 weight of vlrun's Q8ROW = bitsandbytes' int8 CB / SCB
    dequantized, row absmax (SCB), codes (CB) as float32)."""
    h = w.to(torch.float16).float()  # bitsandbytes quantizes the fp16 weight
    absmax = h.abs().amax(dim=1, keepdim=True)
    scale = torch.reciprocal(absmax) * 127.0  # 127 * (1 / absmax) in fp32
    q = torch.round(h * scale).clamp_(-128.0, 127.0)  # round half to even (__float2int_rn)
    del h
    q = torch.where(absmax > 0, q, torch.zeros_like(q))  # all-zero row: 0 * inf = NaN -> code 0
    q = q.to(torch.int8).float()  # the stored code: -0.0 becomes 0, as in vlrun's reader
    inv127 = torch.tensor(np.float32(1) / np.float32(127), dtype=torch.float32)  # 1.0f / 127.0f
    deq = ((q * absmax) * inv127.to(w.device)).to(torch.bfloat16)
    return deq, absmax.reshape(-1), q


QUANTIZERS = {"nf4": nf4_quantize_dequantize, "int8": int8_quantize_dequantize}


def check_quantizers_on_goldens(device="cuda"):
    """The emulation against bitsandbytes 0.50.2's own output (tests/fixtures/bnb_goldens):
    NF4 dequantized values and absmax bit for bit; int8 SCB bit for bit and CB equal except by
    one at exact ties k + 0.5 (see the top). -> dict with "ok" and the counts per case."""
    index = os.path.join(GOLDENS, "index.json")
    if not os.path.isfile(index):
        return dict(ok=None, note=f"{index} not found: not checked")
    with open(index) as f:
        cases = json.load(f)["cases"]

    def read(spec, dt):
        return torch.from_numpy(np.fromfile(os.path.join(GOLDENS, spec["file"]), dtype=dt))

    out, ok = [], True
    for c in cases:
        n, k = c["n"], c["k"]
        w = read(c["weight"], "<i2").view(torch.bfloat16).reshape(n, k).to(device)
        deq, absmax, _ = nf4_quantize_dequantize(w)
        g_deq = read(c["nf4"]["dequant"], "<i2").reshape(n, k)
        g_absmax = read(c["nf4"]["absmax"], "<f4")
        nf4_bad = int((deq.cpu().view(torch.int16) != g_deq).sum())
        absmax_bad = int((absmax.cpu().view(torch.int32) != g_absmax.view(torch.int32)).sum())
        deq8, scb, cb = int8_quantize_dequantize(w)
        g_cb = read(c["int8_rowwise"]["CB"], "i1").reshape(n, k).float()
        g_scb = read(c["int8_rowwise"]["SCB"], "<f4")
        scb_bad = int((scb.cpu().view(torch.int32) != g_scb.view(torch.int32)).sum())
        y = w.cpu().to(torch.float16).double() * 127 / g_scb.double()[:, None]
        tie = (y - y.floor()).abs() == 0.5
        cb = cb.cpu()
        differ = cb != g_cb
        cb_bad = int((differ & ~(tie & ((cb - g_cb).abs() == 1))).sum())
        # where the codes agree, the value vlrun's Q8ROW reader computes from bitsandbytes' CB
        # and SCB: bf16(CB * SCB * (1.0f / 127.0f)), products in float32
        g_deq8 = np.float32(1) / np.float32(127) * (g_cb.numpy() * g_scb.numpy()[:, None])
        g_deq8 = torch.from_numpy(g_deq8.astype(np.float32)).to(torch.bfloat16)
        deq8_bad = int(((deq8.cpu().view(torch.int16) != g_deq8.view(torch.int16)) & ~differ).sum())
        case_ok = nf4_bad == absmax_bad == scb_bad == cb_bad == deq8_bad == 0
        ok = ok and case_ok
        out.append(dict(shape=[n, k], nf4_values_differing=nf4_bad,
                        nf4_absmax_differing=absmax_bad, int8_scb_differing=scb_bad,
                        int8_codes_differing_at_ties=int(differ.sum()) - cb_bad,
                        int8_codes_differing_otherwise=cb_bad,
                        int8_values_differing_where_codes_agree=deq8_bad, ok=case_ok))
    return dict(ok=ok, cases=out)


def quantized_linears(model):
    """(name, module) of every Linear bitsandbytes quantizes: each module whose type is exactly
    nn.Linear, except the LM head."""
    return [(name, m) for name, m in model.named_modules()
            if type(m) is torch.nn.Linear and name.split(".")[-1] != "lm_head"]


def emulated_logits(model, fmt, ids, pv, grid, image_token_id):
    """transformers bf16 with every quantized Linear's weight replaced by its bitsandbytes
    quantize-dequantize in `fmt`, then restored -> (logits, step summary). The originals stay
    on the GPU (+14.4 GB at the 7B) so that no reload is needed."""
    linears = quantized_linears(model)
    originals, elements = [], 0
    t0 = time.time()
    try:
        with torch.no_grad():
            for _, m in linears:
                w = m.weight.data
                originals.append((m, w))
                m.weight.data = QUANTIZERS[fmt](w)[0]
                elements += w.numel()
        torch.cuda.synchronize()
        quant_s = time.time() - t0
        logits, fwd_s = hf_forward(model, torch.bfloat16, ids, pv, grid, image_token_id)
    finally:
        for m, w in originals:
            m.weight.data = w
        del originals
        torch.cuda.empty_cache()
    log(f"transformers bf16 with emulated {fmt} weights: {len(linears)} Linears "
        f"({elements / 1e9:.3f}B elements) quantized in {quant_s:.1f} s, forward {fwd_s:.2f} s")
    return logits, dict(linears=len(linears), elements=elements, quantize_s=round(quant_s, 2),
                        forward_s=round(fwd_s, 3))


def compare(a, b, rows=256):
    """Per position: cosine, centered cosine (of the logits less their mean: blind to a common
    offset, which cross-entropy ignores but the plain cosine counts), top-1 equal, top-1 of a
    among b's maxima, max abs diff."""
    n = a.shape[0]
    cos = torch.empty(n, dtype=torch.float64)
    ccos = torch.empty(n, dtype=torch.float64)
    top1 = torch.empty(n, dtype=torch.bool)
    tie_ok = torch.empty(n, dtype=torch.bool)
    mad = torch.empty(n, dtype=torch.float64)
    for r0 in range(0, n, rows):
        x = a[r0:r0 + rows].to("cuda").float().double()
        y = b[r0:r0 + rows].to("cuda").float().double()
        cos[r0:r0 + rows] = ((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))).cpu()
        xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
        ccos[r0:r0 + rows] = ((xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1))).cpu()
        ax, ay = x.argmax(-1), y.argmax(-1)
        top1[r0:r0 + rows] = (ax == ay).cpu()
        tie_ok[r0:r0 + rows] = (y.gather(1, ax[:, None])[:, 0] == y.max(-1).values).cpu()
        mad[r0:r0 + rows] = (x - y).abs().max(-1).values.cpu()
    return dict(cos=cos, ccos=ccos, top1=top1, tie_ok=tie_ok, mad=mad)


def decisive_positions(ref, rows=256):
    """Positions whose reference top-1 leads the runner-up by more than 2^-6 of its value (a few
    bf16 steps): there, top-1 is a property of the model, not of rounding."""
    out = []
    for r0 in range(0, ref.shape[0], rows):
        v = ref[r0:r0 + rows].to("cuda").float().topk(2, dim=-1).values
        out.append(((v[:, 0] - v[:, 1]) > v[:, 0].abs() * 2.0 ** -6).cpu())
    return torch.cat(out)


def summarize(c, is_image, ids, decisive):
    cos = c["cos"]
    w = int(cos.argmin())
    text = ~is_image
    dec = decisive if decisive is not None else torch.zeros_like(is_image)
    return dict(
        decisive_positions=int(dec.sum()),
        top1_decisive=float(c["top1"][dec].double().mean()) if dec.any() else None,
        positions=int(cos.numel()),
        min_cosine=float(cos.min()), mean_cosine=float(cos.mean()),
        worst_position=w, worst_token=int(ids[w]), worst_is_image=bool(is_image[w]),
        min_cosine_image=float(cos[is_image].min()) if is_image.any() else None,
        min_cosine_text=float(cos[text].min()) if text.any() else None,
        positions_below_0999=int((cos < 0.999).sum()),
        top1=float(c["top1"].double().mean()),
        top1_ties_counted=float(c["tie_ok"].double().mean()),
        max_abs_diff=float(c["mad"].max()))


def emulate(a, report, runs, model, ids, pv, grid, image_token_id):
    """hf_nf4_emul / hf_int8_emul on the loaded bf16 model, after checking the quantizers
    against bitsandbytes' goldens on this device."""
    try:
        goldens = check_quantizers_on_goldens()
    except Exception as e:  # noqa: BLE001 (a broken check must not stop the comparison)
        goldens = dict(ok=False, cases=f"the check raised {e!r}")
    emul = report["quant_emulation"] = dict(goldens=goldens)
    verdict = {True: "identical", False: "DIFFERENT", None: "not checked"}[goldens["ok"]]
    log(f"emulated quantizers vs bitsandbytes goldens: {verdict}"
        + ("" if goldens["ok"] else f" {goldens}"))
    if goldens["ok"] is False:
        report["failures"].append(f"quant emulation: the quantizers do not reproduce "
                                  f"bitsandbytes' goldens ({goldens['cases']})")
    for fmt in ("nf4", "int8"):
        if not any(q in runs for q, e, _ in QUANT_CHECKS if e == f"hf_{fmt}_emul"):
            continue  # no engine run to compare with
        try:
            runs[f"hf_{fmt}_emul"], emul[fmt] = emulated_logits(model, fmt, ids, pv, grid,
                                                                image_token_id)
        except RuntimeError as e:  # out of memory included: the other checks still count
            report["failures"].append(f"quant emulation ({fmt}) could not run: {e!r}"[:600])
            log(f"FAIL quant emulation ({fmt}): {e!r}")
            torch.cuda.empty_cache()
            continue
        report["steps"][f"hf_{fmt}_emul"] = emul[fmt]
        want = qwen_configs.FAMILIES[a.model_type]["quantized_elements_7b"]
        if emul[fmt]["elements"] != want:
            report["failures"].append(
                f"quant emulation ({fmt}): {emul[fmt]['elements']} weight elements quantized, "
                f"bitsandbytes quantizes {want} in the {a.model_type} 7B")


def floor_check(a, report):
    """Engine bf16 vs transformers bf16, judged by the attention-kernel floor (transformers bf16
    eager vs SDPA on the same checkpoint): the distance from cosine 1 (mean and min) at most
    --floor-slack times the floor's, top-1 at most --floor-top1-slack below the floor's.
    Reported next to the gate, and a failure when it does not hold (unlike the gate, it can
    be met by a correct implementation with its own attention kernel on a random checkpoint)."""
    cmp = report["comparisons"]
    floor = cmp.get("hf_bf16_eager_vs_hf_bf16")
    if floor is None:
        return
    e = cmp["engine_bf16_vs_hf_bf16"]
    r_mean = (1 - e["mean_cosine"]) / max(1 - floor["mean_cosine"], 1e-12)
    r_min = (1 - e["min_cosine"]) / max(1 - floor["min_cosine"], 1e-12)
    ok = (r_mean <= a.floor_slack and r_min <= a.floor_slack
          and e["top1"] >= floor["top1"] - a.floor_top1_slack)
    report["floor_check"] = dict(passed=ok, ratio_mean=r_mean, ratio_min=r_min,
                                 top1=e["top1"], floor_top1=floor["top1"],
                                 slack=a.floor_slack, top1_slack=a.floor_top1_slack)
    log(f"floor check (engine vs transformers bf16, against transformers eager vs SDPA): "
        f"1 - cosine {r_mean:.2f}x the floor's (mean), {r_min:.2f}x (min), top-1 "
        f"{100 * e['top1']:.1f}% vs {100 * floor['top1']:.1f}% (need <= {a.floor_slack}x and "
        f">= floor - {100 * a.floor_top1_slack:.0f} points): {'pass' if ok else 'FAIL'}")
    if not ok:
        report["failures"].append(
            f"floor check: 1 - cosine {r_mean:.2f}x / {r_min:.2f}x the attention-kernel floor "
            f"(mean / min), top-1 {100 * e['top1']:.1f}% vs {100 * floor['top1']:.1f}%")


def quant_checks(a, report):
    """Engine quantized runs vs the emulation: summary, verdict, failures for the gated ones."""
    cmp = report["comparisons"]
    base = cmp["engine_bf16_vs_hf_bf16"]
    need_mean = 1 - a.quant_slack * (1 - base["mean_cosine"])
    need_min = 1 - a.quant_slack * (1 - base["min_cosine"])
    checks = {}
    for q, emul, gated in QUANT_CHECKS:
        s = cmp.get(f"{q}_vs_{emul}")
        if s is None:
            continue
        effect = cmp.get(f"{emul}_vs_hf_bf16")
        ok = s["mean_cosine"] >= need_mean and s["min_cosine"] >= need_min
        checks[q] = dict(reference=emul, gated=gated, consistent=ok,
                         min_cosine=s["min_cosine"], mean_cosine=s["mean_cosine"], top1=s["top1"],
                         need_min_cosine=need_min, need_mean_cosine=need_mean,
                         format_effect_emul_vs_hf_bf16=None if effect is None else dict(
                             min_cosine=effect["min_cosine"], mean_cosine=effect["mean_cosine"],
                             top1=effect["top1"]))
        log(f"quant check {q} vs {emul}: cosine min {s['min_cosine']:.5f} mean "
            f"{s['mean_cosine']:.5f}, top-1 {100 * s['top1']:.1f}% (consistent when min >= "
            f"{need_min:.5f} and mean >= {need_mean:.5f}): "
            + ("consistent" if ok else "INCONSISTENT" if gated else "differs (reported only)"))
        if effect is not None:
            log(f"  the format's own effect ({emul} vs hf_bf16): cosine min "
                f"{effect['min_cosine']:.5f} mean {effect['mean_cosine']:.5f}, top-1 "
                f"{100 * effect['top1']:.1f}%")
        if gated and not ok:
            report["failures"].append(
                f"quant check {q}: cosine vs {emul} min {s['min_cosine']:.5f} mean "
                f"{s['mean_cosine']:.5f} (need >= {need_min:.5f} / {need_mean:.5f}: "
                f"{a.quant_slack}x engine bf16 vs transformers bf16)")
    if checks:
        report["quant_checks"] = checks


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not torch.cuda.is_available():
        raise Failure("no CUDA device visible to torch")
    for path, what in ((a.vlrun, "--vlrun"), (a.tokenizer, "--tokenizer"), (a.config, "--config"),
                       *((i, "--image") for i in a.image)):
        if not os.path.isfile(path):
            raise Failure(f"{what} {path}: no such file")
    try:
        a.model_type = qwen_configs.model_type_of(a.config)
    except (OSError, ValueError) as e:
        raise Failure(f"--config {e}")
    work = a.work or tempfile.mkdtemp(prefix="vl-teacher-forced-")
    os.makedirs(work, exist_ok=True)
    log(f"work directory {work}")
    report = dict(args={k: v for k, v in vars(a).items()}, steps={}, comparisons={}, failures=[])
    import transformers
    report["versions"] = dict(torch=torch.__version__, transformers=transformers.__version__,
                              device=torch.cuda.get_device_name(0))
    try:
        return run(a, work, report)
    except Failure as e:
        report["error"] = str(e)
        raise
    finally:
        with open(os.path.join(a.out, "teacher_forced.json"), "w") as f:
            json.dump(report, f, indent=1)
        if not a.keep and not a.work:
            shutil.rmtree(work, ignore_errors=True)


def run(a, work, report):
    from PIL import Image
    model_dir = a.model or os.path.join(work, a.model_type.replace("_", "-") + "-7b-random")
    proc = image_processor()
    if not a.model:
        os.makedirs(model_dir, exist_ok=True)
        report["parameters"] = make_checkpoint(a, model_dir)
    for f in ("config.json",):
        if not os.path.isfile(os.path.join(model_dir, f)):
            raise Failure(f"{model_dir}: no {f}")
    try:  # a reused checkpoint (--model) must be of --config's family
        got = qwen_configs.model_type_of(os.path.join(model_dir, "config.json"))
    except ValueError as e:
        raise Failure(str(e))
    if got != a.model_type:
        raise Failure(f"{model_dir} is a {got} checkpoint; --config {a.config} is {a.model_type}")
    if not os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        shutil.copyfile(a.tokenizer, os.path.join(model_dir, "tokenizer.json"))
    if not os.path.isfile(os.path.join(model_dir, "preprocessor_config.json")):
        proc.save_pretrained(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        image_token_id = json.load(f).get("image_token_id", 151655)

    # the engine first, alone on the GPU
    runs = {}
    summary, lp, ip = run_vlrun(a, model_dir, work, a.out, "engine_bf16")
    report["steps"]["engine_bf16"] = summary
    n, V = summary["positions"], summary["vocab"]
    ids = np.fromfile(ip, dtype="<i4").tolist()
    if len(ids) != n:
        raise Failure(f"{ip}: {len(ids)} ids, the summary says {n} positions")
    runs["engine_bf16"] = read_logits(lp, n, V)
    if a.quant_compare:
        for tag, qargs in QUANT_RUNS:
            try:
                s, qlp, qip = run_vlrun(a, model_dir, work, a.out, tag, qargs)
                if np.fromfile(qip, dtype="<i4").tolist() != ids:
                    raise Failure(f"{' '.join(qargs)}: different prompt ids")
                report["steps"][tag] = s
                runs[tag] = read_logits(qlp, n, V)
            except Failure as e:
                report["failures"].append(f"engine {' '.join(qargs)}: {e}")
                log(f"FAIL engine {' '.join(qargs)}: {e}")

    # transformers' inputs: its own preprocessing, the engine's ids
    images = [Image.open(p).convert("RGB") for p in a.image]
    pv = proc(images=images, return_tensors="pt")
    grid = pv["image_grid_thw"]
    grids = grid.tolist()
    pads = sum(t * h * w // 4 for t, h, w in grids)
    report["grids"], report["prompt_tokens"] = grids, n
    if ids.count(image_token_id) != pads:
        raise Failure(f"the engine's prompt has {ids.count(image_token_id)} image pads; "
                      f"transformers' grids {grids} need {pads}")
    if n < 1000:
        report["failures"].append(f"the sequence has {n} tokens; the requirement is >= 1000")
    want = template_ids(a.tokenizer, grids, a.prompt)
    report["ids_match_template"] = want == ids
    if want != ids:
        first = next((i for i, (x, y) in enumerate(zip(want, ids)) if x != y), min(len(want), n))
        report["failures"].append(f"prompt ids differ from the chat template through tokenizers "
                                  f"at position {first} ({len(ids)} vs {len(want)} ids)")
    pixel_values = pv["pixel_values"].float()
    # one bf16 model serves the plain run and both emulations (weights swapped, then restored)
    model, load_s = load_hf(model_dir, torch.bfloat16)
    runs["hf_bf16"], fwd_s = hf_forward(model, torch.bfloat16, ids, pixel_values, grid,
                                        image_token_id)
    report["steps"]["hf_bf16"] = dict(load_s=round(load_s, 2), forward_s=round(fwd_s, 3))
    log(f"transformers bf16: load {load_s:.1f} s, forward {fwd_s:.2f} s, logits "
        f"{tuple(runs['hf_bf16'].shape)}")
    if not a.no_attn_floor:
        # the same model and inputs with transformers' eager attention (repeat_kv, matmul,
        # fp32 softmax, bf16 probabilities) instead of SDPA's flash kernel: how far two correct
        # bf16 attention implementations alone move the logits on this checkpoint, every other
        # op bit for bit the same. (PyTorch's memory-efficient SDPA kernel would do too, but it
        # refuses the enable_gqa calls of the text attention.)
        try:
            set_attention(model, "eager")
            runs["hf_bf16_eager"], fwd_s = hf_forward(model, torch.bfloat16, ids, pixel_values,
                                                      grid, image_token_id)
            report["steps"]["hf_bf16_eager"] = dict(forward_s=round(fwd_s, 3))
        except (RuntimeError, ValueError, AttributeError) as e:
            report["failures"].append(f"transformers bf16 with eager attention: {e}")
        finally:
            set_attention(model, "sdpa")
    if a.quant_compare and not a.no_quant_emul:
        emulate(a, report, runs, model, ids, pixel_values, grid, image_token_id)
    del model
    torch.cuda.empty_cache()
    if not a.no_fp32:
        for k in ("matmul", "cudnn"):  # IEEE fp32: the reference must not be TF32
            try:
                if k == "matmul":
                    torch.backends.cuda.matmul.allow_tf32 = False
                else:
                    torch.backends.cudnn.allow_tf32 = False
            except Exception as e:  # noqa: BLE001 (an API rename must not stop the run)
                log(f"could not turn off TF32 for {k}: {e!r}")
        runs["hf_fp32"], report["steps"]["hf_fp32"] = hf_logits(
            model_dir, torch.float32, ids, pixel_values, grid, image_token_id)

    is_image = torch.tensor(ids) == image_token_id
    pairs = [("engine_bf16", "hf_bf16")]
    if "hf_bf16_eager" in runs:
        pairs += [("hf_bf16_eager", "hf_bf16"), ("engine_bf16", "hf_bf16_eager")]
    if "hf_fp32" in runs:
        pairs += [("engine_bf16", "hf_fp32"), ("hf_bf16", "hf_fp32")]
    for q, _ in QUANT_RUNS:
        if q in runs:
            pairs += [(q, "engine_bf16"), (q, "hf_bf16")]
            pairs += [(q, "hf_fp32")] if "hf_fp32" in runs else []
    for q, emul, _ in QUANT_CHECKS:
        if q in runs and emul in runs:
            pairs.append((q, emul))
    for emul in ("hf_nf4_emul", "hf_int8_emul"):
        if emul in runs:
            pairs.append((emul, "hf_bf16"))
    # decisive positions: judged by the fp32 run, or by the emulation itself when it is the
    # reference (no fp32 run of the quantized weights)
    decisive_of = {}

    def decisive_for(ref):
        key = ref if ref.endswith("_emul") else "hf_fp32"
        if key not in runs:
            return None
        if key not in decisive_of:
            decisive_of[key] = decisive_positions(runs[key])
        return decisive_of[key]

    per_pos = {}
    for x, y in pairs:
        c = compare(runs[x], runs[y])
        per_pos[f"{x}_vs_{y}"] = c
        s = summarize(c, is_image, ids, decisive_for(y))
        report["comparisons"][f"{x}_vs_{y}"] = s
        log(f"{x} vs {y}: cosine min {s['min_cosine']:.6f} (position {s['worst_position']}, "
            f"{'image' if s['worst_is_image'] else 'text'}) mean {s['mean_cosine']:.6f}; "
            f"top-1 {100 * s['top1']:.2f}% ({100 * s['top1_ties_counted']:.2f}% with ties"
            + (f", {100 * s['top1_decisive']:.2f}% of {s['decisive_positions']} decisive"
               if s["top1_decisive"] is not None else "") + "); "
            f"max abs diff {s['max_abs_diff']:.4g}")

    gate = report["comparisons"]["engine_bf16_vs_hf_bf16"]
    floor = report["comparisons"].get("hf_bf16_vs_hf_fp32")
    report["gate"] = dict(min_cosine=gate["min_cosine"], mean_cosine=gate["mean_cosine"],
                          top1=gate["top1"], need_min_cosine=a.min_cosine, need_top1=a.min_top1,
                          passed=gate["min_cosine"] >= a.min_cosine and gate["top1"] >= a.min_top1,
                          noise_floor_hf_bf16_vs_hf_fp32=None if floor is None else dict(
                              min_cosine=floor["min_cosine"], mean_cosine=floor["mean_cosine"],
                              top1=floor["top1"]))
    log(f"gate (engine bf16 vs transformers bf16): cosine min {gate['min_cosine']:.5f} mean "
        f"{gate['mean_cosine']:.5f}, top-1 {100 * gate['top1']:.1f}% (need >= {a.min_cosine} and "
        f">= {100 * a.min_top1:.0f}%): {'pass' if report['gate']['passed'] else 'FAIL'}")
    if floor is not None:
        log(f"  noise floor (transformers bf16 vs fp32, this checkpoint): cosine min "
            f"{floor['min_cosine']:.5f} mean {floor['mean_cosine']:.5f}, top-1 "
            f"{100 * floor['top1']:.1f}%")
    attn_floor = report["comparisons"].get("hf_bf16_eager_vs_hf_bf16")
    if attn_floor is not None:
        report["gate"]["noise_floor_hf_bf16_attention_kernels"] = dict(
            min_cosine=attn_floor["min_cosine"], mean_cosine=attn_floor["mean_cosine"],
            top1=attn_floor["top1"])
        log(f"  attention-kernel floor (transformers bf16, eager vs SDPA attention): "
            f"cosine min {attn_floor['min_cosine']:.5f} mean {attn_floor['mean_cosine']:.5f}, "
            f"top-1 {100 * attn_floor['top1']:.1f}%")
    floor_check(a, report)
    quant_checks(a, report)
    if gate["min_cosine"] < a.min_cosine:
        report["failures"].append(f"cosine {gate['min_cosine']:.6f} < {a.min_cosine} at position "
                                  f"{gate['worst_position']} ({gate['positions_below_0999']} "
                                  f"positions below 0.999)")
    if gate["top1"] < a.min_top1:
        report["failures"].append(f"top-1 agreement {100 * gate['top1']:.2f}% < "
                                  f"{100 * a.min_top1:.0f}%")
    with open(os.path.join(a.out, "teacher_forced.tsv"), "w") as f:
        keys = list(per_pos)
        f.write("position\tid\timage\t" + "\t".join(f"cos_{k}\ttop1_{k}" for k in keys) + "\n")
        for i in range(n):
            f.write(f"{i}\t{ids[i]}\t{int(is_image[i])}\t" + "\t".join(
                f"{float(per_pos[k]['cos'][i]):.7f}\t{int(per_pos[k]['top1'][i])}" for k in keys)
                + "\n")
    report["passed"] = not report["failures"]
    log("PASS" if report["passed"] else "FAIL: " + "; ".join(report["failures"]))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"teacher_forced.py: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
