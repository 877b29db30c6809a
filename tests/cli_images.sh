#!/usr/bin/env bash
# --min-pixels / --max-pixels (run and `vlrun preprocess`) and the notice for an image that
# becomes more than 4096 tokens, on the CPU backend with the tiny checkpoint tiny-a. Expected
# sizes are worked out by hand from smart_resize (factor 28):
#   photo.jpg 128x96, max 3136: 84x140 is too big, beta = sqrt(12288/3136) = 1.979,
#     floor(96/1.979/28) = 1, floor(128/1.979/28) = 2  ->  56x28, grid 1 2 4
#   a 2400x1800 BMP, defaults: round -> 2408x1792 (4.3 Mpixel <= 12845056) = 172x128 patches,
#     5504 tokens; with max 1003520: beta = 2.0748, floor(41.31) = 41, floor(30.98) = 30
#     -> 1148x840 = 82x60 patches, 1230 tokens
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_error SUBSTRING ARGS...: exit 1, one stderr line "vlrun: error: ...SUBSTRING..."
expect_error() {
    local want=$1; shift
    "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^vlrun: error: " "$tmp/err" &&
        grep -qF -- "$want" "$tmp/err"; then ok; else bad "vlrun $* -> rc=$rc: $(cat "$tmp/err")"; fi
}

# preprocess with a forced size
out=$("$VLRUN" preprocess "$FIX/images/photo.jpg" --max-pixels 3136 2>"$tmp/err")
if [ "$out" = $'grid 1 2 4\nresized 56 28\npatches 8 1176' ] && [ ! -s "$tmp/err" ]; then ok
else bad "preprocess --max-pixels 3136: $out $(cat "$tmp/err")"; fi
out=$("$VLRUN" preprocess --min-pixels 3136 --max-pixels 3136 "$FIX/images/photo.jpg")
[ "$(head -1 <<<"$out")" = "grid 1 2 4" ] && ok || bad "preprocess min=max=3136: $out"

# validation, as config.c checks the file's values: 1 <= N <= 12845056, min <= max
for v in 0 -5 12845057 abc 1e6 ""; do
    expect_error "option --max-pixels: expected a pixel count in [1, 12845056]" \
        preprocess "$FIX/images/photo.jpg" --max-pixels "$v"
    expect_error "option --min-pixels: expected a pixel count in [1, 12845056]" \
        --backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" "$FIX/images/photo.jpg" \
        --min-pixels "$v"
done
expect_error "needs a value" --backend cpu --model "$FIX/models/tiny-a" "$FIX/images/photo.jpg" --max-pixels
expect_error "--min-pixels 50000 is larger than --max-pixels 3136" \
    preprocess "$FIX/images/photo.jpg" --min-pixels 50000 --max-pixels 3136
expect_error "--min-pixels 50000 is larger than --max-pixels 3136" --backend cpu \
    --model "$FIX/models/tiny-a" "$FIX/images/photo.jpg" --min-pixels 50000 --max-pixels 3136
# combined with the model's preprocessor_config.json
mkdir -p "$tmp/model"
cp "$FIX"/models/tiny-a/* "$tmp/model/"
printf '{"min_pixels": 3136, "max_pixels": 50176}\n' >"$tmp/model/preprocessor_config.json"
expect_error "min_pixels 100000 (--min-pixels) is larger than max_pixels 50176 (preprocessor_config.json)" \
    preprocess --model "$tmp/model" "$FIX/images/photo.jpg" --min-pixels 100000
expect_error "min_pixels 100000 (--min-pixels) is larger than max_pixels 50176 (preprocessor_config.json)" \
    --backend cpu --model "$tmp/model" --tokenizer "$TOK" "$FIX/images/photo.jpg" --min-pixels 100000
out=$("$VLRUN" preprocess --model "$tmp/model" "$FIX/images/photo.jpg" --max-pixels 3136)
[ "$(head -1 <<<"$out")" = "grid 1 2 4" ] && ok || bad "option over the file's max_pixels: $out"

# a 2400x1800 24-bit BMP (grey ramp rows), 12.96 MB
big=$tmp/page.bmp
{
    printf 'BM'; printf '\x36\xc0\xc5\x00'; printf '\0\0\0\0'; printf '\x36\0\0\0'
    printf '\x28\0\0\0'; printf '\x60\x09\0\0'; printf '\x08\x07\0\0'; printf '\x01\0\x18\0'
    printf '\0\0\0\0'; printf '\0\xc0\xc5\x00'; printf '\x13\x0b\0\0\x13\x0b\0\0'
    printf '\0\0\0\0\0\0\0\0'
    head -c 12960000 /dev/zero | tr '\0' '\200'
} >"$big"
note="note: $big is 2400x1800 -> 2408x1792, 5504 tokens (more than 4096); --max-pixels 1003520 would give 1148x840, 1230 tokens"
run_big() { "$VLRUN" --backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" "$big" \
    --max-tokens 1 --mem-budget 1K "$@" >"$tmp/out" 2>"$tmp/err"; }
# the budget refusal stops the run right after preprocessing: the notice comes first
run_big
if [ "$(head -1 "$tmp/err")" = "$note" ] && [ "$(wc -l <"$tmp/err")" -eq 2 ] &&
    grep -q "^vlrun: error: .*budget" "$tmp/err"; then ok; else bad "notice: $(cat "$tmp/err")"; fi
run_big x3 --json # one line per distinct image, stdout untouched
if [ "$(grep -c '^note: ' "$tmp/err")" -eq 1 ] && [ ! -s "$tmp/out" ]; then ok
else bad "notice x3 --json: $(cat "$tmp/err") / $(cat "$tmp/out")"; fi
run_big --quiet
grep -q '^note: ' "$tmp/err" && bad "--quiet printed the notice: $(cat "$tmp/err")" || ok
run_big --max-pixels 1003520
grep -q '^note: ' "$tmp/err" && bad "--max-pixels 1003520 still noted: $(cat "$tmp/err")" || ok
out=$("$VLRUN" preprocess "$big" 2>"$tmp/err")
if [ "$(cat "$tmp/err")" = "$note" ] && [ "$(head -1 <<<"$out")" = "grid 1 128 172" ]; then ok
else bad "preprocess notice: $out / $(cat "$tmp/err")"; fi
out=$("$VLRUN" preprocess "$big" --max-pixels 1003520 2>"$tmp/err")
if [ ! -s "$tmp/err" ] && [ "$(head -1 <<<"$out")" = "grid 1 60 82" ]; then ok
else bad "preprocess --max-pixels 1003520: $out / $(cat "$tmp/err")"; fi

echo "cli_images: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
