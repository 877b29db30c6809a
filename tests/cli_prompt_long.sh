#!/usr/bin/env bash
# A 200 KB prompt (a 200,000-dash line and a question: 3196 tokens with the tiny-a golden
# images), past the 128 KiB a single argv string may hold, from a file (--prompt-file) and from
# standard input (--prompt -), through tiny-eos on the CPU backend: the prompt's token count and
# the first generated token are transformers' (golden_tiny-eos.json, make_eos_golden.py; the
# token is compared when its margin over the second is >= 1e-3).
# Labelled slow (tests/CMakeLists.txt): the 3.2k-token prefill takes seconds in a Release build,
# minutes under ASan; cli_generation.sh reads the same file under ASan up to the token count.
set -u
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
GE=$FIX/models/golden_tiny-eos.json
[ -f "$GE" ] || { echo "SKIP: $GE absent"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
golden_args "$FIX/models/golden_tiny-a.json" "$FIX"
python3 - "$tmp/long.txt" "$GE" <<'PY'
import json, sys
e = json.load(open(sys.argv[2]))["long"]
text = "-" * e["dashes"] + e["tail"]
assert len(text.encode()) == e["bytes"] >= 200000
open(sys.argv[1], "w").write(text)
PY
pass=0 fail=0
run=(--backend cpu --model "$FIX/models/tiny-eos" --tokenizer "$TOK" "${args[@]}" --max-tokens 1 --json)
"$VLRUN" "${run[@]}" --prompt-file "$tmp/long.txt" >"$tmp/file.json" 2>"$tmp/err"
"$VLRUN" "${run[@]}" --prompt - <"$tmp/long.txt" >"$tmp/stdin.json" 2>>"$tmp/err"
for src in file stdin; do
    if python3 - "$tmp/$src.json" "$GE" "$src" <<'PY'; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    print("FAIL: %s: no JSON report" % sys.argv[3]); sys.exit(1)
e = json.load(open(sys.argv[2]))["long"]
ok = r["prompt_tokens"] == e["n_ids"] and (e["margin"] < 1e-3 or r["tokens"][0] == e["first_token"])
print(sys.argv[3], "prompt_tokens", r["prompt_tokens"], "first token", r["tokens"][0],
      "OK" if ok else "MISMATCH want %d, %d" % (e["n_ids"], e["first_token"]))
sys.exit(0 if ok else 1)
PY
done
[ -s "$tmp/err" ] && head -c 400 "$tmp/err"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
