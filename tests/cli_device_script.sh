#!/usr/bin/env bash
# scripts/device.sh and scripts/device_report.py without a GPU:
#   - `device.sh help` lists every task; an unknown task, an unknown option and an option
#     without its value end in one stderr line and exit 2, before any build;
#   - device_report.py computes the figures the ab task decides on, from hand-made reports:
#     `ab` marks a run whose decode is more than 2% below old (exit 1) and passes one within 2%
#     (exit 0), and gives no verdict (exit 1) when one side has no runs; `bench-ab` marks a vlbench row more than 2% slower, takes the median of several
#     rounds and counts old rows that new lacks; `run`, `tsvrow` and `compare` print the values
#     of the given reports (the expected strings below are worked out by hand), and so do
#     `vision` (a run's vision_s over its image_files) and `hf` (an anchor's list);
#   - --config: in a copy of the scripts with a stand-in vlrun (which logs its arguments and
#     answers with a fixed report) and a stand-in teacher_forced.py, the tasks pass --config
#     (default qwen2-vl-7b-instruct.json; measure25: qwen2.5-vl-7b-instruct.json) and refuse a
#     missing file; measure25 runs its steps in order (budget probes, the largest count's runs,
#     the anchor, the others, the distinct-image run) and divides the vision time by the image
#     files (page.png xN: one encode; page.png given N times: N).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
DEV=$SRC/scripts/device.sh
REP=$SRC/scripts/device_report.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect() { # NAME WANTED_RC COMMAND...: rc and output in $tmp/out, $tmp/err
    local name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" = "$want" ]; then ok; else bad "$name: rc $rc, wanted $want ($(head -2 "$tmp/err"))"; fi
}
has() { # NAME FILE TEXT: FILE holds the fixed string TEXT
    if grep -qF -- "$3" "$2"; then ok; else bad "$1: no '$3' in $(basename "$2"): $(head -5 "$2")"; fi
}
one_line() { # NAME FILE: exactly one line
    if [ "$(wc -l <"$2")" = 1 ]; then ok; else bad "$1: $(wc -l <"$2") lines in $(basename "$2")"; fi
}

# 1. the command line
expect help 0 bash "$DEV" help
for t in gpu runs bench measure measure25 "ab OLD_TREE" goldens teacher-forced profile plan sanitize build help; do
    has "help lists $t" "$tmp/out" "  $t "
done
expect "unknown task" 2 bash "$DEV" nosuchtask
one_line "unknown task" "$tmp/err"
has "unknown task" "$tmp/err" "no task 'nosuchtask'"
expect "unknown option" 2 bash "$DEV" gpu --nosuch
one_line "unknown option" "$tmp/err"
has "unknown option" "$tmp/err" "unknown option --nosuch"
expect "missing value" 2 bash "$DEV" ab --run
one_line "missing value" "$tmp/err"
has "missing value" "$tmp/err" "--run needs a value"
expect "config without value" 2 bash "$DEV" runs --config
has "config without value" "$tmp/err" "--config needs a value"
expect help 0 bash "$DEV" help
has "help lists --config" "$tmp/out" "  --config FILE "

