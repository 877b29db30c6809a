#!/usr/bin/env bash
# S23 call A: where decode attention's fixed cost goes (vlbench decode with and without the L2
# flush, ncu of the kernels at 1364 and 38192 keys), and where x28 bf16 prefill goes (nsys).
set -u
O=$OUT; R=/tmp/r; mkdir -p $R; L=$R/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=$PWD/.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt ${DEADLINE:-280} ] || { echo "$(el) skipped: $2" >> $L; false; }; }
fin() { tar czf $O/s23a.tgz -C $R . ; cat $L; }
trap fin EXIT
CM="-DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu"
B=$PWD/build-device/gpu
cmake -S . -B $B $CM > $R/build.txt 2>&1 && cmake --build $B -j16 --target vlbench vlrun >> $R/build.txt 2>&1
echo "$(el) build rc $?" >> $L; grep -E "error:" $R/build.txt | head -5 >> $L
VB=$(find $B -name vlbench -type f -perm -u+x | head -1)
DEC="attention --no-ref --kinds decode,decode-rt --seq 1364,4096,16384,38192"
timeout 60 $VB $DEC > $R/dec_flush.md 2> $R/dec_flush.err; echo "$(el) dec flush rc $?" >> $L
timeout 60 $VB $DEC --no-flush --no-ceilings > $R/dec_noflush.md 2>> $R/dec_flush.err; echo "$(el) dec noflush rc $?" >> $L
grep -i decode $R/dec_flush.md $R/dec_noflush.md >> $L
NCU=/usr/local/cuda/bin/ncu
for s in 1364 38192; do left 40 "ncu $s" || break
  timeout 40 $NCU --set full --print-details all -k regex:decode --launch-skip 6 --launch-count 2 $VB attention --no-ref --no-ceilings --kinds decode --seq $s --iters 3 --warmup 1 > $R/ncu_dec_$s.txt 2>&1
  echo "$(el) ncu $s rc $?: $(grep -E '^  [a-z_].*decode|  Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Grid Size' $R/ncu_dec_$s.txt | tr -s ' ' | head -14 | tr '\n' ';')" >> $L
done
left 20 anchors && { timeout 60 python3 .deps/anchors/kernels_bench.py > $R/anchors.txt 2>&1; echo "$(el) anchors rc $?" >> $L; grep decode $R/anchors.txt >> $L; }
NS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
echo "nsys: $NS" >> $L
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --json)
if [ -n "$NS" ] && left 60 nsys; then
  timeout 90 $NS profile -o $R/x28 --force-overwrite true -t cuda --stats=false $B/vlrun examples/page.png x28 --max-tokens 4 "${M[@]}" > $R/nsys_run.txt 2>&1
  echo "$(el) nsys rc $?" >> $L
  timeout 60 $NS stats -r cuda_gpu_kern_sum -f csv -o $R/x28 $R/x28.nsys-rep > /dev/null 2>&1; rm -f $R/x28.sqlite
  head -25 $R/x28_cuda_gpu_kern_sum.csv | cut -c1-200 >> $L
fi
echo "$(el) done" >> $L
