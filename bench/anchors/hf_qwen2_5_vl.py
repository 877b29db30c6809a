#!/usr/bin/env python3
"""hf_qwen2_5_vl.py: the transformers anchor for Qwen2.5-VL, the method of the Qwen2-VL anchor
(shared/tools/hf_baseline.py) on random weights of the published Qwen2.5-VL-7B-Instruct shapes
(examples/qwen2.5-vl-7b-instruct.json, read by tests/reference/qwen_configs.py): the model built
in bf16 on the GPU (seed 0), N copies of one random 872x1242 image (seed 0), the same prompt and
chat ids; per N: time to first token (a 1-token generate), then a generate of exactly MAXTOK
tokens (decode tok/s = (tokens - 1) / (total - ttft)), peak memory. Beyond the Qwen2-VL anchor:
the vision encoder alone (model.model.visual on the N images' pixels, window attention and all),
timed with CUDA synchronisation, the median of 3 runs after a warm-up.

usage: hf_qwen2_5_vl.py ATTN N1,N2,... [MAXTOK]     (on the GPU machine; bf16 only)
  ATTN    transformers' attention implementation: sdpa, eager, ...
  MAXTOK  generated tokens (default 512)
env: QWEN_TOKENIZER  the Qwen2 tokenizer.json (Qwen2.5-VL's is the same), OUT (default .)
Prints one JSON line per N; writes them all to OUT/hf_qwen2_5_vl_<ATTN>.json (a list). Exit 2
when the config is missing or does not hold the 7B's shapes.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import Qwen2VLImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import qwen_configs  # noqa: E402

CONFIG = os.path.join(ROOT, "examples", "qwen2.5-vl-7b-instruct.json")
GIB = 2**30
IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD = 151644, 151645, 151652, 151653, 151655
PROMPT = "続きを、可能な限り長く生成してください。昔々あるところに、"
VISION_REPEATS = 3


def fail(msg):
    print(f"hf_qwen2_5_vl.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def build_model(attn):
    """Random bf16 weights of the published 7B shapes on the GPU -> (model, weights GiB)."""
    try:
        cfg, model_type = qwen_configs.published_config(CONFIG)
    except (OSError, ValueError, KeyError) as e:
        fail(f"{CONFIG}: {e}")
    bad = qwen_configs.check_7b(cfg, model_type, CONFIG)
    if model_type != "qwen2_5_vl" or bad:
        fail(bad or f"{CONFIG} is a {model_type} config, not qwen2_5_vl")
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = qwen_configs.model_class(model_type)._from_config(
            cfg, dtype=torch.bfloat16, attn_implementation=attn)
    model.eval()
    weights = torch.cuda.memory_allocated() / GIB
    n = sum(p.numel() for p in model.parameters())
    print(f"built {n / 1e9:.3f}B params in {time.time() - t0:.1f}s; weights {weights:.2f} GiB",
          flush=True)
    return model, weights


def chat_ids(tok, n_images, image_tokens):
    """The Qwen2-VL / Qwen2.5-VL chat template: system, N images, the prompt, the assistant."""
    def enc(s):
        return tok.encode(s, add_special_tokens=False).ids
    ids = [IM_START] + enc("system\nYou are a helpful assistant.") + [IM_END] + enc("\n")
    ids += [IM_START] + enc("user\n")
    for _ in range(n_images):
        ids += [VISION_START] + [IMAGE_PAD] * image_tokens + [VISION_END]
    return ids + enc(PROMPT) + [IM_END] + enc("\n") + [IM_START] + enc("assistant\n")


def time_vision(model, pixel_values, grid):
    """The vision encoder alone on these images: seconds of each of VISION_REPEATS runs after
    one warm-up, every run between two CUDA synchronisations."""
    visual = getattr(model.model, "visual", None) or model.visual
    runs = []
    with torch.no_grad():
        for i in range(VISION_REPEATS + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            visual(pixel_values, grid_thw=grid)
            torch.cuda.synchronize()
            if i:
                runs.append(time.perf_counter() - t0)
    return runs


def generate_figures(model, inputs, r, max_new):
    """TTFT (1-token generate), total and decode speed (MAXTOK tokens), peak memory, into r."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.time()
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False)
    torch.cuda.synchronize()
    r["ttft_s"] = time.time() - t0
    r["peak_prefill_gib"] = torch.cuda.max_memory_allocated() / GIB
    if max_new > 1:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new, min_new_tokens=max_new,
                                 do_sample=False)
        torch.cuda.synchronize()
        r["total_s"] = time.time() - t0
        r["new_tokens"] = int(out.shape[1] - inputs["input_ids"].shape[1])
        r["decode_tok_s"] = (r["new_tokens"] - 1) / max(1e-9, r["total_s"] - r["ttft_s"])
    r["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
    r["reserved_gib"] = torch.cuda.max_memory_reserved() / GIB


def measure(model, tok, proc, img, n, attn, max_new):
    """Every figure for N images -> one result dict."""
    pv = proc(images=[img] * n, return_tensors="pt")
    grid = pv["image_grid_thw"]
    ids = chat_ids(tok, n, int(grid[0].prod() // 4))
    input_ids = torch.tensor([ids], device="cuda")
    pixel_values = pv["pixel_values"].to("cuda", torch.bfloat16)
    inputs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                  mm_token_type_ids=(input_ids == IMAGE_PAD).long(), pixel_values=pixel_values,
                  image_grid_thw=grid.to("cuda"))
    r = dict(model="qwen2_5_vl", attn=attn, quant="none", images=n, grid=grid[0].tolist(),
             prompt_tokens=len(ids))
    try:
        try:
            generate_figures(model, inputs, r, max_new)
        except ValueError as e:  # generate refuses inputs the model does not take: without it
            if "mm_token_type_ids" not in str(e):
                raise
            del inputs["mm_token_type_ids"]
            r["without_mm_token_type_ids"] = True
            generate_figures(model, inputs, r, max_new)
    except torch.cuda.OutOfMemoryError:
        r["oom"] = True
    torch.cuda.empty_cache()
    try:
        runs = time_vision(model, pixel_values, inputs["image_grid_thw"])
        r["vision_runs_s"] = runs
        r["vision_s"] = statistics.median(runs)
        r["vision_ms_per_image"] = 1e3 * r["vision_s"] / n
    except torch.cuda.OutOfMemoryError:
        r["vision_oom"] = True
    del inputs
    torch.cuda.empty_cache()
    return r


def main():
    if len(sys.argv) < 3 or "QWEN_TOKENIZER" not in os.environ:
        print(__doc__, file=sys.stderr)
        return 2
    attn = sys.argv[1]
    counts = [int(c) for c in sys.argv[2].split(",")]
    max_new = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    model, weights = build_model(attn)
    tok = Tokenizer.from_file(os.environ["QWEN_TOKENIZER"])
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, size=(1242, 872, 3), dtype=np.uint8))  # 872 wide
    proc = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
    results = []
    for n in counts:
        r = measure(model, tok, proc, img, n, attn, max_new)
        r["weights_gib"] = weights
        print(json.dumps(r), flush=True)
        results.append(r)
    with open(os.path.join(os.environ.get("OUT", "."), f"hf_qwen2_5_vl_{attn}.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
