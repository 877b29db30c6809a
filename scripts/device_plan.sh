#!/usr/bin/env bash
# On the GPU machine: vlrun plan against measured peaks (issue 12, "Capacity planning").
#   - nvidia-smi's memory.total and cudaMemGetInfo's total (torch) of the card: gpu_table.c's
#     driver reserve;
#   - vlrun plan for Qwen2-VL-7B shapes, 872x1242 pages, 512 tokens, on A10 and on this card;
#   - vlrun sweep of examples/page.png, bf16 (BF16_COUNTS) and NF4 weights + int8 KV cache
#     (NF4_COUNTS), with the A10 budget line: bench/sweep_h100_*.{csv,svg}.
# Needs .deps and .cache carried; VLRUN=PATH reuses a build. Results under $OUT.
set -uo pipefail
out=${OUT:-/tmp/vlrun-plan}
mkdir -p "$out"
source scripts/device_lib.sh
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; f, t = torch.cuda.mem_get_info(); print("cudaMemGetInfo total %d B = %.1f MiB" % (t, t / 2**20))' 2>&1 | tail -1
V=${VLRUN:-}
if [ -z "$V" ] || [ ! -x "$V" ]; then
    vl_device_build . /tmp/vlp "$out/build.log" vlrun || { tail -40 "$out/build.log"; exit 1; }
    rm -f "$out/build.log"
    V=/tmp/vlp/vlrun
fi
stamp built
cfg=examples/qwen2-vl-7b-instruct.json
tok=.cache/tokenizer/tokenizer.json
$V plan --config $cfg --tokenizer $tok --gpu A10 --image-size 872x1242 --max-tokens 512 | tee "$out/plan_a10.txt"
$V plan --config $cfg --tokenizer $tok --gpu H100 --image-size 872x1242 --max-tokens 512 > "$out/plan_h100.txt"
run_sweep() { # name counts [run options]
    local name=$1 counts=$2
    shift 2
    stamp "sweep $name"
    $V sweep examples/page.png --counts "$counts" --random-weights --config $cfg --tokenizer $tok \
        --max-tokens 512 --gpu A10 --out "$out/sweep_h100_$name" "$@"
}
run_sweep bf16 "${BF16_COUNTS:-1,10,28,60,100}"
run_sweep nf4_kvint8 "${NF4_COUNTS:-1,28,100,200}" --quant nf4 --kv int8
stamp done
