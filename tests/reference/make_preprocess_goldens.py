#!/usr/bin/env python3
"""make_preprocess_goldens.py: the reference image preprocessing of the golden test images.

For each golden image of tests/fixtures/images/ (see make_test_images.py) it writes to OUTDIR:
  <stem>.pil.png             PIL's Image.open(...).convert("RGB") pixels (lossless PNG), the
                             decode the C loader must reproduce exactly, and the input the C
                             resize is compared on (so a decode difference cannot hide in it)
  <stem>.<case>.png          PIL's Image.resize((w, h), BICUBIC) of those pixels, for each
                             (min_pixels, max_pixels) case (cases of equal size share one)
  goldens.json               sizes, smart_resize results, grids, sha256 of each resized image's
                             raw RGB bytes, and ~200 sampled pixel_values (flat index, value)
Cases: the Qwen2-VL-7B-Instruct values (3136, 12845056), a small max_pixels (3136, 50176) and a
tiny one (784, 3136) that forces strong downscaling.

pixel_values come from transformers' Qwen2VLImageProcessorPil (or the 4.x PIL-based
Qwen2VLImageProcessor) when transformers is importable; with --no-transformers, or without it,
from the numpy transcription of the PIL path below (rescale in float64 -> float32, normalize in
float32, the processor's reshape/transpose). When transformers is used, the numpy path is
computed too and the largest difference recorded as a cross-check.

Usage: python3 tests/reference/make_preprocess_goldens.py OUTDIR [--no-transformers]
       [--images DIR]   (images default: tests/fixtures/images next to this script)
Needs Pillow + numpy (+ transformers). Deterministic: fixed sample indices.
"""
import argparse
import hashlib
import json
import math
import os
import shutil

import numpy as np
import PIL
from PIL import Image

GOLDEN_IMAGES = ["doc_rgb.png", "photo_rgba.png", "grey_small.png", "palette.png", "photo.jpg",
                 "wide.png"]
CASES = [("default", 3136, 12845056), ("small", 3136, 50176), ("tiny", 784, 3136)]
PATCH, TEMPORAL, MERGE = 14, 2, 2
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
N_SAMPLES = 200


