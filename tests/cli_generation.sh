#!/usr/bin/env bash
# When generation stops and what text comes out, on the CPU backend with tiny checkpoints:
#   - tiny-eos (tests/reference/make_eos_checkpoint.py) answers the tiny-a golden request with
#     693 915 <|im_end|> and then, if made to go on, the byte 0x00 (token 188):
#       no --max-tokens            3 tokens, stop_reason eos, text "ReID" (no <|im_end|>), the
#                                  KV cache sized for the context (token_limit)
#       --max-tokens 8             8 tokens generated, text still ends at the EOS, answer 2
#       --max-tokens 8 --stop-at-eos   3 tokens
#       --ignore-eos --max-tokens 8    8 tokens, the text goes on past the EOS and holds a NUL,
#                                  "\u0000" in the JSON, the NUL byte in the streamed text
#       --ignore-eos alone         512 tokens
#     and, where golden_tiny-eos.json (transformers, make_eos_golden.py) exists, the same ids
#     and texts as transformers' generate / greedy loop / decode(skip_special_tokens=True);
#   - the context limit: a copy of tiny-a whose max_position_embeddings leaves room for 10
#     tokens stops there (stop_reason context), --max-tokens beyond it is refused;
#   - --random-weights keeps its fixed 512 tokens;
#   - --system (prompt ids = transformers' template ids), --prompt-file (one trailing newline
#     dropped), --prompt - and --prompt-file - (standard input), a 200 KB prompt file;
#   - bad prompt files (FIFO, missing, invalid UTF-8, NUL) and contradicting options: one line;
#   - the report: model, tokenizer, images with sizes and tokens, singular/plural, units.
set -u
BE=${VL_BACKEND:-cpu} # the device script runs it again with VL_BACKEND=cuda
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

GA=$FIX/models/golden_tiny-a.json
GE=$FIX/models/golden_tiny-eos.json
[ -f "$GE" ] || echo "note: $GE absent: comparisons with transformers skipped"
golden_args "$GA" "$FIX"
common=(--backend "$BE" --tokenizer "$TOK" "${args[@]}")
EOS=(--model "$FIX/models/tiny-eos" "${common[@]}" --prompt "$prompt")

# run NAME ARGS...: vlrun ARGS > NAME.out, 2> NAME.err; a failure is reported and returns 1
run() {
    local name=$1; shift
    if ! "$VLRUN" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
        bad "$name: vlrun failed: $(head -c 400 "$tmp/$name.err")"
        return 1
    fi
}

