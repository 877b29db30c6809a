#!/usr/bin/env bash
# Outputs replace only regular files: a FIFO, a device, a directory or a symbolic link where
# --dump-logits, preprocess --out, logits --out or synth's files go is refused in one line
# (exit 1), before the work for --dump-logits, and left exactly as it was (a symlink's target
# is never written); an existing regular file is replaced; no NAME.tmp is left behind.
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
M=$FIX/models/tiny-a
IMG=$FIX/models/images/img_a_56x84.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
RUN=(--backend cpu --model "$M" --tokenizer "$TOK" "$IMG" --max-tokens 2 --quiet)

# refused LABEL WANT PATH ARGS...: exit 1 within the timeout, one line naming PATH and WANT
refused() {
    local label=$1 want=$2 path=$3; shift 3
    timeout 30 "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF "$path is $want" "$tmp/err" &&
        [ ! -e "$path.tmp" ]; then ok; else bad "$label: rc=$rc $(head -c 300 "$tmp/err")"; fi
}
echo "keep me" >"$tmp/victim"
mkfifo "$tmp/fifo.f32"
ln -s "$tmp/victim" "$tmp/link.f32"
mkdir "$tmp/dir.f32"
refused "FIFO as --dump-logits" "a FIFO" "$tmp/fifo.f32" "${RUN[@]}" --dump-logits "$tmp/fifo.f32"
[ -p "$tmp/fifo.f32" ] && ok || bad "the FIFO was removed"
refused "symlink as --dump-logits" "a symbolic link" "$tmp/link.f32" "${RUN[@]}" --dump-logits "$tmp/link.f32"
[ -L "$tmp/link.f32" ] && [ "$(cat "$tmp/victim")" = "keep me" ] && ok || bad "the symlink or its target changed"
refused "directory as --dump-logits" "a directory" "$tmp/dir.f32" "${RUN[@]}" --dump-logits "$tmp/dir.f32"
if [ -c /dev/null ]; then
    refused "device as --dump-logits" "a device" /dev/null "${RUN[@]}" --dump-logits /dev/null
fi
# the refusal comes before the run: no report, nothing generated
grep -q "report" "$tmp/err" && bad "--dump-logits refused after the run" || ok
refused "FIFO as preprocess --out" "a FIFO" "$tmp/fifo.f32" preprocess "$IMG" --out "$tmp/fifo.f32"
refused "FIFO as logits --out" "a FIFO" "$tmp/fifo.f32" logits --backend cpu --model "$M" \
    --tokenizer "$TOK" "$IMG" --out "$tmp/fifo.f32"
mkdir "$tmp/synth" && mkfifo "$tmp/synth/config.json"
refused "FIFO in synth's output folder" "a FIFO" "$tmp/synth/config.json" synth --config "$M/config.json" --out "$tmp/synth"
[ -p "$tmp/synth/config.json" ] && [ ! -e "$tmp/synth/model.safetensors" ] && ok ||
    bad "synth replaced the FIFO, or wrote the weights before refusing"

# a regular file is replaced, through NAME.tmp
echo "old" >"$tmp/reg.f32"
timeout 60 "$VLRUN" "${RUN[@]}" --dump-logits "$tmp/reg.f32" >/dev/null 2>"$tmp/err" &&
    [ "$(stat -c %s "$tmp/reg.f32")" -eq $((4096 * 4)) ] && [ ! -e "$tmp/reg.f32.tmp" ] && ok ||
    bad "regular file not replaced: $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
