#!/usr/bin/env bash
# S22 call C: the int8 producer with its scales loaded a tile ahead; tests, racecheck (vlbench
# --no-ceilings), vlbench chunk bf16 vs int8, ncu when int8 is slow, end to end vs 4efda6e.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=$PWD/.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-560} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s22c.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu; OB=$PWD/build-device/old
if [ ! -x $OB/vlrun ]; then ( cmake -S .deps/old -B $OB $CM -DVL_BUILD_TESTS=OFF > $R/build_old.txt 2>&1 && cmake --build $OB -j6 --target vlrun >> $R/build_old.txt 2>&1; echo "old build rc $?" >> $R/build_old.txt ) & fi
cmake -S . -B $B $CM > $R/build.txt 2>&1 &&
cmake --build $B -j12 --target vlbench vlrun test_attention_gpu test_kv_cache_gpu test_engine_gpu >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E " error|error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
left 30 chunk && { timeout 40 $VB attention --no-ref --kinds chunk > $R/chunk_w3.md 2>&1
  echo "$(el) chunk: $(grep -E '^\| chunk' $R/chunk_w3.md | awk -F'|' '{printf "%s %s %s;", $2, $5, $6}')" >> $L; }
for t in test_attention_gpu test_kv_cache_gpu test_engine_gpu; do left 60 $t || break
  timeout 150 $B/tests/$t > $R/$t.txt 2>&1
  echo "$(el) $t rc $?: $(grep -E 'FAIL' $R/$t.txt | head -3 | cut -c1-200 | tr '\n' '|') $(grep -E 'passed|int8 cache:|^attention:' $R/$t.txt | tail -3 | tr -s ' ' | tr '\n' '|')" >> $L
done
CS=/usr/local/cuda/bin/compute-sanitizer
for k in chunk prefill; do left 75 "racecheck $k" || break
  timeout 70 $CS --tool racecheck $VB attention --no-ceilings --no-flush --no-ref --kinds $k --seq 1024 --iters 1 --warmup 0 > $R/racecheck_$k.txt 2>&1
  echo "$(el) racecheck $k rc $?: $(grep -E 'SUMMARY|rror|hazard' $R/racecheck_$k.txt | head -3 | tr '\n' '|')" >> $L
done
R8=$(grep -E '^\| chunk at cache end, int8' $R/chunk_w3.md | awk -F'|' '{print $6+0}'); RB=$(grep -E '^\| chunk at cache end \|' $R/chunk_w3.md | awk -F'|' '{print $6+0}')
echo "int8 $R8 bf16 $RB" >> $L
if python3 -c "import sys; sys.exit(0 if float('${R8:-0}') < 0.9*float('${RB:-1}') else 1)"; then left 90 ncu && {
  timeout 90 /usr/local/cuda/bin/ncu --set full --print-details all -k regex:attn_wgmma --launch-count 1 $VB attention --no-ref --no-ceilings --kinds chunk --seq 8192 --iters 1 --warmup 0 --cuda-opt attn_prefill_wgmma=3 > $R/ncu_chunk.txt 2>&1
  echo "$(el) ncu: $(grep -E ' Duration|Issue Slots Busy|Registers Per' $R/ncu_chunk.txt | tr -s ' ' | head -8 | tr '\n' ';')" >> $L; }; fi
wait
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1 bin=$2; shift 2; left 60 "$tag" || return 0
  timeout 120 $bin "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  echo "$(el) $tag rc $? $(python3 -c "
import json, hashlib; j=json.load(open('$R/r_$tag.json')); t=j['timings']; m=j['memory']
print('ttft %.3f s decode %.1f tok/s peak %.4f GiB pred %.4f GiB text %s' % (t['ttft_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, hashlib.md5(str(j.get('text')).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L; }
for i in 1 2; do
  run nf4kv8_new$i $B/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
  run nf4kv8_old$i $OB/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
done
tf() { local tag=$1; shift; left 110 "teacher-forced $tag" || return 0
  mkdir -p $R/tf_$tag
  timeout 150 python3 tests/reference/teacher_forced.py --vlrun $B/vlrun --tokenizer $TOK --config examples/qwen2-vl-7b-instruct.json --out $R/tf_$tag --no-fp32 "$@" > $R/tf_$tag/log.txt 2>&1
  echo "$(el) teacher-forced $tag rc $?: $(grep -E 'floor check|gate' $R/tf_$tag/log.txt | tr '\n' '|')" >> $L; }
tf bf16 --work /tmp/tfw
tf kvint8 --model /tmp/tfw/qwen2-vl-7b-random --vlrun-arg=--kv --vlrun-arg=int8
run nf4kv8_x200_new $B/vlrun examples/page.png x200 --max-tokens 8 --quant nf4 --kv int8
echo "$(el) done" >> $L
