#!/usr/bin/env bash
# On the GPU machine: build vlbench (Release, sm_90, in /tmp), run every kernel benchmark, then
# the PyTorch anchors (SDPA backends, cuBLAS GEMV/GEMM, copy bandwidth), and set the two side
# by side. Run from the repository root; everything lands under $OUT.
#
# Before the run, on the workstation (the anchor script lives in /work/shared, which does not
# travel to the device; .deps/ is git-ignored and carried):
#   mkdir -p .deps/anchors && cp /work/shared/tools/kernels_bench.py .deps/anchors/
# then, with carry [".deps"] (the Debian build deps of shared/tools/device-deps.sh + the copy):
#   OUT=$OUT bash scripts/device_bench.sh
#
# Outputs under $OUT:
#   vlbench.md     markdown tables (stdout of vlbench)
#   vlbench.json   the same as one JSON object (vlbench --json-out: one run gives both)
#   vlbench.err    vlbench's progress lines, one per case
#   kernels.json   the PyTorch anchors (kernels_bench.py writes $OUT/kernels.json itself)
#   anchors.log    kernels_bench.py's printout
#   summary.txt    vlbench beside the PyTorch anchors on the shapes both ran
#   build.log, gpu_before.txt (nvidia-smi clocks, temperature, power before the run)
# Env: VL_ARCH (default 90), VLBENCH_ARGS (extra vlbench options, e.g. "--iters 50"),
#      VL_SKIP_ANCHORS=1 (vlbench only).
# Time on an H100 (budget < 8 min): build ~2-3 min (vlbench and vl_kernels only), vlbench
# ~1-2 min, anchors ~1-2 min. Each step's timeout is its own cap or what is left of 470 s
# since the start, whichever is less, so the whole script ends within 8 minutes.
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/vlbench-out}
mkdir -p "$out"
build=/tmp/vlbench-build
t0=$(date +%s)
budget() { # budget CAP: seconds for the next step (at least 10)
    local left=$((t0 + 470 - $(date +%s)))
    [ "$left" -lt "$1" ] || left=$1
    [ "$left" -ge 10 ] || left=10
    echo "$left"
}

source scripts/device_lib.sh
VL_CMAKE_ARGS="-DVL_BUILD_TESTS=OFF" vl_device_build . $build "$out/build.log" vlbench ||
    { tail -40 "$out/build.log"; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader \
    >"$out/gpu_before.txt" 2>&1 || true

t1=$(date +%s)
# shellcheck disable=SC2086
timeout "$(budget 200)" $build/bench/vlbench all --json-out "$out/vlbench.json" ${VLBENCH_ARGS:-} \
    >"$out/vlbench.md" 2>"$out/vlbench.err"
echo "vlbench: rc=$? in $(($(date +%s) - t1)) s"
tail -3 "$out/vlbench.err"

if [ "${VL_SKIP_ANCHORS:-0}" != 1 ]; then
    anchors=$root/.deps/anchors/kernels_bench.py
    if [ -f "$anchors" ]; then
        t2=$(date +%s)
        OUT=$out timeout "$(budget 200)" python3 "$anchors" >"$out/anchors.log" 2>&1
        echo "anchors: rc=$? in $(($(date +%s) - t2)) s"
    else
        echo "anchors: $anchors missing (cp /work/shared/tools/kernels_bench.py .deps/anchors/)"
    fi
fi

# vlbench beside the PyTorch anchors where both measured the same thing
python3 - "$out" >"$out/summary.txt" 2>&1 <<'PY'
import json, os, sys
o = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(o, name)))
    except Exception as e:
        print(f"{name}: not readable ({e})")
        return None
vb, pt = load("vlbench.json"), load("kernels.json")
if vb:
    print(f"device {vb['device']}: copy {vb['copy_GBps']:.0f} GB/s, bf16 peak {vb['bf16_peak_TFLOPs']:.0f} TFLOP/s"
          + (f" (PyTorch copy_: {pt['copy_GBps']:.0f} GB/s)" if pt and 'copy_GBps' in pt else ""))
if not (vb and pt):
    sys.exit(0)
rows = [r for r in vb["rows"] if r["status"] == "ok"]
print("\nGEMV / GEMM: time in us (rate); vlbench N x K = torch n x k; NF4/int8 rates count their own bytes")
print(f"{'kind':5} {'m':>5} {'N':>7} {'K':>6} {'quant':7} {'vlrun':>22} {'cuBLAS (vlbench)':>22} {'torch F.linear':>22}")
def cell(us, rate, unit):
    return "-" if us is None or rate is None else f"{us:.1f} ({rate:.0f} {unit})"
for g in pt.get("gemm", []):
    m = 1 if g["kind"] == "gemv" else g["m"]
    unit, key = ("GB/s", "GBps") if m == 1 else ("TFLOP/s", "TFLOPs")
    t_us = g["us"] if m == 1 else g["ms"] * 1e3
    t_rate = g.get("GBps") if m == 1 else g.get("tflops")
    for r in rows:
        if r["bench"] in ("gemv", "gemm") and r["m"] == m and r["n"] == g["n"] and r["k"] == g["k"]:
            a_us = r["anchor_ms"] * 1e3 if r["anchor_ms"] is not None else None
            print(f"{g['kind']:5} {m:>5} {r['n']:>7} {r['k']:>6} {r['quant']:7} "
                  f"{cell(r['ms'] * 1e3, r[key], unit):>22} {cell(a_us, r['anchor_' + key], unit):>22} "
                  f"{cell(t_us, t_rate, unit):>22}")
print("\nattention prefill / vision, TFLOP/s (torch: SDPA with K/V expanded to all heads)")
for s in pt.get("sdpa", []):
    if "tflops" not in s:
        continue
    for r in rows:
        if r["bench"] != "attention" or r["n_q"] != s["s"] or r["n_kv"] != s["s"] or r["head_dim"] != s["d"]:
            continue
        if r["heads"] != s["hq"] or r["causal"] != s["causal"] or r["n_seg"] != 0:
            continue
        print(f"{s['case']:12} s={s['s']:>6} d={s['d']:>3}  vlrun {r['TFLOPs']:7.1f}   torch {s['backend']:9} {s['tflops']:7.1f}")
print("\ndecode attention, GB/s of K+V")
for d in pt.get("decode_attn", []):
    if "GBps" not in d:
        continue
    for r in rows:
        if r["bench"] == "attention" and r["n_q"] == 1 and r["n_kv"] == d["s"]:
            print(f"n_kv={d['s']:>6}  vlrun {r['GBps']:7.0f}   torch {d['backend']:9} {d['GBps']:7.0f}")
PY
cat "$out/summary.txt"
echo "total: $(($(date +%s) - t0)) s"
