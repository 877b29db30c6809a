#!/usr/bin/env bash
# shellcheck disable=SC2317 # the tasks run through "task_$task", which shellcheck cannot follow
# scripts/device.sh: the one entry point on the GPU machine. Every task builds this tree the
# same way (vl_build: Release, CUDA, VL_ARCH / --arch, default 90, against the carried .deps),
# records each step's outcome and figures, and ends in one summary (vl_finish): $OUT/summary.txt
# (task, device from nvidia-smi, steps passed / failed, figures) and $OUT/logs.tgz (every log and
# report of the run), plus the few result files of the task (at most 8 files in all).
# `scripts/device.sh help` lists the tasks and options; bench/README.md and bench/RESULTS.md
# say which task reproduces which figure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

usage() {
    cat <<'EOF'
usage: scripts/device.sh TASK [ARGS] [OPTIONS]      (on the GPU machine; results under $OUT)

Tasks:
  gpu              build; every GPU test (ctest -L gpu); cli_generation, cli_chat, cli_penalty
                   on --backend cuda; tiny-a and tiny-odd (bf16, --kv int8, nf4, int8) CUDA
                   against CPU (last logits, greedy tokens); a two-turn --chat and
                   examples/two_requests on 7B shapes;
                   the --run items if any
  runs             7B end-to-end runs (--run items; default "bf16 28"): TTFT, decode, peak
  bench            vlbench (--bench-args, default "all") + the PyTorch anchors
                   (.deps/anchors/kernels_bench.py), side by side: vlbench.md/json, anchors.txt
  measure          the transformers anchor (.deps/anchors/hf_baseline.py, bf16, x28) and vlrun
                   bf16 at --counts (default 1,10,28,60), what --mem-budget 24G admits with NF4
                   (x600 probe), and "nf4 200 --kv int8 --mem-budget 24G" (or the --run items)
  measure25        Qwen2.5-VL-7B (--config, default examples/qwen2.5-vl-7b-instruct.json): what
                   --mem-budget 24G admits with NF4 and NF4 + int8 cache (x600 probes); vlrun
                   bf16, nf4, "nf4 --kv int8" at --counts (default 1,28; the largest first), the
                   transformers anchor (bench/anchors/hf_qwen2_5_vl.py, SDPA, bf16, the same
                   counts) after the largest count; the vision encoder per image from each run
                   and from page.png given as many times as the largest count (then encoded that
                   many times; "xN" is encoded once). Results: summary, the anchor's JSON, the
                   largest count's run reports
  ab OLD_TREE      this tree against OLD_TREE (e.g. `git archive REV | tar x -C DIR`), both
                   built here, in one command: the --run items (default "bf16 28", "nf4 28",
                   "nf4 28 --kv int8") alternating old/new --repeat times, then vlbench
                   --bench-args on each build (--bench-repeat times): ab.txt marks every figure
                   more than 2% worse (VL_AB_LIMIT) than old; ab.tsv, vlbench_{old,new}.json
  goldens [NAME..] regenerate the goldens with transformers (tests/reference/): tokenizer
                   preprocess model odd chat eos penalty images qwen25, and decode-check (the decode
                   fixtures under this Pillow); default all. $OUT/goldens.tgz mirrors
                   tests/fixtures/: tar xzf goldens.tgz -C tests/fixtures && git diff --stat
  teacher-forced   teacher-forced logits against transformers on a random 7B checkpoint of
                   --config's family (Qwen2-VL or Qwen2.5-VL: its model_type)
                   (tests/reference/teacher_forced.py, with --quant-compare unless --no-quant;
                   arguments after -- go to it, e.g. -- --vlrun-arg=--kv --vlrun-arg=int8)
  profile          Nsight Compute over decode step --step (default 5) of each --run item
                   (default "bf16 28"), via --cuda-opt profile_step: time per kernel
  plan             nvidia-smi's total against cudaMemGetInfo's; vlrun plan (A10, H100);
                   vlrun sweep bf16 (--counts, default 1,10,28,60,100) and NF4 + int8 cache
                   (--counts-nf4, default 1,28,100,200), A10 budget line: CSV + SVG
  sanitize         compute-sanitizer memcheck + racecheck on tiny-a (bf16, nf4), memcheck on
                   tiny-odd (bf16; nf4 + int8 cache, --chunk 16)
  build [SRC]      build this tree, or SRC where `ab` takes OLD_TREE's build from (e.g. in the
                   background while another task runs)
  help             this text

