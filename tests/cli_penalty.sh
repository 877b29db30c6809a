#!/usr/bin/env bash
# --repetition-penalty against transformers' generate (tests/reference/make_penalty_goldens.py,
# tiny-a's golden request, greedy, 24 tokens), and where its default comes from:
#   - penalties 1.05 and 1.5 give generate's tokens, on the device path (decode on the backend)
#     and on the host path (--temperature 1 --top-k 1: top-k sampling on the host, the argmax);
#     1.5 differs from the no-penalty golden, --repetition-penalty 1 gives the no-penalty golden;
#   - a generation_config.json in a copy of tiny-a sets the default (1.5 -> 1.5's tokens), the
#     option overrides it (1 -> no-penalty tokens; 1.05 -> 1.05's), --random-weights ignores it;
#     its eos_token_id list ends a --stop-at-eos run;
#   - bad option values and bad generation_config.json files end in one error line.
# VL_PENALTY_BACKEND=cuda runs the golden checks on the CUDA backend (the device script).
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
BE=${VL_PENALTY_BACKEND:-cpu}
source "$(dirname "$0")/golden_args.sh"
G=$FIX/models/golden_penalty_tiny-a.json
A=$FIX/models/golden_tiny-a.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
[ -f "$G" ] || { echo "SKIP: $G absent"; exit 77; }
golden_args "$A" "$FIX"

# run MODEL_DIR ARGS...: vlrun --json on the golden request; the report in $tmp/out.json (none
# when the run fails: expect then fails)
run() {
    local dir=$1; shift
    rm -f "$tmp/out.json"
    "$VLRUN" --backend "$BE" --model "$dir" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt" \
        --max-tokens 24 --json "$@" >"$tmp/out.json" 2>"$tmp/err"
}
# expect WHAT WANT_TOKENS_EXPR [PENALTY]: the last report's tokens equal the golden list the
# Python expression names (g: penalty goldens, a: tiny-a goldens) and its repetition_penalty
expect() {
    local what=$1 want=$2 pen=${3:-}
    if python3 - "$G" "$A" "$tmp/out.json" "$want" "$pen" <<'PY'; then ok; else bad "$what: $(head -c 300 "$tmp/err")"; fi
import json, sys
g, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = json.load(open(sys.argv[3]))
want = eval(sys.argv[4])
got = r["tokens"]
good = got == want
if sys.argv[5]:
    good = good and abs(r["options"]["repetition_penalty"] - float(sys.argv[5])) < 1e-6
print(("ok  " if good else "BAD ") + sys.argv[4], got if not good else "", "want", want if not good else "",
      "penalty", r["options"]["repetition_penalty"])
sys.exit(0 if good else 1)
PY
}

tiny=$(cd "$FIX/models/tiny-a" && pwd)
python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); a=json.load(open(sys.argv[2]))
sys.exit(0 if g["runs"]["1.5"]["tokens"] != a["greedy"] else 1)' "$G" "$A" ||
    bad "the 1.5 golden does not differ from the no-penalty golden: the test would prove nothing"

run "$tiny" --greedy --repetition-penalty 1.05; expect "1.05" 'g["runs"]["1.05"]["tokens"]' 1.05
run "$tiny" --greedy --repetition-penalty 1.5; expect "1.5" 'g["runs"]["1.5"]["tokens"]' 1.5
run "$tiny" --greedy --repetition-penalty 1; expect "off" 'a["greedy"]' 1
run "$tiny" --greedy; expect "no file: off" 'a["greedy"]' 1
# the host path: top-k 1 keeps the argmax
run "$tiny" --temperature 1 --top-k 1 --repetition-penalty 1.5; expect "host 1.5" 'g["runs"]["1.5"]["tokens"]' 1.5
run "$tiny" --temperature 1 --top-k 1 --repetition-penalty 1.05; expect "host 1.05" 'g["runs"]["1.05"]["tokens"]' 1.05

