#!/usr/bin/env bash
# S19 call A: split-count A/B at 16 rows NF4; ncu (real clocks) of the 16-row step and one
# attention launch; server 16 clients with 2 and 6 requests each; CLI anchor
set -u
O=$OUT; L=$O/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer; gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
cmake -S . -B build-device/gpu -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF \
  -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu > $O/build.txt 2>&1 &&
cmake --build build-device/gpu -j16 --target vlrun --target batch_decode >> $O/build.txt 2>&1
echo "$(el) build rc $?" >> $L
V=build-device/gpu/vlrun; BD=build-device/gpu/batch_decode
M="--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --quant nf4"
echo "$(el) anchor: $(timeout 60 $V examples/page.png --max-tokens 128 --json $M 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["decode_tok_s"])')" >> $L
for s in 0 2 4 8 0 2 4 8; do
  o=""; [ $s = 0 ] || o="--cuda-opt attn_decode_splits=$s"
  echo "$(el) splits $s: $(timeout 60 $BD 16 examples/page.png --max-tokens 128 $M $o 2>&1 | tail -1 | grep -o '"window_ms_per_step": [0-9.]*')" >> $L
done
sv() { # NAME REQUESTS [opts]
  local n=$1 r=$2; shift 2
  VLRUN=$PWD/$V timeout 90 bash scripts/serve_bench.sh $O/sv_$n --client python --clients 16 --requests $r --max-tokens 128 --ready-timeout 60 -- $M --max-batch 64 "$@" > $O/sv_$n.txt 2>&1
  python3 -c "import json; s=json.load(open('$O/sv_$n/clients-16.json'))['server']; print('server $n: %.1f tok/s, rows %.2f, %.3f ms/step' % (s['decode_tok_s'], s['mean_decode_rows'], 1e3*s['decode_seconds']*s['mean_decode_rows']/s['decode_tokens']))" 2>&1
  rm -rf $O/sv_$n/server.log
}
echo "$(el) $(sv r2a 2)" >> $L
echo "$(el) $(sv r6a 6)" >> $L
echo "$(el) $(sv r2b 2)" >> $L
echo "$(el) anchor: $(timeout 60 $V examples/page.png --max-tokens 128 --json $M 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["decode_tok_s"])')" >> $L
NCU=/usr/local/cuda/bin/ncu
timeout 90 $NCU --clock-control none --cache-control none --launch-skip 40000 --launch-count 1200 \
  --metrics gpu__time_duration.sum --csv --log-file $O/ncu.csv $BD 16 examples/page.png --max-tokens 256 $M > $O/ncu_run.txt 2>&1
echo "$(el) ncu rc $?" >> $L
python3 scripts/serve_profile.py $O/ncu.csv > $O/profile.txt 2>&1; cat $O/profile.txt >> $L
gzip -9 $O/ncu.csv
timeout 90 $NCU --kernel-name regex:attn_decode --launch-skip 3000 --launch-count 2 --clock-control none \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
  $BD 16 examples/page.png --max-tokens 200 $M > $O/ncu_attn.txt 2>&1
echo "$(el) ncu attn rc $?" >> $L
tar czf $O/sv.tgz -C $O sv_r2a sv_r6a sv_r2b sv_r2a.txt 2>/dev/null; rm -rf $O/sv_r*
echo "$(el) done" >> $L
