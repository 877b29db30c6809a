#!/usr/bin/env bash
# The commands that pass run options through (logits, plan) hand a run option's value over
# whatever it looks like: `--system --out` is the system text "--out", not logits' --out;
# `--prompt --gpu` is the prompt "--gpu", not plan's --gpu.
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
IMG=$FIX/models/images/img_a_56x84.png
M=(--backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK")
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$VLRUN" logits "$IMG" "${M[@]}" --system --out --out "$tmp/x.f32" >"$tmp/l.json" 2>"$tmp/l.err"
check "logits --system --out: exit 0" '[ $? -eq 0 ]'
"$VLRUN" "$IMG" "${M[@]}" --system --out --max-tokens 1 --json >"$tmp/r.json" 2>/dev/null
"$VLRUN" "$IMG" "${M[@]}" --max-tokens 1 --json >"$tmp/r0.json" 2>/dev/null
py='import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])'
lp=$(python3 -c "$py" "$tmp/l.json" positions)
rp=$(python3 -c "$py" "$tmp/r.json" prompt_tokens)
r0=$(python3 -c "$py" "$tmp/r0.json" prompt_tokens)
check "logits saw the system text '--out' ($lp positions = vlrun's $rp, default system $r0)" \
    '[ -s "$tmp/x.f32" ] && [ "$lp" = "$rp" ] && [ "$rp" != "$r0" ]'

cfg=$FIX/models/tiny-a/config.json
"$VLRUN" plan --config "$cfg" --tokenizer "$TOK" --prompt --gpu --gpu A10 "$IMG" --json \
    >"$tmp/p.json" 2>"$tmp/p.err"
check "plan --prompt --gpu: exit 0 ($(head -c 200 "$tmp/p.err"))" '[ $? -eq 0 ]'
"$VLRUN" plan --config "$cfg" --tokenizer "$TOK" --gpu A10 "$IMG" --json >"$tmp/p0.json" 2>/dev/null
check "plan counted the prompt '--gpu', not the default" '! cmp -s "$tmp/p.json" "$tmp/p0.json"'
[ $fail -eq 0 ]
