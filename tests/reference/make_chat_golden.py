#!/usr/bin/env python3
"""The golden of a two-turn conversation on tiny-a (tests/cli_chat.sh compares `vlrun --chat`
with it). Run where torch + transformers 5.17 are (the GPU machine; the model runs on the CPU
in float32, as make_model_goldens.py does).

The conversation goes through the Qwen2-VL chat template (rendered with jinja2 the way
transformers' apply_chat_template renders it), the processor's pad expansion and the
tokenizer, turn by turn:
  turn 1: [user: image A, text 1]               -> ids1; greedy answer gen1 (cache-free loop)
  turn 2: [user 1, assistant: gen1, user: image C, text 2]
The assistant's answer enters turn 2 as the ids transformers generated, never as re-tokenized
text: the template is rendered with a placeholder answer, the text before it must be turn 1's
prompt exactly, and the text after it is expanded and tokenized on its own (it starts with
<|im_end|>, an added token, so this split is where the tokenizer splits anyway). Answers stop at
<|im_end|> / <|endoftext|> or after MAX_TOKENS tokens.

usage: make_chat_golden.py SMALL_TOKENIZER_JSON FIXTURES_DIR OUT_JSON [--dry]
  --dry: render the template texts only (no torch), to look at them.
"""
import json
import os
import sys

import jinja2

# Qwen2-VL-*-Instruct's chat template (images and text; videos left out), written out.
TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

TURNS = [("img_a_56x84.png", "What is in this picture?\nAnswer in a few words."),
         ("img_c_45x130.png", "And in this one?\tCompare  them.")]
MAX_TOKENS = 8
MIN_PIXELS, MAX_PIXELS = 3136, 12845056
IMAGE_PAD, IM_END, END_OF_TEXT = 4076, 4066, 4064
PLACEHOLDER = "@@ANSWER@@"


def render(messages, gen_prompt):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers sets it
    return env.from_string(TEMPLATE).render(messages=messages, add_generation_prompt=gen_prompt)


def user(i):
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": TURNS[i][1]}]}


def texts():
    """Turn 1's prompt, and turn 2's text after the placeholder answer."""
    t1 = render([user(0)], True)
    t2 = render([user(0), {"role": "assistant", "content": PLACEHOLDER}, user(1)], True)
    assert t2.startswith(t1 + PLACEHOLDER), "turn 2 does not extend turn 1"
    return t1, t2[len(t1) + len(PLACEHOLDER):]


def expand(text, grids):
    """The processor's expansion: each <|image_pad|> becomes t*h*w/4 pads, in image order."""
    parts = text.split("<|image_pad|>")
    assert len(parts) == len(grids) + 1
    out = parts[0]
    for g, p in zip(grids, parts[1:]):
        out += "<|image_pad|>" * (g[0] * g[1] * g[2] // 4) + p
    return out


def main():
    tok_path, fix, out_path = sys.argv[1:4]
    t1, rest = texts()
    if "--dry" in sys.argv:
        print(repr(t1))
        print(repr(rest))
        return
    import torch
    import transformers
    from PIL import Image
    from tokenizers import Tokenizer
    from transformers import Qwen2VLForConditionalGeneration
    try:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as ImageProcessor)

    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    model = Qwen2VLForConditionalGeneration.from_pretrained(
        os.path.join(fix, "models", "tiny-a"), dtype=torch.float32).eval()
    proc = ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    pil = [Image.open(os.path.join(fix, "models", "images", f)).convert("RGB") for f, _ in TURNS]

    def greedy(ids, n_images):
        pv = proc(images=pil[:n_images], return_tensors="pt")
        grids = pv["image_grid_thw"]
        seq, gen = list(ids), []
        for _ in range(MAX_TOKENS):
            x = torch.tensor([seq])
            with torch.no_grad():
                logits = model(input_ids=x, attention_mask=torch.ones_like(x),
                               mm_token_type_ids=(x == IMAGE_PAD).long(),
                               pixel_values=pv["pixel_values"].float(),
                               image_grid_thw=grids).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt in (IM_END, END_OF_TEXT):
                break
            gen.append(nxt)
            seq.append(nxt)
        return gen, grids.tolist()

    grids = proc(images=pil, return_tensors="pt")["image_grid_thw"].tolist()
    ids1 = enc(expand(t1, grids[:1]))
    gen1, _ = greedy(ids1, 1)
    ids2 = ids1 + gen1 + enc(expand(rest, grids[1:]))
    gen2, _ = greedy(ids2, 2)
    conversation = ids2 + gen2 + enc("<|im_end|>\n")
    g = dict(model="tiny-a", transformers=transformers.__version__, torch=torch.__version__,
             images=[f for f, _ in TURNS], texts=[t for _, t in TURNS], max_tokens=MAX_TOKENS,
             grids=grids, turn1_ids=ids1, answer1=gen1, turn2_ids=ids2, answer2=gen2,
             conversation=conversation, template_turn1=t1, template_rest=rest,
             note="float32 compute, CPU; cache-free greedy loop per turn")
    with open(out_path, "w") as f:
        json.dump(g, f)
    print("answer1", gen1, "answer2", gen2, "conversation", len(conversation), flush=True)


if __name__ == "__main__":
    main()
