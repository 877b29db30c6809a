#!/usr/bin/env bash
# On the GPU machine: decode speed of this tree against an earlier commit, in the same command.
# Builds both (Release, VL_ARCH), then runs each VL_AB_RUNS item ("quant:images[:flag]") with
# the old build and the new one alternately, REPEAT times, on Qwen2-VL-7B shapes (random
# weights, examples/page.png, 512 tokens). The old tree is a `git worktree` of $1 made here.
#   scripts/device_ab.sh OLD_COMMIT_DIR   (a checkout of the earlier commit, .deps linked)
# Writes under $OUT: ab.tsv (tag, build, run, ttft_s, decode_tok_s, peak_gib).
set -uo pipefail
root=$(pwd)
old=${1:?usage: device_ab.sh OLD_TREE}
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
build() { # src dir, build dir
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_CUDA_ARCHITECTURES="${VL_ARCH:-90}" \
        -DCMAKE_PREFIX_PATH="$root/.deps/usr" -DCMAKE_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu" \
        >"$out/build_$(basename "$2").log" 2>&1 &&
        cmake --build "$2" -j8 --target vlrun >>"$out/build_$(basename "$2").log" 2>&1
}
build "$old" /tmp/vlb_old & build . /tmp/vlb_new & wait
[ -x /tmp/vlb_old/vlrun ] && [ -x /tmp/vlb_new/vlrun ] || { tail -20 "$out"/build_*.log; exit 2; }
cfg=examples/qwen2-vl-7b-instruct.json
printf "tag\tbuild\trun\tttft_s\tdecode_tok_s\tpeak_gib\n" >"$out/ab.tsv"
for item in ${VL_AB_RUNS:-bf16:28}; do
    IFS=: read -r q n extra <<<"$item"
    tag="${q}_x$n${extra:+_${extra//[^a-z0-9]/}}"
    for r in $(seq "${REPEAT:-2}"); do
        for b in old new; do
            timeout 200 /tmp/vlb_$b/vlrun examples/page.png "x$n" --max-tokens 512 --random-weights \
                --config $cfg --tokenizer .cache/tokenizer/tokenizer.json --json --quant "$q" \
                ${extra//=/ } >"$out/ab_${tag}_$b.json" 2>"$out/ab_${tag}_$b.err"
            python3 - "$out/ab_${tag}_$b.json" "$tag" "$b" "$r" >>"$out/ab.tsv" <<'PY' || echo "$tag $b failed: $(tail -1 "$out/ab_${tag}_$b.err")"
import json, sys
r = json.load(open(sys.argv[1])); t = r["timings"]; m = r["memory"]
print(f"{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{t['ttft_s']:.3f}\t{t['decode_tok_s']:.1f}\t{m['peak_device'] / 2**30:.3f}")
PY
        done
    done
done
cat "$out/ab.tsv"
