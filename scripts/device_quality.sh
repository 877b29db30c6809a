#!/usr/bin/env bash
# device_quality.sh: issue 17 on the GPU machine, in one call per part.
#   train [SECONDS [ARGS]]  tests/reference/train_quality_model.py for SECONDS (default 300) of
#                     training (ARGS: its options, e.g. --init DIR --first-item N to go on):
#                     the model (config.json, model.safetensors, preprocessor_config.json,
#                     tokenizer.json) and train_log.json into $OUT/model (commit them as
#                     tests/fixtures/quality-model); vlrun builds meanwhile (niced, build.txt),
#                     then the bf16 evaluation through `vlrun serve` as a first check
#   eval MODEL_DIR [S] build vlrun, then tests/reference/quality_reference.py (issue 17's table:
#                     transformers and vlrun accuracy, teacher-forced agreement, the gates) within
#                     S seconds (500): $OUT/quality_reference.{json,md}, eval-*.json, reference.txt
#   train-eval SECONDS [ARGS]  both in one call (the machine's 10 minutes hold about 265 s of
#                     training and the measurement, which needs about 250 s): the model into
#                     $OUT/model, then quality_reference on it (no serve check) into $OUT/q
# Carry .deps (scripts/device_deps.sh) and .cache/tokenizer/small_tokenizer.json (scripts/setup.sh
# derives it): the tree, with the 15 MB model, fits the device's 64 MiB carry limit only without
# the 11 MB Qwen2 tokenizer.
# The device returns at most 8 files: each part leaves $OUT/all.tgz and a summary.
set -u
part=${1:-}
: "${OUT:?OUT must name the folder the device tool returns}"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SMALL=.cache/tokenizer/small_tokenizer.json
[ -f $SMALL ] || { echo "carry $SMALL (scripts/setup.sh derives it)"; exit 2; }
pack() { # everything under $OUT into $OUT/all.tgz (the device returns 8 files at most)
    (cd "$OUT" && tar czf /tmp/dq_all.tgz . && find . -mindepth 1 -delete &&
        mv /tmp/dq_all.tgz all.tgz) || echo "could not pack $OUT"
}
build_vlrun() { # DEADLINE [nice]: vlrun's Release build (build.txt), in the background if niced
    if [ "${2:-}" = nice ]; then
        OUT=/tmp/dq_build nice -n 15 bash scripts/device.sh build --deadline "$1" \
            >"$OUT/build.txt" 2>&1 &
        build=$!
    else
        OUT=/tmp/dq_build bash scripts/device.sh build --deadline "$1" >"$OUT/build.txt" 2>&1
    fi
}
train() { # DIR SECONDS [ARGS]: train_quality_model.py into DIR (train.txt)
    python3 tests/reference/train_quality_model.py $SMALL "$1" --small --seconds "$2" "${@:3}" \
        >"$OUT/train.txt" 2>&1
    echo "train rc $?"
}
need_vlrun() { # sets V, or packs what there is and stops
    V=$root/build-device/gpu/vlrun
    [ -x "$V" ] || { echo "no vlrun: see build.txt"; tail -5 "$OUT/build.txt"; pack; exit 1; }
}
reference() { # MODEL OUT_DIR SECONDS: quality_reference.py (reference.txt in OUT_DIR)
    mkdir -p "$2"
    timeout "$3" python3 tests/reference/quality_reference.py --model "$1" --vlrun "$V" \
        --out "$2" >"$2/reference.txt" 2>&1
    echo "quality_reference rc $?"
}
mkdir -p "$OUT"
case $part in
train)
    seconds=${2:-300}
    build_vlrun $((seconds + 120)) nice
    train "$OUT/model" "$seconds" "${@:3}"
    tail -3 "$OUT/train.txt"
    wait $build
    need_vlrun
    timeout 120 python3 scripts/eval_quality.py --model "$OUT/model" --vlrun "$V" --via serve \
        --workers 16 --json-out "$OUT/eval-bf16-kvbf16.json" -- --backend cuda \
        >"$OUT/eval-bf16-kvbf16.txt" 2>&1
    echo "eval bf16 (rc $?):"
    cat "$OUT/eval-bf16-kvbf16.txt"
    pack
    ;;
eval)
    model=${2:?eval needs the model folder}
    build_vlrun 240
    need_vlrun
    reference "$model" "$OUT" "${3:-500}"
    tail -25 "$OUT/reference.txt"
    cat "$OUT/quality_reference.md" 2>/dev/null
    pack
    ;;
train-eval)
    seconds=${2:?train-eval needs the training seconds}
    build_vlrun $((seconds + 30)) nice
    train /tmp/dq_model "$seconds" "${@:3}"
    tail -1 "$OUT/train.txt" | cut -c1-900
    wait $build
    cp -r /tmp/dq_model "$OUT/model"
    need_vlrun
    reference /tmp/dq_model "$OUT/q" $((590 - SECONDS))
    sed -n '/^Lowest/,$p' "$OUT/q/quality_reference.md" 2>/dev/null
    pack
    ;;
*)
    echo "usage: scripts/device_quality.sh train [SECONDS [ARGS]] | eval MODEL_DIR [SECONDS] |" \
        "train-eval SECONDS [ARGS]" >&2
    exit 2
    ;;
esac
