#!/usr/bin/env bash
# device_attention.sh [SECONDS]: issue 14's prefill-attention measurements in one device call
# (what S20's calls D and E ran, in one script), logs and results under $OUT:
#   1. build (Release, sm_90 -> sm_90a) vlbench, test_attention_gpu and vlrun, against the
#      Debian packages in .deps (scripts/device_deps.sh); SASS of the Hopper kernel: its HGMMA
#      count and how many waits follow them (ptxas serializes wgmma it cannot pipeline)
#   2. test_attention_gpu: every case on the Hopper kernel (attn_prefill_wgmma=3, the default,
#      then 2 and 1) and on the mma.sync kernel (0), against the CPU twin
#   3. vlbench attention --kinds prefill,chunk,vision with attn_prefill_wgmma=3, 2, 1 and 0, then
#      bench/anchors/sdpa_attention.py (PyTorch SDPA cuDNN and FlashAttention-2, same shapes)
#   4. Nsight Compute of the Hopper kernel: causal 16384 and the two vision cases
#   5. vlrun end to end (random 7B weights, 64 tokens): x28 page.png bf16 and NF4, 28 different
#      pages (page.png shifted and numbered: the vision tower runs 28 times), NF4 x200, each
#      with attn_prefill_wgmma=3 and 0 (the time to first token is the figure)
# Steps past SECONDS (default 560) are skipped and say so. Usage on the GPU machine, with .deps
# and .cache/tokenizer.json.gz carried: bash scripts/device_attention.sh 560
set -u
O=${OUT:?OUT: where the results go}
. scripts/device_common.sh
device_begin $O/log.txt "${1:-560}"

B=build-device/gpu
device_build $B $O/build.txt vlbench test_attention_gpu vlrun
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
W=$(find $B -name "cuda_attention_wgmma.cu.o" | head -1)
cuobjdump -sass "$W" >$O/wgmma.sass 2>&1
echo "SASS: $(grep -c HGMMA $O/wgmma.sass) HGMMA, $(grep -c 'DEPBAR.LE gsb0, 0x0' $O/wgmma.sass)" \
    "waits for all wgmma, $(grep -c 'LDL\|STL' $O/wgmma.sass) local loads/stores" >>$L
gzip -f $O/wgmma.sass

timeout 200 $B/tests/test_attention_gpu >$O/test_attention_gpu.txt 2>&1
rc=$?
echo "$(el) test_attention_gpu rc $rc: $(grep -E '^attention:|passed' $O/test_attention_gpu.txt |
    tr '\n' '|')" >>$L

for opt in 3 2 1 0; do
    left 40 "vlbench attn_prefill_wgmma=$opt" || break
    timeout 90 $VB attention --no-ref --kinds prefill,chunk,vision \
        --cuda-opt attn_prefill_wgmma=$opt >$O/bench_w$opt.md 2>$O/bench_w$opt.err
    rc=$?
    echo "$(el) vlbench attn_prefill_wgmma=$opt rc $rc" >>$L
    grep -E '^\| (prefill|chunk|vision)' $O/bench_w$opt.md >>$L
done
left 60 "SDPA anchors" && OUT=$O timeout 120 python3 bench/anchors/sdpa_attention.py \
    >$O/sdpa.txt 2>&1 && grep '^{' $O/sdpa.txt >>$L

NCU=/usr/local/cuda/bin/ncu
SEC="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
 --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats
 --section InstructionStats"
# shellcheck disable=SC2086
left 90 "ncu" && timeout 90 $NCU --kernel-name regex:attn_wgmma --launch-count 1 $SEC \
    $VB attention --no-ref --kinds prefill --seq 16384 --iters 1 --warmup 0 >$O/ncu_prefill.txt 2>&1
# shellcheck disable=SC2086
left 60 "ncu vision" && timeout 60 $NCU --kernel-name regex:attn_wgmma --launch-count 2 $SEC \
    $VB attention --no-ref --kinds vision --iters 1 --warmup 0 >$O/ncu_vision.txt 2>&1

make_pages
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK
    --json --max-tokens 64)
run() { # TAG OPT ARGS...
    local tag=$1 opt=$2
    shift 2
    left 30 "$tag attn_prefill_wgmma=$opt" || return 0
    timeout 120 $B/vlrun "$@" "${M[@]}" --cuda-opt attn_prefill_wgmma=$opt \
        >$O/r_${tag}_w$opt.json 2>$O/r_${tag}_w$opt.err
    local rc=$?
    echo "$(el) $tag attn_prefill_wgmma=$opt rc $rc $(python3 -c "import json; t=json.load(open(
'$O/r_${tag}_w$opt.json'))['timings']; print('ttft %.3f s' % t['ttft_s'])" 2>&1 | tail -1)" >>$L
}
for opt in 3 0; do
    run bf16_x28 $opt examples/page.png x28
    run nf4_x28 $opt examples/page.png x28 --quant nf4
    run bf16_28pages $opt "${PAGES[@]}"
    run nf4_28pages $opt "${PAGES[@]}" --quant nf4
done
run nf4_x200 3 examples/page.png x200 --quant nf4
run nf4_x200 0 examples/page.png x200 --quant nf4
echo "$(el) done" >>$L
