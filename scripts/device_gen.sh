#!/usr/bin/env bash
# device_gen.sh: the tiny-eos goldens on the device machine (transformers + torch there).
# From the lead's checkout, with the worktree copied to .devcarry/gen (see the brief's device
# notes) and .cache carried:
#   cd .devcarry/gen && ln -sfn ../../.deps .deps && ln -sfn ../../.cache .cache && bash scripts/device_gen.sh
# Writes $OUT/golden_tiny-eos.json (copy it to tests/fixtures/models/) and $OUT/eos_golden.log.
set -eu
OUT=${OUT:?}
python3 tests/reference/make_eos_golden.py tests/fixtures .cache/tokenizer/small_tokenizer.json \
    "$OUT/golden_tiny-eos.json" >"$OUT/eos_golden.log" 2>&1 || { tail -30 "$OUT/eos_golden.log"; exit 1; }
tail -5 "$OUT/eos_golden.log"
