#!/usr/bin/env bash
# vlrun --chat, scripted through a pipe (CPU backend, tiny-a, small tokenizer):
# - turn 1 answers as the one-shot run does (the golden request: 4 images, a multi-line prompt
#   sent with trailing-backslash continuation lines), and its ids are transformers' greedy ones;
# - a two-turn conversation with an image in each turn gives transformers' conversation ids,
#   answers included (golden_chat_tiny-a.json, tests/reference/make_chat_golden.py);
# - /image with a missing file, a FIFO, a directory or a hostile image: one error line each and
#   the session goes on; unknown commands likewise; /clear starts over; a message that does not
#   fit the context is refused in one line; EOF ends with status 0, no prompt on a pipe;
# - --json / --attn naive refused; a failed write to stdout is an error.
set -u
BE=${VL_BACKEND:-cpu} # the device script runs it again with VL_BACKEND=cuda
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
MODEL=$FIX/models/tiny-a
IMGS=$FIX/models/images
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
chat() { "$VLRUN" --chat --backend "$BE" --model "$MODEL" --tokenizer "$TOK" "$@"; }

# 1. turn 1 == the one-shot run (text), and == transformers' greedy tokens (ids)
golden_args "$FIX/models/golden_tiny-a.json" "$FIX"
"$VLRUN" --backend "$BE" --model "$MODEL" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt" \
    --max-tokens 24 --greedy >"$tmp/oneshot" 2>/dev/null || bad "one-shot run failed"
# the prompt's newlines become continuation lines (a trailing backslash)
printf '%s\n/tokens\n' "${prompt//$'\n'/$'\\\n'}" >"$tmp/in1"
chat "${args[@]}" --max-tokens 24 <"$tmp/in1" >"$tmp/out1" 2>"$tmp/err1"
rc=$?
[ $rc -eq 0 ] && ok || bad "chat turn 1: rc=$rc $(cat "$tmp/err1")"
head -n -1 "$tmp/out1" >"$tmp/answer1"
cmp -s "$tmp/oneshot" "$tmp/answer1" && ok ||
    bad "chat turn 1 differs from the one-shot run: $(head -c 200 "$tmp/answer1") vs $(head -c 200 "$tmp/oneshot")"
python3 - "$FIX/models/golden_tiny-a.json" "$tmp/out1" <<'PY' && ok || bad "turn 1 ids differ from transformers'"
import json, sys
g = json.load(open(sys.argv[1]))
conv = [int(x) for x in open(sys.argv[2]).read().splitlines()[-1].split()]
want = g["input_ids"] + g["greedy"] + [4066, 198]  # answer as sampled, then the template's closing
if conv != want:
    print("conversation", conv[-30:], "\nwant        ", want[-30:])
    sys.exit(1)
PY
grep -q '^> ' "$tmp/out1" && bad "a prompt was printed on a pipe" || ok

# sampling options apply to each turn: turn 1 samples as the one-shot run with the same options
# (Gumbel-max on the backend, and the host sampler for top-k / top-p)
for opts in "--temperature 0.8 --seed 7" "--top-k 20 --top-p 0.9 --seed 3"; do
    # shellcheck disable=SC2086
    "$VLRUN" --backend "$BE" --model "$MODEL" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt" \
        --max-tokens 12 $opts >"$tmp/oneshot_s" 2>/dev/null || bad "one-shot $opts failed"
    # shellcheck disable=SC2086
    chat "${args[@]}" --max-tokens 12 $opts <"$tmp/in1" 2>/dev/null | head -n -1 >"$tmp/answer_s"
    cmp -s "$tmp/oneshot_s" "$tmp/answer_s" && ok ||
        bad "chat turn 1 with $opts: $(head -c 100 "$tmp/answer_s") vs $(head -c 100 "$tmp/oneshot_s")"
done

