#!/usr/bin/env bash
# S19 call C: kMinSplitKeys 64 (today) / 256 / 384 (single-stream CLI and 16-row NF4 batch_decode
# alternating); server at 16 clients: busy-hook wake-ups vs the old engine_thread.c, and per
# variant; tests + server_equivalence of the 256 variant
set -u
O=$OUT; L=$O/log.txt
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
D=$PWD/.deps/usr
TOK=.cache/tokenizer/tokenizer.json
[ -f $TOK ] || { mkdir -p .cache/tokenizer; gunzip -c .cache/tokenizer.json.gz > $TOK; }
nvidia-smi --query-gpu=name --format=csv,noheader >> $L
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s]"; }
cmake -S . -B build-device/gpu -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF \
  -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$D -DCMAKE_LIBRARY_PATH=$D/lib/x86_64-linux-gnu > $O/build.txt 2>&1
F=kernels/cuda_attention_decode.cu; cp $F /tmp/orig.cu
W=/tmp/var; mkdir -p $W
for v in 64 256 384; do
  sed "s/constexpr int kMinSplitKeys = 64;/constexpr int kMinSplitKeys = $v;/" /tmp/orig.cu > $F
  T=""; [ $v = 256 ] && T="--target test_attention_pages_gpu --target test_attention_gpu"
  cmake --build build-device/gpu -j16 --target vlrun --target batch_decode $T >> $O/build.txt 2>&1
  echo "$(el) build $v rc $? ($(grep -c 'kMinSplitKeys = '$v $F))" >> $L
  mkdir -p $W/$v; cp build-device/gpu/vlrun build-device/gpu/batch_decode $W/$v/
  [ $v = 256 ] && cp build-device/gpu/tests/test_attention_pages_gpu build-device/gpu/tests/test_attention_gpu $W/$v/
done
cp /tmp/orig.cu $F; cp server/engine_thread.c /tmp/et.c; cp .deps/s19_old/engine_thread.c server/engine_thread.c
cmake --build build-device/gpu -j16 --target vlrun >> $O/build.txt 2>&1
echo "$(el) build nohook rc $?" >> $L
mkdir -p $W/nohook; cp build-device/gpu/vlrun $W/nohook/; cp /tmp/et.c server/engine_thread.c
M="--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK --quant nf4"
an() { timeout 60 $W/$1/vlrun examples/page.png --max-tokens 128 --json $M 2>/dev/null | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["timings"]["decode_tok_s"])'; }
bd() { timeout 60 $W/$1/batch_decode 16 examples/page.png --max-tokens 128 $M 2>&1 | tail -1 | grep -o '"window_ms_per_step": [0-9.]*' | cut -d' ' -f2; }
sv() { # VARIANT NAME
  VLRUN=$W/$1/vlrun timeout 90 bash scripts/serve_bench.sh $O/sv_$2 --client python --clients 16 --requests 2 --max-tokens 128 --ready-timeout 60 -- $M --max-batch 64 > $O/sv_$2.txt 2>&1
  python3 -c "import json; r=json.load(open('$O/sv_$2/clients-16.json')); s=r['server']; print('server $2: %.1f tok/s, rows %.2f, %.3f ms/step, ok %d/%d' % (s['decode_tok_s'], s['mean_decode_rows'], 1e3*s['decode_seconds']*s['mean_decode_rows']/s['decode_tokens'], r['ok'], r['requests']))" 2>&1
  rm -rf $O/sv_$2/server.log
}
for r in 1 2; do
  for v in 64 256 384; do echo "$(el) r$r min $v: anchor $(an $v) $(an $v) tok/s, bd16 $(bd $v) $(bd $v) ms/step" >> $L; done
  echo "$(el) $(sv nohook nohook$r)" >> $L
  for v in 64 256 384; do echo "$(el) $(sv $v hook$v-$r)" >> $L; done
done
VL_SERVE_BACKEND=cuda VLRUN=$W/256/vlrun VL_FIXTURES=$PWD/tests/fixtures VL_TOKENIZER_DIR=$PWD/.cache/tokenizer \
  timeout -k 10 120 python3 tests/server_equivalence.py > $O/server_equivalence.txt 2>&1
echo "$(el) server_equivalence (256, hook) rc $? $(tail -1 $O/server_equivalence.txt)" >> $L
for t in test_attention_pages_gpu test_attention_gpu; do
  timeout 120 $W/256/$t > $O/$t.txt 2>&1; echo "$(el) 256 $t rc $? $(tail -1 $O/$t.txt)" >> $L
done
tar czf $O/sv.tgz -C $O $(cd $O; ls -d sv_* test_*.txt server_equivalence.txt) 2>/dev/null; rm -rf $O/sv_* $O/test_*.txt
echo "$(el) done" >> $L
