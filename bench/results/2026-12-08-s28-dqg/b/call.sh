#!/usr/bin/env bash
# call.sh (S28 call B): scripts/device_dqg.sh cut for a short call (end to end x28 before the
# tests; no 28 pages, second round, x200 or bf16): the Hopper dequant GEMM (kernels/cuda_dequant_gemm_wgmma.cu, dq_wgmma 1: the
# consumers make each row's NF4 table; 2: the loading warpgroup makes them; issue 14) against
# the default bf16 slices (dq_wgmma 0) and cuBLAS bf16, one command on the GPU
# machine (carry .deps, .cache/tokenizer.json.gz). Results: $OUT/dqg/log.txt and
# $OUT/dqg/runs.tgz. In order, each step within DEADLINE:
#   1. builds build-device/gpu; the kernel's SASS: local-memory accesses and wgmma count;
#   2. a smoke run of dq_wgmma 1 and 2 with the CPU reference (only those that pass go on);
#   3. vlbench gemm, NF4 and int8 at m = 2048 and 8192, dq_wgmma 2 / 1 / 0, beside cuBLAS;
#   4. test_quant_gpu (the slices and the Hopper kernel against the CPU twin), test_cuda_config;
#   5. Nsight Compute of each passing variant on NF4 18944 x 3584, m = 2048;
#   6. end to end (64 tokens), the SM clock sampled every 20 ms (nvidia-smi): NF4 x28 and NF4
#      with 28 different pages, each passing variant and 0;
#   7. compute-sanitizer memcheck of each on small NF4 / int8 GEMMs (racecheck stops on
#      wgmma / TMA kernels with an internal error: S20, S27);
#   8. vlbench gemm again; NF4 x200 with the first passing variant (0: S27's 31.45 s); bf16 x28.
set -u
O=${OUT:-/tmp/out}/dqg; mkdir -p $O/runs
. scripts/device_common.sh
device_begin $O/log.txt ${DEADLINE:-570}
trap 'tar czf $O/runs.tgz -C $O runs; rm -rf $O/runs' EXIT
B=build-device/gpu
device_build $B $O/build.txt vlrun vlbench test_quant_gpu test_cuda_config
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
OBJ=$(find $B -name "cuda_dequant_gemm_wgmma.cu.o" | head -1)
cuobjdump --dump-sass "$OBJ" > $O/runs/dqg.sass 2>&1
echo "$(el) sass: $(grep -c 'Function :' $O/runs/dqg.sass) functions, $(grep -cE 'STL|LDL' $O/runs/dqg.sass) local accesses, $(grep -c HGMMA $O/runs/dqg.sass) HGMMA" >> $L
FUSED=""
for wg in 2 1; do
    timeout 25 $VB gemm --iters 1 --warmup 0 --quant nf4,int8 --shape 1024x512,4608x3584 --m 300 \
        --cuda-opt dq_wgmma=$wg > $O/runs/smoke$wg.md 2>&1
    rc=$?
    [ $rc = 0 ] && FUSED="$FUSED $wg"
    echo "$(el) smoke $wg rc $rc: $(grep -E '^\| ' $O/runs/smoke$wg.md | tr -s ' ' | tail -5 | tr '\n' ';')" >> $L
done
WG="$FUSED 0"
gemm() { vlbench_gemm 90 "$@"; }
S=18944x3584,3584x18944,4608x3584,3584x3584
for wg in $WG; do gemm wg${wg}_1 --quant nf4,int8 --shape $S --m 2048,8192 --cuda-opt dq_wgmma=$wg; done
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json --max-tokens 64)
run() { local tag=$1; shift; left 30 "$tag" || return 0
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv,noheader -lms 20 > $O/runs/$tag.clk 2>&1 &
    local smi=$!
    timeout 100 $B/vlrun "$@" "${M[@]}" > $O/runs/$tag.json 2> $O/runs/$tag.err
    local rc=$?
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    echo "$(el) $tag rc $rc $(python3 -c "import json; d=json.load(open('$O/runs/$tag.json')); t=d['timings']
print('load %.3f ttft %.3f vision %.3f decode %.1f tok/s chunk %d' % (t['load_s'], t['ttft_s'], t['vision_s'], t.get('decode_tok_s', 0), d['options']['chunk']))" 2>&1 | tail -1)" >> $L
    echo "    sm clock MHz (20 ms samples): $(cut -d, -f2 $O/runs/$tag.clk | tr -d ' MHz' | tr '\n' ' ' | cut -c1-600)" >> $L
}
for wg in $WG; do run nf4_x28_wg$wg examples/page.png x28 --quant nf4 --cuda-opt dq_wgmma=$wg; done
rc=skipped
left 70 tests && { (cd $B && timeout 200 ctest --timeout 150 -V -R "^test_(quant_gpu|cuda_config)\$" > $O/runs/tests.txt 2>&1); rc=$?; }
echo "$(el) tests rc $rc: $(grep -E 'tests passed|tests failed' $O/runs/tests.txt | tail -1); $(grep -E 'Hopper dequant GEMM' $O/runs/tests.txt)" >> $L
grep -E "FAIL|Passed|Failed" $O/runs/tests.txt | head -12 >> $L
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for wg in $FUSED; do
    [ -n "$NCU" ] && left 30 ncu || break
    timeout 70 "$NCU" --clock-control none --section LaunchStats --section Occupancy \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats --section InstructionStats --section SourceCounters \
        -k regex:dqg --launch-count 1 -o $O/runs/ncu_nf4_$wg -f $VB gemm --shape 18944x3584 \
        --m 2048 --quant nf4 --no-ref --iters 1 --warmup 0 --cuda-opt dq_wgmma=$wg > $O/runs/ncu_nf4_$wg.log 2>&1
    "$NCU" -i $O/runs/ncu_nf4_$wg.ncu-rep --page details --print-details all > $O/runs/ncu_nf4_$wg.txt 2>&1
    # per SASS instruction: executions and stall samples (where the warps wait)
    "$NCU" -i $O/runs/ncu_nf4_$wg.ncu-rep --page source --print-source sass --csv > $O/runs/ncu_nf4_${wg}_sass.csv 2>&1
    echo "$(el) ncu nf4 $wg: $(grep -E 'Duration|Throughput|Issue Slots Busy|Warp Cycles Per Issued|No Eligible|Registers Per' $O/runs/ncu_nf4_$wg.txt | tr -s ' ' | head -14 | tr '\n' ';')" >> $L
done
for wg in $FUSED; do
    left 25 memcheck || break
    timeout 100 compute-sanitizer --tool memcheck --kernel-name kns=dqg_kernel --error-exitcode 9 \
        $VB gemm --iters 1 --warmup 0 --no-ref --quant nf4,int8 --shape 264x320,1024x512 --m 300 \
        --cuda-opt dq_wgmma=$wg > $O/runs/san_memcheck_$wg.txt 2>&1
    echo "$(el) memcheck $wg rc $?: $(grep -E 'ERROR SUMMARY' $O/runs/san_memcheck_$wg.txt | tr '\n' ' ')" >> $L
done
echo "$(el) done" >> $L
