#!/usr/bin/env bash
# The progress line: on a terminal's stderr (a pseudo-terminal from `script`, bsdutils), one line
# rewritten with \r for loading weights (MiB), prefill (tokens, with the vision encoder's images)
# and decode (tokens) when the text is not streamed to that terminal; each phase ends with its
# final counts, then the line is blanked before anything else is printed. Nothing of it when
# stderr is a file, or with --quiet. Counts are checked against the --json report.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
IMG=$FIX/tiny-qwen2vl/tiny_input_140x84.png
CFG=$FIX/configs/tiny-synth.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
command -v script >/dev/null || { echo "FAIL: 'script' (Debian bsdutils) is needed for a terminal"; exit 1; }

# on_tty LOG CMD...: run CMD with stdin, stdout and stderr on a pseudo-terminal; what the
# terminal received goes to LOG (CMD may redirect stdout itself, inside the quoted command)
on_tty() {
    local log=$1; shift
    TERM=dumb script -qfec "$*" /dev/null >"$log" 2>&1 </dev/null
}
q() { printf '%q' "$1"; } # quoted for the command line of script -c

# check LABEL PYTHON-CHECKS LOG [JSON]: run the checks on the terminal log (t) and the report (r)
check() {
    local label=$1 code=$2 log=$3 json=${4:-}
    if python3 - "$log" "$json" <<PY; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $label: $(head -c 600 "$log" | od -c | head -20)" >&2; fi
import json, re, sys
t = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
r = json.load(open(sys.argv[2])) if sys.argv[2] else None
# the progress draws: text after a \r that is not the pty's \r\n, up to the next \r
draws = [d for d in re.split(r"\r(?!\n)", t)[1:]]
lines = [d for d in draws if d.strip()]
def final(phase):  # the last draw of a phase
    got = [d.strip() for d in lines if d.startswith(phase + " ")]
    assert got, "no '%s' line in %r" % (phase, lines)
    return got[-1]
$code
PY
}

# --json on a terminal: stdout holds the report only; stderr the phases, decode included
R=(--random-weights --config "$CFG" --tokenizer "$TOK" "$IMG" x2 --max-tokens 5 --backend cpu)
cmd="$(q "$VLRUN")"; for a in "${R[@]}"; do cmd+=" $(q "$a")"; done
on_tty "$tmp/json.log" "$cmd --json >$(q "$tmp/out.json")"
check "--json on a terminal" '
n = r["prompt_tokens"]
w = final("loading weights")
m = re.match(r"loading weights ([0-9.]+) / ([0-9.]+) MiB \(100%\) \| [0-9]+ s$", w)
assert m and m.group(1) == m.group(2), w
assert abs(float(m.group(2)) * 2**20 - r["memory"]["weights"]) < 0.01 * 2**20, (w, r["memory"])
p = final("prefill")
assert re.match(r"prefill %d/%d tokens \(100%%\), [0-9.]+ tok/s \| vision 2/2 images \| [0-9]+ s$" % (n, n), p), p
d = final("decode")
assert re.match(r"decode 5/5 tokens \(100%\), [0-9.]+ tok/s \| [0-9]+ s$", d), d
# the line blanked before what follows (the note after the run)
b = t[:t.index("note: --random-weights")].replace("\r\n", "\n")
assert re.search(r"\r +\r$", b), repr(b[-200:])
assert r["generated_tokens"] == 5 and r["images"] == 2
' "$tmp/json.log" "$tmp/out.json"
# the report is clean JSON (nothing of the progress line went to stdout)
if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out.json" && ! grep -q $'\r' "$tmp/out.json"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --json report not clean" >&2; fi

# streamed text on the terminal: no decode progress (the text is the progress), the prefill
# line blanked before the text starts
on_tty "$tmp/stream.log" "$cmd"
check "streamed text on a terminal" '
final("prefill"); final("loading weights")
assert not [d for d in lines if d.startswith("decode")], lines
# after the last blanking only the text: it never shares the line with a draw
b = t[:t.index("note: --random-weights")].replace("\r\n", "\n")
assert re.search(r"\r +\r[^\r]*$", b), repr(b[-200:])
' "$tmp/stream.log"

# the text streamed to a file while stderr is the terminal: decode progress is shown there
on_tty "$tmp/tofile.log" "$cmd >$(q "$tmp/text.out")"
check "text to a file" 'final("decode")' "$tmp/tofile.log"
if [ -s "$tmp/text.out" ] && ! grep -q $'\r' "$tmp/text.out"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: streamed text file empty or holds progress" >&2; fi

# --quiet on a terminal: no progress line at all (the pty turns \n into \r\n: only bare \r count)
on_tty "$tmp/quiet.log" "$cmd --quiet"
check "--quiet on a terminal" 'assert not lines and re.search(r"--- vlrun \S+ \(\S+\) report", t), (lines, t[:200])' "$tmp/quiet.log"

# stderr a file: no progress, whatever stdout is
"$VLRUN" "${R[@]}" --json >"$tmp/o.json" 2>"$tmp/err.txt"
"$VLRUN" "${R[@]}" >>"$tmp/o.json" 2>>"$tmp/err.txt"
if [ -s "$tmp/err.txt" ] && ! grep -q $'\r' "$tmp/err.txt" && ! grep -q "tok/s |" "$tmp/err.txt"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: progress with stderr in a file: $(od -c "$tmp/err.txt" | head)" >&2; fi

# vlrun logits on a terminal: the prefill line too
L=(logits --random-weights --config "$CFG" --tokenizer "$TOK" "$IMG" --backend cpu --out "$tmp/l.f32")
lcmd="$(q "$VLRUN")"; for a in "${L[@]}"; do lcmd+=" $(q "$a")"; done
on_tty "$tmp/logits.log" "$lcmd >$(q "$tmp/logits.json")"
check "logits on a terminal" '
n = r["positions"]
assert re.match(r"prefill %d/%d tokens \(100%%\).* \| vision 1/1 image \|" % (n, n), final("prefill")), final("prefill")
' "$tmp/logits.log" "$tmp/logits.json"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