# 2. ab: old 162.0 and 162.2 (median 162.1); new 158.0 = -2.53% (worse), new2 160.0 = -1.30%
printf 'tag\tbuild\trun\tttft_s\tdecode_tok_s\tpeak_gib\n' >"$tmp/ab.tsv"
printf 'bf16_x28\told\t1\t1.900\t162.0\t18.430\nbf16_x28\tnew\t1\t1.900\t158.0\t18.430\n' >>"$tmp/ab.tsv"
printf 'bf16_x28\told\t2\t1.920\t162.2\t18.430\nbf16_x28\tnew2\t1\t1.910\t160.0\t18.430\n' >>"$tmp/ab.tsv"
expect "ab worse" 1 python3 "$REP" ab "$tmp/ab.tsv"
has "ab worse" "$tmp/out" "-2.53%"
has "ab worse" "$tmp/out" "ab: 1 run(s) worse than old by more than 2%"
if grep "new2" "$tmp/out" | grep -q "worse"; then bad "ab: new2 (-1.30%) marked"; else ok; fi
has "ab within" "$tmp/out" "-1.30%"
grep -v $'\tnew\t' "$tmp/ab.tsv" >"$tmp/ab_ok.tsv"
expect "ab within" 0 python3 "$REP" ab "$tmp/ab_ok.tsv"
has "ab within" "$tmp/out" "ab: 0 run(s) worse"
grep -v new "$tmp/ab.tsv" >"$tmp/ab_old.tsv" # the new build's runs failed: no verdict, exit 1
expect "ab no new" 1 python3 "$REP" ab "$tmp/ab_old.tsv"
has "ab no new" "$tmp/out" "ab: bf16_x28: nothing to compare (the runs of new failed)"

# 3. bench-ab: row A 10 us -> 10.3 us (+3.00%, slower), row B 20 -> 20.2 (+1.00%), row C old only;
#    with two new rounds of A (10.1 and 10.3 us, median 10.2: +2.00%, not above 2%)
bench() { # FILE ROWS: a vlbench JSON with rows "case:ms" separated by spaces
    local f=$1 first=1 r
    shift
    { printf '{"tool": "vlbench", "rows": ['
      for r in "$@"; do
          [ $first = 1 ] || printf ','
          first=0
          printf '{"bench": "gemv", "case": "%s", "shape": "m=1 N=8 K=8", "quant": "bf16", "status": "ok", "ms": %s}' "${r%%:*}" "${r#*:}"
      done
      printf ']}\n'; } >"$f"
}
bench "$tmp/old.json" A:0.010 B:0.020 C:0.030
bench "$tmp/new.json" A:0.0103 B:0.0202
bench "$tmp/new2.json" A:0.0101 B:0.0202
expect "bench-ab slower" 1 python3 "$REP" bench-ab "$tmp/old.json" "$tmp/new.json"
has "bench-ab slower" "$tmp/out" "+3.00%  <-- slower"
has "bench-ab slower" "$tmp/out" "+1.00%"
has "bench-ab slower" "$tmp/out" "bench-ab: 2 rows in both, 1 slower than old by more than 2%, 1 old rows missing from new"
expect "bench-ab median" 0 python3 "$REP" bench-ab "$tmp/old.json" "$tmp/new.json,$tmp/new2.json"
has "bench-ab median" "$tmp/out" "+2.00%"

# 4. one report: 2 GiB = 2147483648 bytes
cat >"$tmp/run.json" <<'EOF'
{"images": 2, "prompt_tokens": 100, "device": "cpu", "options": {"decode_graph": false},
 "timings": {"ttft_s": 0.5, "prefill_tok_s": 200.0, "decode_tok_s": 12.34},
 "memory": {"peak_device": 2147483648, "predicted_peak": 1073741824, "kv_cache": 536870912}}
EOF
expect run 0 python3 "$REP" run "$tmp/run.json" T
has run "$tmp/out" "T: images 2 prompt 100: ttft 0.500 s, prefill 200 tok/s, decode 12.3 tok/s, peak 2.000 GiB, predicted 1.000 GiB, kv 0.500 GiB, graph False, cpu"
expect tsvrow 0 python3 "$REP" tsvrow "$tmp/run.json" T new 3
has tsvrow "$tmp/out" $'T\tnew\t3\t0.500\t12.3\t2.000'

