#!/usr/bin/env bash
# One command: install the Debian build dependencies, fetch the test tokenizer (npm), build.
# Usage: scripts/setup.sh [BUILD_DIR]   (default build/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
# libraries by Debian package name; tools by command (node/npm may come from elsewhere)
missing=""
# the server (server/): HTTP (libmicrohttpd), remote images (libcurl); curl: cli_serve_errors.sh
for p in libmicrohttpd-dev libcurl4-openssl-dev pkg-config curl; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
for p in libstb-dev libcjson-dev libutf8proc-dev libpng-dev libjpeg62-turbo-dev libgif-dev \
         libwebp-dev libtiff-dev clang libclang-rt-dev llvm; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
command -v cc >/dev/null 2>&1 || missing="$missing build-essential"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v node >/dev/null 2>&1 || missing="$missing nodejs" # tests/server_*.mjs, bench/loadgen.mjs
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v script >/dev/null 2>&1 || missing="$missing bsdutils" # tests/cli_progress.sh: a pty
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi
"$root/scripts/fetch_tokenizer.sh"
"$root/scripts/fetch_node_deps.sh" # the openai npm client of the server tests
# the tiny test models' 4096-token vocabulary, derived from the same file (never committed)
python3 "$root/tests/reference/make_small_tokenizer.py" "$root/.cache/tokenizer/tokenizer.json" \
    "$root/.cache/tokenizer/small_tokenizer.json"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${VL_CMAKE_ARGS:-}
cmake --build "$build" -j"$(nproc)"
