#!/usr/bin/env bash
# device_deps.sh: .deps, the Debian packages the GPU machine lacks, unpacked (not installed) into
# a git-ignored folder that the device tool carries (`carry: [".deps", ...]`): the headers and
# libraries vlrun builds against (CMakeLists.txt, without libcurl: device builds use
# -DVL_REMOTE_IMAGES=OFF) and the shared libraries it then loads (LD_LIBRARY_PATH, set by the
# device scripts). Documentation is dropped: the carry limit is 64 MiB with the tree.
# Anchors (.deps/anchors/): the workplace's hf_baseline.py and kernels_bench.py, when a
# ../shared/tools is beside the checkout (device.sh measure and bench need them).
# usage: scripts/device_deps.sh [DIR]   (default .deps)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.deps}
pkgs=(
    libstb-dev libstb0 libcjson-dev libcjson1 libutf8proc-dev libutf8proc2
    libpng-dev libpng16-16 zlib1g-dev libjpeg62-turbo-dev libjpeg62-turbo libgif-dev libgif7
    libwebp-dev libwebp7 libwebpdemux2 libwebpmux3
    libtiff-dev libtiff6 libtiffxx6 libdeflate0 libjbig0 liblerc4
    libmicrohttpd-dev libmicrohttpd12
)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "$(find /var/lib/apt/lists -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -qq
(cd "$tmp" && apt-get download -qq "${pkgs[@]}")
for d in "$tmp"/*.deb; do dpkg -x "$d" "$dir"; done
rm -rf "$dir/usr/share"
find "$dir" -name "*.a" -delete # static libraries: builds link the shared ones
shared=$root/../shared/tools
if [ -d "$shared" ]; then
    mkdir -p "$dir/anchors"
    cp "$shared/hf_baseline.py" "$shared/kernels_bench.py" "$dir/anchors/"
fi
du -sh "$dir"