# 5. compare: logits (1, 0) and (1, 1): cosine 1/sqrt(2); tokens 1 2 3 against 1 2 4
echo '{"tokens": [1, 2, 3]}' >"$tmp/a.json"
echo '{"tokens": [1, 2, 4]}' >"$tmp/b.json"
python3 -c 'import struct, sys; open(sys.argv[1], "wb").write(struct.pack("<2f", 1, 0)); open(sys.argv[2], "wb").write(struct.pack("<2f", 1, 1))' "$tmp/a.f32" "$tmp/b.f32"
expect compare 0 python3 "$REP" compare X "$tmp/a.json" "$tmp/b.json" "$tmp/a.f32" "$tmp/b.f32"
has compare "$tmp/out" "X: last-logits cosine 0.707107, greedy tokens equal 2/3"
expect "unreadable report" 2 python3 "$REP" run "$tmp/none.json"

# 6. vision: 0.75 s over 3 image files = 250.0 ms each; hf: one line per count of the anchor
echo '{"images": 5, "device": "cpu", "image_files": [{}, {}, {}], "timings": {"vision_s": 0.75}}' >"$tmp/v.json"
expect vision 0 python3 "$REP" vision "$tmp/v.json" V
has vision "$tmp/out" "V: vision 250.0 ms per encoded image (0.750 s for 3 encodes, 5 images in the prompt), cpu"
cat >"$tmp/hf.json" <<'JSON'
[{"images": 1, "quant": "none", "prompt_tokens": 1400, "ttft_s": 0.25, "decode_tok_s": 30.04,
  "peak_gib": 16.5, "vision_s": 0.05, "vision_ms_per_image": 50.0},
 {"images": 28, "quant": "none", "prompt_tokens": 38300, "oom": true, "vision_oom": true}]
JSON
expect hf 0 python3 "$REP" hf "$tmp/hf.json" HF
has hf "$tmp/out" "HF x1: prompt 1400: ttft 0.250 s, decode 30.0 tok/s, peak 16.500 GiB, vision 50.0 ms per image (0.050 s for 1)"
has hf "$tmp/out" "HF x28: prompt 38300: out of memory, vision out of memory"

# 7. --config through the tasks, in a copy of the two scripts: a stand-in vlrun that logs its
#    arguments, refuses --mem-budget and reports 0.25 s of vision per image file; a stand-in
#    teacher_forced.py that prints its arguments; no anchor (that step fails: exit 1)
T=$tmp/tree
mkdir -p "$T/scripts" "$T/examples" "$T/.deps/usr" "$T/.cache/tokenizer" "$T/tests/reference"
cp "$DEV" "$REP" "$T/scripts/"
: >"$T/.cache/tokenizer/tokenizer.json"
: >"$T/examples/qwen2-vl-7b-instruct.json"
cat >"$T/vlrun" <<'SH'
#!/usr/bin/env bash
echo "$*" >>"$VL_FAKE_LOG"
case " $* " in *" --mem-budget "*)
    [[ " $* " == *" --kv "* ]] && echo "refused: kv int8" >&2 || echo "refused: kv bf16" >&2
    exit 1 ;;
