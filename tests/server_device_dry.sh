#!/usr/bin/env bash
# server_device_dry.sh: scripts/device_serve.sh (issue 16's device work) in its --dry-run, the CPU
# backend with tiny-a's shapes, so that the script the GPU machine runs is known to work:
#   - a bad part, a bad argument and a missing OUT are refused (exit 2 / non-zero) before any run;
#   - `bench-bf16 --dry-run` writes $OUT/all.tgz, summary.md and summary.json; the summary has
#     the single-stream anchor, the one-page runs at 1 and 4 clients (2 requests each, every one
#     answered with its 128 tokens: the random tiny-a does not stop early on them), and the mix at
#     8 clients under 20M (4 one-page and 4 six-page requests, all answered, 128 tokens each,
#     the long ones' TTFT counted), each run's ratio to the anchor, the goals (no error: PASS;
#     the peak within the budget: not measured on the CPU) and no note of a skipped step.
set -u
: "${VLRUN:?}"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
export TMPDIR=$tmp # the script's work folder: $TMPDIR/device_serve
OUT=$tmp/o bash "$here/../scripts/device_serve.sh" measure --dry-run 2>"$tmp/err"
# shellcheck disable=SC2015 # bad runs when either fails
[ $? = 2 ] && grep -q usage "$tmp/err" || bad "an unknown part: $(cat "$tmp/err")"
OUT=$tmp/o bash "$here/../scripts/device_serve.sh" bench 5x 2>"$tmp/err"
# shellcheck disable=SC2015 # bad runs when either fails
[ $? = 2 ] && grep -q 'bad argument 5x' "$tmp/err" || bad "a bad argument: $(cat "$tmp/err")"
env -u OUT bash "$here/../scripts/device_serve.sh" bench --dry-run 2>"$tmp/err" &&
    bad "ran without OUT"
grep -q 'OUT must name' "$tmp/err" || bad "no word about OUT: $(cat "$tmp/err")"

OUT=$tmp/out timeout -k 5 400 bash "$here/../scripts/device_serve.sh" bench-bf16 380 --dry-run \
    >"$tmp/stdout" 2>"$tmp/stderr" || bad "bench-bf16 --dry-run: rc $?: $(tail -c 800 "$tmp/stderr")"
for f in all.tgz summary.md summary.json; do [ -s "$tmp/out/$f" ] || bad "no $f"; done
tar tzf "$tmp/out/all.tgz" | grep -q '^./bench/bf16/mix/clients-8.json$' || bad "all.tgz lacks the mix"
python3 - "$tmp/out/summary.json" <<'PY' || fail=$((fail + 1))
import json, sys
s = json.load(open(sys.argv[1]))
fails = []
def check(name, cond, detail=""):
    if not cond:
        fails.append(name)
        print("FAIL:", name, detail)
check("formats", list(s["formats"]) == ["bf16"], list(s["formats"]))
f = s["formats"]["bf16"]
single = f["single_stream_decode_tok_s"]
check("anchor", single is not None and single > 0, single)
check("one-page counts", [r["clients"] for r in f["one_page"]] == [1, 4], f["one_page"])
check("mix count", [r["clients"] for r in f["mix"]] == [8], f["mix"])
for r in f["one_page"] + f["mix"]:
    n = r["clients"] * (1 if r in f["mix"] else 2)
    name = "%d clients%s" % (r["clients"], " (mix)" if r in f["mix"] else "")
    check(name + ": all answered", r["requests"] == r["ok"] == n and not r["errors_by_status"], r)
    check(name + ": 128 tokens each", r["output_tokens"] == 128 * n, r["output_tokens"])
    check(name + ": ratio", abs(r["ratio_to_single_stream"] - r["output_tok_s"] / single) < 1e-9,
          r["ratio_to_single_stream"])
    check(name + ": TTFT p50 <= p99", r["ttft_s"]["n"] == n and
          0 < r["ttft_s"]["p50"] <= r["ttft_s"]["p99"], r["ttft_s"])
check("mix: 4 long requests", f["mix"][0]["ttft_long_s"]["n"] == 4, f["mix"][0]["ttft_long_s"])
check("mix: pool within 20M", 0 < f["mix"][0]["kv_pool_gib"] < 20 / 1024, f["mix"][0]["kv_pool_gib"])
check("goals", f["goals"] == {"mix_8_within_budget": None, "mix_8_no_error": True}, f["goals"])
check("servers exit 0", f["one_page_server_exit"] == 0 and f["mix_server_exit"] == 0)
check("no notes", f["notes"] == [], f["notes"])
sys.exit(1 if fails else 0)
PY
grep -q '^| 8 | 8 / 8 | - |' "$tmp/out/summary.md" || bad "summary.md: no mix row: $(cat "$tmp/out/summary.md")"
grep -q 'mix_8_no_error PASS' "$tmp/out/summary.md" || bad "summary.md: no goal line"
echo "device_serve.sh --dry-run: $([ $fail = 0 ] && echo OK || echo "$fail failed")"
[ $fail = 0 ]
