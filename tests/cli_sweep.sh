#!/usr/bin/env bash
# vlrun sweep on the CPU backend (tiny-a, counts 1,2):
#   - PREFIX.csv has one row per count with the prompt tokens, peak and TTFT of a separate run
#     of IMAGE xN (`vlrun ... --json`): prompt tokens equal, measured peak = that run's tracked
#     bytes, predicted = its predicted peak (on the CPU the two are equal, to the byte);
#   - PREFIX.svg parses (xml.etree) and holds the two measured points, the prediction line and
#     the dashed budget line, a title naming the model, quant, kv and device;
#   - --from-csv plots the CSV again without running (the CSV is left as it was);
#   - a FIFO where PREFIX.svg goes is refused before any run; bad --counts: one error line.
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
M=$FIX/models/tiny-a
IMG=$FIX/models/images/img_b_100x60.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
opts=(--backend cpu --model "$M" --tokenizer "$TOK" --max-tokens 5 --quant int8 --kv int8)

# a FIFO where PREFIX.svg goes: refused in one line before any run, the FIFO left as it was
mkfifo "$tmp/f.svg"
timeout 60 "$VLRUN" sweep "$IMG" --counts 1,2 "${opts[@]}" --gpu 4M --out "$tmp/f" >"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
[ $rc -eq 1 ] && [ -p "$tmp/f.svg" ] && [ ! -e "$tmp/f.csv" ] && [ "$(wc -l <"$tmp/stderr")" -eq 1 ] &&
    grep -q "f.svg is a FIFO" "$tmp/stderr" && ok || bad "FIFO at f.svg: rc=$rc $(cat "$tmp/stderr")"
timeout 120 "$VLRUN" sweep "$IMG" --counts 1,2 "${opts[@]}" --gpu 4M --out "$tmp/s" >"$tmp/stdout" 2>"$tmp/stderr" ||
    bad "sweep: $(cat "$tmp/stderr")"
[ -f "$tmp/s.svg" ] && ok || bad "no plot written"
for n in 1 2; do
    "$VLRUN" "${opts[@]}" "$IMG" x$n --json --quiet >"$tmp/run$n.json" 2>/dev/null || bad "run x$n"
done
if python3 - "$tmp/s.csv" "$tmp/run1.json" "$tmp/run2.json" <<'PY'; then ok; else bad "csv: $(cat "$tmp/s.csv")"; fi
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["images"] for r in rows] == ["1", "2"], rows
for r, path in zip(rows, sys.argv[2:]):
    run = json.load(open(path)); m = run["memory"]
    assert r["status"] == "ok" and r["device"] == "cpu", r
    assert int(r["prompt_tokens"]) == run["prompt_tokens"], (r, run["prompt_tokens"])
    assert int(r["peak_measured_bytes"]) == m["peak_tracked"], (r, m["peak_tracked"])
    assert int(r["peak_predicted_bytes"]) == m["predicted_peak"] == m["peak_tracked"], (r, m)
    assert float(r["ttft_s"]) > 0 and float(r["decode_tok_s"]) > 0, r
print("csv OK")
PY
SVG_PY=$(dirname "$0")/svg_points.py
python3 "$SVG_PY" "$tmp/s.svg" >"$tmp/svg.txt" && ok || bad "svg does not parse: $(cat "$tmp/svg.txt")"
circles=$(grep -c '^circle' "$tmp/svg.txt")   # 2 points + 1 in the legend
dashed=$(grep -c '^dashed' "$tmp/svg.txt")    # the budget line + its legend sample
[ "$circles" = 3 ] && [ "$dashed" = 2 ] && grep -q '^polyline ' "$tmp/svg.txt" && ok ||
    bad "svg: $circles circles, $dashed dashed lines"
grep -q '^text tiny-a: int8 weights, int8 KV cache, cpu$' "$tmp/svg.txt" && grep -q '^text host memory (MiB)$' "$tmp/svg.txt" &&
    grep -q '^text budget 4.00 MiB: ' "$tmp/svg.txt" && ok || bad "svg texts: $(grep '^text' "$tmp/svg.txt" | head -20)"
grep -q "^   2 images, " "$tmp/stdout" && ok || bad "stdout: $(cat "$tmp/stdout")"

# --from-csv: the plot again, no run, the CSV untouched
cp "$tmp/s.csv" "$tmp/before.csv"
"$VLRUN" sweep "$IMG" --from-csv "$tmp/s.csv" "${opts[@]}" --gpu 3M --out "$tmp/r" >"$tmp/stdout2" 2>&1 || bad "--from-csv: $(cat "$tmp/stdout2")"
python3 "$SVG_PY" "$tmp/r.svg" | grep -q '^text budget 3.00 MiB: ' && cmp -s "$tmp/s.csv" "$tmp/before.csv" && [ ! -e "$tmp/r.csv" ] &&
    ok || bad "--from-csv output"

# errors: one line, exit 1
for args in "--counts 2,1" "--counts 0" "--counts 1,x" ""; do
    "$VLRUN" sweep "$IMG" $args "${opts[@]}" --out "$tmp/e" >"$tmp/o" 2>"$tmp/e.err"
    rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/e.err")" -eq 1 ] && grep -q -- "--counts" "$tmp/e.err" && [ ! -e "$tmp/e.csv" ] &&
        ok || bad "sweep $args: rc $rc, $(cat "$tmp/e.err")"
done
"$VLRUN" sweep "$IMG" x2 --counts 1 "${opts[@]}" --out "$tmp/e" >"$tmp/o" 2>"$tmp/e.err"
[ $? -eq 1 ] && grep -q "give one IMAGE" "$tmp/e.err" && ok || bad "IMAGE x2: $(cat "$tmp/e.err")"

# a hostile --from-csv (infinite, NaN, negative or huge values): one line, no plot, no hang
head -n 1 "$tmp/s.csv" >"$tmp/h_head.csv"
for row in "1,100,inf,1,0,0,1,1,ok,X" "1,100,nan,1,0,0,1,1,ok,X" "1,-5,1,1,0,0,1,1,ok,X" \
    "1,100,1e308,1e308,0,0,1,1,ok,X" "1000000000,1,1,1,0,0,1,1,ok,X" "2,10,1,1,0,0,nan,inf,ok,X"; do
    { cat "$tmp/h_head.csv"; echo "$row"; } >"$tmp/h.csv"
    timeout 20 "$VLRUN" sweep "$IMG" --from-csv "$tmp/h.csv" "${opts[@]}" --gpu 3M --out "$tmp/h" >"$tmp/o" 2>"$tmp/h.err"
    rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/h.err")" -eq 1 ] && grep -q "not a vlrun sweep row" "$tmp/h.err" &&
        [ ! -e "$tmp/h.svg" ] && ok || bad "--from-csv row '$row': rc $rc, $(cat "$tmp/h.err")"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
