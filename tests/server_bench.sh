#!/usr/bin/env bash
# server_bench.sh [node|python]: scripts/serve_bench.sh (the load benchmark of `vlrun serve`) with
# that load generator (bench/loadgen.mjs, default, or bench/loadgen.py) as a smoke test
# on the CPU backend with tiny-a: 1 and 2 clients, 2 requests each, every 2nd one the long
# request (3 fixture images); each count's JSON must show every request answered with exactly its
# max_tokens (tiny-a does not stop early on these prompts), TTFT for each, per-token gaps (no
# more than the tokens after the first; none when the server sent all in one chunk), the KV
# pool from /metrics, and the server must exit 0. The node client skips (77) without node or the
# openai client; the Python one needs only python3.
set -u
: "${VLRUN:?}" "${VL_FIXTURES:?}" "${VL_TOKENIZER_DIR:?}"
here=$(cd "$(dirname "$0")" && pwd)
client=${1:-node}
modules=${VL_NODE_MODULES:-$here/../.cache/node/node_modules}
if [ "$client" = node ] &&
    { ! command -v node >/dev/null 2>&1 || [ ! -f "$modules/openai/index.mjs" ]; }; then
    echo "SKIP: node or $modules/openai absent (scripts/fetch_node_deps.sh)"
    exit 77
fi
export VL_NODE_MODULES=$modules
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timeout -k 5 150 bash "$here/../scripts/serve_bench.sh" "$tmp/out" --clients 1,2 --requests 2 \
    --long-every 2 --max-tokens 8 --ready-timeout 60 --client "$client" \
    --loadgen-args "--pages 3 --long-max-tokens 4 --image $VL_FIXTURES/models/images/img_b_100x60.png" \
    -- --backend cpu --model "$VL_FIXTURES/models/tiny-a" \
    --tokenizer "$VL_TOKENIZER_DIR/small_tokenizer.json" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: serve_bench.sh exited $rc: $(tail -c 1500 "$tmp/stderr")"; exit 1; }
python3 - "$tmp/out" <<'PY'
import json, os, sys
out = sys.argv[1]
s = json.load(open(os.path.join(out, "summary.json")))
fail = 0
def check(name, cond, detail=""):
    global fail
    if not cond:
        fail += 1
        print("FAIL:", name, detail)
check("server exit 0", s["server_exit"] == 0, s["server_exit"])
check("ready line", (s["ready_line"] or "").startswith("vlrun serve: listening on http://127.0.0.1:"),
      s["ready_line"])
check("two runs", [r["clients"] for r in s["runs"]] == [1, 2], [r["clients"] for r in s["runs"]])
for r in s["runs"]:
    n = r["clients"] * 2
    # each client: one one-page request (8 tokens) and one long request (4 tokens)
    check("%d clients: all answered" % r["clients"], r["ok"] == n == r["requests"] and
          not r["errors_by_status"], r)
    check("%d clients: tokens" % r["clients"], r["output_tokens"] == r["clients"] * 12,
          r["output_tokens"])
    check("%d clients: TTFT of each" % r["clients"], r["ttft_s"]["n"] == n and
          0 < r["ttft_s"]["p50"] <= r["ttft_s"]["p99"], r["ttft_s"])
    check("%d clients: TTFT by kind" % r["clients"],
          r["ttft_one_page_s"]["n"] == r["ttft_long_s"]["n"] == r["clients"])
    # gaps between chunks: a busy machine may get a request's text in one chunk (no gap at all)
    g = r["per_token_s"]
    check("%d clients: per-token gaps" % r["clients"], g["n"] <= r["output_tokens"] - n and
          (g["n"] == 0 or 0 < g["p50"] <= g["p99"]), g)
    check("%d clients: tok/s" % r["clients"], r["output_tok_s"] > 0 and r["wall_s"] > 0)
    # every token but a request's first (its prefill's) comes from a decode step of this run
    sv = r["server"]
    check("%d clients: decode tokens from /metrics" % r["clients"],
          sv["decode_tokens"] == r["output_tokens"] - n and sv["decode_seconds"] > 0 and
          sv["decode_tok_s"] > 0 and 1 <= sv["mean_decode_rows"] <= r["clients"] and
          sv["prefill_seconds"] > 0, sv)
    check("%d clients: the KV pool from /metrics" % r["clients"], r["server"]["kv_blocks_total"] > 0
          and r["server"]["kv_bytes_total"] > 0, r["server"])
check("summary.md", os.path.getsize(os.path.join(out, "summary.md")) > 100)
print("serve_bench smoke:", "OK" if not fail else "%d failed" % fail)
sys.exit(1 if fail else 0)
PY
