#!/usr/bin/env bash
# device_dqg.sh: the Hopper dequant GEMMs (kernels/cuda_dequant_gemm_wgmma.cu, dq_wgmma 1, and
# cuda_dequant_gemm_rs.cu, 2 / 3; issue 14), one command on the GPU machine (carry .deps,
# .cache/tokenizer.json.gz). Results: $OUT/dqg/log.txt and $OUT/dqg/runs.tgz. In order, each
# step within DEADLINE:
#   1. builds build-device/gpu; both kernels' SASS: local-memory accesses and wgmma count;
#   2. a smoke run of 2 and 3 with the CPU reference (only those that finish are used below);
#   3. vlbench gemm, NF4 and int8 at m = 2048 and 8192, dq_wgmma 3 / 2 / 1 / 0, beside cuBLAS;
#   4. Nsight Compute of each on NF4 18944 x 3584, m = 2048;
#   5. test_quant_gpu (the slices and the Hopper kernels against the CPU twin), test_cuda_config,
#      test_attention_gpu;
#   6. end to end (64 tokens), each with the SM clock sampled every 20 ms (nvidia-smi): NF4 x28
#      with dq_wgmma 3 / 2 / 0;
#   7. compute-sanitizer memcheck and racecheck of 3 / 2 / 1 on small NF4 / int8 GEMMs;
#   8. vlbench gemm again, forced tile widths of 1, bf16 x28, NF4 with 28 different pages, NF4
#      x200.
set -u
O=${OUT:-/tmp/out}/dqg; mkdir -p $O/runs
. scripts/device_common.sh
device_begin $O/log.txt ${DEADLINE:-570}
trap 'tar czf $O/runs.tgz -C $O runs; rm -rf $O/runs' EXIT
B=build-device/gpu
device_build $B $O/build.txt vlrun vlbench test_quant_gpu test_cuda_config test_attention_gpu
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
for f in wgmma rs; do
    OBJ=$(find $B -name "cuda_dequant_gemm_$f.cu.o" | head -1)
    cuobjdump --dump-sass "$OBJ" > $O/runs/dqg_$f.sass 2>&1
    echo "$(el) sass $f: $(grep -c 'Function :' $O/runs/dqg_$f.sass) functions, $(grep -cE 'STL|LDL' $O/runs/dqg_$f.sass) local accesses, $(grep -c HGMMA $O/runs/dqg_$f.sass) HGMMA" >> $L
done
# the consumer-converting kernel (dq_wgmma 2) has never run: a 20 s smoke with the CPU reference
RS=""  # the variants that finished their smoke: only they are benched and profiled
for wg in 2 3; do
    timeout 25 $VB gemm --iters 1 --warmup 0 --quant nf4,int8 --shape 1024x512,4608x3584 --m 300 \
        --cuda-opt dq_wgmma=$wg > $O/runs/smoke_rs$wg.md 2>&1
    rc=$?
    [ $rc = 0 ] && RS="$wg $RS"
    echo "$(el) smoke rs $wg rc $rc: $(grep -E '^\| ' $O/runs/smoke_rs$wg.md | tr -s ' ' | tail -5 | tr '\n' ';')" >> $L
