#!/usr/bin/env bash
# The command line itself: --version and --help on every command (stdout, exit 0, nothing on
# stderr), `vlrun` alone (usage on stderr, exit 2), a mistyped command told apart from an image
# path, an unknown option named by every command, and the default backend: cpu in a build
# without CUDA (the ASan build of CI is one), cuda otherwise.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
SRC=$(cd "$(dirname "$0")/.." && pwd)
IMG=$FIX/tiny-qwen2vl/tiny_input_140x84.png
MODEL=$FIX/models/tiny-a
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# run ARGS...: vlrun with stdout, stderr and the exit code kept in $tmp/out, $tmp/err, $rc
run() { "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# --version: "vlrun X.Y.Z (commit C, CUDA build|CPU-only build)", X.Y.Z from CMakeLists.txt
version=$(sed -n 's/^project(vlrun VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$version" ] || bad "no project version in CMakeLists.txt"
want_version="^vlrun ${version//./\\.} \\(commit ([0-9a-f]+|unknown), (CUDA|CPU-only) build\\)\$"
for args in "--version" "tokenize --version" "preprocess --version" "synth --version" \
    "logits --version" "plan --version" "sweep --version" "$IMG --version" "--model $MODEL $IMG --max-tokens 2 --version" \
    "tokenize --tokenizer $TOK --version"; do
    # shellcheck disable=SC2086 # the arguments are words
    run $args
    if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] &&
        grep -Eq "$want_version" "$tmp/out"; then ok; else
        bad "vlrun $args: rc=$rc, stdout '$(cat "$tmp/out")', stderr '$(head -c 300 "$tmp/err")'"
    fi
done

# --help / -h: that command's usage on stdout, exit 0
help_is() { # FIRST-LINE-PREFIX ARGS...
    local want=$1; shift
    run "$@"
    if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && head -n 1 "$tmp/out" | grep -qF -- "$want"; then ok
    else bad "vlrun $*: rc=$rc, first line '$(head -n 1 "$tmp/out")', stderr '$(head -c 300 "$tmp/err")'"; fi
}
help_is "usage: vlrun [OPTIONS] IMAGE" --help
help_is "usage: vlrun [OPTIONS] IMAGE" -h
help_is "usage: vlrun [OPTIONS] IMAGE" "$IMG" --max-tokens 3 --help
help_is "usage: vlrun tokenize " tokenize --help
help_is "usage: vlrun tokenize " tokenize -h
help_is "usage: vlrun tokenize " tokenize --tokenizer "$TOK" --help
help_is "usage: vlrun preprocess " preprocess --help
help_is "usage: vlrun preprocess " preprocess "$IMG" -h
help_is "usage: vlrun synth " synth --help
help_is "usage: vlrun logits " logits --help
help_is "usage: vlrun logits " logits "$IMG" -h
help_is "usage: vlrun plan " plan --help
help_is "usage: vlrun sweep " sweep -h
# the full usage lists the run options; a subcommand's does not
run --help
grep -q -- "--max-tokens" "$tmp/out" && ok || bad "vlrun --help lacks --max-tokens"
run tokenize --help
grep -q -- "--max-tokens" "$tmp/out" && bad "vlrun tokenize --help shows the run options" || ok
# an option's value is not an option: `--` makes --help the text to tokenize
run tokenize --tokenizer "$TOK" -- --help
if [ $rc -eq 0 ] && grep -Eq '^[0-9]+( [0-9]+)*$' "$tmp/out"; then ok
else bad "tokenize -- --help: rc=$rc, '$(head -c 200 "$tmp/out")' '$(head -c 200 "$tmp/err")'"; fi

# vlrun alone: the usage on stderr, exit 2
run
if [ $rc -eq 2 ] && [ ! -s "$tmp/out" ] && grep -q "^usage: vlrun" "$tmp/err"; then ok
else bad "vlrun alone: rc=$rc"; fi

# expect_error SUBSTRING ARGS...: exit 1, one line "vlrun: error: ...SUBSTRING...", empty stdout
expect_error() {
    local want=$1; shift
    run "$@"
    if [ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        grep -q "^vlrun: error: " "$tmp/err" && grep -qF -- "$want" "$tmp/err"; then ok
    else bad "vlrun $*: rc=$rc, stderr '$(head -c 400 "$tmp/err")', want '$want'"; fi
}

# a mistyped command: no option, no file of that name, no '.' or '/': said so, before any model
cd "$tmp" || exit 1
expect_error "unknown command 'foo'; the commands are tokenize, preprocess, synth, logits, plan, sweep" foo
expect_error "to run on an image give its path (vlrun ./tokenise)" tokenise --tokenizer "$TOK" hi
expect_error "unknown command 'prompt'" prompt --model "$MODEL" "$IMG"
# ... while paths stay images: a file without an extension, and paths that name nothing
cp "$IMG" "$tmp/page"
run page --backend cpu --model "$MODEL" --tokenizer "$TOK" --max-tokens 2 --quiet
[ $rc -eq 0 ] && ok || bad "an image file named 'page': rc=$rc, $(head -c 300 "$tmp/err")"
expect_error "missing.png" missing.png --backend cpu --model "$MODEL"
run sub/missing --backend cpu --model "$MODEL"
[ $rc -eq 1 ] && ! grep -q "unknown command" "$tmp/err" && ok || bad "sub/missing: $(cat "$tmp/err")"
cd "$SRC" || exit 1

# an unknown option names itself, in every command
expect_error "unknown option --bogus" --bogus
expect_error "unknown option --bogus" "$IMG" --bogus
expect_error "vlrun tokenize: unknown option --bogus (see vlrun tokenize --help)" tokenize --bogus hi
expect_error "vlrun preprocess: unknown option --bogus (see vlrun preprocess --help)" preprocess "$IMG" --bogus
expect_error "vlrun synth: unknown option --bogus (see vlrun synth --help)" synth --bogus
expect_error "unknown option --bogus" logits "$IMG" --bogus --out "$tmp/x.f32"

# the default backend follows the build
run --version
if grep -q "CPU-only build" "$tmp/out"; then
    run --model "$MODEL" --tokenizer "$TOK" "$IMG" --max-tokens 2 --json
    if [ $rc -eq 0 ] && python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["options"]["backend"] != "cpu")' "$tmp/out"; then ok
    else bad "CPU-only build without --backend: rc=$rc, $(head -c 300 "$tmp/err")"; fi
    expect_error "this vlrun was built without CUDA; rebuild with nvcc or use --backend cpu" \
        --backend cuda --model "$MODEL" --tokenizer "$TOK" "$IMG" --max-tokens 2
else
    # a CUDA build: cuda by default, which either runs or says how to use the CPU instead
    run --model "$MODEL" --tokenizer "$TOK" "$IMG" --max-tokens 2 --json
    if { [ $rc -eq 0 ] && python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["options"]["backend"] != "cuda")' "$tmp/out"; } ||
        { [ $rc -eq 1 ] && grep -q "use --backend cpu" "$tmp/err"; }; then ok
    else bad "CUDA build without --backend: rc=$rc, $(head -c 300 "$tmp/err")"; fi
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