esac
files=0 images=0 list=""
for a in "$@"; do
    case $a in
    examples/page.png) files=$((files + 1)) images=$((images + 1)) list+=${list:+,}'{}' ;;
    x[0-9]*) images=$((images + ${a#x} - 1)) ;;
    esac
done
printf '{"images": %d, "prompt_tokens": 100, "device": "fake", "image_files": [%s],
 "options": {"decode_graph": true}, "timings": {"vision_s": %d.%02d, "ttft_s": 1.0,
 "prefill_tok_s": 100.0, "decode_tok_s": 50.0}, "memory": {"peak_device": 1073741824,
 "predicted_peak": 1073741824, "kv_cache": 536870912}}\n' "$images" "$list" \
    $((files * 25 / 100)) $((files * 25 % 100))
SH
cat >"$T/tests/reference/teacher_forced.py" <<'PY'
import sys
print("teacher_forced args:", *sys.argv[1:])
PY
chmod +x "$T/vlrun"
export VL_FAKE_LOG=$tmp/vlrun.log
DEV2=$T/scripts/device.sh
expect "measure25 without its config" 2 env OUT="$tmp/o" bash "$DEV2" measure25 --vlrun "$T/vlrun"
one_line "measure25 without its config" "$tmp/err"
has "measure25 without its config" "$tmp/err" "--config examples/qwen2.5-vl-7b-instruct.json: no such file"
expect "missing --config" 2 env OUT="$tmp/o" bash "$DEV2" runs --config examples/none.json
has "missing --config" "$tmp/err" "--config examples/none.json: no such file"
: >"$T/examples/qwen2.5-vl-7b-instruct.json"
: >"$VL_FAKE_LOG"
expect "runs default config" 0 env OUT="$tmp/o1" bash "$DEV2" runs --vlrun "$T/vlrun"
has "runs default config" "$VL_FAKE_LOG" "examples/page.png x28 --max-tokens 512 --random-weights --config examples/qwen2-vl-7b-instruct.json"
: >"$VL_FAKE_LOG"
expect "runs --config" 0 env OUT="$tmp/o2" bash "$DEV2" runs --vlrun "$T/vlrun" \
    --config examples/qwen2.5-vl-7b-instruct.json --run "nf4 3"
has "runs --config" "$VL_FAKE_LOG" "examples/page.png x3 --max-tokens 512 --random-weights --config examples/qwen2.5-vl-7b-instruct.json"
expect "teacher-forced --config" 0 env OUT="$tmp/o3" bash "$DEV2" teacher-forced --vlrun "$T/vlrun" \
    --config examples/qwen2.5-vl-7b-instruct.json
has "teacher-forced --config" "$tmp/o3/summary.txt" "--config examples/qwen2.5-vl-7b-instruct.json --out"
: >"$VL_FAKE_LOG"
expect measure25 1 env OUT="$tmp/o4" bash "$DEV2" measure25 --vlrun "$T/vlrun"
S=$tmp/o4/summary.txt
steps=$(grep -oE '^(PASS|FAIL) [a-z0-9_]+' "$S" | cut -d' ' -f2 | tr '\n' ' ')
want="bf16_x28 nf4_x28 nf4_x28_kvint8 hf_qwen2_5_vl bf16_x1 nf4_x1 nf4_x1_kvint8 vision_distinct_x28 "
if [ "$steps" = "$want" ]; then ok; else bad "measure25 steps: '$steps', wanted '$want'"; fi
has measure25 "$S" "config: examples/qwen2.5-vl-7b-instruct.json"
has measure25 "$S" "nf4 600 --mem-budget 24G: refused: kv bf16"
has measure25 "$S" "nf4 600 --kv int8 --mem-budget 24G: refused: kv int8"
has measure25 "$S" "nf4_x28_kvint8: vision 250.0 ms per encoded image (0.250 s for 1 encode, 28 images in the prompt), fake"
has measure25 "$S" "bf16 page.png given 28 times: vision 250.0 ms per encoded image (7.000 s for 28 encodes, 28 images in the prompt), fake"
has measure25 "$VL_FAKE_LOG" "examples/page.png x1 --max-tokens 512 --random-weights --config examples/qwen2.5-vl-7b-instruct.json --tokenizer .cache/tokenizer/tokenizer.json --json --quant nf4 --kv int8"
n_calls=$(grep -c '' "$VL_FAKE_LOG")
n_cfg=$(grep -c -- "--config examples/qwen2.5-vl-7b-instruct.json" "$VL_FAKE_LOG")
if [ "$n_calls" = 9 ] && [ "$n_cfg" = 9 ]; then ok; else bad "measure25: $n_cfg of $n_calls vlrun calls with the 2.5 config (wanted 9 of 9)"; fi
outs=$(cd "$tmp/o4" && ls | tr '\n' ' ')
if [ "$outs" = "bf16_x28.json logs.tgz nf4_x28.json nf4_x28_kvint8.json summary.txt " ]; then ok; else bad "measure25 results: $outs"; fi

echo "cli_device_script: $pass passed, $fail failed"
[ "$fail" = 0 ]
