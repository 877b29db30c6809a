#!/usr/bin/env bash
# S21 call A: (1) main + the NF4 register-table GEMV: test_gemv_gpu, vlbench gemv for
# gemv_nf4_regs 0..4 beside the default int8/bf16 rows and the copy ceiling, SASS opcode counts,
# ncu of the gate/up GEMV; (2) branch s20-intra-overlap's attention (mode 3) in a second tree:
# test_attention_gpu, vlbench modes 3 vs 2, racecheck
set -u
O=$OUT; L=$O/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt 450 ] || { echo "$(el) skipped: $2" >> $L; false; }; }
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
T2=/tmp/t2; mkdir -p $T2
tar cf - --exclude=./build-device --exclude=./build-cpu --exclude=./.git . | tar xf - -C $T2
cp .deps/s21br/cuda_attention_wgmma.cu $T2/kernels/; cp .deps/s21br/test_attention_gpu.c $T2/tests/
sed -i 's/{"attn_prefill_wgmma", FIELD(attn_prefill_wgmma), 0, 0, 2,/{"attn_prefill_wgmma", FIELD(attn_prefill_wgmma), 0, 0, 3,/' $T2/kernels/cuda_config.c
( cd $T2 && cmake -S . -B b2 $CM > $O/build2.txt 2>&1 && cmake --build b2 -j8 --target vlbench --target test_attention_gpu >> $O/build2.txt 2>&1; echo "build2 rc $?" > $O/build2.rc ) &
cmake -S . -B build-device/gpu $CM > $O/build.txt 2>&1 &&
cmake --build build-device/gpu -j8 --target vlbench --target test_gemv_gpu >> $O/build.txt 2>&1
echo "$(el) build rc $?" >> $L; tail -5 $O/build.txt | grep -i error >> $L
B=build-device/gpu; VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
G=$(find $B -name "cuda_gemv_stream.cu.o" | head -1)
cuobjdump -sass $G > /tmp/gemv.sass 2>&1
# opcode histogram of the stream kernels NF4 (FMT 2) RW 4 / 2 / 0 and Q8ROW (FMT 1)
awk '/Function :/{f=$3} /^ +\/\*[0-9a-f]+\*\//{ if (f ~ /ILi2ELi4E|ILi2ELi2E|ILi2ELi0E|ILi1ELi0E/) { op=$2; if (op ~ /^@/) op=$3; sub(/\..*/,"",op); sub(/;/,"",op); c[f" "op]++ } } END{for (k in c) print c[k], k}' /tmp/gemv.sass | sort -k2,2 -k1,1nr > $O/gemv_ops.txt
gzip -c /tmp/gemv.sass > $O/gemv.sass.gz
timeout 240 $B/tests/test_gemv_gpu > $O/test_gemv_gpu.txt 2>&1
echo "$(el) test_gemv_gpu rc $?: $(grep -c FAIL $O/test_gemv_gpu.txt) FAIL lines; $(grep -E 'GEMV outputs' $O/test_gemv_gpu.txt | tr -s ' ' | tr '\n' '|')" >> $L
timeout 60 $VB gemv --iters 100 --warmup 10 > $O/gemv_default.md 2>&1; echo "$(el) gemv default (stream, regs 4) rc $?" >> $L
grep -E '^\| ' $O/gemv_default.md | cut -d'|' -f2-7,10-13 >> $L
for o in gemv_nf4_regs=0 gemv_nf4_regs=1 gemv_nf4_regs=2 gemv_nf4_regs=3 gemv_stream=0,gemv_nf4_regs=0 gemv_stream=0,gemv_nf4_regs=2 gemv_stream=0,gemv_nf4_regs=4; do left 30 "$o" || break
  args=(); for kv in ${o//,/ }; do args+=(--cuda-opt $kv); done
  timeout 40 $VB gemv --quant nf4 --iters 100 --warmup 10 --no-ref "${args[@]}" > $O/gemv_${o//[=,]/_}.md 2>&1
  echo "$(el) nf4 $o: $(grep -E '^\| ' $O/gemv_${o//[=,]/_}.md | grep nf4 | cut -d'|' -f3,5,6,7 | tr -s ' ' | tr '\n' ';')" >> $L
done
left 30 "int8 quant_m1=0" && { timeout 40 $VB gemv --quant int8 --iters 100 --warmup 10 --no-ref --cuda-opt gemv_quant_m1=0 > $O/gemv_int8_m1off.md 2>&1
  echo "$(el) int8 quant_m1=0 (stream everywhere): $(grep -E '^\| ' $O/gemv_int8_m1off.md | grep int8 | cut -d'|' -f3,5,6,7 | tr -s ' ' | tr '\n' ';')" >> $L; }
left 30 "int8 stream=0" && { timeout 40 $VB gemv --quant int8 --iters 100 --warmup 10 --no-ref --cuda-opt gemv_stream=0 --cuda-opt gemv_quant_m1=0 > $O/gemv_int8_s0.md 2>&1
  echo "$(el) int8 stream=0: $(grep -E '^\| ' $O/gemv_int8_s0.md | grep int8 | cut -d'|' -f3,5,6,7 | tr -s ' ' | tr '\n' ';')" >> $L; }
NCU=/usr/local/cuda/bin/ncu
SEC="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats --section InstructionStats"
for o in 4 2; do left 40 "ncu rw $o" || break
timeout 40 $NCU --kernel-name regex:gemv_stream --launch-count 1 $SEC $VB gemv --quant nf4 --shape 18944x3584 --iters 1 --warmup 0 --no-ref --cuda-opt gemv_nf4_regs=$o > $O/ncu_nf4_rw$o.txt 2>&1
echo "$(el) ncu nf4 rw$o: $(grep -E 'Duration|DRAM Throughput|Issue Slots Busy|Registers Per|Achieved Occ|Pipe Alu Cyc|Pipe Fmaheavy Cyc|Pipe Lsu|Lsu Wavefronts' $O/ncu_nf4_rw$o.txt | tr -s ' ' | tr '\n' ';')" >> $L
done
left 40 "ncu int8" && { timeout 40 $NCU --kernel-name regex:gemv_stream --launch-count 1 $SEC $VB gemv --quant int8 --shape 18944x3584 --iters 1 --warmup 0 --no-ref > $O/ncu_int8.txt 2>&1
echo "$(el) ncu int8: $(grep -E 'Duration|DRAM Throughput|Issue Slots Busy|Registers Per|Achieved Occ' $O/ncu_int8.txt | tr -s ' ' | tr '\n' ';')" >> $L; }
wait; cat $O/build2.rc >> $L
V2=$(find $T2/b2 -name vlbench -type f -perm -u+x | head -1)
for r in 1; do for o in 3 2; do left 30 "attn w$o" || break
  timeout 40 $V2 attention --no-ref --kinds prefill,chunk,vision --cuda-opt attn_prefill_wgmma=$o > $O/b$o$r.md 2>&1
  echo "$(el) w$o r$r: $(grep -E '^\| (prefill|chunk|vision)' $O/b$o$r.md | awk -F'|' '{printf "%s %s;", $5, $6}')" >> $L
done; done
left 100 "test_attention_gpu" && { timeout 150 $T2/b2/tests/test_attention_gpu > $O/test_attention_gpu.txt 2>&1
echo "$(el) test_attention_gpu rc $?: $(grep -E '^attention:|passed' $O/test_attention_gpu.txt | tail -5 | tr '\n' '|')" >> $L; }
CS=/usr/local/cuda/bin/compute-sanitizer
left 60 "racecheck" && { timeout 60 $CS --tool racecheck $V2 attention --no-ref --kinds prefill --seq 1500 --iters 1 --warmup 0 --cuda-opt attn_prefill_wgmma=2 > $O/racecheck2.txt 2>&1
echo "$(el) racecheck w2 rc $?: $(grep -E 'RACECHECK SUMMARY|rror' $O/racecheck2.txt | head -3 | tr '\n' '|')" >> $L; }
echo "$(el) done" >> $L
