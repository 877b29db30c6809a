#!/usr/bin/env python3
"""Goldens for quantized weights whose in-features are not multiples of 64 (run where torch +
transformers 5.17 are: the GPU machine; everything runs on its CPU, in float32). bitsandbytes
is not needed: tests/reference/bnb_emulation.py reproduces it bit for bit (this script first
re-checks that on tests/fixtures/bnb_goldens and stops if anything differs).

1. bnb_odd_goldens/: what bitsandbytes makes of bf16 matrices with in-features 40, 48 and 136
   (row counts giving whole and partial last blocks), in the layout of bnb_goldens/ (index.json
   + raw files): NF4 packed / absmax / dequantized, the same with double quantization, int8
   CB / SCB.
2. The engine goldens of tests/fixtures/models/tiny-odd (decoder hidden 48, intermediate 136,
   vision embed 40, vision mlp 160: every quantized Linear has in-features that are not a
   multiple of 64). For each weight format, every nn.Linear of the decoder and of the vision
   tower (merger included; not lm_head: what transformers + bitsandbytes quantize, and what
   vlrun --quant quantizes) is replaced by its bitsandbytes-quantized, dequantized bf16 value,
   and transformers runs the fixed request of make_model_goldens.py (its images, prompt and
   chat template) in float32:
       golden_tiny-odd-<fmt>.json   ids, argmax at every prompt position, 24 greedy tokens
                                    (a cache-free loop), and how far the format moved the
                                    logits from the bf16 weights' (cosine, argmax changes);
       logits_tiny-odd-<fmt>.f32    the last position's logits;
       tiny-odd-bnb-<fmt>.safetensors  the 24 quantized Linears in the on-disk layout of the
                                    "-bnb-4bit" / "-bnb-8bit" checkpoints transformers saves,
                                    for the engine tests to load as a pre-quantized checkpoint.
   <fmt>: nf4, nf4dq (double quantization), int8 (LLM.int8's CB / SCB, dequantized as vlrun's
   W8A16 does: bf16(CB * SCB / 127)); bf16 (no quantization) as the control.

usage: make_odd_goldens.py SMALL_TOKENIZER_JSON OUT_DIR [FIXTURES_DIR]
"""
import json
import os
import sys

import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bnb_emulation as bnb  # noqa: E402
import make_model_goldens as mmg  # noqa: E402

import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import Qwen2VLForConditionalGeneration  # noqa: E402

UNIT_SHAPES = [(3, 40), (120, 40), (5, 48), (16, 48), (7, 136), (48, 136)]
FORMATS = ["bf16", "nf4", "nf4dq", "int8"]
N_LINEARS = 24  # 2 layers x 7 + 2 vision blocks x 4 + merger 2
N_GREEDY = 24


# ---- 1. unit goldens -----------------------------------------------------------------------

def unit_weight(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.02
    special = [0.0, -0.0, 1e-6, -3e-8, 0.06, -0.06, 0.1, -0.2]  # signed zeros, tiny, 3+ sigma
    w[0, :len(special)] = torch.tensor(special)
    return w.to(torch.bfloat16)


def write_raw(directory, name, t, dtype_name):
    t = t.contiguous()
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()]
    with open(os.path.join(directory, name), "wb") as f:
        f.write(t.reshape(-1).view(view).numpy().tobytes())
    return dict(file=name, dtype=dtype_name, shape=list(t.shape))


