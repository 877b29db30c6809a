#!/usr/bin/env bash
# S23 call C: decode attention's fixed cost: the merge of the warps four columns a thread with the
# weights made once per head, the tail's first batch loaded with the maxima; against b24f245 (built
# here); the launch floor (micro-benchmark), plans forced by knobs, ncu's SASS profile, racecheck.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-330} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s23c.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu; OB=$PWD/build-device/old
( cmake -S .deps/old -B $OB $CM -DVL_BUILD_TESTS=OFF > $R/build_old.txt 2>&1 && cmake --build $OB -j4 --target vlbench >> $R/build_old.txt 2>&1; echo "old build rc $?" >> $R/build_old.txt
  nvcc -std=c++17 -O2 -arch=sm_90 .deps/micro/launch_floor.cu -o /tmp/lf > $R/micro_build.txt 2>&1 ) &
cmake -S . -B $B $CM > $R/build.txt 2>&1 && cmake --build $B -j12 --target vlbench test_attention_gpu test_attention_pages_gpu >> $R/build.txt 2>&1
rc=$?; echo "$(el) build rc $rc" >> $L; grep -E " error|error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
for t in test_attention_gpu test_attention_pages_gpu; do left 60 $t || break
  timeout 120 $B/tests/$t > $R/$t.txt 2>&1; rc=$?
  echo "$(el) $t rc $rc: $(grep -E 'passed|FAIL' $R/$t.txt | tail -3 | tr -s ' ' | tr '\n' '|')" >> $L
done
wait; tail -1 $R/build_old.txt >> $L
timeout 60 /tmp/lf > $R/micro.txt 2>&1; echo "$(el) micro rc $?" >> $L; cat $R/micro.txt >> $L
OVB=$(find $OB -name vlbench -type f -perm -u+x | head -1)
DEC="attention --no-ref --no-ceilings --kinds decode,decode-rt --seq 1364,4096,16384,38192"
for tag in new old new2 old2; do left 20 "bench $tag" || break
  bin=$VB; [[ $tag == old* ]] && bin=$OVB
  timeout 60 $bin $DEC > $R/dec_$tag.md 2>> $R/dec.err
  echo "$(el) $tag: $(grep -E '^\| decode' $R/dec_$tag.md | awk -F'|' '{printf "%s|%s;", $5, $6}')" >> $L
done
for cfg in "" "attn_decode_splits=1" "attn_decode_splits=4" "attn_decode_splits=22" "attn_decode_tail=0"; do left 15 "knob $cfg" || break
  opt=(); [ -n "$cfg" ] && opt=(--cuda-opt $cfg)
  timeout 30 $VB attention --no-ref --no-ceilings --kinds decode --seq 64,1364 "${opt[@]}" > $R/knob.md 2>> $R/knob.err
  echo "$(el) [$cfg]: $(grep -E '^\| decode' $R/knob.md | awk -F'|' '{printf "%s %s|%s;", $3, $5, $6}')" >> $L
done
CS=/usr/local/cuda/bin/compute-sanitizer
left 70 racecheck && { timeout 70 $CS --tool racecheck $VB attention --no-ref --no-ceilings --no-flush --kinds decode --seq 300,1364 --iters 1 --warmup 0 > $R/racecheck_decode.txt 2>&1; rc=$?
  echo "$(el) racecheck rc $rc: $(grep -E 'SUMMARY|hazard' $R/racecheck_decode.txt | head -3 | tr '\n' '|')" >> $L; }
NCU=/usr/local/cuda/bin/ncu
left 50 ncu && {
  timeout 50 $NCU --set full -o $R/dec1364 -k regex:attn_decode_kernel --launch-skip 2 --launch-count 1 $VB attention --no-ref --no-ceilings --kinds decode --seq 1364 --iters 3 --warmup 1 > $R/ncu_run.txt 2>&1; rc=$?
  echo "$(el) ncu rc $rc" >> $L
  timeout 40 $NCU --import $R/dec1364.ncu-rep --page source --csv --print-source sass > $R/sass1364.csv 2> $R/sass_err.txt; rc=$?
  echo "$(el) sass rc $rc $(wc -l < $R/sass1364.csv) lines; $(head -c 300 $R/sass_err.txt)" >> $L
  timeout 20 $NCU --import $R/dec1364.ncu-rep --page details > $R/ncu_details.txt 2>&1
  grep -E "Duration|Executed Instructions  |SM Active Cycles|Elapsed Cycles" $R/ncu_details.txt | head -5 >> $L
}
echo "$(el) done" >> $L
