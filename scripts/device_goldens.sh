#!/usr/bin/env bash
# On the GPU machine (torch, transformers 5.17, tokenizers, Pillow): regenerate every golden the
# tests compare with, into $OUT/goldens.tgz (unpack over tests/fixtures/; odd/ holds the
# odd-width quantization goldens: its bnb_odd_goldens/ belongs in tests/fixtures/, the rest in
# tests/fixtures/models/). Needs the Qwen2
# tokenizer at .cache/tokenizer/tokenizer.json (scripts/fetch_tokenizer.sh; carry .cache).
set -uo pipefail
out=${OUT:-/tmp/vlrun-goldens}
mkdir -p "$out"
w=$(mktemp -d)
tok=.cache/tokenizer/tokenizer.json
mkdir -p "$w/tokenizer" "$w/images" "$w/models"
python3 tests/reference/make_tokenizer_goldens.py "$tok" tests/fixtures/tokenizer/cases.json \
    "$w/tokenizer/goldens.json" >"$w/tokenizer.log" 2>&1 || echo "tokenizer goldens failed"
python3 tests/reference/make_preprocess_goldens.py "$w/images" >"$w/images.log" 2>&1 ||
    echo "preprocess goldens failed"
python3 tests/reference/make_model_goldens.py "$tok" "$w/models" >"$w/models.log" 2>&1 ||
    echo "model goldens failed"
python3 tests/reference/make_small_tokenizer.py "$tok" "$w/small_tokenizer.json" >/dev/null &&
    python3 tests/reference/make_odd_goldens.py "$w/small_tokenizer.json" "$w/odd" \
        tests/fixtures >"$w/odd.log" 2>&1 || echo "odd-width quantization goldens failed"
python3 tests/reference/check_decode_fixtures.py >"$w/decode_check.log" 2>&1 ||
    echo "the decode fixtures differ under this Pillow (see decode_check.log)"
tail -5 "$w"/*.log
tar czf "$out/goldens.tgz" -C "$w" .
