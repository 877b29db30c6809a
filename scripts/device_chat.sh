#!/usr/bin/env bash
# On the GPU machine (torch, transformers 5.17, tokenizers, Pillow, jinja2): the two-turn chat
# golden of tests/cli_chat.sh, into $OUT/golden_chat_tiny-a.json (commit it as
# tests/fixtures/models/golden_chat_tiny-a.json). Needs .cache/tokenizer/small_tokenizer.json.
set -uo pipefail
out=${OUT:-/tmp/vlrun-chat-golden}
mkdir -p "$out"
python3 tests/reference/make_chat_golden.py .cache/tokenizer/small_tokenizer.json tests/fixtures \
    "$out/golden_chat_tiny-a.json" >"$out/chat_golden.log" 2>&1
rc=$?
tail -20 "$out/chat_golden.log"
exit $rc
