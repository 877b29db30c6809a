#!/usr/bin/env bash
# device_serve.sh PART [SECONDS] [--dry-run]: issue 16's device work (`vlrun serve`), one device
# call a part (everything under $OUT/all.tgz; the bench parts also put summary.md and
# summary.json in $OUT). The GPU machine has python3 but no node: the clients are Python's.
#   checks      build (scripts/device.sh build), the paged KV cache's GPU tests (ctest -R
#               "pages_gpu|test_attention_gpu|test_kv_cache_gpu|test_engine_gpu"), then
#               tests/server_equivalence.py with VL_SERVE_BACKEND=cuda (the CUDA server against
#               the CUDA CLI, 12 requests at once, on tiny-a, tiny-b and tiny-eos)
#   bench-bf16  7B shapes with random weights (examples/qwen2-vl-7b-instruct.json, the Qwen2
#   bench-nf4   tokenizer), that weight format: the single-stream anchor (`vlrun examples/page.png
#               --max-tokens 128 --json`), then scripts/serve_bench.sh --client python at 1, 4, 16
#               and 64 clients of one-page requests (128 tokens out, --max-batch 64), then the
#               28-page mix (every 2nd request) at 64 clients with --mem-budget 24G; the summary
#               (bench/serve_report.py): aggregate tok/s over single-stream tok/s, TTFT and
#               per-token p50/p99, peak device memory against the budget, errors
#   bench       both formats, the time split between them (too little for all of it on a 600 s
#               call: what does not fit is skipped and the summary says so)
#   one-page-bf16, one-page-nf4, mix-bf16, mix-nf4: the anchor and that one run (when a call
#               cannot hold both: the mix's result is written only when it completes)
#   one-page    both formats' anchors and one-page runs, no mix
#   profile     per format: the single-stream anchor, batch_decode (no HTTP) at 1, 8 and 16
#               rows, then Nsight Compute over a window of 16-row decode steps and
#               scripts/serve_profile.py's table of a step's GPU time by kernel (profile-Q.txt)
#   short       NF4: the GPU tests of the GEMV and ops, server_equivalence, batch_decode A/B, the
#               anchor (a call of ~4 minutes; with TARGETS to build less)
#   rows16      test_gemv_gpu, then per format the anchor and 16 one-page clients with
#               --cuda-opt gemv_rows16=0 and =1 alternately (two rounds): the 16-row GEMV's
#               check and A/B (summary in rows16.txt)
# SECONDS: what the part may take in all (default 570). --clients LIST: the one-page client
# counts (default 1,4,16,64). Environment: TARGETS (build only these targets instead of
# everything: a short call), BD_TOKENS (batch_decode's tokens, default 256). Carry .deps and .cache/tokenizer; with the 15 MB quality model in
# the tree that passes the device's 64 MiB carry limit, so carry instead
# .cache/tokenizer/small_tokenizer.json and .cache/tokenizer.json.gz (gzip -9 of tokenizer.json,
# 2 MB), which this script unpacks.
# --dry-run: the same steps on this machine's CPU backend with tiny-a's shapes (random weights,
# the small tokenizer, 200704 pixels a page, 6 pages in the long request, 1 and 4 clients, the
# mix at 8 clients in 20M) and $VLRUN (default build-cpu/vlrun), no build: proves the script.
set -u
part=${1:-checks}
total=570 dry=0 clients_arg="" want_clients=0
for a in "${@:2}"; do
    if [ $want_clients = 1 ]; then
        case $a in *[!0-9,]* | "") echo "device_serve.sh: bad --clients $a" >&2; exit 2 ;; esac
        clients_arg=$a want_clients=0
        continue
    fi
    case $a in
    --clients) want_clients=1 ;;
    --dry-run) dry=1 ;;
    *[!0-9]* | "") echo "device_serve.sh: bad argument $a" >&2; exit 2 ;;
    *) total=$a ;;
    esac
done
case $part in checks | bench | bench-bf16 | bench-nf4 | one-page | one-page-bf16 | one-page-nf4 | mix-bf16 | mix-nf4 | rows16 | profile | short) ;; *)
    echo "usage: scripts/device_serve.sh checks|bench|bench-Q|one-page|one-page-Q|mix-Q|rows16|profile|short [SECONDS]" \
        "[--clients LIST] [--dry-run]" \
        "(Q: bf16 or nf4)" >&2
    exit 2
    ;;
esac
: "${OUT:?OUT must name the folder the device tool returns}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
start=$(date +%s)
left() { echo $((total - ($(date +%s) - start))); }
R=${TMPDIR:-/tmp}/device_serve
rm -rf "$R" && mkdir -p "$R" "$OUT"
trap 'tar czf "$OUT/all.tgz" -C "$R" .' EXIT
TOK=.cache/tokenizer/tokenizer.json
SMALL_TOK=.cache/tokenizer/small_tokenizer.json
if [ ! -f $TOK ] && [ -f .cache/tokenizer.json.gz ]; then
    mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz >$TOK.part && mv $TOK.part $TOK
