#!/usr/bin/env python3
"""Make the engine goldens with transformers (run where torch + transformers 5.17 are: the GPU
machine; the model runs on the CPU in float32).

Two small random Qwen2-VL checkpoints whose widths are not powers of two:
  tiny-a: untied embeddings, GQA ratio 3, bf16 weights saved in two shards (index.json),
          nested transformers-5 config layout;
  tiny-b: tied embeddings, GQA ratio 1, fp16 weights in one file, the flat config layout of
          the published Qwen2-VL checkpoints.
Both use the small-vocabulary derivative of the Qwen2 tokenizer (make_small_tokenizer.py).

Fixed input: four images (three sizes, the first repeated) and a multi-line prompt, through
the Qwen2-VL chat template. transformers runs in float32 (bf16/fp16 weights upcast exactly) and
we store: ids, grids, M-RoPE positions, pixel-value samples, the argmax of the logits at every
prompt position, the last position's logits, and 24 greedy tokens (a cache-free loop, so no
EOS suppression or cache subtleties are involved).

usage: make_model_goldens.py QWEN_TOKENIZER_JSON OUT_DIR
writes OUT_DIR/{tiny-a,tiny-b}/ (config.json, safetensors, preprocessor_config.json),
OUT_DIR/images/*.png, OUT_DIR/golden_tiny-{a,b}.json, OUT_DIR/logits_tiny-{a,b}.f32
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_small_tokenizer  # noqa: E402

import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration  # noqa: E402

try:
    from transformers import Qwen2VLImageProcessorPil as ImageProcessor
except ImportError:  # older layouts
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil as ImageProcessor)

KEEP = make_small_tokenizer.KEEP
SPECIAL = dict(bos_token_id=KEEP, eos_token_id=KEEP + 2, vision_start_token_id=KEEP + 9,
               vision_end_token_id=KEEP + 10, vision_token_id=KEEP + 11,
               image_token_id=KEEP + 12, video_token_id=KEEP + 13)
IM_START, IM_END = KEEP + 1, KEEP + 2
PROMPT = "Describe these pictures.\nWhat differs between\tthem?\n  Answer briefly: 1, 2, 3 — ok?"
IMAGES = [("img_a_56x84.png", 56, 84), ("img_b_100x60.png", 100, 60), ("img_c_45x130.png", 45, 130)]
ORDER = [0, 1, 2, 0]  # image files in prompt order (the first one repeated)
MIN_PIXELS, MAX_PIXELS = 3136, 12845056

MODELS = {
    "tiny-a": dict(
        text=dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2,
                  num_attention_heads=3, num_key_value_heads=1, mrope_section=[4, 6, 6]),
        vision=dict(depth=2, embed_dim=80, num_heads=2, mlp_ratio=4),
        tied=False, dtype=torch.bfloat16, shard="200KB", flat=False),
    "tiny-b": dict(
        text=dict(hidden_size=72, intermediate_size=136, num_hidden_layers=2,
                  num_attention_heads=3, num_key_value_heads=3, mrope_section=[4, 4, 4]),
        vision=dict(depth=1, embed_dim=48, num_heads=3, mlp_ratio=2),
        tied=True, dtype=torch.float16, shard=None, flat=True),
}


def make_image(w, h, seed):
    """Smooth gradients, a few shapes and noise: enough structure for bicubic to matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 100 * np.sin(x / (3 + seed)) * np.cos(y / 5)
    g = 255 * x / max(w - 1, 1)
    b = 255 * ((x // 7 + y // 5) % 2)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def rope_index(model, ids, grids):
    """transformers' own M-RoPE positions [3][L] and rope delta (signature varies by version)."""
    import inspect
    x = torch.tensor([ids])
    f = model.model.get_rope_index
    params = inspect.signature(f).parameters
    cand = dict(input_ids=x, image_grid_thw=torch.tensor(grids), attention_mask=torch.ones_like(x),
                mm_token_type_ids=(x == SPECIAL["image_token_id"]).long())
    try:
        pos, delta = f(**{k: v for k, v in cand.items() if k in params})
    except Exception as e:  # keep the other goldens; the C test skips what is absent
        print("get_rope_index failed:", repr(e), flush=True)
        return None, None
    pos = pos[-3:, 0] if pos.dim() == 3 else pos[-3:]
    return pos.tolist(), int(torch.as_tensor(delta).reshape(-1)[0])


def greedy_tokens(forward, ids, n):
    """n greedy tokens after ids, each from a full forward of everything so far (no cache, so no
    cache subtleties); forward(seq) returns the logits of every position."""
    seq, out = list(ids), []
    for _ in range(n):
        nxt = int(forward(seq)[-1].argmax())
        out.append(nxt)
        seq.append(nxt)
    return out


def perturb(model):
    """Non-trivial biases and norms (transformers' init makes them 0 and 1), so that every
    parameter matters: one the engine ignored would show."""
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname or "ln_q" in pname:
                p.add_(torch.randn_like(p) * 0.1)


def flat_config(cfg, spec):
    """The published (flat) layout: decoder keys at top level, a vision_config holding only
    what differs from the class defaults, rope_scaling with mrope_section."""
    t, v = spec["text"], spec["vision"]
    return dict(
        architectures=["Qwen2VLForConditionalGeneration"], model_type="qwen2_vl",
        hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"], vocab_size=4096, hidden_act="silu",
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": t["mrope_section"]},
        tie_word_embeddings=spec["tied"], torch_dtype="float16", use_cache=True,
        vision_config=dict(depth=v["depth"], embed_dim=v["embed_dim"], num_heads=v["num_heads"],
                           mlp_ratio=v["mlp_ratio"], hidden_size=t["hidden_size"],
                           in_chans=3, spatial_patch_size=14),
        **SPECIAL)


def qwen2_vl_config(t, v, tied):
    """The Qwen2VLConfig of a small model: decoder t (hidden_size, intermediate_size,
    num_hidden_layers, num_attention_heads, num_key_value_heads, mrope_section) and vision tower
    v (depth, embed_dim, num_heads, mlp_ratio), the small tokenizer's 4096 ids."""
    text_config = dict(vocab_size=4096, hidden_act="silu", max_position_embeddings=32768,
                       bos_token_id=SPECIAL["bos_token_id"], eos_token_id=SPECIAL["eos_token_id"],
                       rms_norm_eps=1e-6, rope_theta=1000000.0,
                       rope_scaling={"type": "mrope", "mrope_section": t["mrope_section"]},
                       **{k: x for k, x in t.items() if k != "mrope_section"})
    return Qwen2VLConfig(text_config=text_config,
                         vision_config=dict(hidden_size=t["hidden_size"], in_channels=3, **v),
                         tie_word_embeddings=tied, **SPECIAL)


def build(name, spec, out_dir):
    cfg = qwen2_vl_config(spec["text"], spec["vision"], spec["tied"])
    torch.manual_seed(hash(name) % 1000 + 7)
    model = Qwen2VLForConditionalGeneration._from_config(cfg, dtype=torch.float32)
    perturb(model)
    model = model.to(spec["dtype"])
    d = os.path.join(out_dir, name)
    kw = dict(max_shard_size=spec["shard"]) if spec["shard"] else {}
    model.save_pretrained(d, **kw)
    if spec["flat"]:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(flat_config(cfg, spec), f, indent=2)
    for junk in ("generation_config.json",):
        p = os.path.join(d, junk)
        if os.path.exists(p):
            os.remove(p)
    # reload from disk exactly as a user would, in float32
    model = Qwen2VLForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    if spec["flat"]:
        assert model.config.tie_word_embeddings == spec["tied"]
    return model, d


def main():
    tok_src, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    small = os.path.join(out_dir, "small_tokenizer.json")
    with open(small, "w", encoding="utf-8") as f:
        json.dump(make_small_tokenizer.derive(tok_src), f, ensure_ascii=False)
    tok = Tokenizer.from_file(small)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731

    pil_images = []
    for k, (fname, w, h) in enumerate(IMAGES):
        im = make_image(w, h, k + 1)
        im.save(os.path.join(out_dir, "images", fname))
        pil_images.append(Image.open(os.path.join(out_dir, "images", fname)).convert("RGB"))
    proc = ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    pv = proc(images=[pil_images[i] for i in ORDER], return_tensors="pt")
    grids = pv["image_grid_thw"].tolist()
    pixel_values = pv["pixel_values"].float()

    for name, spec in MODELS.items():
        model, d = build(name, spec, out_dir)
        proc.save_pretrained(d)
        ids = [IM_START] + enc("system\nYou are a helpful assistant.") + [IM_END] + enc("\n")
        ids += [IM_START] + enc("user\n")
        for g in grids:
            n = g[0] * g[1] * g[2] // 4
            ids += [SPECIAL["vision_start_token_id"]] + [SPECIAL["image_token_id"]] * n
            ids += [SPECIAL["vision_end_token_id"]]
        ids += enc(PROMPT) + [IM_END] + enc("\n") + [IM_START] + enc("assistant\n")
        # the same ids through the text template, as a cross-check of the piecewise build
        text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                + "".join("<|vision_start|>" + "<|image_pad|>" * (g[0] * g[1] * g[2] // 4)
                          + "<|vision_end|>" for g in grids)
                + PROMPT + "<|im_end|>\n<|im_start|>assistant\n")
        assert enc(text) == ids, "template ids differ"

        def forward(seq):
            x = torch.tensor([seq])
            mm = (x == SPECIAL["image_token_id"]).long()
            with torch.no_grad():
                out = model(input_ids=x, attention_mask=torch.ones_like(x), mm_token_type_ids=mm,
                            pixel_values=pixel_values, image_grid_thw=torch.tensor(grids))
            return out.logits[0].float()

        logits = forward(ids)
        pos, delta = rope_index(model, ids, grids)
        greedy = greedy_tokens(forward, ids, 24)
        samples = []
        rng = np.random.default_rng(5)
        flat = pixel_values.numpy().reshape(-1)
        for i in sorted(rng.choice(flat.size, 256, replace=False).tolist()):
            samples.append([int(i), float(flat[i])])
        logits[-1].numpy().astype("<f4").tofile(os.path.join(out_dir, f"logits_{name}.f32"))
        g = dict(model=name, transformers=transformers.__version__, torch=torch.__version__,
                 prompt=PROMPT, images=[IMAGES[i][0] for i in ORDER], image_src=ORDER,
                 min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                 input_ids=ids, grids=grids, positions=pos, rope_delta=delta,
                 pixel_values_shape=list(pixel_values.shape), pixel_samples=samples,
                 pixel_sum=float(pixel_values.double().sum()),
                 argmax_every_position=logits.argmax(-1).tolist(), greedy=greedy,
                 logits_file=f"logits_{name}.f32", note="float32 compute, CPU")
        with open(os.path.join(out_dir, f"golden_{name}.json"), "w") as f:
            json.dump(g, f)
        print(name, "ids", len(ids), "grids", grids, "greedy", greedy, flush=True)
    os.remove(small)


if __name__ == "__main__":
    main()
