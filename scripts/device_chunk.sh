#!/usr/bin/env bash
# device_chunk.sh: time to first token against the prefill chunk (issue 14), on a built vlrun.
#   VLRUN=path/to/vlrun OUT=dir [DEADLINE=s] scripts/device_chunk.sh [extra vlrun args...]
# x28 page.png (bf16, NF4, NF4 + int8 cache) and 28 different pages (page.png shifted and
# numbered, as device_attention.sh makes them), 64 tokens, --chunk 2048 / 4096 / 8192; one line
# per run in $OUT/chunk/log.txt: TTFT, vision and prefill time, peak device memory and predicted.
set -u
O=${OUT:-/tmp/out}/chunk; mkdir -p $O
. scripts/device_common.sh
device_begin $O/log.txt ${DEADLINE:-560}
make_pages
M=(--backend cuda --random-weights --config examples/qwen2-vl-7b-instruct.json --tokenizer $TOK
    --json --max-tokens 64 "$@")
run() { # TAG CHUNK ARGS...
    local tag=$1 ch=$2; shift 2
    left 25 "$tag chunk $ch" || return 0
    local f=$O/r_${tag}_c$ch
    timeout 150 $VLRUN "$@" "${M[@]}" --chunk $ch > $f.json 2> $f.err
    local rc=$?
    echo "$(el) $tag chunk $ch rc $rc $(python3 -c "import json; d=json.load(open('$f.json')); t=d['timings']; m=d['memory']; print('ttft %.3f s vision %.3f prefill %.3f decode %.1f tok/s peak %.4f GiB predicted %.4f' % (t['ttft_s'], t['vision_s'], t['prefill_s'], t['decode_tok_s'], m['peak_device']/2**30, m['predicted_peak']/2**30))" 2>&1 | tail -1)" >> $L
}
for ch in 2048 4096 8192; do
    run bf16_x28 $ch examples/page.png x28
    run nf4_x28 $ch examples/page.png x28 --quant nf4
    run nf4kv8_x28 $ch examples/page.png x28 --quant nf4 --kv int8
    run bf16_28p $ch "${PAGES[@]}"
    run nf4_28p $ch "${PAGES[@]}" --quant nf4
done
echo "$(el) done" >> $L
