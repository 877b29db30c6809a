#!/usr/bin/env bash
# S22 call D: the copy-when-it-fits rule on the GPU (x28 NF4 + int8 against 4efda6e, and the
# fallback forced by --mem-budget), racecheck of the prefill kernels (small), ncu of the int8
# chunk kernel (for the next step).
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=$PWD/.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-200} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s22d.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu; OB=$PWD/build-device/old
( cmake -S .deps/old -B $OB $CM -DVL_BUILD_TESTS=OFF > $R/build_old.txt 2>&1 && cmake --build $OB -j6 --target vlrun >> $R/build_old.txt 2>&1; echo "old build rc $?" >> $R/build_old.txt ) &
cmake -S . -B $B $CM > $R/build.txt 2>&1 && cmake --build $B -j12 --target vlbench vlrun >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E "error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
wait; tail -1 $R/build_old.txt >> $L
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1 bin=$2; shift 2; left 15 "$tag" || return 0
  timeout 60 $bin "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  echo "$(el) $tag rc $? $(python3 -c "
import json, hashlib; j=json.load(open('$R/r_$tag.json')); t=j['timings']; m=j['memory']
print('ttft %.3f s decode %.1f tok/s peak %.4f GiB pred %.4f GiB ws %.4f GiB text %s' % (t['ttft_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, m['predicted']['workspace']/2**30, hashlib.md5(str(j.get('text')).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L; }
run nf4kv8_new $B/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
run nf4kv8_old $OB/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
run nf4kv8_budget $B/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8 --mem-budget 7.82G
run nf4kv8_new2 $B/vlrun examples/page.png x28 --max-tokens 64 --quant nf4 --kv int8
CS=/usr/local/cuda/bin/compute-sanitizer
for k in chunk prefill; do left 45 "racecheck $k" || break
  timeout 50 $CS --tool racecheck $VB attention --no-ceilings --no-flush --no-ref --kinds $k --seq 256 --iters 1 --warmup 0 > $R/racecheck_$k.txt 2>&1
  echo "$(el) racecheck $k rc $?: $(grep -E 'SUMMARY|rror|hazard' $R/racecheck_$k.txt | head -3 | tr '\n' '|')" >> $L
done
left 20 ncu && { timeout 30 /usr/local/cuda/bin/ncu --set full --print-details all -k regex:attn_wgmma --launch-skip 1 --launch-count 1 $VB attention --no-ref --no-ceilings --kinds chunk --seq 8192 --iters 1 --warmup 0 > $R/ncu_chunk_int8.txt 2>&1
  echo "$(el) ncu: $(grep -E 'attn_wgmma_kernel| Duration|Issue Slots Busy|Stall (Wait|Barrier|Long)' $R/ncu_chunk_int8.txt | tr -s ' ' | head -8 | tr '\n' ';')" >> $L; }
echo "$(el) done" >> $L
