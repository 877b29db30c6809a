#!/usr/bin/env bash
set -u
O=$OUT; L=$O/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr; TOK=.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer; gunzip -c .cache/tokenizer.json.gz > $TOK; }
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
cmake --build build-device/gpu -j16 --target vlrun > $O/build.txt 2>&1; echo "$(el) build rc $?" >> $L
V=$PWD/build-device/gpu/vlrun
for q in nf4 bf16 nf4 bf16 nf4; do
  M="--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --quant $q"
  a=$(timeout 60 $V examples/page.png --max-tokens 128 --json $M 2>/dev/null | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["timings"]["decode_tok_s"])')
  VLRUN=$V timeout 90 bash scripts/serve_bench.sh $O/sv --client python --clients 16 --requests 2 --max-tokens 128 --ready-timeout 60 -- $M --max-batch 64 > $O/sv.txt 2>&1
  echo "$(el) $q anchor $a: $(python3 -c "import json; r=json.load(open('$O/sv/clients-16.json')); s=r['server']; print('server %.1f tok/s (x%.2f), rows %.2f, %.3f ms/step, ok %d/%d' % (s['decode_tok_s'], s['decode_tok_s']/$a, s['mean_decode_rows'], 1e3*s['decode_seconds']*s['mean_decode_rows']/s['decode_tokens'], r['ok'], r['requests']))" 2>&1)" >> $L
  rm -rf $O/sv
done
