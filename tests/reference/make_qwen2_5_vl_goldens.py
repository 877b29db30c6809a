#!/usr/bin/env python3
"""Make the Qwen2.5-VL engine goldens with transformers (run where torch + transformers 5.17 are:
the GPU machine; the models run on its CPU in float32).

Two small random Qwen2.5-VL checkpoints whose widths are not powers of two, and whose
fullatt_block_indexes hold the first and the last block (the ones between attend in windows):
  tiny25-a: untied embeddings, GQA ratio 3, window_size 112 (4 x 4 merged tokens, the published
            value), bf16 weights in two shards, the nested transformers-5 config layout;
  tiny25-b: tied embeddings, GQA ratio 2, window_size 56 (2 x 2 merged tokens), fp16 weights in
            one file, the flat layout of the published Qwen2.5-VL checkpoints.
Both use the small-vocabulary derivative of the Qwen2 tokenizer (make_small_tokenizer.py).

Fixed input: four images whose merged grids are and are not multiples of the window (one
window at 112, a very wide one, a very tall one, 8 x 8 merged tokens: whole windows only)
and make_model_goldens.py's prompt and chat template. Stored per model, in make_model_goldens.py's
layout (so tests/test_engine_golden.c reads both the same way): ids, grids, M-RoPE positions,
pixel-value samples, the argmax at every prompt position, the last position's logits (.f32),
24 greedy tokens (a cache-free loop); and also every position's logits (.f16) and each image's
window index and window boundaries (read off transformers' own forward of the tower, duplicates
removed as its forward does).

For tiny25-a also the bitsandbytes formats, as make_odd_goldens.py does for tiny-odd: every
nn.Linear of the decoder and the vision tower (merger included, not lm_head) replaced by its
bitsandbytes quantize-dequantize (tests/reference/bnb_emulation.py, bit-exact), and the same
request: golden_tiny25-a-<fmt>.json, logits_tiny25-a-<fmt>.f32 and tiny25-a-bnb-<fmt>.safetensors
(the quantized Linears in the on-disk layout transformers saves), fmt = nf4, nf4dq, int8; bf16
as the control.

usage: make_qwen2_5_vl_goldens.py QWEN_TOKENIZER_JSON OUT_DIR [FIXTURES_DIR]
writes OUT_DIR/{tiny25-a,tiny25-b}/, OUT_DIR/images/img25_*.png and the files above in OUT_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bnb_emulation as bnb  # noqa: E402
import make_model_goldens as mmg  # noqa: E402
import make_odd_goldens as odd  # noqa: E402
import make_small_tokenizer  # noqa: E402

import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # noqa: E402

SPECIAL = mmg.SPECIAL
# (file, width, height): merged grids 2x3 (one window at 112), 2x23, 17x2, 8x8
IMAGES = [("img25_one_84x56.png", 84, 56), ("img25_wide_644x56.png", 644, 56),
          ("img25_tall_56x476.png", 56, 476), ("img25_square_224x224.png", 224, 224)]
ORDER = [0, 1, 2, 3]
N_GREEDY = 24

MODELS = {
    "tiny25-a": dict(
        text=dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2,
                  num_attention_heads=3, num_key_value_heads=1, mrope_section=[4, 6, 6]),
        vision=dict(depth=3, hidden_size=80, num_heads=2, intermediate_size=136, window_size=112,
                    fullatt_block_indexes=[0, 2]),
        tied=False, dtype=torch.bfloat16, shard="200KB", flat=False),
    "tiny25-b": dict(
        text=dict(hidden_size=96, intermediate_size=136, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, mrope_section=[4, 4, 4]),
        vision=dict(depth=4, hidden_size=48, num_heads=3, intermediate_size=88, window_size=56,
                    fullatt_block_indexes=[0, 3]),
        tied=True, dtype=torch.float16, shard=None, flat=True),
}


def flat_config(spec):
    """The published (flat) layout: decoder keys at the top level, rope_scaling with
    mrope_section, vision_config spelled as Qwen/Qwen2.5-VL-7B-Instruct's."""
    t, v = spec["text"], spec["vision"]
    return dict(
        architectures=["Qwen2_5_VLForConditionalGeneration"], model_type="qwen2_5_vl",
        hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"], vocab_size=4096, hidden_act="silu",
        max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1000000.0,
        rope_scaling={"type": "mrope", "mrope_section": t["mrope_section"]},
        tie_word_embeddings=spec["tied"], torch_dtype="float16", use_cache=True,
        vision_config=dict(depth=v["depth"], hidden_act="silu", hidden_size=v["hidden_size"],
                           intermediate_size=v["intermediate_size"], num_heads=v["num_heads"],
                           in_chans=3, out_hidden_size=t["hidden_size"], patch_size=14,
                           spatial_merge_size=2, spatial_patch_size=14,
                           window_size=v["window_size"],
                           fullatt_block_indexes=v["fullatt_block_indexes"],
                           tokens_per_second=2, temporal_patch_size=2),
        **SPECIAL)


