#!/usr/bin/env bash
# device_gemv_profile.sh [SHAPE] [QUANTS] [MS]: the decode GEMV's timing and Nsight Compute profile
# on the device (issue 14's "the profile that shows which limit it hits"). Builds vlbench alone
# (sm_90, Release) in build-prof, runs `vlbench gemm` at the given rows (default 1,8,16) beside
# cuBLAS, then ncu's launch, occupancy, memory, compute, warp-state, scheduler and source
# sections for one launch of the GEMV kernel per (quant, m), and the kernel's SASS. Everything
# lands in $OUT: vlbench.md, and all.tgz with the rest (ncu text and reports, SASS, build log).
set -u
shape=${1:-18944x3584}
quants=${2:-nf4,bf16}
ms=${3:-1,16}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
root=$(pwd)
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=build-prof
{
    cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF \
        -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$root/.deps/usr" \
        -DCMAKE_LIBRARY_PATH="$root/.deps/usr/lib/x86_64-linux-gnu" &&
        cmake --build $B -j"$(nproc)" --target vlbench ${TESTS:+--target $TESTS}
} >"$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
# TESTS: GPU test targets to build and run first (e.g. test_gemv_gpu)
for t in ${TESTS:-}; do
    $B/tests/$t >"$OUT/$t.txt" 2>&1
    echo "$t: rc $? ($(grep -c FAIL "$OUT/$t.txt") FAIL lines)"; tail -3 "$OUT/$t.txt"
done
V=$B/bench/vlbench
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader >"$OUT/gpu.txt"
$V gemm --shape "$shape" --quant "$quants" --m "$ms" --no-ref --iters 20 --warmup 3 \
    >"$OUT/vlbench.md" 2>"$OUT/vlbench.err"
cat "$OUT/vlbench.md"
# A/B of the backend options in $OPTS (space-separated KEY=V lists, comma within one), same shapes
for o in ${OPTS:-}; do
    args=()
    for kv in ${o//,/ }; do args+=(--cuda-opt "$kv"); done
    $V gemm --shape "$shape" --quant "$quants" --m "$ms" --no-ref --iters 20 --warmup 3 "${args[@]}" \
        >"$OUT/vlbench-$o.md" 2>>"$OUT/vlbench.err"
    echo "== $o"; grep "^| custom" "$OUT/vlbench-$o.md" | cut -d'|' -f3-6
done
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
mkdir -p /tmp/reps
prof() { # TAG ARGS...: one ncu profile of the first GEMV launch of `vlbench gemm ARGS`
    local tag=$1
    shift
    timeout 120 "$ncu" --section LaunchStats --section Occupancy --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
        --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
        --section InstructionStats --section SourceCounters \
        -k regex:gemv --launch-count 1 -o "/tmp/reps/$tag" -f \
        $V gemm --shape "$shape" --no-ref --iters 1 --warmup 0 "$@" >"/tmp/reps/$tag.log" 2>&1
    "$ncu" -i "/tmp/reps/$tag.ncu-rep" --page details --print-details all >"$OUT/ncu-$tag.txt" 2>&1
    echo "== ncu $tag"
    grep -E "Duration|Memory Throughput|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Achieved Occupancy|Registers Per" \
        "$OUT/ncu-$tag.txt" | head -12
}
if [ -n "$ncu" ] && [ "${NCU:-1}" = 1 ]; then
    for q in ${quants//,/ }; do
        for m in ${ms//,/ }; do prof "$q-m$m" --quant "$q" --m "$m"; done
    done
    for o in ${OPTS:-}; do
        args=()
        for kv in ${o//,/ }; do args+=(--cuda-opt "$kv"); done
        prof "nf4-m16-$o" --quant nf4 --m 16 "${args[@]}"
    done
fi
# the SASS of the GEMV kernels (for instruction counts per weight)
nvcc -std=c++17 -O3 -arch=sm_90 -I. -cubin -o /tmp/gemv.cubin kernels/cuda_gemv.cu >/dev/null 2>&1 &&
    cuobjdump -sass /tmp/gemv.cubin | gzip >"$OUT/gemv_sass.txt.gz"
# at most 8 files come back: everything but the timing table in one archive
cp -r /tmp/reps "$OUT/reps" 2>/dev/null
(cd "$OUT" && tar czf all.tgz --exclude=all.tgz --exclude=vlbench.md --exclude=reps ./* reps && find . -mindepth 1 \
    ! -name all.tgz ! -name vlbench.md -delete)
ls -la "$OUT"
