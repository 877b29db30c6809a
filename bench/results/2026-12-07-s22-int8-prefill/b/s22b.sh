#!/usr/bin/env bash
# S22 call B: the int8 cache read by the prefill kernels (wgmma producer, mma.sync staging):
# GPU tests, racecheck/memcheck, vlbench chunk (bf16 vs int8, wgmma vs mma.sync), end to end
# against main 4efda6e (.deps/old, built here) in the same command.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=$PWD/.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-570} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s22b.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu; OB=$PWD/build-device/old
( cmake -S .deps/old -B $OB $CM -DVL_BUILD_TESTS=OFF > $R/build_old.txt 2>&1 && cmake --build $OB -j6 --target vlrun >> $R/build_old.txt 2>&1; echo "old build rc $?" >> $R/build_old.txt ) &
cmake -S . -B $B $CM > $R/build.txt 2>&1 &&
cmake --build $B -j12 --target vlbench vlrun test_attention_gpu test_kv_cache_gpu test_kv_pages_gpu test_engine_gpu test_attention_pages_gpu test_gemv_gpu >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E " error|error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
for t in test_attention_gpu test_kv_cache_gpu test_kv_pages_gpu test_attention_pages_gpu test_engine_gpu test_gemv_gpu; do left 60 $t || break
  timeout 120 $B/tests/$t > $R/$t.txt 2>&1
  echo "$(el) $t rc $?: $(grep -E 'passed|int8 cache:|^attention:|FAIL' $R/$t.txt | tail -4 | tr -s ' ' | tr '\n' '|')" >> $L
done
CS=/usr/local/cuda/bin/compute-sanitizer
for tool in racecheck memcheck; do for k in chunk prefill; do left 60 "$tool $k" || break
  timeout 60 $CS --tool $tool $VB attention --no-ref --kinds $k --seq 1024 --iters 1 --warmup 0 > $R/${tool}_$k.txt 2>&1
  echo "$(el) $tool $k rc $?: $(grep -E 'SUMMARY|rror|hazard' $R/${tool}_$k.txt | head -3 | tr '\n' '|')" >> $L
done; done
wait; tail -1 $R/build_old.txt >> $L
for o in 3 0; do left 30 "chunk w$o" || break
  timeout 40 $VB attention --no-ref --kinds chunk,prefill --cuda-opt attn_prefill_wgmma=$o > $R/chunk_w$o.md 2>&1
  echo "$(el) w$o: $(grep -E '^\| (chunk|prefill)' $R/chunk_w$o.md | awk -F'|' '{printf "%s %s %s;", $2, $5, $6}')" >> $L
done
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1 bin=$2; shift 2; left 60 "$tag" || return 0
  timeout 120 $bin "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  echo "$(el) $tag rc $? $(python3 -c "
import json; j=json.load(open('$R/r_$tag.json')); t=j['timings']; m=j.get('memory',{})
print('ttft %.3f s decode %.1f tok/s peak %.4f GiB pred %.4f GiB tokens %s' % (t['ttft_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, __import__('hashlib').md5(str(j.get('text')).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L; }
for i in 1 2; do
  run nf4kv8_new$i $B/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
  run nf4kv8_old$i $OB/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
done
run bf16kv8_new $B/vlrun examples/page.png x28 --max-tokens 64 --kv int8
run bf16kv8_old $OB/vlrun examples/page.png x28 --max-tokens 64 --kv int8
run nf4kv8_x200_new $B/vlrun examples/page.png x200 --max-tokens 8 --quant nf4 --kv int8
run nf4kv8_x200_old $OB/vlrun examples/page.png x200 --max-tokens 8 --quant nf4 --kv int8
echo "$(el) done" >> $L
