#!/usr/bin/env bash
# device_e2e.sh: the end-to-end figures of issue 14 with the defaults of this tree, in one
# command on the GPU machine (carry .deps, .cache/tokenizer.json.gz and
# .cache/tokenizer/small_tokenizer.json). Results: $OUT/e2e/log.txt (one line per step) and
# $OUT/e2e/runs.tgz (every run's JSON report).
#   1. builds build-device/gpu (Release, sm_90) with vlrun, vlbench and the GPU tests;
#   2. GPU tests (TESTS, default every test_*_gpu), unless TESTS=none;
#   3. x28 page.png, 512 tokens: bf16, NF4, NF4 + int8 cache (TTFT, decode, chunk taken, peak
#      device against predicted), then 28 different pages (page.png shifted right by 1..28
#      pixels and numbered, so the vision tower runs 28 times), 64 tokens, bf16 and NF4;
#   4. NF4 x200 page.png, 8 tokens, with the default chunk and with --chunk 2048;
#   5. vlrun plan --gpu H100 for x28 beside the runs' chunk and predicted peak;
#   6. while time remains: the dequant GEMM at m = 2048 and 8192 against cuBLAS bf16, with its
#      slice rule and forced slice rows (dq_slice_rows), and cuBLAS alone on slice-sized shapes.
set -u
O=${OUT:-/tmp/out}/e2e; mkdir -p $O/runs
. scripts/device_common.sh
device_begin $O/log.txt ${DEADLINE:-570}
trap 'tar czf $O/runs.tgz -C $O runs; rm -rf $O/runs' EXIT
echo "tree $(git rev-parse --short HEAD 2>/dev/null) $(git status --short 2>/dev/null | wc -l) changed" >> $L
B=build-device/gpu
device_build $B $O/build.txt
TESTS=${TESTS:-$(cd $B/tests && ls test_*_gpu 2>/dev/null | tr '\n' ' ')}
[ "$TESTS" = none ] && TESTS=
for t in $TESTS; do left 60 $t || break
    ( cd $B && timeout 200 ctest -R "^$t\$" --output-on-failure > $O/runs/$t.txt 2>&1 )
    echo "$(el) $t: $(grep -E 'tests passed|tests failed' $O/runs/$t.txt | tail -1); $(grep -E '[0-9]+ passed, [0-9]+ failed' $O/runs/$t.txt | tail -1)" >> $L
    grep -E "^FAIL|FAIL " $O/runs/$t.txt | head -3 >> $L
done
make_pages
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { # TAG TIMEOUT ARGS...
    local tag=$1 to=$2; shift 2
    left $((to / 2)) "$tag" || return 0
    timeout $to $B/vlrun "$@" "${M[@]}" > $O/runs/$tag.json 2> $O/runs/$tag.err
    local rc=$?
    echo "$(el) $tag rc $rc $(python3 -c "import json, hashlib; d=json.load(open('$O/runs/$tag.json')); t=d['timings']; m=d['memory']
print('ttft %.3f s vision %.3f decode %.1f tok/s chunk %d peak %.4f GiB predicted %.4f (%+.3f%%) tokens %s' % (t['ttft_s'], t['vision_s'], t['decode_tok_s'], d['options']['chunk'], m['peak_device']/2**30, m['predicted_peak']/2**30, 100.0*(m['predicted_peak']-m['peak_device'])/m['peak_device'], hashlib.md5(str(d['tokens']).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L
}
for r in 1 2; do
    run bf16_x28_$r 60 examples/page.png x28 --max-tokens 512
    run nf4_x28_$r 60 examples/page.png x28 --max-tokens 512 --quant nf4
    run nf4kv8_x28_$r 60 examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8
done
# the defaults before S25 (chunk 2048, ordinary launches), the anchor on whatever card this is
run bf16_x28_old 60 examples/page.png x28 --max-tokens 512 --chunk 2048 --cuda-opt pdl=0
run nf4kv8_x28_old 60 examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8 --chunk 2048 --cuda-opt pdl=0
run bf16_28p 60 "${PAGES[@]}" --max-tokens 64
run nf4_28p 60 "${PAGES[@]}" --max-tokens 64 --quant nf4
run nf4_x200 120 examples/page.png x200 --max-tokens 8 --quant nf4
run nf4_x200_c2048 120 examples/page.png x200 --max-tokens 8 --quant nf4 --chunk 2048
$B/vlrun plan --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --gpu H100 examples/page.png x28 \
    --max-tokens 512 > $O/runs/plan_h100.txt 2>&1
echo "$(el) plan --gpu H100 x28:" >> $L; grep -E "^(bf16|nf4) " $O/runs/plan_h100.txt >> $L
VB=$B/bench/vlbench; [ -x $VB ] || VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
gemm() { vlbench_gemm 60 "$@"; }
S=18944x3584,3584x18944,4608x3584,3584x3584
gemm rule --quant bf16,nf4 --shape $S --m 2048,8192
for r in 512 885 1024 2048 3072 4224 4608; do gemm rows$r --quant nf4 --shape $S --m 2048 --cuda-opt dq_slice_rows=$r; done
gemm slices --quant bf16 --shape 885x18944,1024x3584,2048x3584,3840x3584,4224x3584,4608x3584 --m 2048
echo "$(el) done" >> $L
