#!/usr/bin/env bash
# S21 call C: the lean GEMV (cuda_gemv_lean.cu): test_gemv_gpu, vlbench gemv (lean with
# gemv_nf4_regs 0..4 against cuda_gemv.cu's kernel, gemv_lean=0), ncu, SASS; attention mode 3 vs 2
# (second sample, branch tree); end to end decode lean vs general. Everything in one archive.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-430} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s21c.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
T2=/tmp/t2; mkdir -p $T2
tar cf - --exclude=./build-device --exclude=./build-cpu --exclude=./.git . | tar xf - -C $T2
cp .deps/s21br/cuda_attention_wgmma.cu $T2/kernels/
sed -i 's/{"attn_prefill_wgmma", FIELD(attn_prefill_wgmma), 0, 0, 2,/{"attn_prefill_wgmma", FIELD(attn_prefill_wgmma), 0, 0, 3,/' $T2/kernels/cuda_config.c
( cd $T2 && cmake -S . -B b2 $CM > $R/build2.txt 2>&1 && cmake --build b2 -j6 --target vlbench >> $R/build2.txt 2>&1; echo "build2 rc $?" > $R/build2.rc ) &
cmake -S . -B build-device/gpu $CM > $R/build.txt 2>&1 &&
cmake --build build-device/gpu -j10 --target vlbench --target test_gemv_gpu --target vlrun >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E "error" $R/build.txt | head -5 >> $L
B=build-device/gpu; VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
G=$(find $B -name "cuda_gemv_lean.cu.o" | head -1)
cuobjdump -sass $G > $R/lean.sass 2>&1
awk '/Function :/{f=$3} /^ +\/\*[0-9a-f]+\*\//{ op=$2; if (op ~ /^@/) op=$3; sub(/;/,"",op); split(op,a,"."); c[f" "a[1]]++ } END{for (k in c) print c[k], k}' $R/lean.sass | sort -k2,2 -k1,1nr > $R/lean_ops.txt
timeout 200 $B/tests/test_gemv_gpu > $R/test_gemv_gpu.txt 2>&1
echo "$(el) test_gemv_gpu rc $?: $(grep -c FAIL $R/test_gemv_gpu.txt) FAIL lines; $(grep -E 'passed|lean=1\): .*GEMV outputs' $R/test_gemv_gpu.txt | tr -s ' ' | tr '\n' '|')" >> $L
grep FAIL $R/test_gemv_gpu.txt | head -5 >> $L
timeout 60 $VB gemv --iters 100 --warmup 10 > $R/gemv_default.md 2>&1; echo "$(el) gemv default (lean, regs 4) rc $?" >> $L
grep -E '^\| ' $R/gemv_default.md | cut -d'|' -f2-7,10-13 >> $L
for o in gemv_nf4_regs=0 gemv_nf4_regs=2 gemv_nf4_regs=3 gemv_lean=0,gemv_nf4_regs=0; do left 30 "$o" || break
  args=(); for kv in ${o//,/ }; do args+=(--cuda-opt $kv); done
  f=$R/gemv_${o//[=,]/_}.md
  timeout 40 $VB gemv --quant nf4 --iters 100 --warmup 10 --no-ref "${args[@]}" > $f 2>&1
  echo "$(el) nf4 $o: $(grep -E '^\| ' $f | grep nf4 | cut -d'|' -f3,5,6,7 | tr -s ' ' | tr '\n' ';')" >> $L
done
for o in gemv_quant_m1=0 gemv_lean=0; do left 30 "int8 $o" || break
  f=$R/gemv_int8_${o//[=,]/_}.md
  timeout 40 $VB gemv --quant int8 --iters 100 --warmup 10 --no-ref --cuda-opt $o > $f 2>&1
  echo "$(el) int8 $o: $(grep -E '^\| ' $f | grep int8 | cut -d'|' -f3,5,6,7 | tr -s ' ' | tr '\n' ';')" >> $L
done
NCU=/usr/local/cuda/bin/ncu
for c in "nf4 gemv_nf4_regs=4" "nf4 gemv_nf4_regs=2" "int8 gemv_quant_m1=0"; do set -- $c; left 40 "ncu $c" || break
  f=$R/ncu_$1_${2//[=,]/_}.txt
  timeout 40 $NCU --set full --kernel-name regex:gemv --launch-count 1 --print-details all $VB gemv --quant $1 --shape 18944x3584 --iters 1 --warmup 0 --no-ref --cuda-opt $2 > $f 2>&1
  echo "$(el) ncu $c: $(grep -E ' Duration|DRAM Throughput|Issue Slots Busy|Registers Per|Achieved Occ|Executed Instructions  ' $f | tr -s ' ' | tr '\n' ';')" >> $L
done
wait; cat $R/build2.rc >> $L
V2=$(find $T2/b2 -name vlbench -type f -perm -u+x | head -1)
for o in 3 2; do left 30 "attn w$o" || break
  timeout 40 $V2 attention --no-ref --kinds prefill,chunk,vision --cuda-opt attn_prefill_wgmma=$o > $R/attn_w$o.md 2>&1
  echo "$(el) attn w$o: $(grep -E '^\| (prefill|chunk|vision)' $R/attn_w$o.md | awk -F'|' '{printf "%s %s;", $5, $6}')" >> $L
done
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1; shift; left 25 "$tag" || return 0
  timeout 80 $B/vlrun "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  echo "$(el) $tag rc $? $(python3 -c "import json; t=json.load(open('$R/r_$tag.json'))['timings']; print('ttft %.3f s decode %.1f tok/s' % (t['ttft_s'], t['decode_tok_s']))" 2>&1 | tail -1)" >> $L; }
run nf4_kv8_lean examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8
run nf4_kv8_general examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8 --cuda-opt gemv_lean=0 --cuda-opt gemv_nf4_regs=0
run int8_kv8_lean examples/page.png x28 --max-tokens 512 --quant int8 --kv int8 --cuda-opt gemv_quant_m1=0
run int8_kv8_general examples/page.png x28 --max-tokens 512 --quant int8 --kv int8 --cuda-opt gemv_lean=0
echo "$(el) done" >> $L
