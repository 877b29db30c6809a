#!/usr/bin/env bash
# device_quality.sh: issue 17 on the GPU machine, in one call per part.
#   train [SECONDS]   tests/reference/train_quality_model.py for SECONDS (default 300) of training:
#                     the model (config.json, model.safetensors, preprocessor_config.json,
#                     tokenizer.json) and train_log.json into $OUT/model (commit them as
#                     tests/fixtures/quality-model); vlrun builds meanwhile (niced, build.txt),
#                     then the bf16 evaluation through `vlrun serve` as a first check
#   eval MODEL_DIR    build vlrun, then scripts/eval_quality.py over tests/fixtures/quality through
#                     `vlrun serve` on CUDA for bf16, NF4, NF4 double-quant and int8 weights, each
#                     with the bf16 and the int8 KV cache: $OUT/eval-*.json and $OUT/eval.txt
# Carry .deps and .cache/tokenizer (the small tokenizer is derived there if missing).
set -u
part=${1:-}
: "${OUT:?OUT must name the folder the device tool returns}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
TOK=.cache/tokenizer/tokenizer.json
SMALL=.cache/tokenizer/small_tokenizer.json
[ -f $SMALL ] || python3 tests/reference/make_small_tokenizer.py $TOK $SMALL >/dev/null
mkdir -p "$OUT"
case $part in
train)
    seconds=${2:-300}
    OUT=/tmp/dq_build nice -n 15 bash scripts/device.sh build --deadline $((seconds + 120)) \
        >"$OUT/build.txt" 2>&1 &
    build=$!
    python3 tests/reference/train_quality_model.py $TOK "$OUT/model" --seconds "$seconds" \
        >"$OUT/train.txt" 2>&1
    echo "train rc $?"
    tail -3 "$OUT/train.txt"
    wait $build
    V=$root/build-device/gpu/vlrun
    [ -x "$V" ] || { echo "no vlrun: see build.txt"; tail -5 "$OUT/build.txt"; exit 1; }
    timeout 120 python3 scripts/eval_quality.py --model "$OUT/model" --vlrun "$V" --via serve \
        --workers 16 --json-out "$OUT/eval-bf16-kvbf16.json" -- --backend cuda \
        >"$OUT/eval-bf16-kvbf16.txt" 2>&1
    echo "eval bf16 (rc $?):"
    cat "$OUT/eval-bf16-kvbf16.txt"
    ;;
eval)
    model=${2:?eval needs the model folder}
    OUT=/tmp/dq_build bash scripts/device.sh build --deadline 200 >"$OUT/build.txt" 2>&1
    V=$root/build-device/gpu/vlrun
    [ -x "$V" ] || { echo "no vlrun: see build.txt"; tail -5 "$OUT/build.txt"; exit 1; }
    for q in bf16 nf4 nf4-dq int8; do
        for kv in bf16 int8; do
            qa=(--quant "${q%-dq}")
            [ $q != nf4-dq ] || qa+=(--double-quant)
            name=eval-$q-kv$kv
            timeout 300 python3 scripts/eval_quality.py --model "$model" --vlrun "$V" --via serve \
                --workers 16 --json-out "$OUT/$name.json" -- --backend cuda --tokenizer $SMALL \
                "${qa[@]}" --kv "$kv" >"$OUT/$name.txt" 2>&1
            echo "$name (rc $?): $(tail -1 "$OUT/$name.txt")" | tee -a "$OUT/eval.txt"
        done
    done
    ;;
*)
    echo "usage: scripts/device_quality.sh train [SECONDS] | eval MODEL_DIR" >&2
    exit 2
    ;;
esac
