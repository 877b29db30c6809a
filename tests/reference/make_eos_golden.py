#!/usr/bin/env python3
"""Goldens of tiny-eos (make_eos_checkpoint.py) from transformers, for tests/cli_generation.sh.
Run where torch + transformers are (the GPU machine; the model runs on the CPU in float32, as in
make_model_goldens.py), with the tiny-a golden request (four images, its prompt):

  generate   model.generate, greedy, stopping on eos_token_id [<|im_end|>, <|endoftext|>] (the
             published Qwen2-VL generation_config's pair): the generated ids, and the text
             tokenizer.decode(ids, skip_special_tokens=True) gives;
  greedy_8   8 greedy tokens from a cache-free loop that never stops (what --max-tokens 8
             --ignore-eos generates), and their decoded text (it holds a NUL: token 188);
  system     the ids of the chat template with a system message (--system), and 4 greedy tokens;
  long       a 200 KB prompt (a 200,000-dash line and a question): its byte length, the ids'
             count and FNV-1a 64 hash (int32 little-endian, as `vlrun logits` prints it), and the
             first greedy token with its margin over the second.
The template text is Qwen2-VL's chat template written out (as make_model_goldens.py does), with
the system message in place of the default one.

usage: make_eos_golden.py FIXTURES_DIR SMALL_TOKENIZER_JSON OUT_JSON
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer

import transformers
from transformers import Qwen2VLForConditionalGeneration

try:
    from transformers import Qwen2VLImageProcessorPil as ImageProcessor
except ImportError:  # older layouts
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil as ImageProcessor)

IMAGE_ID, IM_END, ENDOFTEXT = 4076, 4066, 4064
DEFAULT_SYSTEM = "You are a helpful assistant."
SYSTEM = "You answer in one word.\nNo more than that."
LONG_PROMPT = "-" * 200000 + "\nHow long is this line?"


def template(system, grids, text):
    return ("<|im_start|>system\n" + system + "<|im_end|>\n<|im_start|>user\n"
            + "".join("<|vision_start|>" + "<|image_pad|>" * (t * h * w // 4) + "<|vision_end|>"
                      for t, h, w in grids)
            + text + "<|im_end|>\n<|im_start|>assistant\n")


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for b in np.asarray(ids, dtype="<i4").tobytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main():
    fix, tok_path, out = sys.argv[1:4]
    g = json.load(open(os.path.join(fix, "models", "golden_tiny-a.json")))
    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    dec = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
    images = [Image.open(os.path.join(fix, "models", "images", f)).convert("RGB")
              for f in g["images"]]
    proc = ImageProcessor(min_pixels=g["min_pixels"], max_pixels=g["max_pixels"])
    pv = proc(images=images, return_tensors="pt")
    grids = pv["image_grid_thw"].tolist()
    pixel_values = pv["pixel_values"].float()
    ids = enc(template(DEFAULT_SYSTEM, grids, g["prompt"]))
    assert ids == g["input_ids"], "the template ids differ from golden_tiny-a's"
    model = Qwen2VLForConditionalGeneration.from_pretrained(
        os.path.join(fix, "models", "tiny-eos"), dtype=torch.float32).eval()

    def inputs(seq):
        x = torch.tensor([seq])
        return dict(input_ids=x, attention_mask=torch.ones_like(x),
                    mm_token_type_ids=(x == IMAGE_ID).long(), pixel_values=pixel_values,
                    image_grid_thw=torch.tensor(grids))

    def greedy(seq, n):
        seq, outs = list(seq), []
        for _ in range(n):
            with torch.no_grad():
                nxt = int(model(**inputs(seq)).logits[0, -1].argmax())
            outs.append(nxt)
            seq.append(nxt)
        return outs

    kw = dict(max_new_tokens=32, do_sample=False, eos_token_id=[IM_END, ENDOFTEXT],
              pad_token_id=ENDOFTEXT, repetition_penalty=1.0)
    with torch.no_grad():
        try:
            gen = model.generate(**inputs(ids), **kw)
        except (TypeError, ValueError) as e:  # a version without mm_token_type_ids in generate
            print("generate with mm_token_type_ids failed:", repr(e), flush=True)
            a = inputs(ids)
            a.pop("mm_token_type_ids")
            gen = model.generate(**a, **kw)
    generated = gen[0, len(ids):].tolist()
    answer = generated[:generated.index(IM_END)] if IM_END in generated else generated
    g8 = greedy(ids, 8)

    sys_ids = enc(template(SYSTEM, grids, g["prompt"]))
    long_ids = enc(template(DEFAULT_SYSTEM, grids, LONG_PROMPT))
    with torch.no_grad():
        last = model(**inputs(long_ids)).logits[0, -1].double()
    top2 = torch.topk(last, 2)
    res = dict(
        model="tiny-eos", transformers=transformers.__version__, torch=torch.__version__,
        note="float32 compute, CPU; the tiny-a golden request (images, prompt)",
        generate=dict(eos_token_id=[IM_END, ENDOFTEXT], ids=generated, text=dec(answer)),
        greedy_8=dict(ids=g8, text=dec(g8)),
        system=dict(system=SYSTEM, input_ids=sys_ids, greedy=greedy(sys_ids, 4)),
        long=dict(dashes=200000, tail=LONG_PROMPT[200000:], bytes=len(LONG_PROMPT.encode()),
                  n_ids=len(long_ids), ids_fnv1a64=fnv1a64(long_ids),
                  first_token=int(top2.indices[0]),
                  margin=float(top2.values[0] - top2.values[1])))
    with open(out, "w") as f:
        json.dump(res, f)
    print(json.dumps({k: (v if k != "system" else {"greedy": v["greedy"]}) for k, v in res.items()}))


if __name__ == "__main__":
    main()
