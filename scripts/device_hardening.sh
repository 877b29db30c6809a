#!/usr/bin/env bash
# On the GPU machine: the hardening issue's checks in one command (logs under $OUT).
#   1. device_gpu.sh: CUDA build, every GPU test, tiny-a CUDA vs CPU, VL_RUNS (default bf16:1);
#   2. tiny-odd (decoder head_dim 16, vision head_dim 20, in-features 48/136/40/160) on CUDA
#      against the CPU engine for bf16, --kv int8, --quant nf4 and int8; compute-sanitizer
#      memcheck on the CUDA run;
#   3. the decode fixtures against this machine's Pillow (tests/reference/check_decode_fixtures.py);
#   4. device_ab.sh against OLD_TREE (the commit before the change) when given: x28 speed.
# usage: scripts/device_hardening.sh [OLD_TREE]
# Env: VL_ODD_ONLY=1 builds vlrun alone and runs step 2 only. The per-run files go to a folder
# under /tmp (the device tool brings back few files); $OUT gets the summaries.
set -uo pipefail
out=/tmp/vl_hardening
mkdir -p "$out" "${OUT:=/tmp/vlrun-out}"
source scripts/device_lib.sh
if [ "${VL_ODD_ONLY:-0}" = 1 ]; then
    vl_device_build . /tmp/vlb "$out/build.log" vlrun || { tail -20 "$out/build.log"; exit 1; }
    python3 tests/reference/make_small_tokenizer.py .cache/tokenizer/tokenizer.json \
        .cache/tokenizer/small_tokenizer.json
else
    VL_RUNS=${VL_RUNS:-bf16:1} OUT=$out bash scripts/device_gpu.sh 2>&1 | tail -40
    cp "$out/gpu_tests.log" "$OUT/"
fi
V=/tmp/vlb/vlrun
T=.cache/tokenizer/small_tokenizer.json
M=tests/fixtures/models/tiny-odd
I=tests/fixtures/models/images
odd() { # BACKEND TAG ARGS...
    local be=$1 tag=$2
    shift 2
    $V --backend "$be" --model $M --tokenizer $T $I/img_a_56x84.png $I/img_b_100x60.png \
        --max-tokens 16 --json --dump-logits "$out/odd_${tag}_$be.f32" "$@" \
        >"$out/odd_${tag}_$be.json" 2>"$out/odd_${tag}_$be.err"
    echo "tiny-odd $tag $be rc=$? $(tail -1 "$out/odd_${tag}_$be.err")"
}
for v in "bf16:" "kvint8:--kv int8" "nf4:--quant nf4" "int8:--quant int8"; do
    tag=${v%%:*} args=${v#*:}
    odd cpu "$tag" $args
    odd cuda "$tag" $args
done
python3 - "$out" <<'PY' | tee "$out/odd_summary.txt"
import json, sys
import numpy as np
o = sys.argv[1]
for tag in ("bf16", "kvint8", "nf4", "int8"):
    try:
        a, b = (json.load(open(f"{o}/odd_{tag}_{x}.json")) for x in ("cpu", "cuda"))
        la, lb = (np.fromfile(f"{o}/odd_{tag}_{x}.f32", np.float32) for x in ("cpu", "cuda"))
    except Exception as e:
        print(f"tiny-odd {tag}: FAILED ({e})")
        continue
    cos = float(la @ lb / np.linalg.norm(la) / np.linalg.norm(lb))
    same = sum(x == y for x, y in zip(a["tokens"], b["tokens"]))
    print(f"tiny-odd {tag}: cuda vs cpu last-logits cosine {cos:.6f}, greedy tokens equal "
          f"{same}/{len(a['tokens'])}")
PY
if command -v compute-sanitizer >/dev/null; then
    for v in "bf16:" "nf4:--quant nf4 --kv int8"; do
        tag=${v%%:*} args=${v#*:}
        compute-sanitizer --tool memcheck --error-exitcode 9 $V --backend cuda --model $M \
            --tokenizer $T $I/img_a_56x84.png --max-tokens 8 --chunk 16 --quiet $args \
            >"$out/memcheck_$tag.txt" 2>&1
        echo "memcheck tiny-odd $tag rc=$? $(grep -E 'ERROR SUMMARY' "$out/memcheck_$tag.txt")"
    done
fi
cp "$out/odd_summary.txt" "$OUT/"
cat "$out"/memcheck_*.txt >"$OUT/memcheck.txt" 2>/dev/null
[ "${VL_ODD_ONLY:-0}" = 1 ] && exit 0
python3 tests/reference/check_decode_fixtures.py 2>&1 | grep -v Warn | tee "$OUT/pillow_check.txt" | tail -12
if [ -n "${1:-}" ]; then
    ln -sfn "$(pwd)/.deps" "$1/.deps"
    VL_AB_NEW_BUILD=/tmp/vlb OUT=$out bash scripts/device_ab.sh "$1" 2>&1 | tail -20
    cp "$out/ab.tsv" "$OUT/"
fi