Options:
  --run "Q N [FLAGS]"     a 7B run (random weights, examples/page.png xN, --quant Q, vlrun FLAGS);
                          repeatable, replaces the task's default list
  --tokens N              generated tokens of the 7B runs (default 512)
  --repeat N              ab: rounds of old/new runs, order reversed every other round (default 2)
  --variant "NAME FLAGS"  ab: one more column, this tree's vlrun with FLAGS (e.g.
                          "eager --cuda-opt no_graphs=1"); repeatable
  --bench-args "ARGS"     vlbench arguments for bench and ab (default "all")
  --bench-repeat N        ab: vlbench runs per build (default 1)
  --no-bench, --no-e2e    ab: skip the vlbench part / the end-to-end part
  --counts LIST           measure, measure25, plan: bf16 image counts
  --counts-nf4 LIST       plan: NF4 + int8 cache image counts
  --step N                profile: the decode step to time (default 5)
  --config FILE           the config.json of the 7B-shape runs (random weights; relative to the
                          tree): runs, measure, ab, profile, plan, teacher-forced, gpu's 7B chat
                          and example (default examples/qwen2-vl-7b-instruct.json), measure25
                          (default examples/qwen2.5-vl-7b-instruct.json)
  --no-quant              teacher-forced: no NF4 / int8 comparison
  --vlrun PATH            use this vlrun instead of building one (runs, measure, profile,
                          teacher-forced, plan, sanitize)
  --arch N                CUDA architecture (default $VL_ARCH or 90)
  --deadline S            seconds the task may take (default 570, under the device's 600 s):
                          each step gets what is left, so the summary is always written

Needs carried: .deps (the Debian build dependencies and the anchors in .deps/anchors/: made by
scripts/device_deps.sh) and .cache (the Qwen2 tokenizer, scripts/fetch_tokenizer.sh). Builds go
to build-device/ of this tree (kept on a warm machine), the work files to build-device/work/TASK.
EOF
}

# ---- options ---------------------------------------------------------------------------------
task=${1:-help}
command_line="$*"
[ $# -gt 0 ] && shift
pos=() runs=() variants=() passthru=()
tokens=512 repeat=2 bench_args=all bench_repeat=1 do_bench=1 do_e2e=1 counts="" counts_nf4=""
step_no=5 quant_compare=1 vlrun_bin="" arch=${VL_ARCH:-90} deadline=570 config=""
while [ $# -gt 0 ]; do
    case $1 in
    --run | --tokens | --repeat | --variant | --bench-args | --bench-repeat | --counts | \
        --counts-nf4 | --step | --vlrun | --arch | --deadline | --config)
        [ $# -ge 2 ] || { echo "device.sh: $1 needs a value (scripts/device.sh help)" >&2; exit 2; } ;;
    esac
    case $1 in
    --run) runs+=("$2"); shift ;;
    --tokens) tokens=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --variant) variants+=("$2"); shift ;;
    --bench-args) bench_args=$2; shift ;;
    --bench-repeat) bench_repeat=$2; shift ;;
    --no-bench) do_bench=0 ;;
    --no-e2e) do_e2e=0 ;;
    --counts) counts=$2; shift ;;
    --counts-nf4) counts_nf4=$2; shift ;;
    --step) step_no=$2; shift ;;
    --no-quant) quant_compare=0 ;;
    --vlrun) vlrun_bin=$2; shift ;;
    --arch) arch=$2; shift ;;
    --deadline) deadline=$2; shift ;;
    --config) config=$2; shift ;;
    --) shift; passthru=("$@"); break ;;
    -h | --help) task=help ;;
    -*) echo "device.sh: unknown option $1 (scripts/device.sh help)" >&2; exit 2 ;;
    *) pos+=("$1") ;;
    esac
    shift
done

# ---- shared state: paths, time, step records ------------------------------------------------
t0=$(date +%s)
OUT=${OUT:-$root/build-device/out}
W=$root/build-device/work/$task
B=$root/build-device/gpu # this tree's build
CFG=${config:-examples/qwen2-vl-7b-instruct.json}
[ -n "$config" ] || [ "$task" != measure25 ] || CFG=examples/qwen2.5-vl-7b-instruct.json
TOK=.cache/tokenizer/tokenizer.json
SMALL_TOK=.cache/tokenizer/small_tokenizer.json
FIX=tests/fixtures/models
IMG=tests/fixtures/models/images
ANCHORS=.deps/anchors
export LD_LIBRARY_PATH=$root/.deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}

