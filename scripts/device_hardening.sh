#!/usr/bin/env bash
# On the GPU machine: the hardening issue's checks in one command (logs under $OUT).
#   1. device_gpu.sh: CUDA build, every GPU test, tiny-a CUDA vs CPU, VL_RUNS (default bf16:1);
#   2. tiny-odd (decoder head_dim 16, vision head_dim 20, in-features 48/136/40/160) on CUDA
#      against the CPU engine for bf16, --kv int8, --quant nf4 and int8; compute-sanitizer
#      memcheck on the CUDA run;
#   3. the decode fixtures against this machine's Pillow (tests/reference/check_decode_fixtures.py);
#   4. device_ab.sh against OLD_TREE (the commit before the change) when given: x28 speed.
# usage: scripts/device_hardening.sh [OLD_TREE]
set -uo pipefail
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
VL_RUNS=${VL_RUNS:-bf16:1} bash scripts/device_gpu.sh 2>&1 | tee "$out/device_gpu.txt" | tail -40
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
python3 tests/reference/check_decode_fixtures.py 2>&1 | grep -v UserWarning | tee "$out/pillow_check.txt" | tail -12
if [ -n "${1:-}" ]; then
    ln -sfn "$(pwd)/.deps" "$1/.deps"
    VL_AB_NEW_BUILD=/tmp/vlb bash scripts/device_ab.sh "$1" 2>&1 | tail -20
fi