fi
[ -f $SMALL_TOK ] || python3 tests/reference/make_small_tokenizer.py $TOK $SMALL_TOK >/dev/null

if [ $dry = 1 ]; then
    V=${VLRUN:-$root/build-cpu/vlrun} BACKEND=cpu
    MODEL=(--random-weights --config tests/fixtures/models/tiny-a/config.json --tokenizer "$SMALL_TOK"
        --max-pixels 200704)
    CLIENTS=1,4 REQUESTS=2 MIX_CLIENTS=8 MIX_REQUESTS=1 BUDGET=20M PAGES=6 MIN_S=10
else
    V=$root/build-device/gpu/vlrun BACKEND=cuda
    MODEL=(--random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer "$TOK")
    CLIENTS=1,4,16,64 REQUESTS=2 MIX_CLIENTS=64 MIX_REQUESTS=1 BUDGET=24G PAGES=28 MIN_S=60
fi
[ -z "$clients_arg" ] || CLIENTS=$clients_arg

build() {
    if [ $dry = 1 ]; then
        echo "dry run: no build, $V" >"$R/build.txt"
    elif [ -n "${TARGETS:-}" ]; then # only these targets (a short call)
        # shellcheck disable=SC2086
        cmake -S . -B build-device/gpu -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF \
            -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$root/.deps/usr" \
            -DCMAKE_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu" >"$R/build.txt" 2>&1 &&
            cmake --build build-device/gpu -j"$(nproc)" $(printf -- '--target %s ' $TARGETS) >>"$R/build.txt" 2>&1
    else
        OUT=$R/b bash scripts/device.sh build --deadline "$(left)" >"$R/build.txt" 2>&1
    fi
    [ -x "$V" ] || { echo "no vlrun at $V: see build.txt in all.tgz" >&2; tail -20 "$R/build.txt"; exit 1; }
}

checks() {
    local bdir
    bdir=$(dirname "$V")
    (cd "$bdir" && timeout "$(($(left) / 2))" ctest -R \
        "pages_gpu|test_attention_gpu|test_kv_cache_gpu|test_engine_gpu" --output-on-failure) \
        >"$R/gpu_tests.txt" 2>&1
    echo "gpu tests (rc $?): $(grep -E 'tests passed|tests failed' "$R/gpu_tests.txt" | tail -1)"
    grep -E '^ *[0-9]+/[0-9]+ Test' "$R/gpu_tests.txt"
    VL_SERVE_BACKEND=$BACKEND VLRUN=$V VL_FIXTURES=$root/tests/fixtures \
        VL_TOKENIZER_DIR=$root/.cache/tokenizer timeout -k 10 "$(($(left) - 10))" \
        python3 tests/server_equivalence.py >"$R/server_equivalence.txt" 2>&1
    echo "server_equivalence on $BACKEND (rc $?):"
    tail -n 30 "$R/server_equivalence.txt"
}

# NAME SLICE ARGS...: scripts/serve_bench.sh into $d/NAME within SLICE seconds (no client count
# starts in its last minute), or a note why it did not run or was cut short
serve_run() {
    local name=$1 slice=$2 rc
    shift 2
    if [ "$slice" -lt "$MIN_S" ]; then
        echo "$name: skipped, $slice s left for it" >>"$d/notes.txt"
        return
    fi
    timeout -k 20 "$slice" bash scripts/serve_bench.sh "$d/$name" --client python \
        --ready-timeout 300 --deadline "$((slice - slice / 4))" "$@" >"$d/$name.txt" 2>&1
    rc=$?
    [ $rc = 0 ] || echo "$name: serve_bench.sh rc $rc$([ $rc -lt 124 ] || echo ": cut short at $slice s")" \
        >>"$d/notes.txt"
    grep -E 'skipped|failed' "$d/$name.txt" >>"$d/notes.txt"
}

