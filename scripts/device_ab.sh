#!/usr/bin/env bash
# On the GPU machine: decode speed of this tree against an earlier commit, in the same command.
# Builds both (Release, VL_ARCH; incremental when the build folders exist), then runs each
# VL_AB_RUNS item ("quant:images[:flag]") with the old build and the new one alternately, REPEAT
# times, on Qwen2-VL-7B shapes (random weights, examples/page.png, 512 tokens).
#   scripts/device_ab.sh OLD_TREE   (a `git worktree` of the earlier commit, .deps linked)
# Env: VL_AB_NEW_BUILD  build folder of this tree (default /tmp/vlb_new; e.g. device_gpu.sh's
#                       /tmp/vlb, to build once)
#      VL_AB_NEW_ENVS   variants of the new build, "name:VAR=value[,VAR=value]" items, each run
#                       as its own build column (e.g. "gemv:VL_GEMV_BF16=1 blas:VL_GEMV_BF16=0");
#                       default one plain "new"
# Writes under $OUT: ab.tsv (tag, build, run, ttft_s, decode_tok_s, peak_gib).
set -uo pipefail
old=${1:?usage: device_ab.sh OLD_TREE}
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
source scripts/device_lib.sh
new_dir=${VL_AB_NEW_BUILD:-/tmp/vlb_new}
vl_device_build "$old" /tmp/vlb_old "$out/build_old.log" vlrun &
vl_device_build . "$new_dir" "$out/build_new.log" vlrun &
wait
[ -x /tmp/vlb_old/vlrun ] && [ -x "$new_dir/vlrun" ] || { tail -20 "$out"/build_*.log; exit 2; }
variants=("old:" ${VL_AB_NEW_ENVS:-new:})
cfg=examples/qwen2-vl-7b-instruct.json
printf "tag\tbuild\trun\tttft_s\tdecode_tok_s\tpeak_gib\n" >"$out/ab.tsv"
for item in ${VL_AB_RUNS:-bf16:28}; do
    IFS=: read -r q n extra <<<"$item"
    tag="${q}_x$n${extra:+_${extra//[^a-z0-9]/}}"
    for r in $(seq "${REPEAT:-2}"); do
        for v in "${variants[@]}"; do
            b=${v%%:*} envs=${v#*:}
            bin=$new_dir/vlrun
            [ "$b" = old ] && bin=/tmp/vlb_old/vlrun
            env ${envs//,/ } timeout 200 "$bin" examples/page.png "x$n" --max-tokens 512 \
                --random-weights --config $cfg --tokenizer .cache/tokenizer/tokenizer.json --json \
                --quant "$q" ${extra//=/ } >"$out/ab_${tag}_$b.json" 2>"$out/ab_${tag}_$b.err"
            python3 - "$out/ab_${tag}_$b.json" "$tag" "$b" "$r" >>"$out/ab.tsv" <<'PY' || echo "$tag $b failed: $(tail -1 "$out/ab_${tag}_$b.err")"
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]; m = r["memory"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{t['ttft_s']:.3f}\t{t['decode_tok_s']:.1f}\t{m['peak_device'] / 2**30:.3f}")
PY
        done
    done
done
cat "$out/ab.tsv"
