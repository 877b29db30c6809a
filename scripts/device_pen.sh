#!/usr/bin/env bash
# On the GPU machine (repository root; carry .deps and .cache): the repetition penalty's device
# checks, all under $OUT:
#   golden_penalty_tiny-a.json  transformers' generate on tiny-a with repetition_penalty 1.05 and
#                               1.5 (tests/reference/make_penalty_goldens.py, CPU float32; runs
#                               during the build) -> copy it to tests/fixtures/models/
#   goldens.log, build.log, gpu_test.log (test_penalty_gpu: kernels vs CPU twin, graph replay)
#   cli_cuda.log                tests/cli_penalty.sh with --backend cuda (graph and eager)
#   bench.txt                   7B shapes (random weights), page x1, 256 tokens: decode tok/s
#                               without and with --repetition-penalty 1.05, alternated, twice
# Every step is capped so that the whole script ends within ~280 s.
set -uo pipefail
out=${OUT:-/tmp/vlrun-pen}
mkdir -p "$out"
t0=$(date +%s)
left() { echo $((280 - ($(date +%s) - t0))); }
source scripts/device_lib.sh
golden=tests/fixtures/models/golden_penalty_tiny-a.json
python3 tests/reference/make_penalty_goldens.py tests/fixtures "$golden" >"$out/goldens.log" 2>&1 &
gold_pid=$!
vl_device_build . /tmp/vlb-pen "$out/build.log" vlrun test_penalty_gpu ||
    { grep -B2 -A8 "error" "$out/build.log" | head -40; }
echo "build done at $(($(date +%s) - t0)) s"
timeout "$(left)" /tmp/vlb-pen/tests/test_penalty_gpu >"$out/gpu_test.log" 2>&1
echo "test_penalty_gpu rc=$? $(tail -1 "$out/gpu_test.log")"
wait "$gold_pid"
echo "goldens rc=$? $(tail -3 "$out/goldens.log" | tr '\n' ' ')"
cp "$golden" "$out/" 2>/dev/null
[ -f .cache/tokenizer/small_tokenizer.json ] ||
    python3 tests/reference/make_small_tokenizer.py .cache/tokenizer/tokenizer.json \
        .cache/tokenizer/small_tokenizer.json
env="VLRUN=/tmp/vlb-pen/vlrun VL_FIXTURES=$(pwd)/tests/fixtures VL_TOKENIZER_DIR=$(pwd)/.cache/tokenizer"
for mode in graph eager; do
    ng=0
    [ $mode = eager ] && ng=1
    timeout "$(left)" env $env VL_NO_GRAPH=$ng VL_PENALTY_BACKEND=cuda bash tests/cli_penalty.sh \
        >>"$out/cli_cuda.log" 2>&1
    echo "cli_penalty cuda $mode rc=$? $(tail -1 "$out/cli_cuda.log")"
done
cfg=examples/qwen2-vl-7b-instruct.json
for rep in 1 2; do
    for p in 1 1.05; do
        timeout "$(left)" /tmp/vlb-pen/vlrun examples/page.png x1 --max-tokens 256 --random-weights \
            --config $cfg --tokenizer .cache/tokenizer/tokenizer.json --json \
            --repetition-penalty $p >"$out/bench_$p.json" 2>"$out/bench_$p.err"
        echo "run $rep penalty $p rc=$? $(python3 -c "import json,sys;r=json.load(open(sys.argv[1]));t=r['timings'];m=r['memory'];print('decode %.1f tok/s ttft %.3f s peak %.3f GiB pred %.3f GiB graph %s device %s' % (t['decode_tok_s'], t['ttft_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, r['options']['decode_graph'], r['device']))" "$out/bench_$p.json" 2>&1 | tail -1)" |
            tee -a "$out/bench.txt"
    done
done
echo "total $(($(date +%s) - t0)) s"
