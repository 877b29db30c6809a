#!/usr/bin/env bash
# S24 call B: NF4 words split between the shared pair table and register lookups
# (gemv_nf4_pairs 1/2/4/8 of 8): test_gemv_gpu (bits), vlbench nf4 sweep (two rounds), waves
# (N = 2, 2.24, 2.5, 4, 4.48 waves of the lean grid) for nf4/int8/bf16, ncu metrics, end to end.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-540} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { cp $0 $R/call.sh 2>/dev/null; tar czf $O/s24b.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
cmake -S . -B build-device/gpu $CM > $R/build.txt 2>&1 &&
cmake --build build-device/gpu -j16 --target vlbench --target test_gemv_gpu --target vlrun >> $R/build.txt 2>&1
rc=$?; echo "$(el) build rc $rc" >> $L; grep -E "error" $R/build.txt | head -5 >> $L
B=build-device/gpu; VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
G=$(find $B -name "cuda_gemv_lean.cu.o" | head -1)
cuobjdump -sass $G > $R/lean.sass 2>&1
awk '/Function :/{f=$3} /^ +\/\*[0-9a-f]+\*\//{ op=$2; if (op ~ /^@/) op=$3; sub(/;/,"",op); split(op,a,"."); c[f" "a[1]]++ } END{for (k in c) print c[k], k}' $R/lean.sass | sort -k2,2 -k1,1nr > $R/lean_ops.txt
timeout 300 $B/tests/test_gemv_gpu > $R/test_gemv_gpu.txt 2>&1
rc=$?; echo "$(el) test_gemv_gpu rc $rc: $(grep -c FAIL $R/test_gemv_gpu.txt) FAIL lines; $(grep -E 'pairs=.*GEMV outputs' $R/test_gemv_gpu.txt | tr -s ' ' | tr '\n' '|')" >> $L
grep FAIL $R/test_gemv_gpu.txt | head -5 >> $L
S=18944x3584,3584x18944,4608x3584,3584x3584,37888x3584
for o in 0 1 2 4 8 0 1 2 4; do left 30 "pairs $o" || break
  f=$R/gemv_nf4_pairs_$o.md; [ -f $f ] && f=${f%.md}_b.md
  timeout 50 $VB gemv --quant nf4 --shape $S --iters 100 --warmup 10 --no-ref --cuda-opt gemv_nf4_pairs=$o > $f 2>&1
  echo "$(el) nf4 pairs $o: $(grep -E '^\| ' $f | grep nf4 | cut -d'|' -f3,5,6 | tr -s ' ' | tr '\n' ';')" >> $L
done
left 60 waves && { timeout 80 $VB gemv --quant nf4,int8,bf16 --shape 16896x3584,18944x3584,21120x3584,33792x3584,37888x3584 --iters 50 --warmup 5 --no-ref > $R/waves.md 2>&1
  echo "$(el) waves: $(grep -E '^\| ' $R/waves.md | grep -v case | cut -d'|' -f3,4,5,6 | tr -s ' ' | tr '\n' ';')" >> $L; }
NCU=/usr/local/cuda/bin/ncu
MET=sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,smsp__inst_executed.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,l1tex__throughput.avg.pct_of_peak_sustained_active
for o in 2 4; do left 40 "ncu $o" || break
  timeout 40 $NCU --metrics $MET --kernel-name regex:gemv --launch-count 1 $VB gemv --quant nf4 --shape 18944x3584 --iters 1 --warmup 0 --no-ref --cuda-opt gemv_nf4_pairs=$o > $R/ncu_p$o.txt 2>&1
  echo "$(el) ncu pairs $o:" >> $L; grep -E "sm__|l1tex|smsp|dram|gpu__" $R/ncu_p$o.txt | tr -s ' ' >> $L
done
left 40 "ncu int8" && { timeout 60 $NCU --set full --kernel-name regex:gemv --launch-count 1 --print-details all $VB gemv --quant int8 --shape 18944x3584 --iters 1 --warmup 0 --no-ref > $R/ncu_int8.txt 2>&1
  echo "$(el) ncu int8: $(grep -E ' Duration|DRAM Throughput|Issue Slots Busy|Registers Per|Achieved Occ|Executed Instructions  |Stall (Long|Wait|Barrier|Math|Not Sel|Short)' $R/ncu_int8.txt | tr -s ' ' | tr '\n' ';')" >> $L; }
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1; shift; left 35 "$tag" || return 0
  timeout 80 $B/vlrun "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  local rc=$?; echo "$(el) $tag rc $rc $(python3 -c "import json; t=json.load(open('$R/r_$tag.json'))['timings']; print('ttft %.3f s decode %.1f tok/s' % (t['ttft_s'], t['decode_tok_s']))" 2>&1 | tail -1)" >> $L; }
for o in 0 2 4 0 2 4; do run nf4_kv8_p$o examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8 --cuda-opt gemv_nf4_pairs=$o; done
echo "$(el) done" >> $L
