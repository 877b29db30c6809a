#!/usr/bin/env bash
# `vlrun logits` on the CPU backend against the transformers goldens of the tiny models:
#   - one row per prompt position (the golden prompt length), --ids-out = the golden input ids;
#   - the argmax of every row = transformers' argmax at every position;
#   - the last row = logits_<model>.f32 (cosine >= 1 - 1e-9, max abs diff <= 1e-5: measured
#     1 - 5e-14 and 2.4e-7 on tiny-a; both allow for summation order, not for a wrong op);
#   - .bf16 output = the .f32 output rounded to nearest even, bit for bit;
#   - --chunk 7 (the prompt streamed in 15 chunks) gives the same rows;
#   - --kv int8: every row within cosine 0.999 of the bf16-cache row, argmax agreeing at >= 90%
#     of positions, and --chunk 7 gives its same rows;
#   - the stdout summary (positions, vocab, ids_fnv1a64 of the --ids-out bytes);
#   - --assistant-prefix: the prompt's ids and rows, then the forced answer's.
# Then bad input: one stderr line, exit 1, empty stdout, and neither FILE nor FILE.tmp left.
# Checks use plain python3 (json, struct): no numpy in CI.
set -u
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

for name in tiny-a tiny-b; do
    g=$FIX/models/golden_$name.json
    if [ ! -f "$g" ] || [ ! -f "$TOK" ]; then skip=$((skip + 1)); echo "SKIP: $g or $TOK absent"; continue; fi
    golden_args "$g" "$FIX"
    common=(--backend cpu --model "$FIX/models/$name" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt")
    d=$tmp/$name
    mkdir -p "$d"
    if ! "$VLRUN" logits "${common[@]}" --out "$d/l.f32" --ids-out "$d/ids.i32" >"$d/sum.json" 2>"$d/err" ||
        ! "$VLRUN" logits "${common[@]}" --out "$d/l.bf16" >"$d/sum_bf16.json" 2>>"$d/err" ||
        ! "$VLRUN" logits "${common[@]}" --chunk 7 --out "$d/c7.f32" >/dev/null 2>>"$d/err" ||
        ! "$VLRUN" logits "${common[@]}" --kv int8 --out "$d/kv8.f32" >"$d/sum_kv8.json" 2>>"$d/err" ||
        ! "$VLRUN" logits "${common[@]}" --kv int8 --chunk 7 --out "$d/kv8c7.f32" >/dev/null 2>>"$d/err"; then
        bad "$name: vlrun logits failed: $(head -c 400 "$d/err")"
        continue
    fi
    if python3 - "$g" "$FIX/models" "$d" "$name" <<'PY'; then ok; else bad "$name: logits checks"; fi
import json, math, struct, sys
g = json.load(open(sys.argv[1])); fix, d, name = sys.argv[2], sys.argv[3], sys.argv[4]
s = json.load(open(f"{d}/sum.json"))
n, V = s["positions"], s["vocab"]
errors = []
def check(cond, what):
    if not cond: errors.append(what)
check(n == len(g["input_ids"]), f"positions {n}, golden prompt {len(g['input_ids'])} tokens")
raw = open(f"{d}/l.f32", "rb").read()
check(len(raw) == 4 * n * V, f"l.f32 has {len(raw)} bytes, expected 4*{n}*{V}")
ids_raw = open(f"{d}/ids.i32", "rb").read()
ids = list(struct.unpack(f"<{len(ids_raw) // 4}i", ids_raw))
check(ids == g["input_ids"], "--ids-out differs from the golden input ids")
h = 0xcbf29ce484222325
for b in ids_raw: h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
check(s["ids_fnv1a64"] == f"{h:016x}", f"ids_fnv1a64 {s['ids_fnv1a64']} != {h:016x}")
check(s["format"] == "f32" and s["backend"] == "cpu" and s["quant"] == "bf16" and
      s["weights"] in ("BF16", "F16") and s["images"] == len(g["images"]), f"summary {s}")
if errors: print(name, errors); sys.exit(1)
rows = [struct.unpack_from(f"<{V}f", raw, 4 * V * i) for i in range(n)]
argmax = [max(range(V), key=r.__getitem__) for r in rows]
diff = [i for i, (a, b) in enumerate(zip(argmax, g["argmax_every_position"])) if a != b]
check(not diff, f"argmax differs at positions {diff[:10]}")
ref = struct.unpack(f"<{V}f", open(f"{fix}/{g['logits_file']}", "rb").read())
last = rows[-1]
cos = sum(x * y for x, y in zip(last, ref)) / math.sqrt(sum(x * x for x in last) * sum(y * y for y in ref))
mad = max(abs(x - y) for x, y in zip(last, ref))
check(cos >= 1 - 1e-9 and mad <= 1e-5, f"last row: cosine 1-{1 - cos:.3g}, max abs diff {mad:.3g}")
# bf16: round to nearest even of the float32 bits (no NaN in logits)
def bf16(x):
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
rb = open(f"{d}/l.bf16", "rb").read()
want = b"".join(struct.pack(f"<{V}H", *map(bf16, r)) for r in rows)
check(rb == want, f".bf16 file ({len(rb)} bytes) is not the .f32 file rounded to bf16")
check(json.load(open(f"{d}/sum_bf16.json"))["format"] == "bf16", "bf16 summary format")
c7 = open(f"{d}/c7.f32", "rb").read()
worst = 0.0
if len(c7) == len(raw):
    for i in range(n):
        r7 = struct.unpack_from(f"<{V}f", c7, 4 * V * i)
        worst = max(worst, max(abs(x - y) for x, y in zip(rows[i], r7)))
check(len(c7) == len(raw) and worst <= 1e-5, f"--chunk 7: {len(c7)} bytes, max abs diff {worst:.3g}")
# --kv int8: every row close to the bf16-cache row (cosine >= 0.999; a wrong scale or row drops
# it far lower) but not identical (the int8 path ran); chunked = one chunk (the same codes)
k8 = open(f"{d}/kv8.f32", "rb").read()
check(len(k8) == len(raw) and json.load(open(f"{d}/sum_kv8.json"))["kv"] == "int8", "--kv int8 run")
kcos, kdiff, kagree = 1.0, 0.0, 0
if len(k8) == len(raw):
    for i in range(n):
        r8 = struct.unpack_from(f"<{V}f", k8, 4 * V * i)
        c = sum(x * y for x, y in zip(rows[i], r8)) / math.sqrt(sum(x * x for x in rows[i]) * sum(y * y for y in r8))
        kcos, kdiff = min(kcos, c), max(kdiff, max(abs(x - y) for x, y in zip(rows[i], r8)))
        kagree += max(range(V), key=r8.__getitem__) == argmax[i]
check(kcos >= 0.999 and kdiff > 0 and kagree >= 0.9 * n,
      f"--kv int8: min cosine {kcos:.6f}, max abs diff {kdiff:.3g}, argmax {kagree}/{n}")
k8c7 = open(f"{d}/kv8c7.f32", "rb").read()
kw = 0.0
if len(k8c7) == len(k8):
    for i in range(n):
        a, b = struct.unpack_from(f"<{V}f", k8, 4 * V * i), struct.unpack_from(f"<{V}f", k8c7, 4 * V * i)
        kw = max(kw, max(abs(x - y) for x, y in zip(a, b)))
check(len(k8c7) == len(k8) and kw <= 1e-5, f"--kv int8 --chunk 7: max abs diff {kw:.3g}")
print(f"{name}: {n} positions, argmax {n - len(diff)}/{n}, last row cosine 1-{1 - cos:.2g} "
      f"max abs {mad:.2g}, --chunk 7 max abs {worst:.2g}; --kv int8 min cosine {kcos:.6f} "
      f"argmax {kagree}/{n}, --chunk 7 max abs {kw:.2g}", "OK" if not errors else errors)
sys.exit(1 if errors else 0)
PY
done

# ---- --assistant-prefix: the prompt's rows, then one row per token of the forced answer --------
# (teacher forcing, as tests/reference/quality_reference.py uses it): the ids are the prompt's
# plus the answer's, and the prompt's rows are unchanged (causal attention).
if [ -f "$TOK" ] && [ -f "$tmp/tiny-a/l.f32" ]; then
    golden_args "$FIX/models/golden_tiny-a.json" "$FIX"
    common=(--backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt")
    if "$VLRUN" logits "${common[@]}" --assistant-prefix "4827 top" --out "$tmp/ap.f32" \
        --ids-out "$tmp/ap.i32" >/dev/null 2>"$tmp/err" &&
        "$VLRUN" tokenize --tokenizer "$TOK" "4827 top" >"$tmp/ap_tok" 2>>"$tmp/err" &&
        python3 - "$tmp/tiny-a" "$tmp" <<'PY'; then ok; else bad "--assistant-prefix: $(head -c 300 "$tmp/err")"; fi
import json, re, struct, sys
d, t = sys.argv[1], sys.argv[2]
V = json.load(open(f"{d}/sum.json"))["vocab"]
read_ids = lambda p: list(struct.unpack(f"<{len(open(p, 'rb').read()) // 4}i", open(p, "rb").read()))
base, ids = read_ids(f"{d}/ids.i32"), read_ids(f"{t}/ap.i32")
answer = [int(x) for x in re.findall(r"-?\d+", open(f"{t}/ap_tok").read().split("\n")[0])]
raw, base_raw = open(f"{t}/ap.f32", "rb").read(), open(f"{d}/l.f32", "rb").read()
errors = []
if ids != base + answer:
    errors.append(f"ids {ids[len(base) - 2:]} != the prompt's + {answer}")
if len(raw) != 4 * V * len(ids):
    errors.append(f"{len(raw)} bytes for {len(ids)} positions")
elif raw[:len(base_raw)] != base_raw:
    errors.append("the prompt's rows changed")
print("--assistant-prefix:", len(answer), "answer tokens", "OK" if not errors else errors)
sys.exit(1 if errors else 0)
PY
fi

# ---- bad input --------------------------------------------------------------------------
name=tiny-a
IMG=$FIX/models/images/img_a_56x84.png
base=(logits --backend cpu --model "$FIX/models/$name" --tokenizer "$TOK" "$IMG")
# expect_error SUBSTRING FILE ARGS...: exit 1, one "vlrun: error:" line containing SUBSTRING,
# empty stdout, and neither FILE nor FILE.tmp exists afterwards
expect_error() {
    local want=$1 file=$2
    shift 2
    "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "^vlrun: error: " "$tmp/err" &&
        grep -qF -- "$want" "$tmp/err" && [ ! -e "$file" ] && [ ! -e "$file.tmp" ]; then
        ok
    else
        bad "vlrun $* -> rc=$rc, stderr($lines lines): $(head -c 300 "$tmp/err"), stdout: $(head -c 200 "$tmp/out"), file left: $(ls "$file"* 2>/dev/null)"
    fi
}
if [ -f "$TOK" ]; then
    e=$tmp/err_out
    mkdir -p "$e"
    expect_error "--out needs a value" "$e/x.f32" "${base[@]}" --out
    expect_error "--ids-out needs a value" "$e/x.f32" "${base[@]}" --out "$e/x.f32" --ids-out
    expect_error "--out FILE.bf16 or FILE.f32 is required" "$e/x.f32" "${base[@]}"
    expect_error "ending in .bf16 or .f32" "$e/x.bin" "${base[@]}" --out "$e/x.bin"
    expect_error "no image given" "$e/x.f32" logits --backend cpu --model "$FIX/models/$name" --out "$e/x.f32"
    expect_error "unknown option --bogus" "$e/x.f32" "${base[@]}" --bogus --out "$e/x.f32"
    expect_error "--kv int8 with --attn naive" "$e/x.f32" "${base[@]}" --kv int8 --attn naive --out "$e/x.f32"
    expect_error "option --kv: expected bf16 or int8" "$e/x.f32" "${base[@]}" --kv fp8 --out "$e/x.f32"
    expect_error "cannot create" "$e/nodir/x.f32" "${base[@]}" --out "$e/nodir/x.f32"
    # --ids-out unwritable: the logits file must not appear either
    expect_error "--ids-out" "$e/y.f32" "${base[@]}" --out "$e/y.f32" --ids-out "$e/nodir/ids.i32"
    # files are opened before the model: a bad model must leave no partial file behind
    expect_error "config.json" "$e/z.bf16" logits --backend cpu --model "$e" --tokenizer "$TOK" "$IMG" --out "$e/z.bf16"
    # --prompt's value is a prompt even when it reads "--out"
    if "$VLRUN" "${base[@]}" --prompt --out --out "$e/p.f32" >"$tmp/out" 2>"$tmp/err" && [ -s "$e/p.f32" ]; then ok; else
        bad "--prompt --out --out FILE: $(head -c 300 "$tmp/err")"; fi
    left=$(find "$e" -name '*.tmp' | head -3)
    if [ -z "$left" ]; then ok; else bad "temporary files left: $left"; fi
else
    skip=$((skip + 1))
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
