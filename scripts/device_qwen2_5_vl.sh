#!/usr/bin/env bash
# device_qwen2_5_vl.sh PART [SECONDS]: issue 15's device work, in the calls the device tool allows
# (one call a part; everything under $OUT/all.tgz, as the tool returns at most 8 files).
#   checks   the Qwen2.5-VL goldens with transformers (scripts/device.sh goldens qwen25: unpack
#            all.tgz's g/goldens.tgz into tests/fixtures and commit), the GPU engine tests on them
#            (test_engine_gpu, test_gather_rows_gpu), Qwen2.5-VL-32B NF4 and 3B bf16 runs with
#            random weights, then scripts/device.sh measure25 with the time left
#   measure  scripts/device.sh measure25 alone (x1 and x28, bf16 / NF4 / NF4 + int8 cache, the
#            transformers anchor, the budget probes, the encoder on distinct images)
#   teacher  teacher-forced logits against transformers on a random Qwen2.5-VL-7B checkpoint
#            (scripts/device.sh teacher-forced --config examples/qwen2.5-vl-7b-instruct.json)
#   verify   build, the biased-GEMM kernel tests and the GPU engine tests (test_ops_gpu,
#            test_quant_gpu, test_engine_gpu), measure25 (--deadline: what is left less 150 s
#            when at least 150 s are left after it), then teacher with the rest
# SECONDS: what the part may take in all (default 570). Carry .deps and .cache.
set -u
part=${1:-checks}
total=${2:-570}
case $part in checks | measure | teacher | verify) ;; *)
    echo "usage: scripts/device_qwen2_5_vl.sh checks|measure|teacher|verify [SECONDS]" >&2
    exit 2
    ;;
esac
: "${OUT:?OUT must name the folder the device tool returns}"
start=$(date +%s)
left() { echo $((total - ($(date +%s) - start))); }
# the carried libraries, for what runs outside scripts/device.sh (ctest, vlrun below)
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
R=/tmp/device_qwen2_5_vl
rm -rf "$R" && mkdir -p "$R"
# the goldens' own logs (16 MB) stay behind: a returned file holds at most 16 MiB
trap 'tar czf "$OUT/all.tgz" --exclude=./g/logs.tgz --exclude=./b -C "$R" .' EXIT
V=build-device/gpu/vlrun
T=.cache/tokenizer/tokenizer.json
build() { OUT=$R/b bash scripts/device.sh build >"$R/build.txt" 2>&1; }
# the Qwen2.5-VL engine tests, and the paged KV cache's kernels (issue 16) with their neighbours
GPU_TESTS="test_engine_gpu|test_gather_rows_gpu|pages_gpu|test_attention_gpu|test_kv_cache_gpu"
case $part in
checks)
    OUT=$R/g bash scripts/device.sh goldens qwen25 --deadline 110 >"$R/goldens.txt" 2>&1
    grep -v Warn build-device/work/goldens/golden_qwen25.log | tail -14 >"$R/golden_log.txt"
    tar xzf "$R/g/goldens.tgz" -C tests/fixtures
    build
    (cd build-device/gpu && timeout 180 ctest -R "$GPU_TESTS" --output-on-failure) \
        >"$R/engine_gpu.txt" 2>&1
    timeout 90 $V examples/page.png --random-weights --config examples/qwen2.5-vl-32b-instruct.json \
        --tokenizer $T --quant nf4 --max-tokens 64 --json >"$R/q32b_nf4.json" 2>"$R/q32b_nf4.err"
    timeout 40 $V examples/page.png --random-weights --config examples/qwen2.5-vl-3b-instruct.json \
        --tokenizer $T --max-tokens 64 --json >"$R/q3b_bf16.json" 2>"$R/q3b_bf16.err"
    [ "$(left)" -lt 120 ] ||
        OUT=$R/m bash scripts/device.sh measure25 --vlrun $V --deadline "$(($(left) - 10))" \
            >"$R/measure25.txt" 2>&1
    cat "$R/golden_log.txt"
    grep -E "tiny25|qwen25|passed|FAIL|Test +#" "$R/engine_gpu.txt" | tail -16
    tail -n 2 "$R/q32b_nf4.err" "$R/q3b_bf16.err"
    tail -n 32 "$R/measure25.txt" 2>/dev/null
    ;;
measure)
    build
    OUT=$R/m bash scripts/device.sh measure25 --vlrun $V --deadline "$(($(left) - 10))" \
        >"$R/measure25.txt" 2>&1
    tail -n 40 "$R/measure25.txt"
    ;;
verify)
    build
    (cd build-device/gpu && timeout 150 ctest -R "test_ops_gpu|test_quant_gpu|test_engine_gpu|test_sample_gpu|test_gemv_gpu" \
        --output-on-failure) >"$R/kernel_engine_gpu.txt" 2>&1
    grep -E "Test +#|tests passed|FAIL|outside|only" "$R/kernel_engine_gpu.txt" | tail -20
    grep -E "3420|fp32 blocks" "$R/kernel_engine_gpu.txt" | head -20
    m_s=$(($(left) - 10))
    [ "$m_s" -lt 330 ] || m_s=$((m_s - 150))
    OUT=$R/m bash scripts/device.sh measure25 --vlrun $V --deadline "$m_s" >"$R/measure25.txt" 2>&1
    tail -n 26 "$R/measure25.txt"
    [ "$(left)" -lt 100 ] ||
        OUT=$R/t bash scripts/device.sh teacher-forced --vlrun $V \
            --config examples/qwen2.5-vl-7b-instruct.json --deadline "$(($(left) - 10))" \
            >"$R/teacher_forced.txt" 2>&1
    tail -n 30 "$R/teacher_forced.txt" 2>/dev/null
    ;;
teacher)
    build
    OUT=$R/t bash scripts/device.sh teacher-forced --vlrun $V \
        --config examples/qwen2.5-vl-7b-instruct.json --deadline "$(($(left) - 10))" \
        >"$R/teacher_forced.txt" 2>&1
    tail -n 30 "$R/teacher_forced.txt"
    ;;
esac
