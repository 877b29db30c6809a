#!/usr/bin/env bash
# device_dq.sh: the dequant GEMM's overlap (dq_overlap) and the first request's one-time costs
# (issue 14), one command on the GPU machine (carry .deps, .cache/tokenizer.json.gz). Results:
# $OUT/dq/log.txt and $OUT/dq/runs.tgz.
#   1. builds build-device/gpu (test_quant_gpu, the dequant GEMM overlapped and serial, runs after the gemm step);
#   2. vlbench gemm, NF4 and int8 at m = 2048 and 8192, dq_overlap 1 / 0, beside cuBLAS bf16;
#   3. NF4 x28 (64 tokens, chunk 8192 and 2048) and NF4 28 different pages, dq_overlap 1 / 0;
#   4. the first request's one-time costs: examples/two_requests (one engine, page.png twice),
#      and bf16 x28 with CUDA_MODULE_LOADING=EAGER beside the default (lazy).
set -u
O=${OUT:-/tmp/out}/dq; mkdir -p $O/runs
. scripts/device_common.sh
device_begin $O/log.txt ${DEADLINE:-570}
trap 'tar czf $O/runs.tgz -C $O runs; rm -rf $O/runs' EXIT
B=build-device/gpu
device_build $B $O/build.txt vlrun vlbench two_requests test_quant_gpu
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
gemm() { vlbench_gemm 90 "$@"; }
S=18944x3584,3584x18944,4608x3584,3584x3584
R=$(seq ${ROUNDS:-2})
for r in $R; do for ov in 1 0; do gemm ov${ov}_$r --quant nf4,int8 --shape $S --m 2048,8192 --cuda-opt dq_overlap=$ov; done; done
left 40 test_quant_gpu && {
(cd $B && timeout 120 ctest -R "^test_quant_gpu\$" --output-on-failure > $O/runs/test_quant_gpu.txt 2>&1)
echo "$(el) test_quant_gpu: $(grep -E 'tests passed|tests failed' $O/runs/test_quant_gpu.txt | tail -1); $(grep -c serial $O/runs/test_quant_gpu.txt) serial cases" >> $L
grep -E "FAIL" $O/runs/test_quant_gpu.txt | head -3 >> $L
}
make_pages
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json --max-tokens 64)
run() { local tag=$1; shift; left 15 "$tag" || return 0
    timeout 60 $B/vlrun "$@" "${M[@]}" > $O/runs/$tag.json 2> $O/runs/$tag.err
    local rc=$?
    echo "$(el) $tag rc $rc $(python3 -c "import json; d=json.load(open('$O/runs/$tag.json')); t=d['timings']
print('load %.3f ttft %.3f vision %.3f chunk %d' % (t['load_s'], t['ttft_s'], t['vision_s'], d['options']['chunk']))" 2>&1 | tail -1)" >> $L
}
for r in $R; do for ov in 1 0; do
    run nf4_x28_ov${ov}_$r examples/page.png x28 --quant nf4 --cuda-opt dq_overlap=$ov
    run nf4_x28_c2048_ov${ov}_$r examples/page.png x28 --quant nf4 --chunk 2048 --cuda-opt dq_overlap=$ov
    run nf4_28p_ov${ov}_$r "${PAGES[@]}" --quant nf4 --cuda-opt dq_overlap=$ov
done; done
TR=$(find $B -name two_requests -type f -perm -u+x | head -1)
timeout 60 $TR examples/qwen2-vl-7b-instruct.json examples/page.png examples/page.png $TOK cuda > $O/runs/two_requests.txt 2>&1
rc=$?
echo "$(el) two_requests rc $rc: $(grep -E 'generated in' $O/runs/two_requests.txt | sed 's/|.*//' | tr '\n' ';')" >> $L
for r in $R; do
    run bf16_x28_lazy_$r examples/page.png x28
    CUDA_MODULE_LOADING=EAGER run bf16_x28_eager_$r examples/page.png x28
done
echo "$(el) done" >> $L
