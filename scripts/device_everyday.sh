#!/usr/bin/env bash
# On the GPU machine (repository root; carry .deps, .cache and .devcarry/old = `git archive` of
# the anchor commit): the everyday-use issue's device checks, logs under $OUT:
#   gpu_tests.log   ctest -L gpu (kernels vs CPU twins, engine, penalty ops, graph replay)
#   cli_cuda.log    cli_generation, cli_chat, cli_penalty on --backend cuda
#   chat_7b.txt     a --chat session on Qwen2-VL-7B shapes (random weights): two turns, an image
#   ab.txt          the mission's command (x28 pages, 512 tokens; bf16, and nf4 + int8 cache),
#                   this tree against the anchor tree, alternated, same card
set -uo pipefail
out=${OUT:-/tmp/vlrun-everyday}
mkdir -p "$out"
t0=$(date +%s)
source scripts/device_lib.sh
vl_device_build . /tmp/vlb "$out/build.log" &
new_pid=$!
if [ -d .devcarry/old ]; then
    (cd .devcarry/old && ln -sfn ../../.deps .deps)
    vl_device_build .devcarry/old /tmp/vlb-old "$out/build_old.log" vlrun &
fi
wait
[ -x /tmp/vlb/vlrun ] || { grep -B2 -A8 "error" "$out/build.log" | head -40; exit 1; }
echo "builds done at $(($(date +%s) - t0)) s"
T=.cache/tokenizer/small_tokenizer.json
[ -f $T ] || python3 tests/reference/make_small_tokenizer.py .cache/tokenizer/tokenizer.json $T
(cd /tmp/vlb && timeout 200 ctest -L gpu --output-on-failure -j1 >"$out/gpu_tests.log" 2>&1)
grep -E "tests passed|Failed|\*\*\*" "$out/gpu_tests.log" | tail -12
export VLRUN=/tmp/vlb/vlrun VL_FIXTURES=$PWD/tests/fixtures VL_TOKENIZER_DIR=$PWD/.cache/tokenizer
for t in cli_generation cli_chat cli_penalty; do
    echo "== $t (cuda)" >>"$out/cli_cuda.log"
    VL_BACKEND=cuda VL_PENALTY_BACKEND=cuda timeout 120 bash tests/$t.sh >>"$out/cli_cuda.log" 2>&1
    echo "$t cuda rc=$? $(tail -1 "$out/cli_cuda.log")"
done
cfg=examples/qwen2-vl-7b-instruct.json
BIG=(--random-weights --config $cfg --tokenizer .cache/tokenizer/tokenizer.json)
printf 'What is on this page?\n/image examples/page.png\nAnd now with the page?\n' |
    timeout 120 /tmp/vlb/vlrun --chat "${BIG[@]}" --max-tokens 32 >"$out/chat_7b.txt" 2>&1
echo "chat 7b rc=$?"
ab() { # TAG BIN ARGS...
    local tag=$1 bin=$2; shift 2
    timeout 120 "$bin" examples/page.png x28 --max-tokens 512 "${BIG[@]}" --json "$@" \
        >"$out/ab_$tag.json" 2>/dev/null
    python3 -c "import json,sys;r=json.load(open(sys.argv[1]));t=r['timings'];m=r['memory'];print('%-16s ttft %.3f s  decode %.1f tok/s  peak %.3f GiB  predicted %.3f GiB' % (sys.argv[2], t['ttft_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30))" "$out/ab_$tag.json" "$tag" >>"$out/ab.txt" 2>&1 || echo "$tag failed" >>"$out/ab.txt"
}
if [ -x /tmp/vlb-old/vlrun ]; then
    for round in 1 2; do
        ab "old_bf16_$round" /tmp/vlb-old/vlrun
        ab "new_bf16_$round" /tmp/vlb/vlrun
        ab "new_nf4kv8_$round" /tmp/vlb/vlrun --quant nf4 --kv int8
        ab "old_nf4kv8_$round" /tmp/vlb-old/vlrun --quant nf4 --kv int8
    done
fi
cat "$out/ab.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "total $(($(date +%s) - t0)) s"
