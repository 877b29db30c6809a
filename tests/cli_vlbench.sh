#!/usr/bin/env bash
# vlbench's command line without a GPU: --help exits 0 with the usage on stdout; every bad
# option ends in exactly one stderr line "vlbench: error: ...", exit 1, nothing on stdout, and
# no GPU work; with no visible device (CUDA_VISIBLE_DEVICES=-1, so this also holds on a GPU
# machine) a good command line ends in the one line "vlbench: no CUDA device found...", exit 1.
# vlbench exists in CUDA builds only (bench/): without it there is nothing to check.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
VLBENCH=${VLBENCH:-$(dirname "$VLRUN")/bench/vlbench}
if [ ! -x "$VLBENCH" ]; then
    echo "cli_vlbench: no vlbench at $VLBENCH (a build without CUDA): nothing to check"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

# run ARGS...: vlbench with no device visible; sets rc, lines (of stderr)
run() {
    CUDA_VISIBLE_DEVICES=-1 "$VLBENCH" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
}

report() { # report OK DESCRIPTION
    if [ "$1" = 1 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: vlbench $2 -> rc=$rc, stderr($lines lines): $(head -c 400 "$tmp/err"), stdout: $(head -c 200 "$tmp/out")" >&2
    fi
}

# expect_error SUBSTRING ARGS...: exit 1, one stderr line "vlbench: error: ...SUBSTRING..."
expect_error() {
    local want=$1
    shift
    run "$@"
    local ok=0
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
        grep -q "^vlbench: error: " "$tmp/err" && grep -qF -- "$want" "$tmp/err"; then ok=1; fi
    report $ok "$*"
}

# --help: usage on stdout, nothing on stderr, exit 0
run --help
ok=0
if [ "$rc" -eq 0 ] && [ ! -s "$tmp/err" ] && grep -q "^usage: vlbench" "$tmp/out" &&
    grep -q -- "--no-ref" "$tmp/out"; then ok=1; fi
report $ok "--help"
run gemv --help
ok=0
if [ "$rc" -eq 0 ] && grep -q "^usage: vlbench" "$tmp/out"; then ok=1; fi
report $ok "gemv --help"

expect_error "unknown option '--bogus'" --bogus
expect_error "unknown option '--iter'" all --iter 3
expect_error "unknown benchmark 'frobnicate'" frobnicate
expect_error "one benchmark at a time" gemv gemm
expect_error "--iters needs a value" --iters
expect_error "--iters expects an integer" --iters 0
expect_error "--iters expects an integer" --iters abc
expect_error "--iters expects an integer" --iters 5x
expect_error "--warmup expects an integer" --warmup -1
expect_error "--shape expects NxK" gemv --shape 3584
expect_error "--shape expects NxK" gemv --shape 0x3584
expect_error "--shape expects NxK" gemv --shape 3584x3584,
expect_error "--shape expects NxK" gemv --shape 3584x
expect_error "--m expects" gemm --m 2048,,16
expect_error "--m expects" gemm --m x
expect_error "--m applies to gemm" gemv --m 16
expect_error "--seq expects" attention --seq 0
expect_error "--seq expects" attention --seq 4096,-1
expect_error "apply to attention" gemm --seq 4096
expect_error "--quant expects a list of bf16, nf4, int8" gemv --quant fp8
expect_error "--quant expects" gemv --quant nf4,
expect_error "apply to gemv and gemm" attention --quant nf4
expect_error "--heads expects" attention --heads 28/x
expect_error "multiple of kv heads" attention --heads 28/5
expect_error "--head-dim expects" attention --head-dim 0
expect_error "--kinds expects" attention --kinds prefill,bogus
expect_error "--double-quant needs nf4" gemv --quant int8 --double-quant
expect_error "--json-out expects a file name" --json-out ""
expect_error "--cuda-opt needs a value" --cuda-opt
expect_error "--cuda-opt bogus=1: unknown key 'bogus'" --cuda-opt bogus=1
expect_error "--cuda-opt gemv_bf16=2: gemv_bf16 takes 0 or 1" gemv --cuda-opt gemv_bf16=2
expect_error "--cuda-opt no_graphs: expected KEY=VALUE" --cuda-opt no_graphs
expect_error "--kinds expects a list of prefill, chunk, vision, decode, decode-rt" attention --kinds rt

# a good command line and no device
for args in "" "all --json" "gemv --iters 1 --quant nf4,bf16" "attention --seq 1024 --kinds decode" \
    "attention --kinds decode-rt --cuda-opt attn_decode_splits=4 --cuda-opt no_graphs=1"; do
    # shellcheck disable=SC2086
    run $args
    ok=0
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
        grep -q "^vlbench: no CUDA device found" "$tmp/err"; then ok=1; fi
    report $ok "$args (no device)"
done
# --json-out is not created when there is no device
run gemv --json-out "$tmp/out.json"
ok=0
if [ "$rc" -eq 1 ] && [ ! -e "$tmp/out.json" ]; then ok=1; fi
report $ok "--json-out without a device"

echo "cli_vlbench: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
