#!/usr/bin/env bash
# Qwen2.5-VL (model_type qwen2_5_vl) through the command line, CPU backend, random weights made
# from tiny-a's shapes with a Qwen2.5-VL tower (depth 3, width 80, SwiGLU 136). Against
# transformers it is tests/test_engine_golden.c's tiny25-a / tiny25-b; here, what must hold
# whatever the weights:
#   1. the window order and its inverse: every block on full attention, once with windows of 2 x 2
#      merged tokens (the reorder moves the tokens of every image) and once with one window per
#      image (the order is the identity): the same logits at every position, up to the order of
#      the attention's sums (cosine >= 1 - 1e-9, max abs diff <= 1e-5);
#   2. windows restrict attention: the same tower with only block 0 on full attention gives
#      other logits (max abs diff > 1e-3), so the check above can fail;
#   3. one window per image and no full-attention block is full attention: identical logits;
#   4. the plan equals the run to the byte, for every weights x KV cache combination (the new
#      tower's buffers are planned);
#   5. the published configs (examples/qwen2.5-vl-{3b,7b,32b,72b}-instruct.json): vlrun plan
#      for a 872x1242 page on the A10 and the H100; 32B and 72B in bf16 refused by --mem-budget
#      24G before anything is loaded, with the images that would fit named.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
QWEN_TOK=$VL_TOKENIZER_DIR/tokenizer.json
SRC=$(cd "$(dirname "$0")/.." && pwd)
IMG=$FIX/models/images/img_b_100x60.png
IMG2=$FIX/models/images/img_c_45x130.png
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# config NAME WINDOW FULLATT: tiny-a's decoder with a Qwen2.5-VL tower
config() {
    python3 - "$FIX/models/tiny-a/config.json" "$tmp/$1.json" "$2" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["model_type"] = "qwen2_5_vl"
c["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
c["vision_config"] = dict(depth=3, hidden_size=80, num_heads=2, intermediate_size=136,
                          out_hidden_size=c["text_config"]["hidden_size"], hidden_act="silu",
                          in_channels=3, patch_size=14, spatial_merge_size=2,
                          temporal_patch_size=2, window_size=int(sys.argv[3]),
                          fullatt_block_indexes=json.loads(sys.argv[4]))
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}
logits() { # NAME: every position's logits of a fixed request into $tmp/NAME.f32
    "$VLRUN" logits --backend cpu --random-weights --config "$tmp/$1.json" --tokenizer "$TOK" \
        "$IMG" "$IMG2" --prompt "Compare them." --out "$tmp/$1.f32" >"$tmp/$1.sum" 2>"$tmp/$1.err"
}
compare() { # A B MAX_ABS_AT_MOST | A B --differ
    python3 - "$tmp/$1.f32" "$tmp/$2.f32" "$3" <<'PY'
import math, struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
if len(a) != len(b) or not a:
    print("sizes", len(a), len(b)); sys.exit(1)
x, y = struct.unpack(f"<{len(a) // 4}f", a), struct.unpack(f"<{len(b) // 4}f", b)
mad = max(abs(p - q) for p, q in zip(x, y))
cos = sum(p * q for p, q in zip(x, y)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))
print(f"max abs diff {mad:.3g}, cosine 1-{1 - cos:.3g}")
if sys.argv[3] == "--differ":
    sys.exit(0 if mad > 1e-3 else 1)
sys.exit(0 if mad <= float(sys.argv[3]) and cos >= 1 - 1e-9 else 1)
PY
}

config full_win2 56 '[0, 1, 2]'
config full_one 28000 '[0, 1, 2]'
config windowed 56 '[0]'
config one_window 28000 '[]'
for n in full_win2 full_one windowed one_window; do
    logits $n || bad "$n: $(head -c 400 "$tmp/$n.err")"