left() { # CAP: seconds for the next step: CAP or what the deadline leaves, at least 5
    local l=$((t0 + deadline - $(date +%s)))
    [ "$l" -lt "$1" ] || l=$1
    [ "$l" -ge 5 ] || l=5
    echo "$l"
}
record() { # NAME RC SECONDS: one line in steps.txt (PASS, FAIL or TIMEOUT)
    local s=PASS
    [ "$2" = 0 ] || s=FAIL
    [ "$2" != 124 ] || s=TIMEOUT
    echo "$s $1 (rc $2, $3 s)" | tee -a "$W/steps.txt"
}
step() { # NAME CAP CMD...: run CMD, output in $W/NAME.log, within CAP seconds or the deadline
    local name=$1 cap=$2 s rc
    shift 2
    s=$(date +%s)
    timeout "$(left "$cap")" "$@" >"$W/$name.log" 2>&1
    rc=$?
    record "$name" "$rc" $(($(date +%s) - s))
    return "$rc"
}
step_json() { # NAME CAP CMD...: as step, stdout (a --json report) in $W/NAME.json, stderr in .err
    local name=$1 cap=$2 s rc
    shift 2
    s=$(date +%s)
    timeout "$(left "$cap")" "$@" >"$W/$name.json" 2>"$W/$name.err"
    rc=$?
    record "$name" "$rc" $(($(date +%s) - s))
    [ "$rc" = 0 ] || figure "$name failed (rc $rc): $(tail -1 "$W/$name.err")"
    return "$rc"
}
figure() { echo "$*" | tee -a "$W/figures.txt"; }
report() { python3 scripts/device_report.py "$@"; }

