#!/usr/bin/env python3
"""make_processor_goldens.py: transformers' Qwen2-VL pixel_values for every format and mode.

For each committed test image (tests/fixtures/images/decode/*, exif/* and the six golden
images of images/) it runs what transformers does with an image path: load_image (Pillow open,
exif_transpose, convert("RGB")) and then the Qwen2-VL image processor, for two
(min_pixels, max_pixels) cases: the Qwen2-VL-7B-Instruct values and (784, 784), which forces
every image to 28x28. It writes OUTDIR/processor_goldens.json with, per image and case: the
grid, the float32 pixel_values' sha256 (C order, little endian) and 12 sampled values, for
  - "pil":     Qwen2VLImageProcessorPil, the PIL backend (our reference: bicubic in PIL)
  - "default": the class AutoImageProcessor gives for Qwen2-VL's preprocessor_config.json
               (name recorded), with its largest difference from "pil"
  - "direct":  (images with alpha only) the default processor given Image.open(path) instead
               of load_image's RGB image: shows what the processor's own convert_rgb does with
               transparency
Also writes OUTDIR/transformers_sources.txt (load_image and convert_to_rgb as installed) so the
alpha and EXIF behaviour can be read, not guessed.

Usage: python3 tests/reference/make_processor_goldens.py OUTDIR [--images DIR]
Needs torch, transformers (5.x), Pillow, numpy. Runs on the GPU machine (scripts/device.sh goldens images).
"""
import argparse
import hashlib
import inspect
import json
import os
import sys
import tempfile

import numpy as np
import PIL
from PIL import Image

CASES = [("default", 3136, 12845056), ("forced", 784, 784)]
PRE = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
       "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
       "image_mean": [0.48145466, 0.4578275, 0.40821073],
       "image_std": [0.26862954, 0.26130258, 0.27577711],
       "merge_size": 2, "patch_size": 14, "temporal_patch_size": 2, "resample": 3,
       "rescale_factor": 0.00392156862745098}
N_SAMPLES = 12


def image_list(root):
    out = []
    for sub in ("decode", "exif"):
        with open(os.path.join(root, sub, "cases.json")) as f:
            for c in json.load(f)["cases"]:
                out.append(f"{sub}/{c['file']}")
    for name in ("doc_rgb.png", "photo_rgba.png", "grey_small.png", "palette.png", "photo.jpg",
                 "wide.png"):
        out.append(name)
    return out


def processors(tmp, mn, mx):
    """(default processor, its class name, PIL processor) for one pixel range."""
    from transformers import AutoImageProcessor
    import transformers
    d = os.path.join(tmp, f"{mn}_{mx}")
    os.makedirs(d, exist_ok=True)
    cfg = dict(PRE, min_pixels=mn, max_pixels=mx, size={"shortest_edge": mn, "longest_edge": mx})
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(cfg, f)
    default = AutoImageProcessor.from_pretrained(d)
    pil_cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if pil_cls is None:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as pil_cls)
    return default, type(default).__name__, pil_cls.from_pretrained(d)


def fused_hypothesis(rgb, grid):
    """The torchvision backend's guess: PIL's bicubic resize, then rescale and normalize fused
    into one float32 step, (v - mean*255) / (std*255). Equal to "default" only if torchvision's
    resize gives PIL's pixels and the fused formula is the one used."""
    gh, gw = grid[1], grid[2]
    x = np.asarray(rgb.resize((gw * 14, gh * 14), Image.BICUBIC), dtype=np.float32)
    mean = np.array(PRE["image_mean"], np.float32) * np.float32(255)
    std = np.array(PRE["image_std"], np.float32) * np.float32(255)
    x = ((x - mean) / std).astype(np.float32).transpose(2, 0, 1)
    p = np.tile(x[None], (2, 1, 1, 1)).reshape(1, 2, 3, gh // 2, 2, 14, gw // 2, 2, 14)
    return p.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gh * gw, 3 * 2 * 14 * 14)


