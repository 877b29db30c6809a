#!/usr/bin/env bash
# fuzz.sh: build and run the libFuzzer harnesses of tests/fuzz/ (one per loader entry point).
#
#   scripts/fuzz.sh build                        clang, -fsanitize=fuzzer,address,undefined
#                                                (libraries: fuzzer-no-link), CUDA off, in
#                                                build-fuzz/
#   scripts/fuzz.sh regress [HARNESS...]         every regression and seed file once
#   scripts/fuzz.sh smoke [SECONDS] [HARNESS...] regress, then fuzz each harness SECONDS
#                                                (default 20) from a fresh corpus (CI)
#   scripts/fuzz.sh campaign SECONDS [HARNESS...] the long run: corpus kept in
#                                                build-fuzz/corpus/HARNESS, crashes collected
#                                                without stopping; VL_FUZZ_JOBS=N runs N
#                                                processes (libFuzzer -fork)
#   scripts/fuzz.sh list                         the harness names
#
# Seeds: tests/fuzz/corpus/HARNESS (committed) plus the repository's fixtures, linked in place
# into build-fuzz/seeds/HARNESS. Regressions: tests/fuzz/regressions/HARNESS (every crash found
# becomes one). Artifacts (crash-, leak-, timeout-, oom-) land in build-fuzz/artifacts/HARNESS/.
# One summary line per harness; the exit status is non-zero if any harness crashed, leaked,
# timed out or ran out of memory. VL_FUZZ_SKIP_BUILD=1 reuses build-fuzz/ as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
bin=$build/tests/fuzz
harnesses="safetensors index config preproc tokenizer tokenize image bnb options exif openai"
rss_mb=2048
timeout_s=10

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

# Longest input libFuzzer makes for each harness (seeds longer than this are cut when fuzzing,
# not in the regression run).
max_len_of() {
    case $1 in
    safetensors | tokenizer | image) echo 65536 ;;
    index) echo 16384 ;;
    config | preproc) echo 8192 ;;
    tokenize) echo 4096 ;;
    bnb) echo 2048 ;;
    options) echo 1024 ;;
    exif) echo 16384 ;;
    openai) echo 16384 ;;
    *) die "unknown harness $1 (scripts/fuzz.sh list)" ;;
    esac
}

# Fixture files that serve as seeds where they lie (globs relative to the root; missing ones
# are skipped, e.g. the tokenizer cache before scripts/setup.sh).
fixtures_of() {
    cd "$root"
    local g
    local -a globs=()
    case $1 in
    safetensors) globs=(tests/fixtures/models/*/*.safetensors tests/fixtures/tiny-qwen2vl/*/*.safetensors) ;;
    index) globs=(tests/fixtures/models/*/model.safetensors.index.json) ;;
    config) globs=(tests/fixtures/configs/*.json tests/fixtures/models/*/config.json
        tests/fixtures/tiny-qwen2vl/*/config.json examples/*.json) ;;
    preproc) globs=(tests/fixtures/models/*/preprocessor_config.json) ;;
    tokenizer) globs=(.cache/tokenizer/small_tokenizer.json) ;;
    tokenize) globs=(tests/fixtures/tokenizer/*.json) ;;
    image) globs=(tests/fixtures/images/*.png tests/fixtures/images/*.jpg tests/fixtures/images/*.bmp
        tests/fixtures/images/*.gif tests/fixtures/images/*/*.* tests/fixtures/models/images/*.png
        tests/fixtures/tiny-qwen2vl/*.png examples/*.png) ;;
    exif) globs=(tests/fixtures/images/exif/*.jpg tests/fixtures/images/exif/*.png
        tests/fixtures/images/exif/*.webp tests/fixtures/images/exif/*.tif) ;;
    esac
    for g in "${globs[@]}"; do [ -f "$g" ] && echo "$root/$g"; done
    return 0
}

do_build() {
    [ "${VL_FUZZ_SKIP_BUILD:-0}" = 1 ] && [ -x "$bin/fuzz_options" ] && return 0
    command -v clang >/dev/null || die "clang not found (scripts/setup.sh installs it)"
    CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-O1 \
        -DVL_CUDA=OFF -DVL_SANITIZE=address,undefined -DVL_FUZZ=ON -DVL_BUILD_TESTS=OFF \
        -DVL_WERROR=ON >/dev/null
    cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1 || {
        grep -E 'error|Error' "$build/build.log" | head -30 >&2
        die "build failed (see $build/build.log)"
    }
}

# build-fuzz/seeds/H: links to the fixtures (libFuzzer reads corpus folders, not file lists).
link_seeds() {
    local dir=$build/seeds/$1 f i=0
    rm -rf "$dir"
    mkdir -p "$dir"
    while read -r f; do
        i=$((i + 1))
        ln -s "$f" "$dir/$(printf %03d $i)-$(basename "$f")"
    done < <(fixtures_of "$1")
}

# The files of the regression run of harness H, one a line.
regress_files() {
    local d
    for d in "$root/tests/fuzz/regressions/$1" "$root/tests/fuzz/corpus/$1"; do
        [ -d "$d" ] && find "$d" -type f ! -name '.*' ! -name README.md | sort
    done
    fixtures_of "$1"
}

# What a libFuzzer log says went wrong: "ok" or the kind of failure.
result_of() {
    local log=$1 rc=$2
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then echo timeout
    elif grep -qE 'ERROR: libFuzzer: out-of-memory|malloc\(.*\) exceeds limit' "$log"; then echo oom
    elif grep -q 'ERROR: LeakSanitizer' "$log"; then echo leak
    elif grep -q 'fuzz check failed' "$log"; then echo check-failed
    elif grep -q 'runtime error:' "$log"; then echo undefined-behaviour
    elif grep -q 'ERROR: AddressSanitizer' "$log"; then echo "crash($(grep -om1 'AddressSanitizer: [a-z-]*' "$log" | cut -d' ' -f2))"
    elif [ "$rc" != 0 ]; then echo "crash(rc $rc)"
    else echo ok
    fi
}

# The first line of a log that says what went wrong, and the top frames of the first stack.
frames_of() {
    { grep -m1 -A1 'fuzz check failed' "$1" | tail -1 ||
        grep -m1 -hE 'runtime error:|ERROR: AddressSanitizer|Direct leak of|ERROR: libFuzzer' "$1" ||
        true; } | sed -E 's/^ */    why: /'
    { grep -E '^ +#[0-9]+ 0x' "$1" || true; } |
        grep -vE 'libFuzzer|fuzzer::|__sanitizer|__asan|__ubsan|abort|raise|pthread_kill|libc\.so|libc_start| main |_start |fuzz_fail' |
        head -4 | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in /    /'
}