vl_build() { # SRC DIR NAME [TARGET...]: the Release CUDA build of SRC in DIR, recorded as NAME
    local src=$1 dir=$2 name=$3
    shift 3
    local targets=()
    for t in "$@"; do targets+=(--target "$t"); done
    # no libcurl there: vlrun serve without --allow-remote-images (libmicrohttpd is carried)
    step "$name" 400 bash -c 'cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DVL_CUDA=ON \
            -DVL_REMOTE_IMAGES=OFF \
            -DVL_CUDA_ARCHITECTURES="$3" -DCMAKE_PREFIX_PATH="$4/usr" \
            -DCMAKE_LIBRARY_PATH="$4/usr/lib/x86_64-linux-gnu" &&
        cmake --build "$2" -j"$(nproc)" "${@:5}" -- -k' _ "$src" "$dir" "$arch" "$root/.deps" \
        "${targets[@]}"
}
need_vlrun() { # sets V: --vlrun, or this tree's build of vlrun
    if [ -n "$vlrun_bin" ]; then
        V=$vlrun_bin
    else
        vl_build . "$B" build vlrun
        V=$B/vlrun
    fi
    [ -x "$V" ] || { figure "no vlrun at $V: see build.log"; vl_finish; }
}
need_small_tokenizer() {
    [ -f $SMALL_TOK ] || python3 tests/reference/make_small_tokenizer.py $TOK $SMALL_TOK >/dev/null
}
need_anchor() { # FILE: true when .deps/anchors/FILE is there; says how to put it there if not
    [ -f "$ANCHORS/$1" ] && return 0
    figure "anchor $ANCHORS/$1 missing: on the workstation, before the call, copy $1 from the" \
        "workspace's shared tools folder (shared/tools/) into $ANCHORS/ of this tree (mkdir -p" \
        "$ANCHORS; .deps is git-ignored and carried)"
    return 1
}
run_args() { # Q N FLAGS...: the arguments of one 7B run
    local q=$1 n=$2
    shift 2
    echo examples/page.png "x$n" --max-tokens "$tokens" --random-weights --config $CFG \
        --tokenizer $TOK --json --quant "$q" "$@"
}
tag_of() { # "Q N FLAGS": a file-name tag, e.g. nf4_x28_kvint8
    local q n extra
    read -r q n extra <<<"$1"
    extra=${extra//--/}
    echo "${q}_x$n${extra:+_${extra//[^a-z0-9]/}}"
}
big_run() { # NAME BIN "Q N FLAGS" [MORE FLAGS]: one 7B run, its report in $W/NAME.json
    local name=$1 bin=$2 item=$3
    shift 3
    # shellcheck disable=SC2046 # the item's words are the run's arguments
    step_json "$name" 300 "$bin" $(run_args $item) "$@" &&
        figure "$(report run "$W/$name.json" "$name")"
}
rev_of() { # DIR: DIR's commit when DIR is the top of a git checkout (not a copy inside another)
    local top
    top=$(git -C "$1" rev-parse --show-toplevel 2>/dev/null) &&
        [ "$(cd "$1" && pwd -P)" = "$(cd "$top" && pwd -P)" ] &&
        git -C "$1" describe --always --dirty 2>/dev/null || echo "no git metadata"
}
vl_finish() { # the summary and the logs under $OUT; exit 1 when a step failed
    local pass fail
    pass=$(grep -c '^PASS' "$W/steps.txt" 2>/dev/null)
    fail=$(grep -vc '^PASS' "$W/steps.txt" 2>/dev/null)
    {
        echo "scripts/device.sh $command_line (--deadline $deadline, sm_$arch)"
        echo "tree: $(rev_of "$root")"
        echo "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
        echo "took $(($(date +%s) - t0)) s; steps: ${pass:-0} passed, ${fail:-0} failed or timed out"
        echo
        cat "$W/steps.txt" 2>/dev/null
        echo
        cat "$W/figures.txt" 2>/dev/null
    } >"$OUT/summary.txt"
    # every file of the work folder but the large ones (checkpoints, staged goldens)
    (cd "$W" && find . -type f -size -8M | tar czf "$OUT/logs.tgz" -T -)
    echo "================ summary ($OUT/summary.txt)"
    cat "$OUT/summary.txt"
    [ "${fail:-0}" = 0 ]
    exit $?
}

# ---- tasks ------------------------------------------------------------------------------------
cross_backend() { # TAG MODEL TOKENS ARGS...: the same request on CPU and CUDA, compared
    local tag=$1 model=$2 n=$3 be
    shift 3
    for be in cpu cuda; do
        step_json "${tag}_$be" 120 "$V" --backend $be --model "$model" --tokenizer $SMALL_TOK \
            --max-tokens "$n" --json --dump-logits "$W/${tag}_$be.f32" "$@"
    done
    figure "$(report compare "$tag cuda vs cpu" "$W/${tag}_cpu.json" "$W/${tag}_cuda.json" \
        "$W/${tag}_cpu.f32" "$W/${tag}_cuda.f32")"
}

task_gpu() {
    vl_build . "$B" build
    V=$B/vlrun
    [ -x "$V" ] || vl_finish
    need_small_tokenizer
    step gpu_tests 300 bash -c 'cd "$1" && ctest -L gpu --output-on-failure --timeout 240 -j1' _ "$B"
    figure "ctest -L gpu: $(grep -E 'tests passed|tests failed' "$W/gpu_tests.log" | tail -1)"
    grep -E '^\s+[0-9]+ - .*(Failed|Timeout)' "$W/gpu_tests.log" | while read -r l; do figure "  $l"; done
    local t
    for t in cli_generation cli_chat cli_penalty; do
        step "${t}_cuda" 150 env VLRUN="$V" VL_FIXTURES="$root/tests/fixtures" \
            VL_TOKENIZER_DIR="$root/.cache/tokenizer" VL_BACKEND=cuda VL_PENALTY_BACKEND=cuda \
            bash "tests/$t.sh"
        figure "$t on cuda: $(tail -1 "$W/${t}_cuda.log")"
    done
    cross_backend tiny-a $FIX/tiny-a 24 $IMG/img_a_56x84.png $IMG/img_b_100x60.png \
        $IMG/img_c_45x130.png $IMG/img_a_56x84.png --prompt "Describe these pictures."
    if [ -d $FIX/tiny25-a ]; then # Qwen2.5-VL: window attention
        cross_backend tiny25-a $FIX/tiny25-a 24 $IMG/img25_one_84x56.png $IMG/img25_wide_644x56.png \
            $IMG/img25_tall_56x476.png $IMG/img25_square_224x224.png --prompt "Describe these pictures."
    fi
    local v
    for v in "bf16:" "kvint8:--kv int8" "nf4:--quant nf4" "int8:--quant int8"; do
        # shellcheck disable=SC2086 # the variant's flags are words
        cross_backend "tiny-odd_${v%%:*}" $FIX/tiny-odd 16 $IMG/img_a_56x84.png \
            $IMG/img_b_100x60.png ${v#*:}
    done
    step chat_7b 120 bash -c 'printf "What is on this page?\n/image examples/page.png\nAnd now with the page?\n" |
        "$1" --chat --random-weights --config "$2" --tokenizer "$3" --max-tokens 32' _ "$V" $CFG $TOK
    grep -E '^\[turn' "$W/chat_7b.log" | while read -r l; do figure "chat 7B $l"; done
    # the library's example: two requests on one engine at 7B shapes, the weights placed once
    step example_7b 180 "$B/examples/two_requests" $CFG examples/page.png $IMG/img_b_100x60.png \
        $TOK cuda
    grep -E '^  [0-9]+ prompt tokens' "$W/example_7b.log" | while read -r l; do
        figure "two_requests 7B: $l"
    done
    local item
    for item in "${runs[@]}"; do big_run "$(tag_of "$item")" "$V" "$item"; done
}

task_runs() {
    need_vlrun
    [ ${#runs[@]} -gt 0 ] || runs=("bf16 28")
    local item n=0
    for item in "${runs[@]}"; do
        big_run "$(tag_of "$item")" "$V" "$item"
        n=$((n + 1))
        [ $n -gt 5 ] || cp "$W/$(tag_of "$item").json" "$OUT/" 2>/dev/null
    done
}

task_bench() {
    vl_build . "$B" build vlbench
    # shellcheck disable=SC2086 # the arguments are words
    step vlbench 240 bash -c '"$1" "${@:3}" --json-out "$2/vlbench.json" >"$2/vlbench.md"' _ \
        "$B/bench/vlbench" "$W" $bench_args
    figure "vlbench: $(grep -c '' "$W/vlbench.md") lines of tables, $(tail -1 "$W/vlbench.log")"
    if need_anchor kernels_bench.py; then
        step anchors 200 env OUT="$W" python3 "$ANCHORS/kernels_bench.py"
    fi
    report anchors "$W" >"$W/anchors.txt" 2>&1
    head -1 "$W/anchors.txt" | while read -r l; do figure "$l"; done
    cp "$W"/vlbench.md "$W"/vlbench.json "$W"/anchors.txt "$OUT/" 2>/dev/null
    cp "$W/kernels.json" "$OUT/" 2>/dev/null
}

budget_probe() { # "Q N FLAGS": what the planner admits in 24 GiB: refused before loading, the
    # refusal says how many fit
    # shellcheck disable=SC2046
    timeout "$(left 60)" "$V" $(run_args $1) --mem-budget 24G >/dev/null 2>"$W/budget.err"
    figure "$1 --mem-budget 24G: $(tail -1 "$W/budget.err")"
}

task_measure() {
    need_vlrun
    if need_anchor hf_baseline.py; then
        step hf_baseline 240 bash -c 'cd "$1" && QWEN_TOKENIZER="$2" OUT="$1" python3 "$3" sdpa none 28 "$4"' \
            _ "$W" "$root/$TOK" "$root/$ANCHORS/hf_baseline.py" "$tokens"
        figure "transformers + SDPA bf16 x28: $(grep '^{' "$W/hf_baseline.log" | tail -1)"
        cp "$W/hf_baseline.log" "$OUT/"
    fi
    local n item
    for n in ${counts//,/ }; do big_run "bf16_x$n" "$V" "bf16 $n"; done
    [ -n "$counts" ] || for n in 1 10 28 60; do big_run "bf16_x$n" "$V" "bf16 $n"; done
    for item in "nf4 600" "nf4 600 --kv int8"; do budget_probe "$item"; done
    [ ${#runs[@]} -gt 0 ] || runs=("nf4 200 --kv int8 --mem-budget 24G")
    for item in "${runs[@]}"; do big_run "$(tag_of "$item")" "$V" "$item"; done
}

hf_qwen2_5_vl() { # COUNTS: the transformers anchor on Qwen2.5-VL-7B shapes, SDPA, bf16
    step hf_qwen2_5_vl 240 bash -c 'cd "$1" && QWEN_TOKENIZER="$2" OUT="$1" python3 "$3" sdpa "$4" "$5"' \
        _ "$W" "$root/$TOK" "$root/bench/anchors/hf_qwen2_5_vl.py" "$1" "$tokens"
    report hf "$W/hf_qwen2_5_vl_sdpa.json" "transformers + SDPA bf16" >"$W/hf_qwen2_5_vl.txt" 2>&1
    while read -r l; do figure "$l"; done <"$W/hf_qwen2_5_vl.txt"
    cp "$W/hf_qwen2_5_vl_sdpa.json" "$OUT/" 2>/dev/null
}

task_measure25() {
    figure "config: $CFG"
    need_vlrun
    local item n q extra tag list most
    for item in "nf4 600" "nf4 600 --kv int8"; do budget_probe "$item"; done
    list=$(tr , '\n' <<<"${counts:-1,28}" | sort -rn)
    most=${list%%$'\n'*}
    for n in $list; do
        for q in bf16 nf4 "nf4 --kv int8"; do
            read -r q extra <<<"$q"
            item="$q $n${extra:+ $extra}"
            tag=$(tag_of "$item")
            big_run "$tag" "$V" "$item" && figure "$(report vision "$W/$tag.json" "$tag")"
            [ "$n" != "$most" ] || cp "$W/$tag.json" "$OUT/" 2>/dev/null
        done
        [ "$n" != "$most" ] || hf_qwen2_5_vl "${counts:-1,28}"
    done
    [ "$most" -gt 1 ] || return 0
    # the encoder on distinct images: page.png xN shares its pixels and is encoded once
    local many=()
    for n in $(seq "$most"); do many+=(examples/page.png); done
    step_json "vision_distinct_x$most" 200 "$V" "${many[@]}" --max-tokens 1 --random-weights \
        --config "$CFG" --tokenizer "$TOK" --json --quant bf16 &&
        figure "$(report vision "$W/vision_distinct_x$most.json" "bf16 page.png given $most times")"
}

ab_round() { # ROUND ITEM: the item on old, new and each variant; reversed order on even rounds
    local r=$1 item=$2 tag builds b flags
    tag=$(tag_of "$item")
    builds=(old new)
    for b in "${variants[@]}"; do builds+=("${b%% *}"); done
    local order=("${builds[@]}") i
    if [ $((r % 2)) = 0 ]; then # new first on even rounds: drift over the run favours neither
        order=()
        for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[i]}"); done
    fi
    for b in "${order[@]}"; do
        flags=()
        for v in "${variants[@]}"; do [ "${v%% *}" != "$b" ] || read -ra flags <<<"${v#* }"; done
        local bin=$B/vlrun
        [ "$b" != old ] || bin=$root/build-device/old/vlrun
        big_run "ab_${tag}_${b}_$r" "$bin" "$item" "${flags[@]}" >/dev/null &&
            report tsvrow "$W/ab_${tag}_${b}_$r.json" "$tag" "$b" "$r" >>"$W/ab.tsv"
    done
}

task_ab() {
    local old=${pos[0]:-}
    [ -n "$old" ] && [ -f "$old/CMakeLists.txt" ] ||
        { echo "usage: scripts/device.sh ab OLD_TREE (a source tree, e.g. git archive REV | tar x -C DIR)" >&2; exit 2; }
    local targets=()
    [ $do_e2e = 0 ] || targets+=(vlrun)
    [ $do_bench = 0 ] || targets+=(vlbench)
    vl_build "$old" "$root/build-device/old" build_old "${targets[@]}" &
    vl_build . "$B" build "${targets[@]}" &
    wait
    figure "old = $old ($(rev_of "$old"))"
    if [ $do_e2e = 1 ]; then
        [ ${#runs[@]} -gt 0 ] || runs=("bf16 28" "nf4 28" "nf4 28 --kv int8")
        printf "tag\tbuild\trun\tttft_s\tdecode_tok_s\tpeak_gib\n" >"$W/ab.tsv"
        local r item
        for r in $(seq "$repeat"); do
            for item in "${runs[@]}"; do ab_round "$r" "$item"; done
        done
        report ab "$W/ab.tsv" >"$W/ab.txt" 2>&1
        cp "$W/ab.tsv" "$OUT/"
    fi
    if [ $do_bench = 1 ]; then
        local r b olds="" news=""
        for r in $(seq "$bench_repeat"); do
            for b in old new; do
                local bb=$B
                [ $b = new ] || bb=$root/build-device/old
                # shellcheck disable=SC2086
                step "vlbench_${b}_$r" 240 bash -c '"$1" "${@:3}" --json-out "$2.json" >"$2.md"' _ \
                    "$bb/bench/vlbench" "$W/vlbench_${b}_$r" $bench_args
            done
            olds+=${olds:+,}$W/vlbench_old_$r.json news+=${news:+,}$W/vlbench_new_$r.json
        done
        { echo; echo "vlbench $bench_args"; report bench-ab "$olds" "$news"; } >>"$W/ab.txt" 2>&1
        cp "$W/vlbench_old_1.json" "$OUT/vlbench_old.json" 2>/dev/null
        cp "$W/vlbench_new_1.json" "$OUT/vlbench_new.json" 2>/dev/null
    fi
    cp "$W/ab.txt" "$OUT/"
    grep -E '^ab:|^bench-ab:|<--' "$W/ab.txt" | while read -r l; do figure "$l"; done
}

golden() { # NAME: one golden set into $W/fixtures (the layout of tests/fixtures)
    local F=$W/fixtures
    case $1 in
    tokenizer) step golden_tokenizer 120 python3 tests/reference/make_tokenizer_goldens.py $TOK \
        tests/fixtures/tokenizer/cases.json "$F/tokenizer/goldens.json" ;;
    preprocess) step golden_preprocess 120 python3 tests/reference/make_preprocess_goldens.py "$F/images" ;;
    model) step golden_model 200 python3 tests/reference/make_model_goldens.py $TOK "$F/models" ;;
    odd) step golden_odd 200 python3 tests/reference/make_odd_goldens.py $SMALL_TOK "$W/odd" tests/fixtures &&
        mv "$W/odd/bnb_odd_goldens" "$F/" && cp -r "$W/odd/." "$F/models/" ;;
    chat) step golden_chat 120 python3 tests/reference/make_chat_golden.py $SMALL_TOK tests/fixtures \
        "$F/models/golden_chat_tiny-a.json" ;;
    eos) step golden_eos 120 python3 tests/reference/make_eos_golden.py tests/fixtures $SMALL_TOK \
        "$F/models/golden_tiny-eos.json" ;;
    penalty) step golden_penalty 200 python3 tests/reference/make_penalty_goldens.py tests/fixtures \
        "$F/models/golden_penalty_tiny-a.json" ;;
    images)
        mkdir -p "$W/img" "$F/images/exif" && cp -r tests/fixtures/images/exif "$W/img/"
        step golden_exif 120 python3 tests/reference/make_exif_images.py "$W/img/exif" --expect-only &&
            cp "$W"/img/exif/*.pil.png "$W/img/exif/cases.json" "$F/images/exif/"
        step golden_processor 200 python3 tests/reference/make_processor_goldens.py "$W/img" &&
            cp "$W/img/processor_goldens.json" "$W/img/transformers_sources.txt" "$F/images/" ;;
    qwen25) step golden_qwen25 300 python3 tests/reference/make_qwen2_5_vl_goldens.py $TOK "$W/q25" \
        tests/fixtures && mkdir -p "$F/models/images" && cp "$W"/q25/images/* "$F/models/images/" &&
        cp -r "$W"/q25/tiny25-* "$W"/q25/golden_* "$W"/q25/logits_* "$F/models/" ;;
    decode-check) step decode_check 120 python3 tests/reference/check_decode_fixtures.py
        figure "decode fixtures under this Pillow: $(grep -v Warn "$W/decode_check.log" | tail -1)" ;;
    *) figure "goldens: no set named $1 (tokenizer preprocess model odd chat eos penalty images qwen25 decode-check)" ;;
    esac
}

task_goldens() {
    local names=("${pos[@]}")
    [ ${#names[@]} -gt 0 ] || names=(tokenizer preprocess model odd chat eos penalty images qwen25 decode-check)
    mkdir -p "$W/fixtures/tokenizer" "$W/fixtures/models"
    need_small_tokenizer
    figure "$(python3 -c 'import PIL, torch, transformers; print("Pillow", PIL.__version__, "torch",
        torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
    local n
    for n in "${names[@]}"; do golden "$n"; done
    tar czf "$OUT/goldens.tgz" -C "$W/fixtures" .
    figure "goldens.tgz: $(tar tzf "$OUT/goldens.tgz" | grep -vc '/$') files;" \
        "tar xzf goldens.tgz -C tests/fixtures && git diff --stat tests/fixtures"
}

task_teacher_forced() {
    need_vlrun
    local qc=()
    [ $quant_compare = 0 ] || qc=(--quant-compare)
    df -h "${TMPDIR:-/tmp}" | tail -1 >"$W/disk.txt" # the checkpoint needs ~17 GB there
    step teacher_forced 540 python3 tests/reference/teacher_forced.py --vlrun "$V" --tokenizer $TOK \
        --config "$CFG" --out "$W" "${qc[@]}" "${passthru[@]}"
    grep -vE '^\s*$|Warning|warn\(' "$W/teacher_forced.log" | tail -25 | while read -r l; do figure "$l"; done
    cp "$W/teacher_forced.json" "$W/teacher_forced.tsv" "$OUT/" 2>/dev/null
}

task_profile() {
    need_vlrun
    local ncu item tag
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    [ -n "$ncu" ] || { figure "no ncu (Nsight Compute) on this machine"; return; }
    [ ${#runs[@]} -gt 0 ] || runs=("bf16 28")
    for item in "${runs[@]}"; do
        tag=$(tag_of "$item")
        big_run "run_$tag" "$V" "$item" || continue
        local s rc
        s=$(date +%s)
        # shellcheck disable=SC2046
        timeout "$(left 400)" "$ncu" --profile-from-start off --clock-control none --cache-control none \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv "$V" $(tokens=8 && run_args $item) \
            --cuda-opt "profile_step=$step_no" >"$W/profile_$tag.csv" 2>"$W/profile_$tag.err"
        rc=$?
        record "profile_$tag" $rc $(($(date +%s) - s))
        report profile "$W/profile_$tag.csv" "$W/run_$tag.json" >"$W/profile_$tag.txt" 2>&1
        figure "profile $tag (step $step_no): $(head -1 "$W/profile_$tag.txt")"
        cp "$W/profile_$tag.txt" "$OUT/"
    done
}

task_plan() {
    figure "nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
    figure "$(python3 -c 'import torch; f, t = torch.cuda.mem_get_info(); print("cudaMemGetInfo total %d B = %.1f MiB" % (t, t / 2**20))' 2>&1 | tail -1)"
    need_vlrun
    local gpu
    for gpu in A10 H100; do
        step "plan_$gpu" 60 "$V" plan --config $CFG --tokenizer $TOK --gpu $gpu --image-size 872x1242 \
            --max-tokens "$tokens"
    done
    cp "$W/plan_A10.log" "$OUT/plan_a10.txt"
    step sweep_bf16 300 "$V" sweep examples/page.png --counts "${counts:-1,10,28,60,100}" \
        --random-weights --config $CFG --tokenizer $TOK --max-tokens "$tokens" --gpu A10 \
        --out "$W/sweep_bf16"
    step sweep_nf4_kvint8 300 "$V" sweep examples/page.png --counts "${counts_nf4:-1,28,100,200}" \
        --random-weights --config $CFG --tokenizer $TOK --max-tokens "$tokens" --gpu A10 \
        --out "$W/sweep_nf4_kvint8" --quant nf4 --kv int8
    local f
    for f in "$W"/sweep_*.csv; do figure "$(basename "$f"):" && sed 's/^/  /' "$f" >>"$W/figures.txt"; done
    cp "$W"/sweep_*.csv "$W"/sweep_*.svg "$OUT/" 2>/dev/null
}

task_sanitize() {
    need_vlrun
    need_small_tokenizer
    local cs tool q v
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    for tool in memcheck racecheck; do
        for q in bf16 nf4; do
            # racecheck: no error exit code; its known hazards are inside cuBLAS (bench/RESULTS.md)
            local ec=(--error-exitcode 9)
            [ $tool = memcheck ] || ec=()
            step "${tool}_tiny-a_$q" 150 "$cs" --tool $tool "${ec[@]}" "$V" --backend cuda \
                --model $FIX/tiny-a --tokenizer $SMALL_TOK $IMG/img_a_56x84.png $IMG/img_b_100x60.png \
                --max-tokens 6 --quant $q --json
            figure "$tool tiny-a $q: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$W/${tool}_tiny-a_$q.log" | tail -1)"
        done
    done
    for v in "bf16:" "nf4kvint8:--quant nf4 --kv int8"; do
        # shellcheck disable=SC2086
        step "memcheck_tiny-odd_${v%%:*}" 150 "$cs" --tool memcheck --error-exitcode 9 "$V" --backend cuda \
            --model $FIX/tiny-odd --tokenizer $SMALL_TOK $IMG/img_a_56x84.png --max-tokens 8 --chunk 16 \
            --quiet ${v#*:}
        figure "memcheck tiny-odd ${v%%:*}: $(grep 'ERROR SUMMARY' "$W/memcheck_tiny-odd_${v%%:*}.log" | tail -1)"
    done
}

task_build() {
    local src=${pos[0]:-.}
    local dir=$B
    [ "$src" = . ] || dir=$root/build-device/old # where ab looks for OLD_TREE's build
    vl_build "$src" "$dir" build
    figure "built $src in $dir"
}

# ---- dispatch -----------------------------------------------------------------------------------
case $task in
help) usage; exit 0 ;;
gpu | runs | bench | measure | measure25 | ab | goldens | teacher-forced | profile | plan | sanitize | build) ;;
*) echo "device.sh: no task '$task' (scripts/device.sh help)" >&2; exit 2 ;;
esac
case $task in
bench | goldens | sanitize | build) ;;
*) [ -f "$CFG" ] || { echo "device.sh: --config $CFG: no such file in $root (scripts/device.sh help)" >&2; exit 2; } ;;
esac
[ -d .deps/usr ] || [ "$task" = goldens ] ||
    { echo "device.sh: .deps/usr missing: carry .deps (the Debian build dependencies)" >&2; exit 2; }
[ -f $TOK ] || [ "$task" = bench ] || [ "$task" = build ] || { echo "device.sh: $TOK missing: carry .cache (scripts/fetch_tokenizer.sh)" >&2; exit 2; }
rm -rf "$W" && mkdir -p "$W" "$OUT" && : >"$W/steps.txt"
"task_${task//-/_}"
vl_finish
