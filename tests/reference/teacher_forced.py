#!/usr/bin/env python3
"""teacher_forced.py: the engine's logits at every position of a long multimodal prompt against
transformers, on a random checkpoint with the real Qwen2-VL-7B shapes (runs on the GPU machine:
torch, transformers 5.17, tokenizers, Pillow, numpy; no network).

Steps (one process; the GPU holds one model at a time):
  1. A random Qwen2VLForConditionalGeneration from the published 7B config.json
     (examples/qwen2-vl-7b-instruct.json), built in bf16 on the GPU with a fixed seed:
     transformers' own init (normal std 0.02, unit norms, zero biases), then biases and norm
     weights perturbed (N(0, --perturb)) so that a parameter the engine ignored would show.
     save_pretrained (~16.6 GB of safetensors) + tokenizer.json + preprocessor_config.json
     (min_pixels 3136, max_pixels 12845056: the published 7B-Instruct values).
  2. `vlrun logits` on that directory: every position's logits (.bf16) and the prompt ids.
     With --quant-compare, again with --quant nf4 and --quant int8.
  3. transformers bf16 (sdpa), teacher-forced on the engine's ids with its own preprocessing
     of the same image (Qwen2VLImageProcessorPil): the logits of every position. Then the same
     model in fp32 (unless --no-fp32): the reference both bf16 implementations are judged by.
  4. Per position: cosine (float64 sums of float32 values), top-1 agreement, max abs diff.
     The gate (exit 1 when it fails): engine bf16 vs transformers bf16, cosine >= 0.999 at
     every position and top-1 agreement >= 99%. Also checked: the engine's prompt ids equal the
     Qwen2-VL chat template through `tokenizers`, and the image pad count equals the grid.

Why the fp32 run: random weights give nearly Gaussian logits over 152k tokens, whose top two
differ by about 1/25 of the top value, while one bf16 step is 1/256 to 1/128 of it: at ~10% of
positions the top-1 is decided by rounding. "transformers bf16 vs fp32" measures how much top-1
agreement bf16 arithmetic alone allows on this checkpoint, next to the engine's figure; and
"decisive" positions (fp32 top-1 ahead by > 2^-6 of its value) give top-1 without those ties.

Writes OUT/teacher_forced.json (every comparison's summary) and OUT/teacher_forced.tsv (one
row per position). Logits and the checkpoint go to the work directory: a new temporary one,
deleted at the end unless --keep, or --work DIR (kept; reuse its checkpoint with --model).
Exit: 0 gate passed, 1 gate (or a requested quant run) failed, 2 could not run.

usage: teacher_forced.py --vlrun PATH --tokenizer TOKENIZER_JSON [--out DIR] [--quant-compare]
       [--model DIR (reuse a checkpoint)] [--work DIR] [--keep] [--image PNG]... [--prompt TEXT]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MIN_PIXELS, MAX_PIXELS = 3136, 12845056
# the published Qwen2-VL-7B vision tower (its config.json names only in_chans / patch size)
VISION_7B = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16, in_channels=3,
                 patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
SYSTEM = "You are a helpful assistant."


class Failure(Exception):
    """A step that could not run: exit 2 with this message."""


def log(*a):
    print(*a, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vlrun", required=True, help="the vlrun binary (CUDA build)")
    p.add_argument("--tokenizer", required=True, help="the Qwen2 tokenizer.json")
    p.add_argument("--config", default=os.path.join(ROOT, "examples", "qwen2-vl-7b-instruct.json"))
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
                   help="also run the engine with --quant nf4 and --quant int8")
    p.add_argument("--no-fp32", action="store_true", help="skip the transformers fp32 run")
    p.add_argument("--min-cosine", type=float, default=0.999)
    p.add_argument("--min-top1", type=float, default=0.99)
    p.add_argument("--timeout", type=int, default=480, help="seconds per vlrun run")
    a = p.parse_args()
    a.image = a.image or [os.path.join(ROOT, "examples", "page.png")]
    return a


def published_config(path):
    """The published flat config.json as a transformers Qwen2VLConfig, vision tower spelled out."""
    from transformers import Qwen2VLConfig
    with open(path) as f:
        raw = json.load(f)
    for k in ("transformers_version", "architectures", "torch_dtype"):
        raw.pop(k, None)
    vision = dict(raw.pop("vision_config", {}))
    vision.pop("model_type", None)
    vision.pop("in_chans", None)
    vision.pop("spatial_patch_size", None)
    for k, v in VISION_7B.items():
        vision.setdefault(k, v)
    vision["hidden_size"] = raw["hidden_size"]  # the merger's output: the decoder width
    cfg = Qwen2VLConfig(vision_config=vision, **raw)
    t, v = cfg.get_text_config(), cfg.vision_config
    got = (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
           t.intermediate_size, t.vocab_size, v.depth, v.embed_dim, v.num_heads, v.hidden_size)
    want = (3584, 28, 28, 4, 18944, 152064, 32, 1280, 16, 3584)
    if got != want:
        raise Failure(f"{path}: transformers read shapes {got}, expected the 7B's {want}")
    return cfg


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
    from transformers import Qwen2VLForConditionalGeneration
    cfg = published_config(a.config)
    t0 = time.time()
    torch.manual_seed(a.seed)
    torch.cuda.manual_seed_all(a.seed)
    with torch.device("cuda"):
        model = Qwen2VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
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


def run_vlrun(a, model_dir, work, out, tag, quant):
    """vlrun logits -> (summary dict, logits path, ids path); raises Failure on error."""
    lp, ip = os.path.join(work, f"{tag}.bf16"), os.path.join(work, f"{tag}.ids.i32")
    cmd = [a.vlrun, "logits", "--backend", a.backend, "--model", model_dir, *a.image,
           "--prompt", a.prompt, "--out", lp, "--ids-out", ip, *a.vlrun_arg]
    if quant != "bf16":
        cmd += ["--quant", quant]
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


def hf_logits(model_dir, dtype, ids, pv, grid, image_token_id):
    """transformers' logits of every position, teacher-forced, on the CPU host as `dtype`."""
    from transformers import Qwen2VLForConditionalGeneration
    t0 = time.time()
    kw = dict(dtype=dtype, attn_implementation="sdpa")
    try:
        model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, device_map="cuda", **kw)
    except (ImportError, ValueError, RuntimeError) as e:
        log(f"device_map='cuda' failed ({e!r}); loading on the host, then moving")
        model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, **kw).to("cuda")
    model.eval()
    load_s = time.time() - t0
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
    del out, model
    torch.cuda.empty_cache()
    log(f"transformers {dtype}: load {load_s:.1f} s, forward {fwd_s:.2f} s, logits "
        f"{tuple(logits.shape)}")
    return logits, dict(load_s=round(load_s, 2), forward_s=round(fwd_s, 3))