def smart_resize_py(h, w, factor, min_pixels, max_pixels):
    """Transcription of transformers' smart_resize."""
    if max(h, w) / min(h, w) > 200:
        raise ValueError("aspect ratio over 200")
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt((h * w) / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return hb, wb


def pixel_values_numpy(resized):
    """The PIL backend after the resize: uint8 HWC -> [patches, 3*T*P*P] float32."""
    x = np.asarray(resized, dtype=np.uint8).astype(np.float64) * (1 / 255)
    x = x.astype(np.float32)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    chw = x.transpose(2, 0, 1)
    frames = np.tile(chw[None], (TEMPORAL, 1, 1, 1))  # [T, C, H, W]
    c, h, w = chw.shape
    gh, gw = h // PATCH, w // PATCH
    p = frames.reshape(1, TEMPORAL, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    p = p.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return p.reshape(gh * gw, c * TEMPORAL * PATCH * PATCH), [1, gh, gw]


def load_transformers_processor():
    try:
        import transformers
    except ImportError:
        return None, None
    cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if cls is None:
        try:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
                Qwen2VLImageProcessorPil as cls,
            )
        except ImportError:
            cls = None
    if cls is None and int(transformers.__version__.split(".")[0]) < 5:
        # 4.x: the "slow" processor resizes with PIL
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as cls
    return cls, transformers.__version__


def pixel_values_transformers(cls, image, min_pixels, max_pixels):
    proc = cls(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=PATCH,
        temporal_patch_size=TEMPORAL,
        merge_size=MERGE,
        image_mean=MEAN,
        image_std=STD,
        resample=Image.BICUBIC,
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
        do_convert_rgb=True,
    )
    try:
        out = proc(images=[image], return_tensors="np")
    except Exception:  # some versions only return torch tensors
        out = proc(images=[image], return_tensors="pt")
    pv, grid = out["pixel_values"], out["image_grid_thw"]
    pv = pv.numpy() if hasattr(pv, "numpy") else np.asarray(pv)
    grid = grid.numpy() if hasattr(grid, "numpy") else np.asarray(grid)
    return pv.astype(np.float32), [int(v) for v in grid[0]]


def sample_indices(total):
    rng = np.random.default_rng(7)
    idx = set(rng.choice(total, size=min(N_SAMPLES - 2, total), replace=False).tolist())
    idx.update([0, total - 1])
    return sorted(int(i) for i in idx)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--images", default=os.path.join(here, "..", "fixtures", "images"))
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)

    cls, tf_version = (None, None) if args.no_transformers else load_transformers_processor()
    source = f"transformers {tf_version} {cls.__name__}" if cls else "numpy transcription of the PIL path"
    print("pixel_values from:", source)
    worst_cross = 0.0
    images = []
    for name in GOLDEN_IMAGES:
        path = os.path.join(args.images, name)
        stem = os.path.splitext(name)[0]
        opened = Image.open(path)
        mode, fmt = opened.mode, opened.format
        rgb = opened.convert("RGB")
        rgb.save(os.path.join(args.outdir, f"{stem}.pil.png"))
        w, h = rgb.size
        entry = {"file": name, "format": fmt, "pil_mode": mode, "width": w, "height": h,
                 "pil_rgb": f"{stem}.pil.png", "cases": []}
        written = {}  # (w, h) -> file already holding that resize
        for case, mn, mx in CASES:
            rh, rw = smart_resize_py(h, w, PATCH * MERGE, mn, mx)
            resized = rgb.resize((rw, rh), Image.BICUBIC)
            if (rw, rh) not in written:
                written[(rw, rh)] = f"{stem}.{case}.png"
                resized.save(os.path.join(args.outdir, written[(rw, rh)]))
            pv, grid = pixel_values_numpy(resized)
            if cls:
                pv_tf, grid_tf = pixel_values_transformers(cls, Image.open(path), mn, mx)
                if grid_tf != grid or pv_tf.shape != pv.shape:
                    raise SystemExit(f"{name} {case}: transformers grid {grid_tf} {pv_tf.shape}, "
                                     f"expected {grid} {pv.shape}: smart_resize disagrees")
                worst_cross = max(worst_cross, float(np.abs(pv_tf - pv).max()))
                pv = pv_tf
            flat = pv.reshape(-1)
            entry["cases"].append({
                "name": case, "min_pixels": mn, "max_pixels": mx,
                "resized_width": rw, "resized_height": rh, "grid_thw": grid,
                "resized_file": written[(rw, rh)],
                "resized_sha256": hashlib.sha256(np.asarray(resized).tobytes()).hexdigest(),
                "n_patches": int(pv.shape[0]), "patch_dim": int(pv.shape[1]),
                "samples": [[i, float(flat[i])] for i in sample_indices(flat.size)],
            })
        images.append(entry)
        print(f"{name}: {mode} {w}x{h} -> " +
              ", ".join(f"{c['resized_width']}x{c['resized_height']}" for c in entry["cases"]))

    goldens = {
        "generator": {
            "script": "tests/reference/make_preprocess_goldens.py",
            "pillow": PIL.__version__, "numpy": np.__version__, "transformers": tf_version,
            "pixel_values_source": source,
            "transformers_vs_numpy_max_abs": worst_cross if cls else None,
        },
        "patch_size": PATCH, "temporal_patch_size": TEMPORAL, "merge_size": MERGE,
        "image_mean": MEAN, "image_std": STD,
        "images": images,
    }
    # one line per sample list keeps the file short and diffable
    samples = {}
    for e in images:
        for c in e["cases"]:
            key = f"@samples{len(samples)}@"
            samples[key] = json.dumps(c["samples"], separators=(",", ":"))
            c["samples"] = key
    text = json.dumps(goldens, indent=1)
    for key, value in samples.items():
        text = text.replace(f'"{key}"', value)
    with open(os.path.join(args.outdir, "goldens.json"), "w") as f:
        f.write(text + "\n")
    if os.path.abspath(args.outdir) != os.path.abspath(args.images):
        for name in GOLDEN_IMAGES:  # the inputs too, so OUTDIR is a complete fixture folder
            shutil.copy(os.path.join(args.images, name), args.outdir)
    if cls:
        print(f"transformers vs numpy path: max |diff| {worst_cross:.3g}")


if __name__ == "__main__":
    main()