def build(name, spec, out_dir):
    t, v = spec["text"], spec["vision"]
    text_config = dict(vocab_size=4096, hidden_act="silu", max_position_embeddings=128000,
                       bos_token_id=SPECIAL["bos_token_id"], eos_token_id=SPECIAL["eos_token_id"],
                       rms_norm_eps=1e-6, rope_theta=1000000.0,
                       rope_scaling={"type": "mrope", "mrope_section": t["mrope_section"]},
                       **{k: x for k, x in t.items() if k != "mrope_section"})
    cfg = Qwen2_5_VLConfig(text_config=text_config,
                           vision_config=dict(out_hidden_size=t["hidden_size"], in_channels=3,
                                              hidden_act="silu", **v),
                           tie_word_embeddings=spec["tied"], **SPECIAL)
    torch.manual_seed(sum(map(ord, name)) + 11)
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32)
    mmg.perturb(model)
    model = model.to(spec["dtype"])
    d = os.path.join(out_dir, name)
    kw = dict(max_shard_size=spec["shard"]) if spec["shard"] else {}
    model.save_pretrained(d, **kw)
    if spec["flat"]:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(flat_config(spec), f, indent=2)
    p = os.path.join(d, "generation_config.json")
    if os.path.exists(p):
        os.remove(p)
    # reload from disk exactly as a user would, in float32, and check the file says what we meant
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    vc = model.config.vision_config
    assert vc.window_size == v["window_size"], vc.window_size
    assert list(vc.fullatt_block_indexes) == v["fullatt_block_indexes"], vc.fullatt_block_indexes
    assert vc.intermediate_size == v["intermediate_size"] and vc.hidden_size == v["hidden_size"]
    assert model.config.tie_word_embeddings == spec["tied"]
    return model, d


