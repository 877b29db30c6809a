#!/usr/bin/env bash
# On the GPU machine: where one decode step's time goes. Builds vlrun, runs it on Qwen2-VL-7B
# shapes (random weights) and has Nsight Compute time every kernel of decode step
# VL_PROFILE_STEP (kernels/cuda_graph.cu brackets that graph replay with cudaProfilerStart/Stop),
# then sums kernel time by kernel name next to the step time of a run without the profiler.
#   VL_PROFILE_RUNS="bf16:28 nf4:28:--kv=int8"   quant:images[:extra-flag] items (default bf16:28)
#   VLRUN=/tmp/vlb/vlrun               reuse a build
# Writes under $OUT: profile_<tag>.csv (ncu), profile_<tag>.txt (summary), run_<tag>.json.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/vlrun-out}
mkdir -p "$out"
source scripts/device_lib.sh
V=${VLRUN:-}
if [ -z "$V" ] || [ ! -x "$V" ]; then
    vl_device_build . /tmp/vlb "$out/build.log" vlrun ||
        { tail -40 "$out/build.log"; exit 2; }
    V=/tmp/vlb/vlrun
fi
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
cfg=examples/qwen2-vl-7b-instruct.json
tok=.cache/tokenizer/tokenizer.json
for item in ${VL_PROFILE_RUNS:-bf16:28}; do
    IFS=: read -r q n extra <<<"$item"
    tag="${q}_x$n${extra:+_${extra//[^a-z0-9]/}}"
    args=(examples/page.png "x$n" --random-weights --config $cfg --tokenizer $tok --json --quant "$q"
        ${extra//=/ })
    timeout 300 "$V" "${args[@]}" --max-tokens 512 >"$out/run_$tag.json" 2>"$out/run_$tag.err"
    VL_PROFILE_STEP=${VL_PROFILE_STEP:-5} timeout 400 "$NCU" --profile-from-start off \
        --clock-control none --cache-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
        "$V" "${args[@]}" --max-tokens 8 >"$out/profile_$tag.csv" 2>"$out/profile_$tag.err"
    python3 - "$out/profile_$tag.csv" "$out/run_$tag.json" >"$out/profile_$tag.txt" <<'PY'
import csv, json, sys, collections
# the program's own stdout shares the file: the table starts at ncu's header row
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID",'))
rows = list(csv.reader(lines[start:]))
head, rows = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
ix = {k: i for i, k in enumerate(head)}
t = collections.defaultdict(lambda: [0, 0.0, 0.0])  # name -> [count, ns, bytes]
per = {}
for r in rows:
    key = (r[ix["ID"]], r[ix["Kernel Name"]])
    v = float(r[ix["Metric Value"]].replace(",", ""))
    unit = r[ix["Metric Unit"]]
    m = r[ix["Metric Name"]]
    scale = {"ns": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "nsecond": 1,
             "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}.get(unit, 1)
    per.setdefault(key, {})[m] = v * scale
for (kid, name), d in per.items():
    short = name.replace("(anonymous namespace)::", "").split("(")[0].split("<")[0][:60]
    e = t[short]
    e[0] += 1; e[1] += d.get("gpu__time_duration.sum", 0); e[2] += d.get("dram__bytes_read.sum", 0)
tot_ns = sum(e[1] for e in t.values()); tot_b = sum(e[2] for e in t.values())
run = json.load(open(sys.argv[2]))
step_ms = 1e3 / run["timings"]["decode_tok_s"]
print(f"kernels {len(per)}, kernel time {tot_ns/1e6:.3f} ms, DRAM read {tot_b/1e9:.3f} GB "
      f"({tot_b/tot_ns:.0f} GB/s over kernel time); step {step_ms:.3f} ms "
      f"({run['timings']['decode_tok_s']:.1f} tok/s): {step_ms - tot_ns/1e6:.3f} ms between kernels")
print(f"{'kernel':60s} {'n':>4s} {'total us':>9s} {'us each':>8s} {'GB/s':>6s} {'share':>6s}")
for name, (c, ns, b) in sorted(t.items(), key=lambda kv: -kv[1][1]):
    print(f"{name:60s} {c:4d} {ns/1e3:9.1f} {ns/1e3/c:8.2f} {b/ns if ns else 0:6.0f} {ns/tot_ns:6.1%}")
PY
    cat "$out/profile_$tag.txt"
done
