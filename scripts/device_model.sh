#!/usr/bin/env bash
# On the GPU machine: the "model" refactor (issue 11) against the commit before it, in one
# command: builds this tree (all targets) and OLD_TREE (vlrun) for sm_90, runs the GPU tests of
# this tree, then the x28 run (bf16, 64 tokens, 7B shapes, random weights) with the old and the
# new build alternately, twice, printing peak memory, plan and speed of each.
#   scripts/device_model.sh OLD_TREE   (e.g. `git archive 3d562a5` unpacked; .deps and .cache
#                                      carried and linked into this root)
set -uo pipefail
old=${1:?usage: device_model.sh OLD_TREE}
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
source scripts/device_lib.sh
vl_device_build "$old" /tmp/vlb_old "$out/build_old.log" vlrun &
vl_device_build . /tmp/vlb_new "$out/build_new.log" &
wait
[ -x /tmp/vlb_old/vlrun ] && [ -x /tmp/vlb_new/vlrun ] ||
    { grep -B2 -A8 "error" "$out"/build_*.log | head -40; exit 2; }
[ -f .cache/tokenizer/small_tokenizer.json ] || python3 tests/reference/make_small_tokenizer.py \
    .cache/tokenizer/tokenizer.json .cache/tokenizer/small_tokenizer.json
(cd /tmp/vlb_new && ctest -L gpu --output-on-failure --timeout 240 -j1 >"$out/gpu_tests.log" 2>&1)
grep -E "tests passed|tests failed|FAIL|Test #" "$out/gpu_tests.log" | tail -12
cfg=examples/qwen2-vl-7b-instruct.json
for r in 1 2; do
    for b in old new; do
        timeout 120 /tmp/vlb_$b/vlrun examples/page.png x28 --max-tokens 64 --random-weights \
            --config $cfg --tokenizer .cache/tokenizer/tokenizer.json --json \
            >"$out/x28_${b}_$r.json" 2>"$out/x28_${b}_$r.err"
        python3 - "$out/x28_${b}_$r.json" "$b" "$r" <<'PY' || echo "$b $r failed: $(tail -1 "$out/x28_${b}_$r.err")"
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]; m = r["memory"]
print(f"x28 {sys.argv[2]} run {sys.argv[3]}: peak_device {m['peak_device']} B "
      f"({m['peak_device'] / 2**30:.3f} GiB), predicted {m['predicted_peak']} B, "
      f"tracked {m['peak_tracked']} B, ttft {t['ttft_s']:.3f} s, "
      f"prefill {t['prefill_tok_s']:.0f} tok/s, decode {t['decode_tok_s']:.1f} tok/s")
PY
    done
done