def unit_goldens(out_dir, table):
    d = os.path.join(out_dir, "bnb_odd_goldens")
    os.makedirs(d, exist_ok=True)
    cases = []
    for i, (n, k) in enumerate(UNIT_SHAPES):
        w = unit_weight(n, k, 100 + i)
        tag = f"{n}x{k}"
        st = bnb.nf4_quantize(w)
        dq = bnb.nf4_quantize(w, double_quant=True)
        cb, scb = bnb.int8_quantize(w, table)
        cases.append(dict(
            n=n, k=k, weight=write_raw(d, f"w_{tag}.bf16", w, "bfloat16"),
            nf4=dict(packed=write_raw(d, f"nf4_{tag}.u8", st["packed"].reshape(-1, 1), "uint8"),
                     absmax=write_raw(d, f"nf4_absmax_{tag}.f32", st["absmax"], "float32"),
                     code=bnb.NF4_TABLE.tolist(), blocksize=64,
                     dequant=write_raw(d, f"nf4_deq_{tag}.bf16", bnb.nf4_dequantize(st, (n, k)),
                                       "bfloat16")),
            nf4_double=dict(
                packed=write_raw(d, f"nf4dq_{tag}.u8", dq["packed"].reshape(-1, 1), "uint8"),
                absmax_u8=write_raw(d, f"nf4dq_absmax_{tag}.u8", dq["absmax_code"], "uint8"),
                offset=float(dq["offset"]),
                nested_absmax=write_raw(d, f"nf4dq_nabsmax_{tag}.f32", dq["nested_absmax"],
                                        "float32"),
                nested_code=dq["nested_map"].tolist(), nested_blocksize=256,
                dequant=write_raw(d, f"nf4dq_deq_{tag}.bf16", bnb.nf4_dequantize(dq, (n, k)),
                                  "bfloat16")),
            int8_rowwise=dict(CB=write_raw(d, f"int8_cb_{tag}.i8", cb, "int8"),
                              SCB=write_raw(d, f"int8_scb_{tag}.f32", scb, "float32"))))
    index = dict(made_by="tests/reference/make_odd_goldens.py: bnb_emulation.py, identical to "
                         "bitsandbytes 0.50.2 on tests/fixtures/bnb_goldens",
                 torch=torch.__version__, cases=cases)
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print("unit goldens:", ", ".join(f"{n}x{k}" for n, k in UNIT_SHAPES), flush=True)


# ---- 2. engine goldens ---------------------------------------------------------------------

def quantized_state(fmt, w, table):
    """(dequantized bf16 weight, tensors in the bnb on-disk layout minus the name prefix)."""
    if fmt == "bf16":
        return w, {}
    if fmt == "int8":
        cb, scb = bnb.int8_quantize(w, table)
        return bnb.int8_dequantize(cb, scb), {"weight": cb, "SCB": scb,
                                              "weight_format": torch.tensor(0, dtype=torch.uint8)}
    st = bnb.nf4_quantize(w, double_quant=fmt == "nf4dq")
    state = dict(quant_type="nf4", blocksize=64, dtype="bfloat16", shape=list(w.shape))
    disk = {"weight": st["packed"].reshape(-1, 1), "weight.quant_map": bnb.NF4_TABLE.clone()}
    if fmt == "nf4dq":
        state.update(nested_blocksize=256, nested_dtype="float32", nested_offset=float(st["offset"]))
        disk.update({"weight.absmax": st["absmax_code"], "weight.nested_absmax": st["nested_absmax"],
                     "weight.nested_quant_map": st["nested_map"]})
    else:
        disk["weight.absmax"] = st["absmax"]
    text = json.dumps(state).encode()
    disk["weight.quant_state.bitsandbytes__nf4"] = torch.frombuffer(bytearray(text),
                                                                    dtype=torch.uint8)
    return bnb.nf4_dequantize(st, tuple(w.shape)), disk


def apply_format(linears, original, fmt, table):
    """Every (name, nn.Linear) of linears set to its bf16 weight original[name] in format fmt,
    quantized and dequantized; returns the bnb tensors as the checkpoint names them."""
    disk = {}
    for name, mod in linears:
        deq, pieces = quantized_state(fmt, original[name], table)
        with torch.no_grad():
            mod.weight.copy_(deq.float())
        prefix = checkpoint_name(name)
        for suffix, t in pieces.items():
            disk[f"{prefix}.{suffix}"] = t.contiguous()
    return disk


def checkpoint_name(module_name):
    """transformers 5's module path -> the checkpoint's (legacy) tensor prefix."""
    for new, old in (("model.language_model.", "model."), ("model.visual.", "visual."),
                     ("language_model.model.", "model."), ("visual.", "visual."),
                     ("model.", "model.")):
        if module_name.startswith(new):
            return old + module_name[len(new):]
    raise ValueError(module_name)