# 2. two turns, an image in each: transformers' conversation ids (answers included)
G=$FIX/models/golden_chat_tiny-a.json
mapfile -d '' -t gc < <(python3 -c '
import json, sys
g = json.load(open(sys.argv[1]))
for s in [g["images"][0], g["images"][1], g["texts"][0], g["texts"][1], str(g["max_tokens"])]:
    sys.stdout.write(s + "\0")' "$G")
{
    printf '%s\n' "${gc[2]//$'\n'/$'\\\n'}"
    printf '/image %s\n' "$IMGS/${gc[1]}"
    printf '%s\n/tokens\n' "${gc[3]//$'\n'/$'\\\n'}"
} >"$tmp/in2"
chat "$IMGS/${gc[0]}" --max-tokens "${gc[4]}" <"$tmp/in2" >"$tmp/out2" 2>"$tmp/err2" && ok ||
    bad "two-turn chat failed: $(cat "$tmp/err2")"
python3 - "$G" "$tmp/out2" <<'PY' && ok || bad "two-turn conversation differs from transformers'"
import json, sys
g = json.load(open(sys.argv[1]))
conv = [int(x) for x in open(sys.argv[2]).read().splitlines()[-1].split()]
if conv != g["conversation"]:
    print("vlrun       ", conv[-40:], "\ntransformers", g["conversation"][-40:])
    sys.exit(1)
print("chat golden: answer 2", g["answer2"], "OK")
PY
[ "$(grep -c '^\[turn ' "$tmp/err2")" -eq 2 ] && ok || bad "expected 2 turn reports: $(cat "$tmp/err2")"

# 3. bad /image arguments: one error line each, the session goes on and answers
mkfifo "$tmp/fifo"
cat >"$tmp/in3" <<EOF
/image $tmp/missing.png
/image $tmp/fifo
/image $tmp
/image $FIX/images/hostile/truncated.png
/image $FIX/images/hostile/bmp_rle_13000.bmp
/image
/frobnicate
hello
EOF
timeout 60 "$VLRUN" --chat --backend "$BE" --model "$MODEL" --tokenizer "$TOK" --max-tokens 4 \
    --quiet <"$tmp/in3" >"$tmp/out3" 2>"$tmp/err3"
rc=$?
[ $rc -eq 0 ] && ok || bad "bad images ended the session: rc=$rc"
n_err=$(grep -c '^error: ' "$tmp/err3")
[ "$n_err" -eq 7 ] && [ "$(wc -l <"$tmp/err3")" -eq 7 ] && ok ||
    bad "expected 7 error lines, got: $(cat "$tmp/err3")"
grep -q "/image $tmp/missing.png: " "$tmp/err3" && grep -q "/image $tmp/fifo: " "$tmp/err3" && ok ||
    bad "error lines do not name the path: $(cat "$tmp/err3")"
[ "$(wc -l <"$tmp/out3")" -eq 1 ] && [ -s "$tmp/out3" ] && ok || bad "no answer after the errors"

# 4. /clear starts over (the command line's image went with the first message: attached again,
# the same message gets the same conversation); a message that does not fit is refused in one
# line and the session goes on
printf 'hi there\n/tokens\n/clear\n/image %s\nhi there\n/tokens\n' "$IMGS/${gc[0]}" |
    chat "$IMGS/${gc[0]}" --max-tokens 5 --quiet >"$tmp/out4" 2>"$tmp/err4" && ok ||
    bad "clear session failed"
mapfile -t a4 < <(grep '^4065 ' "$tmp/out4") # the /tokens lines (they start with <|im_start|>)
[ "${#a4[@]}" -eq 2 ] && [ "${a4[0]}" = "${a4[1]}" ] && ok ||
    bad "after /clear the conversation differs: $(cat "$tmp/out4")"
printf 'hi there\n/image %s\nhi there\n' "$IMGS/${gc[0]}" >"$tmp/in4b"
# 36 tokens for turn 1 with the image; 40 do not hold a second message with it
chat "$IMGS/${gc[0]}" --max-tokens 2 --ctx 40 --quiet <"$tmp/in4b" >"$tmp/out5" 2>"$tmp/err5"
rc=$?
[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/out5")" -eq 1 ] && grep -q '^error: the conversation is full' \
    "$tmp/err5" && [ "$(wc -l <"$tmp/err5")" -eq 1 ] && ok ||
    bad "overflow: rc=$rc out=$(cat "$tmp/out5") err=$(cat "$tmp/err5")"

# without --max-tokens an answer runs to the end of turn or, here, to the end of the context
echo "hi there" | chat "$IMGS/${gc[0]}" --ctx 50 >/dev/null 2>"$tmp/err8"
grep -q 'answer 15 tokens.*stop: context full | cache 50/50 tokens' "$tmp/err8" && ok ||
    bad "answer to the end of the context: $(cat "$tmp/err8")"

# a message with a NUL byte, or longer than 64 MiB: one error line each, the session goes on
{ printf 'a\0b\n'; head -c $((65 << 20)) /dev/zero | tr '\0' 'x'; printf '\nhi\n'; } |
    timeout 120 "$VLRUN" --chat --backend "$BE" --model "$MODEL" --tokenizer "$TOK" --max-tokens 2 \
        --quiet >"$tmp/out10" 2>"$tmp/err10"
rc=$?
[ $rc -eq 0 ] && [ "$(grep -c '^error: ' "$tmp/err10")" -eq 2 ] && grep -q 'NUL byte' "$tmp/err10" &&
    grep -q 'longer than 64 MiB' "$tmp/err10" && [ "$(wc -l <"$tmp/out10")" -eq 1 ] && ok ||
    bad "NUL / 65 MiB messages: rc=$rc $(head -c 300 "$tmp/err10") / $(head -c 100 "$tmp/out10")"

# --system replaces the default system message, as the chat template does
printf 'hi\n/tokens\n' | chat --system "Be brief." --max-tokens 2 --quiet >"$tmp/out9" 2>"$tmp/err9"
want=$("$VLRUN" tokenize --tokenizer "$TOK" "<|im_start|>system
Be brief.<|im_end|>
<|im_start|>user
")
got=$(tail -n 1 "$tmp/out9")
[ -n "$want" ] && [ "${got#"$want" }" != "$got" ] && ok || bad "--system in the chat: '$got' does not start with '$want'"

# 5. refused options, and a failed write
for opt in --json "--attn naive" "--dump-logits $tmp/l.f32"; do
    # shellcheck disable=SC2086
    echo hi | chat $opt >"$tmp/out6" 2>"$tmp/err6"
    rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err6")" -eq 1 ] && grep -q '^vlrun: error: .*--chat' "$tmp/err6" &&
        [ ! -s "$tmp/out6" ] && ok || bad "$opt with --chat: rc=$rc $(cat "$tmp/err6")"
done
if [ -w /dev/full ]; then
    echo hi | chat --max-tokens 3 --quiet >/dev/full 2>"$tmp/err7"
    rc=$?
    [ $rc -eq 1 ] && grep -q 'writing to standard output failed' "$tmp/err7" && ok || bad "write to /dev/full: rc=$rc $(cat "$tmp/err7")"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
