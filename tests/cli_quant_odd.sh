#!/usr/bin/env bash
# vlrun --quant on tests/fixtures/models/tiny-odd (no Linear has in-features % 64 == 0) and on
# tiny25-a (Qwen2.5-VL: its tower's SwiGLU and window attention, two shards) reproduces
# transformers run on bitsandbytes' quantized weights (tests/reference/make_odd_goldens.py and
# make_qwen2_5_vl_goldens.py: golden_<model>-<fmt>.json, logits_<model>-<fmt>.f32), for
# fmt = nf4 (--quant nf4), nf4dq (--quant nf4 --double-quant) and int8 (--quant int8), two ways:
#   quant     the bf16 checkpoint quantized while loading;
#   prequant  a "-bnb-4bit" / "-bnb-8bit" checkpoint: the model with its Linears replaced by
#             <model>-bnb-<fmt>.safetensors (bitsandbytes' tensors), loaded as it is.
# Each must give: the 24 greedy tokens and the golden prompt length (vlrun --json); the argmax at
# every prompt position and the last position's logits (vlrun logits: cosine >= 1 - 1e-9 and max
# abs diff <= 1e-5, as tests/cli_logits.sh: both sides multiply the same bf16 weights in fp32);
# the decoder's projections reported in the quantized format; with --quant, the report's weights
# and peak equal the planner's prediction to the byte.
# And the check can fail: the unquantized model misses every golden by far more than the bar
# (int8 moves the last logits by 1 - 4e-6 in cosine: a 0.9999 bar would not tell it from bf16).
# The baseline: the unquantized model reproduces golden_<model>-bf16 the same way.
# VL_BACKEND=cuda runs the same checks on the CUDA backend (bf16 activations: expect misses).
set -u
source "$(dirname "$0")/golden_args.sh"
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
BACKEND=${VL_BACKEND:-cpu}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# merge BASE_DIR QUANT_FILE OUT_DIR: BASE_DIR's config and tensors (every shard), the tensors
# of QUANT_FILE replacing those of the same name, in one file (plain python3: no numpy in CI)
merge() {
    mkdir -p "$3" && cp "$1/config.json" "$1/preprocessor_config.json" "$3/" &&
        python3 - "$1" "$2" "$3/model.safetensors" <<'PY'
import glob, json, os, struct, sys
def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    head.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in head.items()}
tensors = {}
for shard in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    tensors.update(read(shard))
tensors.update(read(sys.argv[2]))
head, data = {"__metadata__": {"format": "pt"}}, b""
for name, (dtype, shape, blob) in tensors.items():
    head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
    data += blob
text = json.dumps(head).encode()
text += b" " * (-len(text) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(text)) + text + data)
PY
}

# check GOLDEN RUN_JSON LOGITS SUMMARY WANT_WEIGHTS MODE TAG: the golden comparisons above
check() {
    python3 - "$@" "$FIX/models" <<'PY'
import json, math, struct, sys
gpath, run, lpath, spath, want_w, mode, tag, fix = sys.argv[1:9]
g = json.load(open(gpath)); r = json.load(open(run)); s = json.load(open(spath))
n, V = s["positions"], s["vocab"]
errors = []
def check(cond, what):
    if not cond: errors.append(what)
check(r["tokens"] == g["greedy"], f"greedy tokens {r['tokens'][:8]}..., golden {g['greedy'][:8]}...")
check(r["prompt_tokens"] == len(g["input_ids"]) and n == len(g["input_ids"]), f"prompt {n} tokens")
check(s["weights"] == want_w, f"projections loaded as {s['weights']}, expected {want_w}")
if mode == "quant":
    mem = r["memory"]
    check(mem["weights"] == mem["predicted"]["weights"] and mem["peak_tracked"] == mem["predicted_peak"],
          f"report: weights {mem['weights']} peak {mem['peak_tracked']}, predicted "
          f"{mem['predicted']['weights']} / {mem['predicted_peak']}")
raw = open(lpath, "rb").read()
rows = [struct.unpack_from(f"<{V}f", raw, 4 * V * i) for i in range(n)] if len(raw) == 4 * n * V else []
check(rows, f"logits file has {len(raw)} bytes")
argmax = [max(range(V), key=row.__getitem__) for row in rows]
diff = [i for i, (a, b) in enumerate(zip(argmax, g["argmax_every_position"])) if a != b]
check(rows and not diff, f"argmax differs at {len(diff)} positions, first {diff[:5]}")
ref = struct.unpack(f"<{V}f", open(f"{fix}/{g['logits_file']}", "rb").read())
last = rows[-1] if rows else [0.0] * V
cos = sum(x * y for x, y in zip(last, ref)) / math.sqrt(sum(x * x for x in last) * sum(y * y for y in ref) or 1)
mad = max(abs(x - y) for x, y in zip(last, ref))
check(cos >= 1 - 1e-9 and mad <= 1e-5, f"last logits cosine 1-{1 - cos:.3g}, max abs diff {mad:.3g}")
print(f"{tag}: greedy {'==' if r['tokens'] == g['greedy'] else '!='} golden, argmax "
      f"{n - len(diff)}/{n}, last logits cosine 1-{1 - cos:.2g} max abs {mad:.2g}",
      "OK" if not errors else errors)
sys.exit(1 if errors else 0)
PY
}

