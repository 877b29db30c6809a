#!/usr/bin/env bash
# A failed write to stdout is an error: `vlrun ... >/dev/full` (disk full) and a closed stdout
# (`>&-`) end with one line "vlrun: error: writing to standard output failed: REASON" and exit
# 1, for the streamed text, the --json report, tokenize, preprocess and logits. A closed stdout
# must not lend its number to a file vlrun writes (the text would land in that file), and a run
# that writes nothing to stdout (--quiet) does not fail for it being closed.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
IMG=$FIX/tiny-qwen2vl/tiny_input_140x84.png
MODEL=$FIX/models/tiny-a
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
RUN=(--backend cpu --model "$MODEL" --tokenizer "$TOK" "$IMG" --max-tokens 4)

# fails_with REASON REDIRECT ARGS...: exit 1, stderr exactly one line naming stdout and REASON
fails_with() {
    local reason=$1 redirect=$2; shift 2
    if [ "$redirect" = full ]; then
        "$VLRUN" "$@" >/dev/full 2>"$tmp/err"
    else
        "$VLRUN" "$@" >&- 2>"$tmp/err"
    fi
    local rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        grep -qx "vlrun: error: writing to standard output failed: $reason" "$tmp/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: vlrun $* ($redirect stdout): rc=$rc, stderr: $(head -c 400 "$tmp/err")" >&2
    fi
}

if [ -w /dev/full ]; then
    full="No space left on device"
    fails_with "$full" full "${RUN[@]}"                  # streamed text
    fails_with "$full" full "${RUN[@]}" --json           # the JSON report
    fails_with "$full" full tokenize --tokenizer "$TOK" "hello world"
    # more than stdio's buffer: the failure comes on a write before the final flush
    fails_with "$full" full tokenize --tokenizer "$TOK" "$(printf 'hello world %.0s' {1..3000})"
    fails_with "$full" full preprocess "$IMG"
    fails_with "$full" full preprocess "$IMG" --out "$tmp/px.f32"
    fails_with "$full" full logits "${RUN[@]}" --out "$tmp/l.f32"
    # preprocess checks stdout before writing --out: a failed run leaves no file behind
    if [ ! -e "$tmp/px.f32" ] && [ ! -e "$tmp/px.f32.tmp" ]; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL: preprocess >/dev/full left $tmp/px.f32" >&2; fi
else
    echo "SKIP: no writable /dev/full here"
fi

closed="Bad file descriptor"
fails_with "$closed" closed "${RUN[@]}"
fails_with "$closed" closed "${RUN[@]}" --json
fails_with "$closed" closed tokenize --tokenizer "$TOK" "hello world"
fails_with "$closed" closed preprocess "$IMG"
fails_with "$closed" closed logits "${RUN[@]}" --out "$tmp/l2.f32"

# stdout closed, a file written: the file holds exactly its bytes (4096 float32 logits), not
# the JSON that was meant for stdout
"$VLRUN" "${RUN[@]}" --json --dump-logits "$tmp/d.f32" >&- 2>"$tmp/err"
rc=$? size=$(stat -c %s "$tmp/d.f32" 2>/dev/null || echo none)
if [ $rc -eq 1 ] && [ "$size" = $((4096 * 4)) ] && ! grep -q prompt_tokens "$tmp/d.f32"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: closed stdout with --dump-logits: rc=$rc, size $size" >&2
fi

# nothing for stdout: a closed stdout is no error
"$VLRUN" "${RUN[@]}" --quiet >&- 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ]; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: --quiet with stdout closed: rc=$rc, $(cat "$tmp/err")" >&2; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