done
gemm() { vlbench_gemm 90 "$@"; }
S=18944x3584,3584x18944,4608x3584,3584x3584
for wg in $RS 1 0; do gemm wg${wg}_1 --quant nf4,int8 --shape $S --m 2048,8192 --cuda-opt dq_wgmma=$wg; done
# Nsight Compute of the Hopper kernel (NF4 and int8, 18944 x 3584, m = 2048): issue slots,
# warp states and stall reasons per warp, the source counters (is the producer the bound?)
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for q in $(for w in $RS; do echo nf4:$w; done) nf4:1; do wg=${q#*:}; q=${q%:*}_$wg
    [ -n "$NCU" ] && left 80 "ncu $q" || continue
    timeout 70 "$NCU" --clock-control none --section LaunchStats --section Occupancy \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats --section InstructionStats --section SourceCounters \
        -k regex:dqg --launch-count 1 -o $O/runs/ncu_$q -f $VB gemm --shape 18944x3584 \
        --m 2048 --quant ${q%_*} --no-ref --iters 1 --warmup 0 --cuda-opt dq_wgmma=$wg > $O/runs/ncu_$q.log 2>&1
    "$NCU" -i $O/runs/ncu_$q.ncu-rep --page details --print-details all > $O/runs/ncu_$q.txt 2>&1
    echo "$(el) ncu $q: $(grep -E 'Duration|Throughput|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Registers Per' $O/runs/ncu_$q.txt | tr -s ' ' | head -14 | tr '\n' ';')" >> $L
done
rc=skipped
left 150 tests && { (cd $B && timeout 240 ctest --timeout 150 -V -R "^test_(quant_gpu|cuda_config|attention_gpu)\$" > $O/runs/tests.txt 2>&1); rc=$?; }
echo "$(el) tests rc $rc: $(grep -E 'tests passed|tests failed' $O/runs/tests.txt | tail -1); $(grep -E 'Hopper dequant GEMM' $O/runs/tests.txt)" >> $L
grep -E "FAIL|wgmma.*outside [1-9]|Passed|Failed" $O/runs/tests.txt | head -12 >> $L
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json --max-tokens 64)
run() { local tag=$1; shift; left 30 "$tag" || return 0
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv,noheader -lms 20 > $O/runs/$tag.clk 2>&1 &
    local smi=$!
    date +%s.%N > $O/runs/$tag.t0
    timeout 100 $B/vlrun "$@" "${M[@]}" > $O/runs/$tag.json 2> $O/runs/$tag.err
    local rc=$?
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    echo "$(el) $tag rc $rc $(python3 -c "import json; d=json.load(open('$O/runs/$tag.json')); t=d['timings']
print('load %.3f ttft %.3f vision %.3f decode %.1f tok/s chunk %d' % (t['load_s'], t['ttft_s'], t['vision_s'], t.get('decode_tok_s', 0), d['options']['chunk']))" 2>&1 | tail -1)" >> $L
    echo "    sm clock MHz (20 ms samples): $(cut -d, -f2 $O/runs/$tag.clk | tr -d ' MHz' | tr '\n' ' ' | cut -c1-600)" >> $L
}
for wg in $RS 0; do run nf4_x28_wg$wg examples/page.png x28 --quant nf4 --cuda-opt dq_wgmma=$wg; done
# the rest runs the defaults (dq_wgmma 0)
for tool in memcheck racecheck; do for wg in $RS 1; do
    left 90 $tool || continue
    # only the Hopper kernel instrumented: racecheck spent S26's 120 s on cuBLAS's own kernels
    timeout 120 compute-sanitizer --tool $tool --kernel-name kns=dqg_kernel --error-exitcode 9 \
        $VB gemm --iters 1 --warmup 0 --no-ref --quant nf4,int8 --shape 264x320,1024x512 --m 300 \
        --cuda-opt dq_wgmma=$wg > $O/runs/san_${tool}_$wg.txt 2>&1
    rc=$?
    echo "$(el) $tool wg $wg rc $rc: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $O/runs/san_${tool}_$wg.txt | tr '\n' ' ')" >> $L
done; done
for wg in $RS 1 0; do gemm wg${wg}_2 --quant nf4,int8 --shape $S --m 2048,8192 --cuda-opt dq_wgmma=$wg; done
for c in 256 128; do gemm cols$c --quant nf4 --shape 4608x3584,3584x3584 --m 2048 --cuda-opt dq_wgmma_cols=$c; done
run bf16_x28 examples/page.png x28
make_pages
run nf4_28p "${PAGES[@]}" --quant nf4
left 80 nf4_x200 && run nf4_x200 examples/page.png x200 --quant nf4
echo "$(el) done" >> $L