declare -A quant_opts=([nf4]="--quant nf4" [nf4dq]="--quant nf4 --double-quant" [int8]="--quant int8")
declare -A weights_name=([bf16]=BF16 [nf4]=NF4 [nf4dq]=NF4 [int8]=Q8ROW)
for case in tiny-odd:{bf16,nf4,nf4dq,int8} tiny25-a:{bf16,nf4,nf4dq,int8}; do
    name=${case%%:*} fmt=${case#*:}
    g=$FIX/models/golden_$name-$fmt.json
    qfile=$FIX/models/$name-bnb-$fmt.safetensors
    [ "$fmt" = bf16 ] && qfile=$g
    if [ ! -f "$g" ] || [ ! -f "$qfile" ] || [ ! -f "$TOK" ]; then
        skip=$((skip + 1))
        echo "SKIP: $g, $qfile or $TOK absent"
        continue
    fi
    golden_args "$g" "$FIX"
    modes=(plain)
    if [ "$fmt" != bf16 ]; then
        modes=(quant prequant bf16)
        if ! merge "$FIX/models/$name" "$qfile" "$tmp/ck-$name-$fmt"; then
            bad "$name $fmt: cannot write the pre-quantized checkpoint"
            continue
        fi
        read -r -a qopt <<<"${quant_opts[$fmt]}"
    fi
    for mode in "${modes[@]}"; do
        d=$tmp/$name-$fmt-$mode
        mkdir -p "$d"
        case $mode in
        quant) model=(--model "$FIX/models/$name" "${qopt[@]}") ;;
        prequant) model=(--model "$tmp/ck-$name-$fmt") ;;
        bf16 | plain) model=(--model "$FIX/models/$name") ;;
        esac
        common=(--backend "$BACKEND" "${model[@]}" --tokenizer "$TOK" "${args[@]}" --prompt "$prompt")
        if ! "$VLRUN" "${common[@]}" --max-tokens 24 --greedy --json >"$d/run.json" 2>"$d/err" ||
            ! "$VLRUN" logits "${common[@]}" --out "$d/l.f32" >"$d/sum.json" 2>>"$d/err"; then
            bad "$name $fmt $mode: vlrun failed: $(head -c 400 "$d/err")"
            continue
        fi
        if [ "$mode" = bf16 ]; then
            # the control: bf16 weights must fail this golden's checks
            if check "$g" "$d/run.json" "$d/l.f32" "$d/sum.json" BF16 "$mode" "$name $fmt golden, bf16 weights (must miss)" >"$d/out" 2>&1; then
                bad "$name $fmt: the bf16 model passes the $fmt golden: the check cannot tell the formats apart"
            else
                ok
                echo "$name $fmt golden, bf16 weights: misses it as it must: $(head -c 300 "$d/out")"
            fi
        elif check "$g" "$d/run.json" "$d/l.f32" "$d/sum.json" "${weights_name[$fmt]}" "$mode" "$name $fmt $mode"; then
            ok
        else
            bad "$name $fmt $mode: golden checks"
        fi
    done
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
