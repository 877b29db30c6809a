#!/usr/bin/env bash
# scripts/eval_quality.py (issue 17's quality measure) on tiny-a, CPU, over the 12-item
# mechanics set (tests/fixtures/quality-mechanics, quality_task.py --seed 3 --per-task 2):
# through the CLI and through `vlrun serve` the same 12 answers, the JSON report complete and
# its accuracy the share of exact matches; --min-accuracy above it exits 1, a missing set 2.
# (A random model's answers are all wrong: what this checks is the machinery, not quality.)
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # VIA OUT [eval options...]
    local via=$1 out=$2
    shift 2
    python3 "$root/scripts/eval_quality.py" --model "$FIX/models/tiny-a" --vlrun "$VLRUN" \
        --set "$FIX/quality-mechanics" --via "$via" --json-out "$out" "$@" -- --backend cpu \
        --tokenizer "$TOK" >"$out.txt" 2>&1
}
run cli "$tmp/cli.json" || { echo "FAIL: eval via cli: $(tail -5 "$tmp/cli.json.txt")"; exit 1; }
run serve "$tmp/serve.json" --workers 4 ||
    { echo "FAIL: eval via serve: $(tail -5 "$tmp/serve.json.txt")"; exit 1; }
python3 - "$tmp/cli.json" "$tmp/serve.json" "$FIX/quality-mechanics/items.jsonl" <<'PY' || exit 1
import json, sys
cli, serve = (json.load(open(p)) for p in sys.argv[1:3])
items = [json.loads(l) for l in open(sys.argv[3])]
fails = []
for name, r in (("cli", cli), ("serve", serve)):
    if [i["id"] for i in r["items"]] != [i["id"] for i in items]:
        fails.append("%s: items %s" % (name, [i["id"] for i in r["items"]]))
    ok = sum(i["ok"] for i in r["items"])
    if abs(r["accuracy"] - ok / len(items)) > 1e-12:
        fails.append("%s: accuracy %s for %d of %d" % (name, r["accuracy"], ok, len(items)))
    for i, want in zip(r["items"], items):
        got = i["got"].strip()
        got = got[:-1].rstrip() if got.endswith(".") else got
        if i["answer"] != want["answer"] or i["ok"] != (got == want["answer"]):
            fails.append("%s: item %d scored wrong: %s" % (name, i["id"], i))
    if sorted(r["by_task"]) != sorted({i["task"] for i in items}):
        fails.append("%s: tasks %s" % (name, sorted(r["by_task"])))
diff = [(a["id"], a["got"], b["got"]) for a, b in zip(cli["items"], serve["items"])
        if a["got"] != b["got"]]
if diff:
    fails.append("cli and serve answers differ: %s" % diff[:3])
for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
acc=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accuracy'])" "$tmp/cli.json")
run cli "$tmp/min.json" --min-accuracy "$(python3 -c "print($acc + 0.01)")" --tasks count,color
[ $? = 1 ] || { echo "FAIL: --min-accuracy above the accuracy did not exit 1"; exit 1; }
python3 "$root/scripts/eval_quality.py" --model "$FIX/models/tiny-a" --vlrun "$VLRUN" \
    --set "$tmp/none" >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: a missing set did not exit 2"; exit 1; }
# the scoring rule on answers chosen here: exact after stripping spaces and one final period
python3 - "$root/scripts" "$FIX/quality-mechanics" <<'PY' || exit 1
import sys
sys.path.insert(0, sys.argv[1])
import eval_quality as q
items = q.load_set(sys.argv[2], set(), 4)
replies = {0: " %s." % items[0]["answer"], 1: items[1]["answer"].upper(), 2: items[2]["answer"],
           3: items[3]["answer"] + " x"}
r = q.evaluate(items, lambda it: replies[it["id"]], 2)
want = [True, False, True, False]
if [x["ok"] for x in r] != want:
    sys.exit("FAIL: scored %s for %s, want %s" % ([x["ok"] for x in r], replies, want))
acc, by = q.report(r)
if acc != 0.5:
    sys.exit("FAIL: accuracy %s, want 0.5" % acc)
PY
echo "ok: 12 items through the CLI and vlrun serve, same answers, accuracy $acc"
