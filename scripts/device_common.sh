#!/usr/bin/env bash
# device_common.sh: what the scripts/device_*.sh measurements share; sourced from the tree root
# on the GPU machine, with .deps (scripts/device_deps.sh) and .cache/tokenizer.json.gz carried.
#   device_begin LOG DEADLINE      the Debian packages' libraries (D, LD_LIBRARY_PATH), the Qwen2
#                                  tokenizer (TOK), the clock (T0) and the GPU's name in LOG (L);
#                                  steps past DEADLINE seconds are skipped (left)
#   el                             "[N s]": seconds since device_begin
#   left S WHAT                    true when S more seconds fit the deadline, else logs WHAT as
#                                  skipped and is false
#   device_build B BUILD_LOG [TARGET...]
#                                  a Release sm_90 build of this tree in B (every target if none
#                                  is named); "build rc N" in the log, the status returned
#   vlbench_gemm SECONDS TAG ARGS...
#                                  one `vlbench gemm ARGS` (VB: the vlbench binary) within
#                                  SECONDS into $O/runs/gemm_TAG.md, its rate, ratio to the
#                                  anchor and shape per row in the log
#   make_pages                     PAGES: 28 different pages in /tmp/pages (page.png shifted right
#                                  by 1..28 pixels and numbered: the vision tower runs 28 times)

device_begin() {
    L=$1
    DEADLINE=$2
    export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu
    D=$PWD/.deps/usr
    TOK=$PWD/.cache/tokenizer/tokenizer.json
    [ -f "$TOK" ] || { mkdir -p .cache/tokenizer && gunzip -c .cache/tokenizer.json.gz >"$TOK"; }
    T0=$(date +%s)
    nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >>"$L"
}

el() { echo "[$(($(date +%s) - T0)) s]"; }

left() { [ $(($(date +%s) - T0 + $1)) -lt "$DEADLINE" ] || { echo "$(el) skipped: $2" >>"$L"; false; }; }

device_build() {
    local b=$1 log=$2 rc t targets=()
    shift 2
    for t in "$@"; do targets+=(--target "$t"); done
    cmake -S . -B "$b" -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON -DVL_REMOTE_IMAGES=OFF \
        -DVL_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH="$D" -DCMAKE_LIBRARY_PATH="$D/lib/x86_64-linux-gnu" \
        >"$log" 2>&1 &&
        cmake --build "$b" -j"$(nproc)" "${targets[@]}" >>"$log" 2>&1
    rc=$? # saved first: "$(el) ... $?" would read el's status, not the build's
    echo "$(el) build rc $rc" >>"$L"
    grep -E "error:|Error [0-9]" "$log" | head -5 >>"$L"
    return $rc
}

vlbench_gemm() {
    local secs=$1 tag=$2
    shift 2
    left 25 "gemm $tag" || return 0
    timeout "$secs" "$VB" gemm --iters 10 --warmup 3 --no-ref "$@" >"$O/runs/gemm_$tag.md" 2>&1
    echo "$(el) gemm $tag: $(grep -E '^\| ' "$O/runs/gemm_$tag.md" | grep -vE '\| case|---' | cut -d'|' -f3,4,6,13 | tr -s ' ' | tr '\n' ';')" >>"$L"
}

make_pages() {
    mkdir -p /tmp/pages
    python3 - <<'PY'
from PIL import Image, ImageDraw
im = Image.open("examples/page.png").convert("RGB")
for i in range(28):  # shifted right by i + 1 pixels and numbered: 28 different pages
    p = Image.new("RGB", im.size, (255, 255, 255))
    p.paste(im, (i + 1, 0))
    ImageDraw.Draw(p).text((20, 20), "page %d" % (i + 1), fill=(0, 0, 0))
    p.save("/tmp/pages/p%02d.png" % i)
PY
    mapfile -t PAGES < <(ls /tmp/pages/p*.png)
}
