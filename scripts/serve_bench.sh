#!/usr/bin/env bash
# serve_bench.sh: one command for the `vlrun serve` load benchmark (bench/README.md, "loadgen").
# Starts `vlrun serve SERVE_ARGS --port 0` (waits for its ready line), runs the load generator
# once per client count (bench/loadgen.mjs with --client node, bench/loadgen.py with --client
# python; default node when node and the openai client are there, else python: the GPU machine
# has no node), stops the server with SIGTERM and writes into OUT_DIR: server.log, one
# clients-N.json per count, summary.json (the server's ready line and exit code, each count's
# figures) and summary.md (a table).
# usage: scripts/serve_bench.sh OUT_DIR [--clients 1,4,16,64] [--requests N] [--long-every K]
#            [--max-tokens N] [--ready-timeout S] [--client node|python] [--deadline S]
#            [--loadgen-args "..."] -- SERVE_ARGS...
#   --deadline S: no client count starts after S seconds (the rest are skipped; default none)
#   VLRUN: the binary (default build/vlrun)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '9,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1
shift
clients=1,4,16,64 requests=4 long_every=0 max_tokens=128 ready_timeout=900 extra="" client=""
deadline=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    [ $# -ge 2 ] || usage
    case $1 in
    --clients) clients=$2 ;;
    --requests) requests=$2 ;;
    --long-every) long_every=$2 ;;
    --max-tokens) max_tokens=$2 ;;
    --ready-timeout) ready_timeout=$2 ;;
    --loadgen-args) extra=$2 ;;
    --client) client=$2 ;;
    --deadline) deadline=$2 ;;
    *) usage ;;
    esac
    shift 2
done
[ "${1:-}" = "--" ] || usage
shift
vlrun=${VLRUN:-$root/build/vlrun}
[[ $clients =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "serve_bench: bad --clients $clients" >&2; exit 2; }
[[ $deadline =~ ^[0-9]+$ ]] || { echo "serve_bench: bad --deadline $deadline" >&2; exit 2; }
if [ -z "$client" ]; then
    client=python
    if command -v node >/dev/null 2>&1 &&
        [ -f "${VL_NODE_MODULES:-$root/.cache/node/node_modules}/openai/index.mjs" ]; then
        client=node
    fi
fi
case $client in
node) loadgen=(node "$root/bench/loadgen.mjs") ;;
python) loadgen=(python3 "$root/bench/loadgen.py") ;;
*) echo "serve_bench: bad --client $client (node or python)" >&2; exit 2 ;;
esac
mkdir -p "$out" || exit 1

"$vlrun" serve "$@" --port 0 2>"$out/server.log" >/dev/null &
pid=$!
trap 'kill -KILL $pid 2>/dev/null' EXIT
url=""
for _ in $(seq $((ready_timeout * 5))); do
    url=$(grep -o -m1 'listening on http://[^ ]*' "$out/server.log" | sed 's/^listening on //')
    [ -n "$url" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
done
if [ -z "$url" ]; then
    echo "serve_bench: no ready line from vlrun serve: $(tail -c 600 "$out/server.log")" >&2
    exit 1
fi
echo "serve_bench: server at $url" >&2

rc=0
for n in ${clients//,/ }; do
    if [ "$deadline" -gt 0 ] && [ "$SECONDS" -ge "$deadline" ]; then
        echo "serve_bench: $n clients skipped: past the deadline of $deadline s" >&2
        continue
    fi
    echo "serve_bench: $n clients x $requests requests ($client client)" >&2
    # shellcheck disable=SC2086 # --loadgen-args is a list of options
    "${loadgen[@]}" --url "$url" --clients "$n" --requests "$requests" \
        --long-every "$long_every" --max-tokens "$max_tokens" $extra \
        --out "$out/clients-$n.json" || { rc=1; echo "serve_bench: loadgen failed ($n)" >&2; }
done

kill -TERM $pid
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done
wait $pid
server_rc=$?
trap - EXIT
python3 - "$out" "$server_rc" "$clients" "$*" <<'PY' || rc=1
import json, os, re, sys
out, server_rc, clients, serve_args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
log = open(os.path.join(out, "server.log"), errors="replace").read()
m = re.search(r"^vlrun serve: listening on .*$", log, re.M)
runs = [json.load(open(os.path.join(out, f"clients-{n}.json"))) for n in clients.split(",")
        if os.path.exists(os.path.join(out, f"clients-{n}.json"))]
json.dump({"serve_args": serve_args, "ready_line": m.group(0) if m else None,
           "server_exit": server_rc, "runs": runs}, open(os.path.join(out, "summary.json"), "w"),
          indent=2)
gib = lambda b: "-" if not b else "%.2f" % (b / 2**30)
ms = lambda s: "-" if s is None else "%.1f" % (s * 1000)
rows = ["| clients | requests | ok | errors | out tok/s | TTFT p50 / p99 ms | per-token p50 / p99 ms"
        " | peak device GiB | max queue |", "|" + "---|" * 9]
for r in runs:
    rows.append("| %d | %d | %d | %s | %.1f | %s / %s | %s / %s | %s | %d |" % (
        r["clients"], r["requests"], r["ok"], json.dumps(r["errors_by_status"]) if r["errors_by_status"] else "-",
        r["output_tok_s"], ms(r["ttft_s"]["p50"]), ms(r["ttft_s"]["p99"]),
        ms(r["per_token_s"]["p50"]), ms(r["per_token_s"]["p99"]),
        gib(r["server"]["peak_device_bytes"]), r["server"]["max_queue_length"]))
open(os.path.join(out, "summary.md"), "w").write(
    "vlrun serve %s\n\n%s\n\nserver exit %d\n\n%s\n" % (serve_args, m.group(0) if m else "(no ready line)",
                                                       server_rc, "\n".join(rows)))
PY
[ "$server_rc" -eq 0 ] || { echo "serve_bench: vlrun serve exited $server_rc" >&2; rc=1; }
cat "$out/summary.md" 2>/dev/null
exit $rc
