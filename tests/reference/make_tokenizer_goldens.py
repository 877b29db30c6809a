#!/usr/bin/env python3
"""make_tokenizer_goldens.py: token ids from Hugging Face `tokenizers` for the test texts.

Reads the texts of tests/fixtures/tokenizer/cases.json, encodes each one with
tokenizers.Tokenizer.from_file(TOKENIZER_JSON).encode(text, add_special_tokens=False) and writes
OUT_JSON (tests/fixtures/tokenizer/goldens.json) with, per case, its name, text, ids and the
decode of those ids (skip_special_tokens=False), plus the tokenizers version and the sha256 of
the tokenizer.json used. tests/test_tokenizer.c requires the C tokenizer to give exactly these
ids and this decoded text.

    python3 tests/reference/make_tokenizer_goldens.py TOKENIZER_JSON CASES_JSON OUT_JSON

Needs only the `tokenizers` package (0.23 was the reference). Leaves out: transformers'
AutoTokenizer (same Rust core; the chat template is tested elsewhere).
"""
import hashlib
import json
import sys

import tokenizers


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: make_tokenizer_goldens.py TOKENIZER_JSON CASES_JSON OUT_JSON")
    tok_path, cases_path, out_path = sys.argv[1:]
    with open(tok_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    tok = tokenizers.Tokenizer.from_file(tok_path)
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    lines = []
    for case in cases:
        ids = tok.encode(case["text"], add_special_tokens=False).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        entry = {"name": case["name"], "text": case["text"], "ids": ids, "decoded": decoded}
        lines.append("  " + json.dumps(entry, ensure_ascii=True))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(' "generator": %s,\n' % json.dumps("tokenizers %s" % tokenizers.__version__))
        f.write(' "tokenizer_json_sha256": %s,\n' % json.dumps(sha))
        f.write(' "cases": [\n' + ",\n".join(lines) + "\n ]\n}\n")
    print("make_tokenizer_goldens: %d cases, tokenizers %s -> %s"
          % (len(lines), tokenizers.__version__, out_path), file=sys.stderr)


if __name__ == "__main__":
    main()