# check NAME EXPR...: each EXPR (python) holds for r = NAME.out as JSON, out = its bytes,
# err = the stderr text, e = the tiny-eos golden (None when absent), a = the tiny-a golden.
# One python per call: the checks are many and an interpreter start is not free.
check() {
    local counts
    counts=$(python3 - "$tmp/$1" "$GE" "$GA" "${@:2}" <<'PY'
import json, os, sys
base, ge, ga = sys.argv[1:4]
out = open(base + ".out", "rb").read()
err = open(base + ".err", encoding="utf-8", errors="replace").read()
try:
    r = json.loads(out)
except ValueError:
    r = None
e = json.load(open(ge)) if os.path.exists(ge) else None
a = json.load(open(ga))
good = 0
for expr in sys.argv[4:]:
    try:
        ok = bool(eval(expr))
    except Exception as x:  # a missing key is a failed check, not a crash
        ok = False
        print("  %s: %r" % (expr, x), file=sys.stderr)
    good += ok
    if not ok:
        print("FAIL: %s: %s" % (os.path.basename(base), expr), file=sys.stderr)
        print("  r =", {k: r[k] for k in ("tokens", "text", "stop_reason", "answer_tokens",
                                           "generated_tokens", "token_limit", "prompt_tokens")
                        if k in r} if isinstance(r, dict) else out[:300], file=sys.stderr)
print(good, len(sys.argv) - 4 - good)
PY
)
    pass=$((pass + ${counts% *}))
    fail=$((fail + ${counts#* }))
}

# expect_error NAME SUBSTRING ARGS...: exit 1, one stderr line with SUBSTRING, empty stdout
expect_error() {
    local name=$1 want=$2; shift 2
    timeout 60 "$VLRUN" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null
    local rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/$name.err")" -eq 1 ] && [ ! -s "$tmp/$name.out" ] &&
        grep -qF -- "$want" "$tmp/$name.err"; then ok; else
        bad "$name: rc=$rc stderr: $(head -c 300 "$tmp/$name.err")"
    fi
}

# ---- the model that emits <|im_end|> at token 3 ----------------------------------------------
# room in the context after the golden prompt: 32768 - 100 tokens - rope_delta (transformers')
ROOM="32768 - len(a['input_ids']) - a['rope_delta']"
if run eos_default "${EOS[@]}" --json; then
    check eos_default \
        "r['tokens'] == [693, 915, 4066] and r['generated_tokens'] == 3" \
        "r['stop_reason'] == 'eos' and r['answer_tokens'] == 2 and r['text'] == 'ReID'" \
        "'<|im_end|>' not in r['text'] and r['options']['max_tokens'] is None" \
        "r['token_limit'] == $ROOM" \
        "e is None or (r['tokens'] == e['generate']['ids'] and r['text'] == e['generate']['text'])"
fi
if run eos_stream "${EOS[@]}"; then
    check eos_stream "out == b'ReID\n' and 'ended by the end-of-turn token' in err"
fi
if run eos_max8 "${EOS[@]}" --max-tokens 8 --json; then
    check eos_max8 \
        "r['generated_tokens'] == 8 and r['tokens'][:4] == [693, 915, 4066, 188]" \
        "r['stop_reason'] == 'eos' and r['answer_tokens'] == 2 and r['text'] == 'ReID'" \
        "r['token_limit'] == 8 and r['options']['max_tokens'] == 8" \
        "e is None or r['tokens'] == e['greedy_8']['ids']"
fi
if run eos_max8_stream "${EOS[@]}" --max-tokens 8; then
    check eos_max8_stream "out == b'ReID\n' and 'generation ran on to 8 tokens' in err"
fi
if run eos_stop "${EOS[@]}" --max-tokens 8 --stop-at-eos --json; then
    check eos_stop "r['tokens'] == [693, 915, 4066] and r['stop_reason'] == 'eos' and r['token_limit'] == 8"
fi
if run eos_ignore "${EOS[@]}" --max-tokens 8 --ignore-eos --json; then
    check eos_ignore \
        "r['generated_tokens'] == 8 and r['stop_reason'] == 'max_tokens' and r['answer_tokens'] == 2" \
        "r['text'].startswith('ReID\x00') and b'\"text\":\"ReID\\\\u0000' in out" \
        "e is None or r['text'] == e['greedy_8']['text']"
fi
if run eos_ignore_stream "${EOS[@]}" --max-tokens 8 --ignore-eos; then
    check eos_ignore_stream \
        "out.startswith(b'ReID\x00') and out.endswith(b'\n') and b'<|im_end|>' not in out" \
        "e is None or out == e['greedy_8']['text'].encode() + b'\n'"
fi
if run eos_ignore_512 "${EOS[@]}" --ignore-eos --json; then
    check eos_ignore_512 "r['generated_tokens'] == 512 and r['stop_reason'] == 'max_tokens' and r['tokens'][2] == 4066"
fi
expect_error eos_both "contradict" "${EOS[@]}" --stop-at-eos --ignore-eos

# ---- the context limit --------------------------------------------------------------------------
cp -r "$FIX/models/tiny-a" "$tmp/short"
python3 - "$tmp/short/config.json" 95 <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["text_config"]["max_position_embeddings"] = int(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
SHORT=(--model "$tmp/short" "${common[@]}" --prompt "$prompt")
if run ctx "${SHORT[@]}" --json; then
    check ctx \
        "r['generated_tokens'] == 95 - len(a['input_ids']) - a['rope_delta'] == r['token_limit']" \
        "r['stop_reason'] == 'context' and r['tokens'] == a['greedy'][:r['generated_tokens']]"
fi
if run ctx_ignore "${SHORT[@]}" --ignore-eos --json; then
    check ctx_ignore "r['generated_tokens'] == 10 and r['stop_reason'] == 'context'"
fi
expect_error ctx_max "beyond the model's context of 95 positions" "${SHORT[@]}" --max-tokens 11
python3 - "$tmp/short/config.json" 85 <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["text_config"]["max_position_embeddings"] = int(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error ctx_full "fills the model's context of 85 positions" "${SHORT[@]}"

# ---- --random-weights keeps its fixed length ----------------------------------------------------
if run random "${common[@]}" --random-weights --config "$FIX/models/tiny-a/config.json" --json; then
    check random "r['generated_tokens'] == 512 and r['token_limit'] == 512 and r['model']['path'] is None"
fi

# ---- --system ---------------------------------------------------------------------------------
SYSTEM="You answer in one word.
No more than that."
if "$VLRUN" logits "${EOS[@]}" --system "$SYSTEM" --out "$tmp/sys.f32" --ids-out "$tmp/sys.i32" \
    >/dev/null 2>"$tmp/sys.err"; then
    if python3 - "$tmp/sys.i32" "$GA" "$GE" "$SYSTEM" <<'PY'; then ok; else bad "--system ids"; fi
import json, os, struct, sys
raw = open(sys.argv[1], "rb").read()
ids = list(struct.unpack("<%di" % (len(raw) // 4), raw))
a = json.load(open(sys.argv[2]))
if os.path.exists(sys.argv[3]):
    e = json.load(open(sys.argv[3]))
    assert e["system"]["system"] == sys.argv[4]
    ok = ids == e["system"]["input_ids"]
else:  # the default system turn's ids replaced, the rest unchanged
    d = a["input_ids"]
    ok = ids != d and ids[-60:] == d[-60:] and ids[:3] == d[:3]
sys.exit(0 if ok else 1)
PY
else
    bad "--system: vlrun logits failed: $(head -c 300 "$tmp/sys.err")"
fi
if [ -f "$GE" ] && run sys_run "${EOS[@]}" --system "$SYSTEM" --max-tokens 4 --json; then
    check sys_run "r['tokens'] == e['system']['greedy'] and r['prompt_tokens'] == len(e['system']['input_ids'])"
fi

# ---- the prompt from a file or from standard input ---------------------------------------------
NOPROMPT=(--model "$FIX/models/tiny-eos" "${common[@]}" --max-tokens 4 --json)
printf '%s\n' "$prompt" >"$tmp/p.txt"
printf '%s\r\n' "$prompt" >"$tmp/p_crlf.txt"
if run p_arg "${NOPROMPT[@]}" --prompt "$prompt" && run p_file "${NOPROMPT[@]}" --prompt-file "$tmp/p.txt" &&
    run p_crlf "${NOPROMPT[@]}" --prompt-file "$tmp/p_crlf.txt" &&
    "$VLRUN" "${NOPROMPT[@]}" --prompt - <"$tmp/p.txt" >"$tmp/p_stdin.out" 2>"$tmp/p_stdin.err" &&
    "$VLRUN" "${NOPROMPT[@]}" --prompt-file - <"$tmp/p.txt" >"$tmp/p_stdin2.out" 2>"$tmp/p_stdin2.err"; then
    for n in p_arg p_file p_crlf p_stdin p_stdin2; do
        check $n "r['prompt_tokens'] == len(a['input_ids']) and r['tokens'] == [693, 915, 4066, 188]"
    done
else
    bad "prompt from file/stdin: $(cat "$tmp"/p_*.err | head -c 400)"
fi
# 200 KB in one file (past the 128 KiB a single argv string may hold) is read and tokenized
# whole: the short-context copy of tiny-a refuses it naming transformers' token count
# (cli_prompt_long.sh runs it through to the first token; it is labelled slow for ASan)
python3 - "$tmp/long.txt" "$GE" <<'PY'
import json, os, sys
tail, dashes = "\nHow long is this line?", 200000
if os.path.exists(sys.argv[2]):
    e = json.load(open(sys.argv[2]))["long"]
    tail, dashes = e["tail"], e["dashes"]
open(sys.argv[1], "w").write("-" * dashes + tail)
PY
if [ -f "$GE" ]; then
    n_long=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["long"]["n_ids"])' "$GE")
    expect_error long_ctx "the prompt ($n_long tokens" --model "$tmp/short" "${common[@]}" --prompt-file "$tmp/long.txt"
fi
mkfifo "$tmp/fifo"
expect_error pf_fifo "FIFO" "${NOPROMPT[@]}" --prompt-file "$tmp/fifo"
expect_error pf_missing "cannot open" "${NOPROMPT[@]}" --prompt-file "$tmp/nothing.txt"
printf 'caf\xe9 au lait' >"$tmp/latin1.txt"
expect_error pf_latin1 "not valid UTF-8 (bad byte 0xE9 at offset 3)" "${NOPROMPT[@]}" --prompt-file "$tmp/latin1.txt"
printf 'a\0b' >"$tmp/nul.txt"
expect_error pf_nul "NUL byte at offset 1" "${NOPROMPT[@]}" --prompt-file "$tmp/nul.txt"
expect_error pf_both "pass one of them" "${NOPROMPT[@]}" --prompt x --prompt-file "$tmp/p.txt"

# ---- the report -------------------------------------------------------------------------------
IMG_A=$FIX/models/images/img_a_56x84.png
IMG_B=$FIX/models/images/img_b_100x60.png
ONE=(--backend "$BE" --model "$FIX/models/tiny-eos" --tokenizer "$TOK")
if run rep1 "${ONE[@]}" "$IMG_A" --max-tokens 1 --quiet; then
    check rep1 \
        "'images     1 image, 6 image tokens' in err and 'generated 1 token\n' in err" \
        "'img_a_56x84.png: 56x84 -> 56x84, 6 tokens' in err and 'tiny-eos (qwen2_vl' in err" \
        "'tokenizer  $TOK' in err and 'MiB' in err and 'KiB' in err" \
        "'$BE' != 'cpu' or ' GiB' not in err" \
        "'answer     1 token, cut at 1 token (--max-tokens)' in err"
fi
if run rep2 "${ONE[@]}" "$IMG_A" x2 "$IMG_B" --max-tokens 2 --json; then
    check rep2 \
        "r['images'] == 3 and r['tokenizer'] == '$TOK' and r['model']['path'].endswith('tiny-eos')" \
        "[(i['width'], i['height'], i['repeat']) for i in r['image_files']] == [(56, 84, 2), (100, 60, 1)]" \
        "[i['tokens'] for i in r['image_files']] == [t*h*w//4 for t, h, w in a['grids'][:2]]" \
        "[(i['resized_width'], i['resized_height']) for i in r['image_files']] == [(w*14, h*14) for t, h, w in a['grids'][:2]]" \
        "r['version'] and all(k in r['timings'] for k in ('vision_s', 'prefill_s', 'decode_s', 'total_s'))"
fi
if run rep3 "${ONE[@]}" "$IMG_A" "$IMG_B" --max-tokens 2 --quiet; then
    check rep3 "'images     2 images, 14 image tokens' in err and 'generated 2 tokens' in err"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