def prompt_ids(enc, grids):
    """make_model_goldens.py's chat template, piece by piece, checked against the text form."""
    ids = [mmg.IM_START] + enc("system\nYou are a helpful assistant.") + [mmg.IM_END] + enc("\n")
    ids += [mmg.IM_START] + enc("user\n")
    for g in grids:
        ids += [mmg.SPECIAL["vision_start_token_id"]]
        ids += [mmg.SPECIAL["image_token_id"]] * (g[0] * g[1] * g[2] // 4)
        ids += [mmg.SPECIAL["vision_end_token_id"]]
    ids += enc(mmg.PROMPT) + [mmg.IM_END] + enc("\n") + [mmg.IM_START] + enc("assistant\n")
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            + "".join("<|vision_start|>" + "<|image_pad|>" * (g[0] * g[1] * g[2] // 4)
                      + "<|vision_end|>" for g in grids)
            + mmg.PROMPT + "<|im_end|>\n<|im_start|>assistant\n")
    assert enc(text) == ids, "template ids differ"
    return ids


def engine_goldens(tok_path, out_dir, fixtures, table):
    model_dir = os.path.join(fixtures, "models", "tiny-odd")
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    for key in ("image_token_id", "vision_start_token_id", "vision_end_token_id"):
        if getattr(model.config, key, None) != mmg.SPECIAL[key]:
            print(f"WARNING: config {key} = {getattr(model.config, key, None)}, the template "
                  f"uses {mmg.SPECIAL[key]}", flush=True)
    linears = [(name, mod) for name, mod in model.named_modules()
               if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head")]
    assert len(linears) == N_LINEARS, [n for n, _ in linears]
    original = {}
    for name, mod in linears:
        w = mod.weight.detach().clone()
        assert torch.equal(w.to(torch.bfloat16).float(), w), f"{name}: not bf16 values"
        original[name] = w.to(torch.bfloat16)
        print(f"  {checkpoint_name(name)}: {list(w.shape)}", flush=True)

    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    images = [Image.open(os.path.join(fixtures, "models", "images", mmg.IMAGES[i][0])).convert("RGB")
              for i in mmg.ORDER]
    proc = mmg.ImageProcessor(min_pixels=mmg.MIN_PIXELS, max_pixels=mmg.MAX_PIXELS)
    pv = proc(images=images, return_tensors="pt")
    grids = pv["image_grid_thw"].tolist()
    pixel_values = pv["pixel_values"].float()
    ids = prompt_ids(enc, grids)

    def forward(seq):
        x = torch.tensor([seq])
        mm = (x == mmg.SPECIAL["image_token_id"]).long()
        with torch.no_grad():
            out = model(input_ids=x, attention_mask=torch.ones_like(x), mm_token_type_ids=mm,
                        pixel_values=pixel_values, image_grid_thw=torch.tensor(grids))
        return out.logits[0].float()

    base = None
    for fmt in FORMATS:
        disk = apply_format(linears, original, fmt, table)
        logits = forward(ids)
        greedy = mmg.greedy_tokens(forward, ids, N_GREEDY)
        argmax = logits.argmax(-1).tolist()
        g = dict(model="tiny-odd", weights=fmt, transformers=transformers.__version__,
                 torch=torch.__version__, prompt=mmg.PROMPT,
                 images=[mmg.IMAGES[i][0] for i in mmg.ORDER], min_pixels=mmg.MIN_PIXELS,
                 max_pixels=mmg.MAX_PIXELS, input_ids=ids, grids=grids,
                 argmax_every_position=argmax, greedy=greedy,
                 logits_file=f"logits_tiny-odd-{fmt}.f32",
                 note="float32 compute, CPU; quantized Linears from tests/reference/"
                      "bnb_emulation.py (bitsandbytes 0.50.2, bit-exact), dequantized to bf16")
        if base is None:
            base = (logits, argmax, greedy)
        else:
            last, ref = logits[-1].double(), base[0][-1].double()
            g["vs_bf16"] = dict(
                last_cosine=float(last @ ref / (last.norm() * ref.norm())),
                last_max_abs=float((last - ref).abs().max()),
                argmax_changed=sum(a != b for a, b in zip(argmax, base[1])),
                greedy_changed=sum(a != b for a, b in zip(greedy, base[2])))
        logits[-1].numpy().astype("<f4").tofile(os.path.join(out_dir, g["logits_file"]))
        with open(os.path.join(out_dir, f"golden_tiny-odd-{fmt}.json"), "w") as f:
            json.dump(g, f)
        if disk:
            save_file(disk, os.path.join(out_dir, f"tiny-odd-bnb-{fmt}.safetensors"),
                      metadata={"format": "pt"})
        print(fmt, "ids", len(ids), "grids", grids, "greedy", greedy[:10], "vs bf16",
              g.get("vs_bf16"), flush=True)


def main():
    tok_path, out_dir = sys.argv[1], sys.argv[2]
    fixtures = sys.argv[3] if len(sys.argv) > 3 else os.path.join(bnb.ROOT, "tests", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    if not bnb.check_goldens(os.path.join(fixtures, "bnb_goldens")):
        print("WARNING: bnb_emulation.py does not reproduce bitsandbytes' goldens (see above): "
              "what follows is not bitsandbytes' output", flush=True)
    table = bnb.fdividef_table()
    unit_goldens(out_dir, table)
    engine_goldens(tok_path, out_dir, fixtures, table)


if __name__ == "__main__":
    main()
