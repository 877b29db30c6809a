#!/usr/bin/env python3
"""Derive tiny-eos from tiny-a: a checkpoint whose greedy answer to the tiny-a golden request is
two tokens and then <|im_end|> (id 4066) as its third generated token; generation that goes on
past it (--max-tokens, --ignore-eos) gets the byte 0x00 (id 188) as the fourth token, so the
text after the end of turn holds a NUL character.

Only lm_head.weight's rows 4066 and 188 change (tiny-a has untied embeddings, so the input
embeddings stay as they were, and with them every hidden state). A logit is the dot product of
a row with the final normed hidden state, so each row is solved for from the hidden states
h1..h4 that pick generated tokens 1..4: the least-norm row w with w.hk = (best other logit at
step k) - MARGIN where the token must lose and + MARGIN where it must win:
    row 4066 wins step 3 (tiny-a picks 693, 915, 1543), loses steps 1, 2;
    row 188 wins step 4 (after 4066 is fed back), loses steps 1, 2, 3.
The tiny-a logits are ~0.7 apart by ~0.02, so MARGIN = 1 is far beyond any float32
summation-order difference.

The hidden states are recovered from the teacher-forced logits of the four positions (logits =
W h with the bf16 lm_head W of full column rank, so h = lstsq(W, logits)), which vlrun's
`logits` command writes when the golden prompt is followed by the first three tokens (two of the
answer and <|im_end|>):
    vlrun logits --backend cpu --model tests/fixtures/models/tiny-a \\
        --tokenizer .cache/tokenizer/small_tokenizer.json IMAGES... \\
        --prompt "$PROMPT<|im_end|>\\n<|im_start|>assistant\\nReID<|im_end|>" \\
        --out L.f32 --ids-out IDS.i32
(the prompt text's added tokens split it, so the ids are the golden ids + 693 915 4066 + more;
the script checks that). transformers on the result (make_eos_golden.py, on the device) is the
independent check.

The other shards are copied unchanged: git stores identical files once, so the fixture costs
one new 786 KB shard.

usage: make_eos_checkpoint.py TINY_A_DIR GOLDEN_JSON LOGITS_F32 IDS_I32 OUT_DIR
(run with a python3 that has numpy)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

EOS = 4066
NUL = 188  # the byte-level token of byte 0x00
MARGIN = 1.0
SHARD = "model-00001-of-00008.safetensors"  # holds lm_head.weight alone in tiny-a


def bf16_to_f32(raw):
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """Round to nearest even, as torch's .to(torch.bfloat16) does (finite values)."""
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def read_shard(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header_bytes = f.read(n)
        data = bytearray(f.read())
    return header_bytes, json.loads(header_bytes), data


def main():
    src, golden, logits_path, ids_path, out = sys.argv[1:6]
    g = json.load(open(golden))
    n0, want = len(g["input_ids"]), g["greedy"][:3]
    ids = np.fromfile(ids_path, "<i4").tolist()
    assert ids[: n0 + 3] == g["input_ids"] + want[:2] + [EOS], "logits not of golden ids + 3"
    logits = np.fromfile(logits_path, "<f4").reshape(len(ids), -1).astype(np.float64)
    rows = logits[n0 - 1 : n0 + 3]  # the positions that pick generated tokens 1..4
    assert rows[:3].argmax(1).tolist() == want, "the logits do not pick the golden tokens"

    header_bytes, header, data = read_shard(os.path.join(src, SHARD))
    meta = header["lm_head.weight"]
    assert meta["dtype"] == "BF16"
    vocab, hidden = meta["shape"]
    lo, hi = meta["data_offsets"]
    W = bf16_to_f32(np.frombuffer(bytes(data[lo:hi]), "<u2").reshape(vocab, hidden))
    H = np.linalg.lstsq(W.astype(np.float64), rows.T, rcond=None)[0].T  # [4, hidden]
    new = {}
    for tok, win in ((EOS, 2), (NUL, 3)):
        steps = win + 1
        others = rows[:steps].copy()
        for t, w16 in new.items():
            others[:, t] = H[:steps] @ bf16_to_f32(w16).astype(np.float64)
        others[:, tok] = -np.inf
        best = others.max(1)
        target = best + np.where(np.arange(steps) == win, MARGIN, -MARGIN)
        Hs = H[:steps]
        new[tok] = f32_to_bf16(Hs.T @ np.linalg.solve(Hs @ Hs.T, target))
        got = Hs @ bf16_to_f32(new[tok]).astype(np.float64)
        print("row %d logits at steps 1..%d: %s (best other: %s)" % (tok, steps, got, best))
        assert np.all(np.where(np.arange(steps) == win, got - best, best - got) > 0.5)

    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if name != SHARD:
            shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    for tok, w16 in new.items():
        off = lo + tok * hidden * 2
        data[off : off + hidden * 2] = w16.astype("<u2").tobytes()
    with open(os.path.join(out, SHARD), "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)) + header_bytes + bytes(data))


if __name__ == "__main__":
    main()