def windows_of(model, pixel_values, grid):
    """The window order and boundaries of one image as transformers' tower uses them, read off
    one forward of the tower alone (whatever its version calls the helper that makes them): the
    rows the first block receives are the patch embeddings' merge groups in window order (each
    found by its values among the patch embedding's rows, all distinct), and the boundaries are
    the cu_seqlens a windowed block receives."""
    vis = model.model.visual
    m2 = vis.config.spatial_merge_size ** 2
    got = {}
    full = list(vis.config.fullatt_block_indexes)
    assert 0 in full, "the first block must be a full-attention one (its input is read)"
    windowed = next(i for i in range(len(vis.blocks)) if i not in full)

    def first_block(mod, args, kwargs):
        got["rows"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    def windowed_block(mod, args, kwargs):
        got["cu"] = kwargs.get("cu_seqlens", args[1] if len(args) > 1 else None)

    hooks = [vis.patch_embed.register_forward_hook(
                 lambda mod, i, o: got.__setitem__("raster", o.detach().clone())),
             vis.blocks[0].register_forward_pre_hook(first_block, with_kwargs=True),
             vis.blocks[windowed].register_forward_pre_hook(windowed_block, with_kwargs=True)]
    with torch.no_grad():
        vis(pixel_values, grid_thw=torch.tensor([grid]))
    for h in hooks:
        h.remove()
    raster = got["raster"].reshape(-1, m2 * got["raster"].shape[-1])
    rows = got["rows"].reshape(raster.shape)
    where = {bytes(r.numpy().tobytes()): k for k, r in enumerate(raster)}
    assert len(where) == raster.shape[0], "patch embedding rows are not distinct"
    index = [where[bytes(r.numpy().tobytes())] for r in rows]
    assert sorted(index) == list(range(len(index)))
    assert got.get("cu") is not None, "no cu_seqlens reached a windowed block: " + str(
        [n for n in dir(vis) if "window" in n.lower()])
    seg = []
    for x in got["cu"].tolist():
        if not seg or seg[-1] != int(x):
            seg.append(int(x))
    return dict(index=index, seg=seg)


def windows_for(model, pixel_values, grids):
    """windows_of for each image (its own rows of pixel_values)."""
    out, start = [], 0
    for g in grids:
        n = g[0] * g[1] * g[2]
        out.append(windows_of(model, pixel_values[start:start + n], g))
        start += n
    return out


def request(model, enc, pixel_values, grids):
    ids = odd.prompt_ids(enc, grids)

    def forward(seq):
        x = torch.tensor([seq])
        mm = (x == SPECIAL["image_token_id"]).long()
        with torch.no_grad():
            out = model(input_ids=x, attention_mask=torch.ones_like(x), mm_token_type_ids=mm,
                        pixel_values=pixel_values, image_grid_thw=torch.tensor(grids))
        return out.logits[0].float()

    return ids, forward(ids), mmg.greedy_tokens(forward, ids, N_GREEDY)


def common_fields(name, grids):
    return dict(model=name, transformers=transformers.__version__, torch=torch.__version__,
                prompt=mmg.PROMPT, images=[IMAGES[i][0] for i in ORDER], image_src=ORDER,
                min_pixels=mmg.MIN_PIXELS, max_pixels=mmg.MAX_PIXELS, grids=grids)


def quantized_goldens(model, name, enc, pixel_values, grids, out_dir, table):
    """make_odd_goldens.py's formats on this model: goldens and the bnb tensors."""
    linears = [(n, m) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]
    original = {n: m.weight.detach().clone().to(torch.bfloat16) for n, m in linears}
    for n, m in linears:
        assert torch.equal(original[n].float(), m.weight.detach()), f"{n}: not bf16 values"
    for fmt in odd.FORMATS:
        disk = odd.apply_format(linears, original, fmt, table)
        ids, logits, greedy = request(model, enc, pixel_values, grids)
        g = common_fields(name, grids)
        g.update(weights=fmt, input_ids=ids, argmax_every_position=logits.argmax(-1).tolist(),
                 greedy=greedy, logits_file=f"logits_{name}-{fmt}.f32",
                 note="float32 compute, CPU; quantized Linears from bnb_emulation.py "
                      "(bitsandbytes 0.50.2, bit-exact), dequantized to bf16")
        logits[-1].numpy().astype("<f4").tofile(os.path.join(out_dir, g["logits_file"]))
        with open(os.path.join(out_dir, f"golden_{name}-{fmt}.json"), "w") as f:
            json.dump(g, f)
        if disk:
            save_file(disk, os.path.join(out_dir, f"{name}-bnb-{fmt}.safetensors"),
                      metadata={"format": "pt"})
        print(name, fmt, "linears", len(linears), "greedy", greedy[:8], flush=True)
    with torch.no_grad():
        for n, m in linears:
            m.weight.copy_(original[n].float())


def main():
    tok_src, out_dir = sys.argv[1], sys.argv[2]
    fixtures = sys.argv[3] if len(sys.argv) > 3 else os.path.join(bnb.ROOT, "tests", "fixtures")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    small = os.path.join(out_dir, "small_tokenizer.json")
    with open(small, "w", encoding="utf-8") as f:
        json.dump(make_small_tokenizer.derive(tok_src), f, ensure_ascii=False)
    tok = Tokenizer.from_file(small)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    table = None
    if bnb.check_goldens(os.path.join(fixtures, "bnb_goldens")):
        table = bnb.fdividef_table()
    else:
        print("WARNING: bnb_emulation.py does not reproduce bitsandbytes' goldens: no quantized "
              "goldens made", flush=True)

    pil_images = []
    for k, (fname, w, h) in enumerate(IMAGES):
        path = os.path.join(out_dir, "images", fname)
        mmg.make_image(w, h, k + 5).save(path)
        pil_images.append(Image.open(path).convert("RGB"))
    proc = mmg.ImageProcessor(min_pixels=mmg.MIN_PIXELS, max_pixels=mmg.MAX_PIXELS)
    pv = proc(images=[pil_images[i] for i in ORDER], return_tensors="pt")
    grids = pv["image_grid_thw"].tolist()
    pixel_values = pv["pixel_values"].float()

    for name, spec in MODELS.items():
        model, d = build(name, spec, out_dir)
        proc.save_pretrained(d)
        ids, logits, greedy = request(model, enc, pixel_values, grids)
        pos, delta = mmg.rope_index(model, ids, grids)
        rng = np.random.default_rng(5)
        flat = pixel_values.numpy().reshape(-1)
        samples = [[int(i), float(flat[i])]
                   for i in sorted(rng.choice(flat.size, 256, replace=False).tolist())]
        logits[-1].numpy().astype("<f4").tofile(os.path.join(out_dir, f"logits_{name}.f32"))
        logits.numpy().astype("<f2").tofile(os.path.join(out_dir, f"logits_all_{name}.f16"))
        g = common_fields(name, grids)
        g.update(input_ids=ids, positions=pos, rope_delta=delta,
                 pixel_values_shape=list(pixel_values.shape), pixel_samples=samples,
                 pixel_sum=float(pixel_values.double().sum()),
                 argmax_every_position=logits.argmax(-1).tolist(), greedy=greedy,
                 logits_file=f"logits_{name}.f32", logits_all_file=f"logits_all_{name}.f16",
                 window_size=spec["vision"]["window_size"],
                 windows=windows_for(model, pixel_values, grids),
                 note="float32 compute, CPU; logits_all: every prompt position, float16")
        with open(os.path.join(out_dir, f"golden_{name}.json"), "w") as f:
            json.dump(g, f)
        print(name, "ids", len(ids), "grids", grids, "windows",
              [len(w["seg"]) - 1 for w in g["windows"]], "greedy", greedy, flush=True)
        if name == "tiny25-a" and table is not None:
            quantized_goldens(model, name, enc, pixel_values, grids, out_dir, table)
    os.remove(small)


if __name__ == "__main__":
    main()
