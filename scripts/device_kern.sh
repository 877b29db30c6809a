#!/usr/bin/env bash
# scripts/device_kern.sh BASE: the kernels' check on the GPU machine, from the repository root:
# builds this tree (the GPU tests, test_op_coverage, vlbench) and the tree BASE (vlbench only;
# e.g. `git archive 3d562a5`) for sm_90 side by side, runs every GPU test, then vlbench's default
# cases (no CPU reference: timings only) on BASE and on this tree, one after the other, so the
# kernels can be compared on one device in one call. Logs, tables and JSON go to $OUT.
set -u
base=${1:?usage: scripts/device_kern.sh BASE}
out=${OUT:-/tmp/device_kern}
mkdir -p "$out"
# shellcheck source=scripts/device_lib.sh
source scripts/device_lib.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$out/device.txt" 2>&1
gpu_tests=(test_attention_gpu test_backend_gpu test_engine_gpu test_gemv_gpu test_kv_cache_gpu
    test_ops_gpu test_penalty_gpu test_quant_gpu test_sample_gpu)
t0=$SECONDS
vl_device_build . build-gpu "$out/build_new.log" vlbench test_op_coverage "${gpu_tests[@]}" &
new_pid=$!
vl_device_build "$base" "$base/build-gpu" "$out/build_base.log" vlbench &
base_pid=$!
wait $new_pid; new_rc=$?
wait $base_pid; base_rc=$?
echo "builds: new rc=$new_rc base rc=$base_rc in $((SECONDS - t0)) s" | tee "$out/summary.txt"
[ "$new_rc" = 0 ] || { tail -40 "$out/build_new.log"; exit 1; }

(cd build-gpu && timeout 240 ctest -L gpu -R "$(IFS='|'; echo "${gpu_tests[*]}")" \
    --output-on-failure >"$out/gpu_tests.log" 2>&1; \
    timeout 60 ctest -R test_op_coverage --output-on-failure >>"$out/gpu_tests.log" 2>&1)
grep -E "tests passed|Failed|\(Failed\)|\*\*\*" "$out/gpu_tests.log" | tee -a "$out/summary.txt"
echo "tests done at $((SECONDS - t0)) s" | tee -a "$out/summary.txt"

if [ "$base_rc" = 0 ]; then
    timeout 200 "$base/build-gpu/bench/vlbench" --no-ref --json-out "$out/vlbench_base.json" \
        >"$out/vlbench_base.md" 2>/dev/null
fi
timeout 200 build-gpu/bench/vlbench --no-ref --json-out "$out/vlbench_new.json" \
    >"$out/vlbench_new.md" 2>/dev/null
echo "vlbench done at $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