done
# 1-3
out=$(compare full_win2 full_one 1e-5) && ok || bad "window order and back: $out"
echo "full attention, windows of 2x2 vs one window: $out"
out=$(compare windowed full_win2 --differ) && ok || bad "windows do not change the logits: $out"
echo "windowed blocks vs full attention: $out"
out=$(compare one_window full_one 0) && ok || bad "one window per image vs full attention: $out"
echo "one window per image vs full attention: $out"

# 4. plan == run, to the byte
"$VLRUN" plan --backend cpu --random-weights --config "$tmp/windowed.json" --tokenizer "$TOK" \
    "$IMG" x2 "$IMG2" --max-tokens 6 --json >"$tmp/plan.json" 2>"$tmp/plan.err" || bad "plan: $(cat "$tmp/plan.err")"
for q in bf16 nf4 int8; do
    for kv in bf16 int8; do
        "$VLRUN" --backend cpu --random-weights --config "$tmp/windowed.json" --tokenizer "$TOK" \
            "$IMG" x2 "$IMG2" --max-tokens 6 --quant $q --kv $kv --json --quiet >"$tmp/run.json" 2>"$tmp/run.err" ||
            { bad "run $q $kv: $(cat "$tmp/run.err")"; continue; }
        if python3 - "$tmp/plan.json" "$tmp/run.json" $q $kv <<'PY'; then ok; else bad "plan vs run $q/$kv"; fi
import json, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2])); q, kv = sys.argv[3:5]
row = [x for x in p["plans"] if x["weights"] == q and x["kv"] == kv][0]
m = r["memory"]
checks = [(r["model"]["model_type"], "qwen2_5_vl"), (row["memory"]["peak"], m["predicted_peak"]),
          (row["memory"]["peak"], m["peak_tracked"]), (row["memory"]["activations"], m["predicted"]["activations"]),
          (row["memory"]["weights"], m["predicted"]["weights"])]
bad = [c for c in checks if c[0] != c[1]]
print("qwen2.5", q, kv, "peak", row["memory"]["peak"], "run", m["peak_tracked"], "OK" if not bad else "MISMATCH %s" % bad)
sys.exit(1 if bad else 0)
PY
    done
done

# 5. the published configs
for size in 3b 7b 32b 72b; do
    cfg=$SRC/examples/qwen2.5-vl-$size-instruct.json
    for gpu in A10 H100; do
        "$VLRUN" plan --config "$cfg" --image-size 872x1242 --gpu $gpu --max-tokens 512 --json \
            >"$tmp/p.json" 2>"$tmp/p.err" || { bad "plan $size $gpu: $(cat "$tmp/p.err")"; continue; }
        python3 - "$tmp/p.json" "$size" "$gpu" <<'PY' && ok || bad "plan $size $gpu: $(head -c 300 "$tmp/p.json")"
import json, sys
p = json.load(open(sys.argv[1])); size, gpu = sys.argv[2:4]
rows = {(x["weights"], x["kv"]): x for x in p["plans"]}
# the page is 88 x 62 patches (1364 tokens) for every Qwen2.5-VL size
good = p["page"]["tokens"] == 1364 and len(rows) == 6
nf4 = rows[("nf4", "int8")]
print(size, gpu, "weights bf16 %.2f GiB nf4 %.2f GiB; max pages nf4 + int8 cache: %s" % (
    rows[("bf16", "bf16")]["memory"]["weights"] / 2**30, nf4["memory"]["weights"] / 2**30, nf4["max_images"]))
sys.exit(0 if good else 1)
PY
    done
done
for size in 32b 72b; do
    "$VLRUN" --backend cpu --random-weights --config "$SRC/examples/qwen2.5-vl-$size-instruct.json" \
        --tokenizer "$QWEN_TOK" "$IMG" --max-tokens 16 --mem-budget 24G >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "exceeds --mem-budget" "$tmp/err"; then
        ok
        echo "$size bf16 at 24G: $(cat "$tmp/err")"
    else bad "$size at --mem-budget 24G: rc $rc, $(cat "$tmp/err")"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