def run(proc, image):
    out = proc(images=[image], return_tensors="pt")
    pv = out["pixel_values"].cpu().numpy().astype(np.float32)
    grid = [int(v) for v in out["image_grid_thw"][0]]
    return np.ascontiguousarray(pv), grid


def record(pv, grid):
    flat = pv.reshape(-1)
    rng = np.random.default_rng(11)
    idx = sorted({0, flat.size - 1, *rng.choice(flat.size, N_SAMPLES - 2, replace=False).tolist()})
    return {"grid_thw": grid, "shape": list(pv.shape),
            "sha256": hashlib.sha256(pv.astype("<f4").tobytes()).hexdigest(),
            "samples": [[int(i), float(flat[i])] for i in idx]}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--images", default=os.path.join(here, "..", "fixtures", "images"))
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    import torch
    import transformers
    from transformers import image_transforms, image_utils
    with open(os.path.join(args.outdir, "transformers_sources.txt"), "w") as f:
        for fn in (image_utils.load_image, getattr(image_transforms, "convert_to_rgb", None)):
            if fn is not None:
                f.write(inspect.getsource(fn) + "\n")
    tmp = tempfile.mkdtemp()
    procs = {case: processors(tmp, mn, mx) for case, mn, mx in CASES}
    default_name = procs["default"][1]
    print("default processor:", default_name, file=sys.stderr)
    images, worst = [], {"default_vs_pil": 0.0, "direct_vs_load_image": 0.0,
                          "default_vs_fused_hypothesis": 0.0}
    for rel in image_list(args.images):
        path = os.path.join(args.images, rel)
        entry = {"file": rel}
        try:
            opened = Image.open(path)
            entry["pil_mode"] = opened.mode
            rgb = image_utils.load_image(path)
        except Exception as e:  # transformers cannot read it: recorded, vlrun's choice differs
            entry["load_image_error"] = f"{type(e).__name__}: {e}"
            images.append(entry)
            continue
        entry["loaded_size"] = list(rgb.size)
        entry["cases"] = []
        for case, mn, mx in CASES:
            default, _, pil = procs[case]
            pv, grid = run(pil, rgb)
            c = {"name": case, "min_pixels": mn, "max_pixels": mx, "pil": record(pv, grid)}
            dv, dgrid = run(default, rgb)
            diff = float(np.abs(dv - pv).max()) if dv.shape == pv.shape else float("inf")
            c["default"] = {"sha256": record(dv, dgrid)["sha256"], "max_abs_diff_vs_pil": diff}
            worst["default_vs_pil"] = max(worst["default_vs_pil"], diff)
            hv = fused_hypothesis(rgb, dgrid)
            hd = float(np.abs(hv - dv).max()) if hv.shape == dv.shape else float("inf")
            c["default"]["max_abs_diff_vs_fused_hypothesis"] = hd
            worst["default_vs_fused_hypothesis"] = max(worst["default_vs_fused_hypothesis"], hd)
            if "A" in opened.mode or "transparency" in opened.info:
                try:
                    xv, _ = run(default, Image.open(path))
                    xd = float(np.abs(xv - dv).max()) if xv.shape == dv.shape else float("inf")
                    c["direct"] = {"max_abs_diff_vs_load_image": xd}
                    worst["direct_vs_load_image"] = max(worst["direct_vs_load_image"], xd)
                except Exception as e:
                    c["direct"] = {"error": f"{type(e).__name__}: {e}"}
            entry["cases"].append(c)
        images.append(entry)
        print(rel, entry["loaded_size"], [c["default"]["max_abs_diff_vs_pil"] for c in entry["cases"]],
              file=sys.stderr)
    goldens = {"generator": {"script": "tests/reference/make_processor_goldens.py",
                             "transformers": transformers.__version__, "torch": torch.__version__,
                             "pillow": PIL.__version__, "numpy": np.__version__,
                             "default_processor": default_name, "worst": worst},
               "images": images}
    text = json.dumps(goldens, indent=1)
    with open(os.path.join(args.outdir, "processor_goldens.json"), "w") as f:
        f.write(text + "\n")
    print("worst:", worst, file=sys.stderr)


if __name__ == "__main__":
    main()
