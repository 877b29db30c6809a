#!/usr/bin/env python3
"""Repetition-penalty goldens: transformers' generate on tiny-a (run where torch + transformers
5.17 are: the GPU machine; the model runs on the CPU in float32, as make_model_goldens.py).

The input is tiny-a's golden request (tests/fixtures/models/golden_tiny-a.json: its prompt ids,
its four images, min/max pixels). For each penalty P in 1.05 (the Qwen2-VL Instruct models'
generation_config value) and 1.5 (strong enough to change tokens early), greedy decoding with
repetition_penalty=P and 24 new tokens:
  generate: model.generate(do_sample=False, repetition_penalty=P, max_new_tokens=24), the
            tokens after the prompt (fewer if it met the end-of-turn token first);
  loop:     a cache-free loop over 24 steps applying transformers' own
            RepetitionPenaltyLogitsProcessor(P) to the float32 scores of the last position
            over the whole sequence (prompt included), then argmax (no EOS stop);
and checks that generate's tokens are the loop's first ones. Also generate without a penalty,
which must equal golden_tiny-a.json's greedy tokens.

usage: make_penalty_goldens.py FIXTURES_DIR OUT_JSON
(FIXTURES_DIR: tests/fixtures; writes OUT_JSON, normally
tests/fixtures/models/golden_penalty_tiny-a.json)
"""
import json
import os
import sys

import torch
from PIL import Image

import transformers
from transformers import Qwen2VLForConditionalGeneration
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

try:
    from transformers import Qwen2VLImageProcessorPil as ImageProcessor
except ImportError:  # older layouts
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil as ImageProcessor)

PENALTIES = [1.05, 1.5]
NEW_TOKENS = 24


def main():
    fix, out_json = sys.argv[1], sys.argv[2]
    models = os.path.join(fix, "models")
    g = json.load(open(os.path.join(models, "golden_tiny-a.json")))
    ids = g["input_ids"]
    images = [Image.open(os.path.join(models, "images", f)).convert("RGB") for f in g["images"]]
    proc = ImageProcessor(min_pixels=g["min_pixels"], max_pixels=g["max_pixels"])
    pv = proc(images=images, return_tensors="pt")
    assert pv["image_grid_thw"].tolist() == g["grids"], "grids differ from the tiny-a golden"
    model = Qwen2VLForConditionalGeneration.from_pretrained(
        os.path.join(models, "tiny-a"), dtype=torch.float32).eval()
    image_id = model.config.image_token_id
    x = torch.tensor([ids])
    inputs = dict(input_ids=x, attention_mask=torch.ones_like(x),
                  pixel_values=pv["pixel_values"].float(), image_grid_thw=pv["image_grid_thw"])
    mm = dict(mm_token_type_ids=(x == image_id).long())

    def generate(penalty):
        kw = dict(do_sample=False, max_new_tokens=NEW_TOKENS, repetition_penalty=penalty)
        try:
            with torch.no_grad():
                out = model.generate(**inputs, **mm, **kw)
        except (TypeError, ValueError) as e:  # a version that does not take mm_token_type_ids
            print("generate without mm_token_type_ids:", repr(e), flush=True)
            with torch.no_grad():
                out = model.generate(**inputs, **kw)
        return out[0, len(ids):].tolist()

    def loop(penalty):
        proc_pen = RepetitionPenaltyLogitsProcessor(penalty=penalty)
        seq = list(ids)
        for _ in range(NEW_TOKENS):
            s = torch.tensor([seq])
            with torch.no_grad():
                logits = model(input_ids=s, attention_mask=torch.ones_like(s),
                               mm_token_type_ids=(s == image_id).long(),
                               pixel_values=inputs["pixel_values"],
                               image_grid_thw=inputs["image_grid_thw"]).logits
            scores = logits[:, -1, :].float()
            scores = proc_pen(s, scores)
            seq.append(int(scores[0].argmax()))
        return seq[len(ids):]

    plain = generate(1.0)
    print("no penalty: generate", plain, "golden", g["greedy"], flush=True)
    runs = {}
    ok = plain == g["greedy"][:len(plain)]
    for p in PENALTIES:
        gen, lp = generate(p), loop(p)
        agree = gen == lp[:len(gen)]
        ok = ok and agree
        print(f"penalty {p}: generate {gen}\n  loop {lp}\n  agree {agree}", flush=True)
        runs[str(p)] = dict(penalty=p, generate=gen, loop=lp,
                            tokens=gen if len(gen) == NEW_TOKENS else lp)
    doc = dict(model="tiny-a", request="golden_tiny-a.json", transformers=transformers.__version__,
               torch=torch.__version__, new_tokens=NEW_TOKENS, no_penalty_generate=plain,
               runs=runs, generate_agrees_with_loop=ok,
               note="float32 compute, CPU; greedy (do_sample=False) with repetition_penalty")
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