# a copy of tiny-a with a generation_config.json (copied: the loader refuses links out of it)
copy=$tmp/tiny-a-gen
mkdir -p "$copy"
cp "$tiny"/* "$copy/"
echo '{"repetition_penalty": 1.5, "eos_token_id": [4066, 4064], "top_k": 1, "top_p": 0.001,
  "temperature": 0.01, "do_sample": true, "bos_token_id": 4064, "pad_token_id": null}' \
    >"$copy/generation_config.json"
run "$copy" --greedy; expect "file 1.5" 'g["runs"]["1.5"]["tokens"]' 1.5
run "$copy" --greedy --repetition-penalty 1; expect "file, option 1" 'a["greedy"]' 1
run "$copy" --greedy --repetition-penalty 1.05; expect "file, option 1.05" 'g["runs"]["1.05"]["tokens"]' 1.05
run "$copy" --random-weights --max-tokens 4; expect "random weights ignore the file" 'r["tokens"]' 1

# the file's eos_token_id list ends a --stop-at-eos run (the no-penalty run's 2nd token)
second=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["greedy"][1])' "$A")
echo "{\"eos_token_id\": [$second]}" >"$copy/generation_config.json"
run "$copy" --greedy --stop-at-eos; expect "eos list" 'a["greedy"][:2]' 1

[ "$BE" = cpu ] || { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit; }

# expect_error SUBSTRING ARGS...: exit 1, one stderr line naming SUBSTRING, nothing on stdout
expect_error() {
    local want=$1; shift
    "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -qF -- "$want" "$tmp/err"; then
        ok
    else
        bad "vlrun $* -> rc=$rc, stderr($lines lines): $(head -c 300 "$tmp/err")"
    fi
}
img=${args[0]}
for v in 0 -1 -0.5 nan inf 1e39 1e-50 abc 1.5x ""; do
    expect_error "option --repetition-penalty: expected a finite number > 0" --backend cpu \
        --model "$tiny" --tokenizer "$TOK" "$img" --max-tokens 2 --repetition-penalty "$v"
done
expect_error "option --repetition-penalty needs a value" --backend cpu --model "$tiny" "$img" \
    --repetition-penalty
# bad_file SUBSTRING JSON: that generation_config.json is refused, naming the file and the key
bad_file() {
    printf '%s' "$2" >"$copy/generation_config.json"
    expect_error "$1" --backend cpu --model "$copy" --tokenizer "$TOK" "$img" --max-tokens 2
}
bad_file '"repetition_penalty" must be a finite number > 0' '{"repetition_penalty": 0}'
bad_file '"repetition_penalty" must be a finite number > 0' '{"repetition_penalty": -1.05}'
bad_file '"repetition_penalty" must be a finite number > 0' '{"repetition_penalty": "1.05"}'
bad_file '"repetition_penalty" must be a finite number > 0' '{"repetition_penalty": 1e39}'
bad_file '"eos_token_id" must be a token id' '{"eos_token_id": 4096}'
bad_file '"eos_token_id" must be a token id' '{"eos_token_id": [4066, -1]}'
bad_file '"eos_token_id" must be a token id' '{"eos_token_id": [4066, 1.5]}'
bad_file '"eos_token_id" must be a token id' '{"eos_token_id": ["4066"]}'
bad_file '"eos_token_id" lists 17 ids' "{\"eos_token_id\": [$(seq -s, 1 17)]}"
bad_file '"temperature" must be a finite number >= 0' '{"temperature": -0.1}'
bad_file '"top_p" must be a number in [0, 1]' '{"top_p": 1.5}'
bad_file '"top_k" must be an integer >= 0' '{"top_k": -1}'
bad_file '"top_k" must be an integer >= 0' '{"top_k": 2.5}'
bad_file '"do_sample" must be true or false' '{"do_sample": "yes"}'
bad_file 'expected a JSON object' '[1.05]'
bad_file 'generation_config.json' '{"repetition_penalty": 1.05, "repetition_penalty": 1.5}'
bad_file 'generation_config.json' '{"repetition_penalty": 1.05,}'
bad_file 'generation_config.json' '{"repetition_penalty": NaN}'
rm -f "$copy/generation_config.json"
mkfifo "$copy/generation_config.json"
expect_error 'generation_config.json' --backend cpu --model "$copy" --tokenizer "$TOK" "$img" \
    --max-tokens 2
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