def compare(a, b, rows=256):
    """Per position: cosine, top-1 equal, top-1 of a among b's maxima, max abs diff."""
    n = a.shape[0]
    cos = torch.empty(n, dtype=torch.float64)
    top1 = torch.empty(n, dtype=torch.bool)
    tie_ok = torch.empty(n, dtype=torch.bool)
    mad = torch.empty(n, dtype=torch.float64)
    for r0 in range(0, n, rows):
        x = a[r0:r0 + rows].to("cuda").float().double()
        y = b[r0:r0 + rows].to("cuda").float().double()
        cos[r0:r0 + rows] = ((x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))).cpu()
        ax, ay = x.argmax(-1), y.argmax(-1)
        top1[r0:r0 + rows] = (ax == ay).cpu()
        tie_ok[r0:r0 + rows] = (y.gather(1, ax[:, None])[:, 0] == y.max(-1).values).cpu()
        mad[r0:r0 + rows] = (x - y).abs().max(-1).values.cpu()
    return dict(cos=cos, top1=top1, tie_ok=tie_ok, mad=mad)


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


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not torch.cuda.is_available():
        raise Failure("no CUDA device visible to torch")
    for path, what in ((a.vlrun, "--vlrun"), (a.tokenizer, "--tokenizer"), (a.config, "--config"),
                       *((i, "--image") for i in a.image)):
        if not os.path.isfile(path):
            raise Failure(f"{what} {path}: no such file")
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
    model_dir = a.model or os.path.join(work, "qwen2-vl-7b-random")
    proc = image_processor()
    if not a.model:
        os.makedirs(model_dir, exist_ok=True)
        report["parameters"] = make_checkpoint(a, model_dir)
    for f in ("config.json",):
        if not os.path.isfile(os.path.join(model_dir, f)):
            raise Failure(f"{model_dir}: no {f}")
    if not os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
        shutil.copyfile(a.tokenizer, os.path.join(model_dir, "tokenizer.json"))
    if not os.path.isfile(os.path.join(model_dir, "preprocessor_config.json")):
        proc.save_pretrained(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        image_token_id = json.load(f).get("image_token_id", 151655)

    # the engine first, alone on the GPU
    runs = {}
    summary, lp, ip = run_vlrun(a, model_dir, work, a.out, "engine_bf16", "bf16")
    report["steps"]["engine_bf16"] = summary
    n, V = summary["positions"], summary["vocab"]
    ids = np.fromfile(ip, dtype="<i4").tolist()
    if len(ids) != n:
        raise Failure(f"{ip}: {len(ids)} ids, the summary says {n} positions")
    runs["engine_bf16"] = read_logits(lp, n, V)
    if a.quant_compare:
        for q in ("nf4", "int8"):
            try:
                s, qlp, qip = run_vlrun(a, model_dir, work, a.out, f"engine_{q}", q)
                if np.fromfile(qip, dtype="<i4").tolist() != ids:
                    raise Failure(f"--quant {q}: different prompt ids")
                report["steps"][f"engine_{q}"] = s
                runs[f"engine_{q}"] = read_logits(qlp, n, V)
            except Failure as e:
                report["failures"].append(f"engine --quant {q}: {e}")
                log(f"FAIL engine --quant {q}: {e}")

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
    runs["hf_bf16"], report["steps"]["hf_bf16"] = hf_logits(
        model_dir, torch.bfloat16, ids, pixel_values, grid, image_token_id)
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
    if "hf_fp32" in runs:
        pairs += [("engine_bf16", "hf_fp32"), ("hf_bf16", "hf_fp32")]
    for q in ("engine_nf4", "engine_int8"):
        if q in runs:
            pairs += [(q, "engine_bf16"), (q, "hf_bf16")] + ([(q, "hf_fp32")] if "hf_fp32" in runs else [])
    decisive = decisive_positions(runs["hf_fp32"]) if "hf_fp32" in runs else None
    per_pos = {}
    for x, y in pairs:
        c = compare(runs[x], runs[y])
        per_pos[f"{x}_vs_{y}"] = c
        s = summarize(c, is_image, ids, decisive)
        report["comparisons"][f"{x}_vs_{y}"] = s
        log(f"{x} vs {y}: cosine min {s['min_cosine']:.6f} (position {s['worst_position']}, "
            f"{'image' if s['worst_is_image'] else 'text'}) mean {s['mean_cosine']:.6f}; "
            f"top-1 {100 * s['top1']:.2f}% ({100 * s['top1_ties_counted']:.2f}% with ties"
            + (f", {100 * s['top1_decisive']:.2f}% of {s['decisive_positions']} decisive"
               if s["top1_decisive"] is not None else "") + "); "
            f"max abs diff {s['max_abs_diff']:.4g}")

    gate = report["comparisons"]["engine_bf16_vs_hf_bf16"]
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
