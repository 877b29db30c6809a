#!/usr/bin/env bash
# device_pdl_ab.sh: the decode path's `pdl` knob on the device (issue 14; written in S24 without
# a device, first run in S25, which also measured the lean GEMV's L2 prefetch option, slower at
# every distance, since removed). One command, results in $OUT:
#   1. builds this tree (build-device/gpu), whose default is pdl=1, so that every GPU test runs
#      the programmatic launches (test_gemv_gpu, test_ops_gpu, test_attention_gpu,
#      test_attention_pages_gpu, test_engine_gpu: its decode graphs capture them);
#   2. end to end, x28 page.png, 512 tokens: NF4 + int8 cache and bf16, pdl 0 / 1 alternating
#      (two rounds), the generated tokens compared (pdl changes no bits);
#   3. vlbench gemv NF4 / int8, vlbench decode attention pdl 0 / 1;
#   4. compute-sanitizer memcheck of the GEMVs under pdl=1.
# Run from the tree root with .deps (scripts/device_deps.sh) and .cache/tokenizer.json.gz carried.
set -u
O=${OUT:-/tmp/out}; R=$O/r; mkdir -p $R
. scripts/device_common.sh
device_begin $R/log.txt ${DEADLINE:-560}
trap 'cat $L' EXIT
echo "pdl default: $(grep -o '\.pdl = [01]' kernels/cuda_config.c)" >> $L
TESTS="test_gemv_gpu test_ops_gpu test_engine_gpu test_attention_pages_gpu test_attention_gpu"
B=$PWD/build-device/gpu
device_build $B $R/build.txt vlbench vlrun $TESTS
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { # TAG ARGS...: one vlrun, its TTFT, decode rate and a digest of its tokens in the log
    local tag=$1; shift; left 30 "$tag" || return 0
    timeout 80 $B/vlrun "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
    local rc=$?
    echo "$(el) $tag rc $rc $(python3 -c "import json, hashlib; d=json.load(open('$R/r_$tag.json')); t=d['timings']; print('ttft %.3f s decode %.1f tok/s tokens %s' % (t['ttft_s'], t['decode_tok_s'], hashlib.md5(str(d['tokens']).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L
}
NF4=(examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8)
BF16=(examples/page.png x28 --max-tokens 512)
for r in 1 2; do
    run nf4_pdl0_$r "${NF4[@]}" --cuda-opt pdl=0
    run nf4_pdl1_$r "${NF4[@]}"
    run bf16_pdl0_$r "${BF16[@]}" --cuda-opt pdl=0
    run bf16_pdl1_$r "${BF16[@]}"
done
# the prefill chunk against TTFT (device_chunk.sh) on the same binary, pdl off, given CHUNK_S s
left ${CHUNK_S:-150} "chunk sweep" && VLRUN=$B/vlrun OUT=$R DEADLINE=${CHUNK_S:-150} \
    bash scripts/device_chunk.sh --cuda-opt pdl=0 && echo "$(el) chunk sweep: $R/chunk/log.txt" >> $L
for t in $TESTS; do left 60 $t || break
    timeout 150 $B/tests/$t > $R/$t.txt 2>&1
    rc=$?; echo "$(el) $t rc $rc: $(grep -c FAIL $R/$t.txt) FAIL lines; $(tail -1 $R/$t.txt)" >> $L
    grep FAIL $R/$t.txt | head -3 >> $L
done
S=18944x3584,3584x18944,4608x3584,3584x3584,37888x3584
for q in int8 nf4; do left 20 "$q gemv" || break
    f=$R/gemv_$q.md
    timeout 40 $VB gemv --quant $q --shape $S --iters 100 --warmup 10 --no-ref > $f 2>&1
    echo "$(el) $q gemv: $(grep -E '^\| ' $f | grep $q | cut -d'|' -f3,5,6 | sed 's/m=1 //' | tr -s ' ' | tr '\n' ';')" >> $L
done
for o in 0 1; do left 30 "decode pdl $o" || break
    timeout 60 $VB attention --kinds decode --no-ref --cuda-opt pdl=$o > $R/decode_pdl$o.md 2>&1
    echo "$(el) decode pdl $o: $(grep -E '^\| decode' $R/decode_pdl$o.md | cut -d'|' -f3,5,6 | tr -s ' ' | tr '\n' ';')" >> $L
done
left 45 memcheck && {
    timeout 45 compute-sanitizer --tool memcheck $VB gemv --quant nf4,int8,bf16 --shape 4608x3584,3584x18944 \
        --iters 1 --warmup 0 --no-ref --cuda-opt pdl=1 > $R/memcheck.txt 2>&1
    rc=$?
    echo "$(el) memcheck rc $rc: $(grep -E 'ERROR SUMMARY' $R/memcheck.txt)" >> $L
}
echo "$(el) done" >> $L
