#!/usr/bin/env bash
# On the GPU machine: build with CUDA, run the GPU tests, compare the CUDA engine with the CPU
# engine on the tiny golden model, then the main job on Qwen2-VL-7B shapes (random weights).
# Needs .deps (shared/tools/device-deps.sh) and .cache/tokenizer carried. Logs under $OUT.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
source scripts/device_lib.sh
vl_device_build . /tmp/vlb "$out/build.log" ||
    { grep -B2 -A8 "error" "$out/build.log" | head -40; [ -x /tmp/vlb/vlrun ] || exit 1; }
python3 tests/reference/make_small_tokenizer.py .cache/tokenizer/tokenizer.json .cache/tokenizer/small_tokenizer.json
(cd /tmp/vlb && ctest -L gpu --output-on-failure --timeout 240 -j1 >"$out/gpu_tests.log" 2>&1)
grep -E "passed|failed|FAIL|worst|Test #" "$out/gpu_tests.log" | tail -40
V=/tmp/vlb/vlrun
T=.cache/tokenizer/small_tokenizer.json
I=tests/fixtures/models/images
for be in cpu cuda; do
    $V --backend $be --model tests/fixtures/models/tiny-a --tokenizer $T $I/img_a_56x84.png \
        $I/img_b_100x60.png $I/img_c_45x130.png $I/img_a_56x84.png --max-tokens 24 --json \
        --prompt "Describe these pictures." --dump-logits "$out/tiny_$be.f32" >"$out/tiny_$be.json" 2>>"$out/tiny.err"
done
python3 - "$out" <<'PY'
import json, sys, struct
o = sys.argv[1]
a, b = (json.load(open(f"{o}/tiny_{x}.json")) for x in ("cpu", "cuda"))
la, lb = (struct.unpack(f"{4096}f", open(f"{o}/tiny_{x}.f32", "rb").read()) for x in ("cpu", "cuda"))
dot = sum(x * y for x, y in zip(la, lb)); na = sum(x * x for x in la) ** .5; nb = sum(y * y for y in lb) ** .5
same = sum(x == y for x, y in zip(a["tokens"], b["tokens"]))
print(f"tiny-a cuda vs cpu: logits cosine {dot / na / nb:.6f}, greedy tokens equal {same}/24")
PY
cfg=examples/qwen2-vl-7b-instruct.json
# VL_RUNS: "quant:count[:extra-flag]" items, e.g. "bf16:28 nf4:28 int8:28 bf16:28:--attn=naive"
for item in ${VL_RUNS:-bf16:1 bf16:28}; do
    IFS=: read -r q n extra <<<"$item"
    tag="${q}_x$n${extra:+_${extra//[^a-z0-9]/}}"
    timeout 300 $V examples/page.png x$n --max-tokens 512 --random-weights --config $cfg \
        --tokenizer .cache/tokenizer/tokenizer.json --json --quant "$q" ${extra//=/ } \
        >"$out/$tag.json" 2>"$out/$tag.err"
    echo "$tag rc=$? $(python3 -c "import json,sys;r=json.load(open(sys.argv[1]));t=r['timings'];m=r['memory'];print('ttft %.3f decode %.1f tok/s prefill %.0f tok/s peak %.3f GiB pred %.3f GiB base %.3f graph %s' % (t['ttft_s'], t['decode_tok_s'], t['prefill_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, m['device_used_before_load']/2**30, r['options']['decode_graph']))" "$out/$tag.json" 2>/dev/null) $(tail -2 "$out/$tag.err" | tr '\n' ' ')"
done
