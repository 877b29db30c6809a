#!/usr/bin/env bash
# S23 call B: decode attention with scores as K.Q^T (keys on the m16 side, 8 heads on n8): tests,
# vlbench decode against HEAD (b24f245, built in the same command), end to end x28, ncu, sanitizers.
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=$PWD/.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-400} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s23b.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu; OB=$PWD/build-device/old
( cmake -S .deps/old -B $OB $CM -DVL_BUILD_TESTS=OFF > $R/build_old.txt 2>&1 && cmake --build $OB -j5 --target vlrun vlbench >> $R/build_old.txt 2>&1; echo "old build rc $?" >> $R/build_old.txt ) &
cmake -S . -B $B $CM > $R/build.txt 2>&1 &&
cmake --build $B -j11 --target vlbench vlrun test_attention_gpu test_attention_pages_gpu test_engine_gpu test_kv_pages_gpu >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E " error|error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
for t in test_attention_gpu test_attention_pages_gpu test_kv_pages_gpu test_engine_gpu; do left 60 $t || break
  timeout 120 $B/tests/$t > $R/$t.txt 2>&1
  echo "$(el) $t rc $?: $(grep -E 'passed|FAIL' $R/$t.txt | tail -3 | tr -s ' ' | tr '\n' '|')" >> $L
done
wait; tail -1 $R/build_old.txt >> $L
OVB=$(find $OB -name vlbench -type f -perm -u+x | head -1)
DEC="attention --no-ref --no-ceilings --kinds decode,decode-rt --seq 1364,4096,16384,38192"
for tag in new old new2 old2; do left 20 "bench $tag" || break
  bin=$VB; [[ $tag == old* ]] && bin=$OVB
  timeout 60 $bin $DEC > $R/dec_$tag.md 2>> $R/dec.err
  echo "$(el) $tag: $(grep -E '^\| decode' $R/dec_$tag.md | awk -F'|' '{printf "%s|%s;", $5, $6}')" >> $L
done
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
run() { local tag=$1 bin=$2; shift 2; left 40 "$tag" || return 0
  timeout 120 $bin "$@" "${M[@]}" > $R/r_$tag.json 2> $R/r_$tag.err
  echo "$(el) $tag rc $? $(python3 -c "
import json, hashlib; j=json.load(open('$R/r_$tag.json')); t=j['timings']; m=j['memory']
print('ttft %.3f s decode %.1f tok/s peak %.4f GiB pred %.4f GiB text %s' % (t['ttft_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30, hashlib.md5(str(j.get('text')).encode()).hexdigest()[:8]))" 2>&1 | tail -1)" >> $L; }
run bf16_new $B/vlrun examples/page.png x28 --max-tokens 512
run bf16_old $OB/vlrun examples/page.png x28 --max-tokens 512
run nf4kv8_new $B/vlrun examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8
run nf4kv8_old $OB/vlrun examples/page.png x28 --max-tokens 512 --quant nf4 --kv int8
NCU=/usr/local/cuda/bin/ncu
for s in 1364 38192; do left 40 "ncu $s" || break
  timeout 40 $NCU --set full -k regex:decode --launch-skip 3 --launch-count 2 $VB attention --no-ref --no-ceilings --kinds decode --seq $s --iters 3 --warmup 1 > $R/ncu_dec_$s.txt 2>&1
  echo "$(el) ncu $s rc $?: $(grep -E '^  [a-z_].*decode|  Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Executed Ipc A|Instructions Executed   ' $R/ncu_dec_$s.txt | tr -s ' ' | cut -c1-90 | head -14 | tr '\n' ';')" >> $L
done
CS=/usr/local/cuda/bin/compute-sanitizer
for tool in racecheck memcheck; do left 40 "$tool" || break
  timeout 40 $CS --tool $tool $VB attention --no-ref --no-ceilings --no-flush --kinds decode,decode-rt --seq 300,1364 --iters 1 --warmup 0 > $R/${tool}_decode.txt 2>&1
  echo "$(el) $tool rc $?: $(grep -E 'SUMMARY|rror|hazard' $R/${tool}_decode.txt | head -3 | tr '\n' '|')" >> $L
done
echo "$(el) done" >> $L