# Q SECONDS [RUNS]: one weight format's anchor, then its RUNS (default "one-page mix") into
# $R/bench/Q
bench_format() {
    local q=$1 end=$(($(date +%s) + $2)) runs=${3:-one-page mix}
    d=$R/bench/$q
    mkdir -p "$d"
    local serve=(--backend "$BACKEND" "${MODEL[@]}" --quant "$q")
    timeout "$(($2 / 5))" "$V" examples/page.png --max-tokens 128 --json "${serve[@]}" \
        >"$d/anchor.json" 2>"$d/anchor.err" || echo "anchor: rc $?: $(tail -1 "$d/anchor.err")" >>"$d/notes.txt"
    local rest=$((end - $(date +%s))) share=2
    [ "$runs" = "one-page mix" ] || share=5 # the one run gets it all
    [[ $runs != *one-page* ]] ||
        VLRUN=$V serve_run one-page $((rest * share / 5)) --clients "$CLIENTS" --requests "$REQUESTS" \
            --max-tokens 128 -- "${serve[@]}" --max-batch 64
    [[ $runs != *mix* ]] ||
        VLRUN=$V serve_run mix $((end - $(date +%s))) --clients "$MIX_CLIENTS" --requests "$MIX_REQUESTS" \
            --long-every 2 --max-tokens 128 --loadgen-args "--pages $PAGES --long-max-tokens 128" \
            -- "${serve[@]}" --mem-budget "$BUDGET"
}

bench() { # RUNS FORMATS...: the time left split between the formats
    local runs=$1 q i=0
    shift
    local n=$#
    for q in "$@"; do
        bench_format "$q" $((($(left) - 15) / (n - i))) "$runs"
        i=$((i + 1))
    done
    local gib title="dry run, CPU, tiny-a shapes"
    gib=$(python3 -c "import sys; s=sys.argv[1]; print(float(s[:-1]) / (1 if s[-1] == 'G' else 1024))" "$BUDGET")
    [ $dry = 1 ] || title="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), 7B shapes"
    python3 bench/serve_report.py "$R/bench" --budget-gib "$gib" \
        --title "$title, $(git describe --always --dirty 2>/dev/null || echo 'no git')"
    cp "$R/bench/summary.md" "$R/bench/summary.json" "$OUT/"
}

# test_gemv_gpu, then gemv_rows16=0 against 1 at 16 clients, per format, two rounds
rows16() {
    local bdir q v round
    bdir=$(dirname "$V")
    if [ $dry = 0 ]; then
        (cd "$bdir" && timeout 150 ctest -R test_gemv_gpu --output-on-failure) >"$R/gemv_gpu.txt" 2>&1
        echo "test_gemv_gpu (rc $?): $(grep -E 'tests passed|tests failed' "$R/gemv_gpu.txt" | tail -1)"
        grep -E "16 rows|FAIL" "$R/gemv_gpu.txt" | head -20
    fi
    for q in bf16 nf4; do
        d=$R/rows16/$q
        mkdir -p "$d"
        local serve=(--backend "$BACKEND" "${MODEL[@]}" --quant "$q")
        timeout 60 "$V" examples/page.png --max-tokens 128 --json "${serve[@]}" >"$d/anchor.json" 2>"$d/anchor.err"
        for round in 1 2; do
            for v in 0 1; do
                [ "$(left)" -gt 60 ] || { echo "$q round $round rows16=$v: skipped, time" >>"$R/rows16.txt"; continue; }
                VLRUN=$V timeout -k 10 90 bash scripts/serve_bench.sh "$d/r${round}_v$v" --client python \
                    --clients 16 --requests 2 --max-tokens 128 --ready-timeout 60 -- "${serve[@]}" \
                    --max-batch 64 --cuda-opt "gemv_rows16=$v" >"$d/r${round}_v$v.txt" 2>&1
                python3 - "$d" "$q" "$round" "$v" >>"$R/rows16.txt" <<'PY'
import json, os, sys
d, q, rnd, v = sys.argv[1:]
try:
    single = json.load(open(os.path.join(d, "anchor.json")))["timings"]["decode_tok_s"]
    r = json.load(open(os.path.join(d, "r%s_v%s" % (rnd, v), "clients-16.json")))
    s = r["server"]
    print("%s round %s gemv_rows16=%s: decode %.1f tok/s (x%.2f of single %.1f), rows %.2f, "
          "out %.1f tok/s, per-token p50 %.1f ms, %d/%d ok" % (
              q, rnd, v, s["decode_tok_s"], s["decode_tok_s"] / single, single,
              s["mean_decode_rows"], r["output_tok_s"], 1e3 * r["per_token_s"]["p50"], r["ok"],
              r["requests"]))
except (OSError, KeyError, TypeError, ValueError) as e:
    print("%s round %s gemv_rows16=%s: no result (%s)" % (q, rnd, v, e))
PY
            done
        done
    done
    cat "$R/rows16.txt"
    cp "$R/rows16.txt" "$OUT/"
}