env_setup() {
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
    export VL_FUZZ_TOKENIZER=${VL_FUZZ_TOKENIZER:-$root/.cache/tokenizer/small_tokenizer.json}
    tmp_parent=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp)/vlrun-fuzz.XXXXXX")
    export VL_FUZZ_TMPDIR=$tmp_parent
    trap 'rm -rf "$tmp_parent"' EXIT
    mkdir -p "$build/logs" "$build/artifacts"
}

# Run every regression/seed file of H once. A failing file is reported and the run goes on
# with the files after it. Returns 1 if any failed.
run_regress() {
    local h=$1 exe=$bin/fuzz_$1 log=$build/logs/$1.regress.log failed=0
    local -a files
    mapfile -t files < <(regress_files "$h")
    local total=${#files[@]} start=0
    : >"$log"
    while [ "$start" -lt "$total" ]; do
        local part=$build/logs/$h.regress.part rc=0
        "$exe" -rss_limit_mb=$rss_mb -timeout=$timeout_s -artifact_prefix="$build/logs/$h.regress-" \
            "${files[@]:$start}" >"$part" 2>&1 || rc=$?
        cat "$part" >>"$log"
        [ "$rc" = 0 ] && break
        local bad
        bad=$({ grep -E '^Running: ' "$part" || true; } | tail -1 | sed 's/^Running: //')
        failed=1
        printf '  %-12s regression FAILED: %s: %s\n' "$h" "$(result_of "$part" "$rc")" \
            "$([ -n "$bad" ] && echo "${bad#$root/}" || echo "before the first input (see $log)")"
        frames_of "$part"
        local i next=$total
        for ((i = start; i < total; i++)); do
            if [ "${files[$i]}" = "$bad" ]; then next=$((i + 1)); break; fi
        done
        start=$next
    done
    printf '%-12s regress  files %5d  result %s\n' "$h" "$total" "$([ $failed = 0 ] && echo ok || echo FAILED)"
    return $failed
}

stat_of() { # stat_of LOG NAME -> the value of libFuzzer's final stat::NAME (empty if none)
    { grep -E "^stat::$2:" "$1" || true; } | tail -1 | awk '{print $2}'
}

cov_of() { # cov_of LOG FIELD -> the last "cov: C ft: F" of a log: C for 2, F for 4
    { grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" || true; } | tail -1 | awk -v f="$2" '{print $f}'
}

# One summary line for a fuzzing run of H; returns 1 on any failure.
summarize() {
    local h=$1 log=$2 rc=$3 corpus=$4 before=$5 art_before=$6
    local execs eps cov ft new result art_after art
    execs=$(stat_of "$log" number_of_executed_units)
    eps=$(stat_of "$log" average_exec_per_sec)
    cov=$(cov_of "$log" 2)
    ft=$(cov_of "$log" 4)
    if [ -z "$execs" ]; then # fork mode: "#N: cov: C ft: F corp: K ... time: Ts job: J ..."
        local last secs
        last=$({ grep -E '^#[0-9]+: cov:' "$log" || true; } | tail -1)
        execs=$(echo "$last" | grep -oE '^#[0-9]+' | tr -d '#')
        secs=$(echo "$last" | grep -oE ' time: [0-9]+' | awk '{print $2}')
        [ -n "$execs" ] && [ "${secs:-0}" -gt 0 ] && eps=$((execs / secs))
    fi
    new=$(($(find "$corpus" -type f | wc -l) - before))
    result=$(result_of "$log" "$rc")
    art_after=$(find "$build/artifacts/$h" -type f | wc -l)
    if [ "$art_after" -gt "$art_before" ]; then # campaign: kinds of the new artifacts
        result="$result, new artifacts: $(ls -t "$build/artifacts/$h" | head -$((art_after - art_before)) |
            sed 's/-.*//' | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')"
    fi
    printf '%-12s fuzz     execs %9s  exec/s %6s  cov %5s  ft %6s  new corpus %5d  result %s\n' \
        "$h" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$new" "$result"
    [ "$result" = ok ] && return 0
    local n_new=$((art_after - art_before))
    if [ "$n_new" -gt 0 ]; then
        for art in $(ls -t "$build/artifacts/$h" | head -$((n_new < 5 ? n_new : 5))); do
            echo "    artifact: build-fuzz/artifacts/$h/$art"
        done
        [ "$n_new" -gt 5 ] && echo "    ... $((n_new - 5)) more new artifacts in build-fuzz/artifacts/$h/"
    fi
    frames_of "$log"
    echo "    log: ${log#$root/}"
    return 1
}

# fuzz H SECONDS CORPUS [extra libFuzzer flags...]
run_fuzz() {
    local h=$1 secs=$2 corpus=$3
    shift 3
    local exe=$bin/fuzz_$h log=$build/logs/$h.fuzz.log rc=0 dict=$root/tests/fuzz/dict/$h.dict
    local -a flags=(-max_total_time="$secs" -rss_limit_mb=$rss_mb -timeout=$timeout_s
        -max_len="$(max_len_of "$h")" -print_final_stats=1 -artifact_prefix="$build/artifacts/$h/")
    [ -f "$dict" ] && flags+=(-dict="$dict")
    mkdir -p "$corpus" "$build/artifacts/$h"
    link_seeds "$h"
    local before art_before
    before=$(find "$corpus" -type f | wc -l)
    art_before=$(find "$build/artifacts/$h" -type f | wc -l)
    local -a seeds=("$build/seeds/$h")
    [ -d "$root/tests/fuzz/corpus/$h" ] && seeds+=("$root/tests/fuzz/corpus/$h")
    (cd "$build/artifacts/$h" && "$exe" "${flags[@]}" "$@" "$corpus" "${seeds[@]}" >"$log" 2>&1) || rc=$?
    summarize "$h" "$log" "$rc" "$corpus" "$before" "$art_before"
}

pick() { # the harnesses named, or all
    local h
    if [ $# = 0 ]; then echo $harnesses; return; fi
    for h in "$@"; do max_len_of "$h" >/dev/null; done
    echo "$@"
}

cmd=${1:-smoke}
[ $# -gt 0 ] && shift
status=0 passed=0 failed=0
case $cmd in
list) echo $harnesses ;;
build) do_build ;;
regress)
    sel=$(pick "$@")
    do_build
    env_setup
    for h in $sel; do run_regress "$h" && passed=$((passed + 1)) || { status=1; failed=$((failed + 1)); }; done
    echo "fuzz: $passed passed, $failed failed"
    ;;
smoke)
    secs=20
    if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then secs=$1; shift; fi
    sel=$(pick "$@")
    do_build
    env_setup
    for h in $sel; do
        run_regress "$h" && passed=$((passed + 1)) || { status=1; failed=$((failed + 1)); }
        rm -rf "$build/smoke/$h"
        run_fuzz "$h" "$secs" "$build/smoke/$h" && passed=$((passed + 1)) ||
            { status=1; failed=$((failed + 1)); }
    done
    echo "fuzz: $passed passed, $failed failed" # one regression and one fuzz run per harness
    ;;
campaign)
    [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh campaign SECONDS [HARNESS...]"
    secs=$1
    shift
    sel=$(pick "$@")
    do_build
    env_setup
    for h in $sel; do
        run_fuzz "$h" "$secs" "$build/corpus/$h" -fork="${VL_FUZZ_JOBS:-1}" -ignore_crashes=1 \
            -ignore_timeouts=1 -ignore_ooms=1 || status=1
    done
    ;;
*) die "usage: scripts/fuzz.sh build | regress | smoke [SECONDS] | campaign SECONDS [HARNESS...] | list" ;;
esac
exit $status
