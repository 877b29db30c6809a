# scripts/device_lib.sh: sourced by the device_*.sh scripts (GPU machine, repository root).
# vl_device_build SRC BUILD_DIR LOG [TARGET...]: a Release CUDA build of SRC for VL_ARCH (default
# 90) against the carried Debian packages (.deps of this root), all targets when none is named;
# output to LOG; returns cmake's status. Also puts .deps' libraries on LD_LIBRARY_PATH.
vl_root=$(pwd)
export LD_LIBRARY_PATH=$vl_root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
vl_device_build() {
    local src=$1 dir=$2 log=$3
    shift 3
    local targets=()
    for t in "$@"; do targets+=(--target "$t"); done
    cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON \
        -DVL_CUDA_ARCHITECTURES="${VL_ARCH:-90}" ${VL_CMAKE_ARGS:-} \
        -DCMAKE_PREFIX_PATH="$vl_root/.deps/usr" \
        -DCMAKE_LIBRARY_PATH="$vl_root/.deps/usr/lib/x86_64-linux-gnu" >"$log" 2>&1 &&
        cmake --build "$dir" -j16 "${targets[@]}" -- -k >>"$log" 2>&1
}
