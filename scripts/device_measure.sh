#!/usr/bin/env bash
# On the GPU machine: the end-to-end measurements of bench/RESULTS.md in one command, with the
# transformers anchor in the same run:
#   - hf_baseline.py (transformers + SDPA, bf16, x28, 512 tokens) when ANCHORS holds it;
#   - vlrun bf16 x1 x10 x28 x60 (peak device memory per image count, slope vs KV bytes);
#   - vlrun NF4: the largest image count --mem-budget 24G admits (from the refusal line for
#     VL_NF4_PROBE images, default 600: at most ~700 fit the model's 32768 M-RoPE positions), and
#     a run at VL_NF4_IMAGES (default 200) under that budget;
#   - compute-sanitizer memcheck and racecheck on the small checkpoint (tiny-a) with CUDA.
# Needs .deps and .cache carried; ANCHORS=DIR with /work/shared/tools/hf_baseline.py copied in
# (shared/ does not travel); VLRUN=PATH reuses a build. Everything lands under $OUT; results.tgz
# bundles it.
set -uo pipefail
root=$(pwd)
final=${OUT:-/tmp/vlrun-measure}
out=$final/r # everything goes here, then one results.tgz (the device returns a few files only)
mkdir -p "$out"
source scripts/device_lib.sh
V=${VLRUN:-}
if [ -z "$V" ] || [ ! -x "$V" ]; then
    vl_device_build . /tmp/vlm "$out/build.log" vlrun || { tail -40 "$out/build.log"; exit 1; }
    V=/tmp/vlm/vlrun
fi
cfg=examples/qwen2-vl-7b-instruct.json
tok=.cache/tokenizer/tokenizer.json
summary() { # file -> one line
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]; m = r["memory"]; g = 2**30
print("images %d prompt %d: ttft %.3f s, prefill %.0f tok/s, decode %.1f tok/s, peak %.3f GiB, "
      "predicted %.3f GiB (%+.2f%%), kv %.3f GiB, act %.3f GiB, graph %s" % (
      r["images"], r["prompt_tokens"], t["ttft_s"], t["prefill_tok_s"], t["decode_tok_s"],
      m["peak_device"] / g, m["predicted_peak"] / g,
      100 * (m["predicted_peak"] - m["peak_device"]) / m["peak_device"], m["kv_cache"] / g,
      m["activations"] / g, r["options"]["decode_graph"]))
PY
}
if [ -n "${ANCHORS:-}" ] && [ -f "$ANCHORS/hf_baseline.py" ]; then
    (cd "$out" && QWEN_TOKENIZER=$root/$tok OUT=$out timeout 240 python3 "$root/$ANCHORS/hf_baseline.py" \
        sdpa none "${HF_COUNTS:-28}" 512 >"$out/hf.log" 2>&1)
    echo "transformers: $(grep '^{' "$out/hf.log" | tail -3)"
fi
for n in ${VL_COUNTS:-1 10 28 60}; do
    timeout 200 $V examples/page.png x$n --max-tokens 512 --random-weights --config $cfg \
        --tokenizer $tok --json >"$out/bf16_x$n.json" 2>"$out/bf16_x$n.err" &&
        echo "bf16 $(summary "$out/bf16_x$n.json")" || { echo "bf16 x$n failed"; tail -3 "$out/bf16_x$n.err"; }
done
# NF4 in 24 GiB: what the planner admits, then a measured run
$V examples/page.png x${VL_NF4_PROBE:-600} --max-tokens 512 --random-weights --config $cfg --tokenizer $tok \
    --quant nf4 --mem-budget 24G --json >/dev/null 2>"$out/nf4_budget.err"
echo "nf4 budget 24G: $(cat "$out/nf4_budget.err")"
n=${VL_NF4_IMAGES:-200}
timeout 300 $V examples/page.png x$n --max-tokens 512 --random-weights --config $cfg \
    --tokenizer $tok --quant nf4 --mem-budget 24G --json >"$out/nf4_x$n.json" 2>"$out/nf4_x$n.err" &&
    echo "nf4 $(summary "$out/nf4_x$n.json")" || { echo "nf4 x$n failed"; tail -3 "$out/nf4_x$n.err"; }
# compute-sanitizer on the small checkpoint: prefill (flash + vision), graph decode, quantized
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
T=.cache/tokenizer/small_tokenizer.json
[ -f $T ] || python3 tests/reference/make_small_tokenizer.py $tok $T
I=tests/fixtures/models/images
for tool in memcheck racecheck; do
    for q in bf16 nf4; do
        timeout 150 "$cs" --tool $tool --error-exitcode 9 $V --backend cuda \
            --model tests/fixtures/models/tiny-a --tokenizer $T $I/img_a_56x84.png $I/img_b_100x60.png \
            --max-tokens 6 --quant $q --json >"$out/san_${tool}_$q.json" 2>"$out/san_${tool}_$q.err"
        echo "compute-sanitizer $tool $q: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san_${tool}_$q.err" | tail -1)"
    done
done
(cd "$out" && tar czf "$final/results.tgz" ./*) && rm -rf "$out"
