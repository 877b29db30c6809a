#!/usr/bin/env bash
# examples/two_requests: one engine, two requests with different images (engine/vlrun.h).
# Each answer must be the one a fresh `vlrun` run gives for that request alone (nothing of the
# first request leaks into the second), both requests must report the weights placed once, and
# each request's tracked peak must equal what `vlrun --json` tracks for it.
set -u
VLRUN=${VLRUN:?}
EX=${VL_TWO_REQUESTS:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A=$FIX/models/images/img_a_56x84.png
B=$FIX/models/images/img_b_100x60.png
"$EX" "$FIX/models/tiny-a" "$A" "$B" "$TOK" cpu >"$tmp/ex.out" 2>"$tmp/ex.err" || {
    echo "FAIL: two_requests exited non-zero: $(cat "$tmp/ex.err")"
    exit 1
}
for i in a b; do
    img=$A
    [ $i = b ] && img=$B
    "$VLRUN" --backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" "$img" \
        --prompt "What is in this picture?" --max-tokens 24 --json >"$tmp/run_$i.json" 2>/dev/null ||
        { echo "FAIL: vlrun on $img"; exit 1; }
done
python3 - "$tmp/ex.out" "$tmp/run_a.json" "$tmp/run_b.json" <<'PY'
import json, re, sys
out = open(sys.argv[1], encoding="utf-8", errors="replace").read()
runs = [json.load(open(p)) for p in sys.argv[2:4]]
pat = re.compile(r"request (\d) \((.*?)\): (.*?)\n  (\d+) prompt tokens, (\d+) generated in [0-9.]+ s "
                 r"\| weights (\d+) bytes, placed (\d+) time\(s\) \| peak tracked (\d+) bytes, "
                 r"predicted (\d+)\n", re.S)
got = pat.findall(out)
ok = len(got) == 2
for i, (g, r) in enumerate(zip(got, runs)):
    n, path, text, prompt, gen, wbytes, loads, peak, pred = g
    checks = {
        "text": text == r["text"],
        "prompt_tokens": int(prompt) == r["prompt_tokens"],
        "generated": int(gen) == 24 == r["generated_tokens"],
        "weights placed once": int(loads) == 1,
        "weights bytes": int(wbytes) == r["memory"]["weights"],
        "peak tracked": int(peak) == r["memory"]["peak_tracked"],
        "predicted": int(pred) == r["memory"]["predicted_peak"],
    }
    bad = [k for k, v in checks.items() if not v]
    print("request %s: %s" % (n, "OK" if not bad else "MISMATCH " + ", ".join(bad)))
    ok = ok and not bad
if len(got) != 2:
    print("FAIL: expected two request reports, got %d:\n%s" % (len(got), out))
sys.exit(0 if ok else 1)
PY
