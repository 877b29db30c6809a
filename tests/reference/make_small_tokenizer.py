#!/usr/bin/env python3
"""Derive a small-vocabulary tokenizer.json from the Qwen2 one, for the tiny test models.

The tiny golden checkpoints have a vocabulary of 4096 rows, so they cannot use Qwen2's 151,643
tokens. This keeps the first 4064 vocabulary entries (the 256 byte symbols and the earliest
merges), every merge whose two parts and result are kept, and the Qwen2 added tokens
(<|endoftext|> ... </think>) renumbered from 4064 on in their original order. Everything else
(normalizer, pre-tokenizer, decoder) is unchanged, so the same code paths run.

Deterministic and stdlib-only: CI regenerates the same file from the pinned npm tokenizer
(scripts/setup.sh), and the golden scripts on the device do the same, so the derived file is
never committed.

usage: make_small_tokenizer.py QWEN_TOKENIZER_JSON OUT_JSON
"""
import json
import sys

KEEP = 4064


def derive(src):
    t = json.load(open(src, encoding="utf-8"))
    vocab = {s: i for s, i in t["model"]["vocab"].items() if i < KEEP}
    merges = []
    for m in t["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append([a, b])
    added = []
    for k, tok in enumerate(sorted(t["added_tokens"], key=lambda x: x["id"])):
        tok = dict(tok)
        tok["id"] = KEEP + k
        added.append(tok)
    t["added_tokens"] = added
    t["model"]["vocab"] = vocab
    t["model"]["merges"] = merges
    return t


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    t = derive(sys.argv[1])
    with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False)
    import os
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])


if __name__ == "__main__":
    main()
