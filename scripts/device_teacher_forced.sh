#!/usr/bin/env bash
# On the GPU machine: the engine's teacher-forced logits against transformers on a random
# checkpoint with the real Qwen2-VL-7B shapes (tests/reference/teacher_forced.py), with the
# NF4 (double-quantized and fp32 scales) / int8 engine runs compared too unless
# VL_QUANT_COMPARE=0: against the engine's bf16 run and against transformers with the same
# weights quantized-dequantized in PyTorch (bitsandbytes' rules; VL_QUANT_EMUL=0 skips that).
# Results under $OUT: teacher_forced.json (summaries; "gate", "quant_checks"),
# teacher_forced.tsv (per position), vlrun_*.log.
#   VLRUN=/tmp/vlb/vlrun   a CUDA build of vlrun (default: build one like device_gpu.sh does)
#   VL_ARCH=90             CUDA architecture for that build
# Needs .cache/tokenizer/tokenizer.json carried (scripts/fetch_tokenizer.sh), and .deps when it
# builds. Extra arguments go to teacher_forced.py (e.g. --keep --work /tmp/tf, --model DIR).
# Time on an H100: ~1 min to make and save the 16.6 GB checkpoint, ~30 s per vlrun run (4 with
# the quant runs), ~1 min per transformers load (bf16, then fp32; the emulated NF4 / int8 runs
# reuse the bf16 model: a few s each, +14.4 GB of GPU memory meanwhile): 3-7 min in all.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
source scripts/device_lib.sh
tok=.cache/tokenizer/tokenizer.json
[ -f "$tok" ] || { echo "missing $tok (carry .cache)"; exit 2; }
V=${VLRUN:-}
if [ -z "$V" ] || [ ! -x "$V" ]; then
    vl_device_build . /tmp/vlb "$out/build.log" vlrun ||
        { tail -40 "$out/build.log"; exit 2; }
    V=/tmp/vlb/vlrun
fi
qc=()
[ "${VL_QUANT_COMPARE:-1}" = 0 ] || qc=(--quant-compare)
[ "${VL_QUANT_EMUL:-1}" != 0 ] || qc+=(--no-quant-emul)
# free disk: the checkpoint needs ~17 GB in the work directory
df -h "${TMPDIR:-/tmp}" | tail -1
python3 tests/reference/teacher_forced.py --vlrun "$V" --tokenizer "$tok" --out "$out" "${qc[@]}" "$@" \
    2>&1 | tee "$out/teacher_forced.log" | grep -vE "^\s*$|Warning|warn\(" | tail -45
rc=${PIPESTATUS[0]}
echo "teacher_forced.py exit $rc (0 pass, 1 a check failed, 2 could not run)"
exit "$rc"
