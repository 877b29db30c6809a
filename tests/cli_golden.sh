#!/usr/bin/env bash
# The README's main command on the CPU backend reproduces transformers end to end:
#   vlrun --backend cpu --model tiny-a IMG... --prompt "..." --max-tokens 24 --greedy --json
# must report the golden prompt length and the 24 greedy tokens of make_model_goldens.py.
set -u
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
pass=0 fail=0 skip=0
for name in tiny-a tiny-b; do
    g=$FIX/models/golden_$name.json
    if [ ! -f "$g" ]; then skip=$((skip + 1)); echo "SKIP: $g absent"; continue; fi
    golden_args "$g" "$FIX"
    out=$("$VLRUN" --backend cpu --model "$FIX/models/$name" --tokenizer "$TOK" "${args[@]}" \
        --prompt "$prompt" --max-tokens 24 --greedy --json 2>/dev/null)
    if python3 -c '
import json, sys
g = json.load(open(sys.argv[1])); r = json.loads(sys.argv[2])
ok = r["tokens"] == g["greedy"] and r["prompt_tokens"] == len(g["input_ids"]) and r["generated_tokens"] == 24
print(sys.argv[3], "tokens", r["tokens"][:8], "...", "OK" if ok else "MISMATCH want %s" % g["greedy"][:8])
sys.exit(0 if ok else 1)' "$g" "$out" "$name"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