# Q OPTS ROWS: build-device/gpu/batch_decode's JSON line for ROWS copies of the one-page request
# (OPTS: backend options, comma-separated)
batch_decode() {
    local opts=() kv
    for kv in ${2//,/ }; do opts+=(--cuda-opt "$kv"); done
    timeout 120 "$(dirname "$V")/batch_decode" "$3" examples/page.png --max-tokens "${BD_TOKENS:-256}" \
        --backend "$BACKEND" "${MODEL[@]}" --quant "$1" "${opts[@]}" 2>&1 | tail -1
}

# per format: the single-stream anchor, batch_decode at 1, 8 and 16 rows (gemv_rows16 0 and 1),
# then Nsight Compute over a window of 16-row decode steps and serve_profile.py's table of a
# step's GPU time by kernel
profile() {
    local ncu q opt rows
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    for q in nf4 bf16; do
        d=$R/profile/$q
        mkdir -p "$d"
        {
            echo "== $q"
            timeout 60 "$V" examples/page.png --max-tokens 128 --json --backend "$BACKEND" "${MODEL[@]}" \
                --quant "$q" 2>/dev/null | python3 -c \
                'import json,sys; print("single stream (CLI, graphs): decode %.1f tok/s" % json.load(sys.stdin)["timings"]["decode_tok_s"])'
            for rows in 1 8 16; do
                for opt in gemv_rows16=0 gemv_rows16=1; do
                    [ "$rows" -gt 8 ] || [ $opt = gemv_rows16=0 ] || continue
                    echo "batch_decode $rows $opt: $(batch_decode "$q" $opt $rows)"
                done
            done
            opt=gemv_rows16=0
            [ $q = bf16 ] || opt=gemv_rows16=1
            if [ -n "$ncu" ] && [ "$(left)" -gt 100 ]; then
                timeout "$(($(left) / 2))" "$ncu" --launch-skip 40000 --launch-count 1200 \
                    --metrics gpu__time_duration.sum --csv --log-file "$d/ncu.csv" \
                    "$(dirname "$V")/batch_decode" 16 examples/page.png --max-tokens 256 \
                    --backend "$BACKEND" "${MODEL[@]}" --quant "$q" --cuda-opt "$opt" >"$d/ncu_run.txt" 2>&1
                echo "ncu ($opt, rc $?):"
                python3 scripts/serve_profile.py "$d/ncu.csv" 2>&1
            fi
        } >"$R/profile-$q.txt" 2>&1
        cat "$R/profile-$q.txt"
        cp "$R/profile-$q.txt" "$OUT/"
    done
}

# NF4, a short call: test_gemv_gpu, test_ops_gpu, server_equivalence on CUDA, batch_decode at 16
# rows under gemv_row_tiles 3, 2 and 1 with graphs and 3 without (SHORT_OPTS: other backend
# option sets), the single-stream anchor (short.txt); the tests only where built (TARGETS)
short() {
    local o t
    {
        for t in test_gemv_gpu test_ops_gpu; do
            [ -x "$(dirname "$V")/tests/$t" ] || continue # not among TARGETS
            timeout 100 "$(dirname "$V")/tests/$t" >"$R/$t.txt" 2>&1
            echo "$t: rc $? ($(grep -c FAIL "$R/$t.txt") FAIL lines)"
        done
        grep -sE "silu_mul_rows|16 rows\)" "$R/test_ops_gpu.txt" "$R/test_gemv_gpu.txt"
        VL_SERVE_BACKEND=$BACKEND VLRUN=$V VL_FIXTURES=$root/tests/fixtures \
            VL_TOKENIZER_DIR=$root/.cache/tokenizer timeout -k 10 100 \
            python3 tests/server_equivalence.py >"$R/server_equivalence.txt" 2>&1
        echo "server_equivalence on $BACKEND (rc $?):"
        tail -n 6 "$R/server_equivalence.txt"
        for o in ${SHORT_OPTS:-gemv_row_tiles=3 gemv_row_tiles=3,no_graphs=1 gemv_row_tiles=2 gemv_row_tiles=1}; do
            [ "$(left)" -gt 25 ] || break
            echo "batch_decode 16 $o: $(batch_decode nf4 $o 16)"
        done
        [ "$(left)" -lt 25 ] || timeout 30 "$V" examples/page.png --max-tokens 128 --json --backend "$BACKEND" \
            "${MODEL[@]}" --quant nf4 2>/dev/null | python3 -c \
            'import json,sys; print("single stream (CLI, graphs): decode %.1f tok/s" % json.load(sys.stdin)["timings"]["decode_tok_s"])'
    } >"$OUT/short.txt" 2>&1 # straight into $OUT: what was done comes back if the call is cut
    cat "$OUT/short.txt"
}

build
case $part in
checks) checks ;;
bench) bench "one-page mix" bf16 nf4 ;;
bench-*) bench "one-page mix" "${part#bench-}" ;;
one-page) bench one-page bf16 nf4 ;;
rows16) rows16 ;;
profile) profile ;;
short) short ;;
one-page-*) bench one-page "${part#one-page-}" ;;
mix-*) bench mix "${part#mix-}" ;;
esac
