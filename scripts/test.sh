#!/usr/bin/env bash
# The test command: sets up, builds with warnings as errors and runs every test; then runs the
# CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzzing smoke run
# (scripts/fuzz.sh smoke 20: every regression/seed once, each harness 20 s; VL_SKIP_FUZZ=1 skips).
# GPU tests (label gpu) report skipped on a machine without a CUDA device.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc)
VL_CMAKE_ARGS="-DVL_WERROR=ON ${VL_CMAKE_ARGS:-}" "$root/scripts/setup.sh" "$root/build"
(cd "$root/build" && ctest --output-on-failure -j"$jobs")
if [ "${VL_SKIP_SANITIZE:-0}" != 1 ]; then
    cmake -S "$root" -B "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DVL_WERROR=ON -DVL_CUDA=OFF \
        -DVL_SANITIZE=address,undefined
    cmake --build "$root/build-asan" -j"$jobs"
    (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs" -LE slow)
fi
if [ "${VL_SKIP_FUZZ:-0}" != 1 ]; then
    "$root/scripts/fuzz.sh" smoke 20
fi
