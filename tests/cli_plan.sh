#!/usr/bin/env bash
# vlrun plan against the run it predicts (CPU backend, tiny-a, no GPU):
#   - for every weights x KV cache combination, plan's peak and breakdown for IMAGE x3 equal the
#     run's own figures: its predicted_peak and the bytes it tracked (peak_tracked), to the byte;
#   - "max images" is exact at the boundary: a budget of exactly the x3 run's peak gives 3, one
#     byte less gives 2;
#   - --kv int8 under a budget one byte below its run: the run without the dequantized prefill
#     layer (same text, the peak less exactly that workspace), which "max images" counts; one
#     byte below that, refused;
#   - the prefill chunk (--chunk auto, the default), x450 (4,532 prompt tokens): under a budget
#     of exactly a run's peak the run takes the largest chunk that fits (the prompt, then 4096,
#     then 2048) and plan's row shows the same chunk and peak; one byte below the 2048 run,
#     refused; --chunk 2048 keeps 2048;
#   - the model's positions: with --max-tokens near the context, max images stops where the run
#     refuses "beyond the model's context" (x(k+1)) and k passes that check;
#   - --image-size WxH plans the same page as an image of that size;
#   - without a tokenizer the text tokens are an upper bound (57: the template's 5 special tokens and 52 bytes, + bytes of the prompt), said so;
#   - --system and --assistant-prefix counted as the run counts them (and in the bound);
#   - known cards: A10 = 23028 - 480 MiB (nvidia-smi less the H100's measured reserve), H100 =
#     81079 MiB measured; the text table has the six rows;
#   - bad --gpu / --image-size / no config: one error line, exit 1.
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
M=$FIX/models/tiny-a
IMG=$FIX/models/images/img_b_100x60.png
SRC=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
plan() { "$VLRUN" plan --backend cpu --model "$M" --tokenizer "$TOK" --max-tokens 6 "$@"; }
run() { "$VLRUN" --backend cpu --model "$M" --tokenizer "$TOK" --max-tokens 6 --json --quiet "$@"; }

# 1. plan == the run's plan == the run's tracked bytes, every combination
plan "$IMG" x3 --json >"$tmp/plan.json" || bad "plan x3"
for q in bf16 nf4 int8; do
    for kv in bf16 int8; do
        run "$IMG" x3 --quant $q --kv $kv >"$tmp/run_${q}_$kv.json" 2>/dev/null || { bad "run $q $kv"; continue; }
        if python3 - "$tmp/plan.json" "$tmp/run_${q}_$kv.json" $q $kv <<'PY'; then ok; else bad "plan vs run $q/$kv"; fi
import json, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2])); q, kv = sys.argv[3:5]
row = [x for x in p["plans"] if x["weights"] == q and x["kv"] == kv][0]
m = r["memory"]; pr = m["predicted"]
checks = [(row["images"], 3), (row["memory"]["peak"], m["predicted_peak"]), (row["memory"]["peak"], m["peak_tracked"]),
          (row["memory"]["weights"], pr["weights"]), (row["memory"]["kv_cache"], pr["kv_cache"]),
          (row["memory"]["activations"], pr["activations"]), (row["memory"]["workspace"], pr["workspace"]),
          (row["memory"]["cuda_context"], 0), (p["text_tokens"] + 3 * (p["page"]["tokens"] + 2), r["prompt_tokens"])]
bad = [c for c in checks if c[0] != c[1]]
print(q, kv, "peak", row["memory"]["peak"], "run", m["peak_tracked"], "OK" if not bad else "MISMATCH %s" % bad)
sys.exit(1 if bad else 0)
PY
    done
done

# 2. max images at the boundary: budget = the x3 peak exactly, and one byte less
peak3=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["memory"]["peak_tracked"]))' "$tmp/run_bf16_bf16.json")
for b in "$peak3:3" "$((peak3 - 1)):2"; do
    got=$(plan "$IMG" --gpu "${b%%:*}" --quant bf16 --kv bf16 --json |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["plans"][0]; print(r["max_images"], r["limited_by"])')
    [ "$got" = "${b##*:} memory" ] && ok || bad "budget ${b%%:*}: max images '$got', want ${b##*:}"
done

# 2b. --kv int8: a run keeps the dequantized prefill layer when it fits, and drops it when only the
# run without it fits the budget (the same tokens, a smaller peak); "max images" counts that way
py_field() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"j": j}))' "$@"; }
copy=$(py_field "$tmp/run_bf16_int8.json" 'int(j["memory"]["predicted_peak"])')
if run "$IMG" x3 --kv int8 --mem-budget $((copy - 1)) >"$tmp/direct.json" 2>"$tmp/direct.err"; then
    direct=$(py_field "$tmp/direct.json" 'int(j["memory"]["predicted_peak"])')
    same=$(python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); print(a["text"] == b["text"] and a["memory"]["kv_cache"] == b["memory"]["kv_cache"])' "$tmp/run_bf16_int8.json" "$tmp/direct.json")
    ws=$(py_field "$tmp/direct.json" 'int(j["memory"]["predicted"]["workspace"])')
    ws_copy=$(py_field "$tmp/run_bf16_int8.json" 'int(j["memory"]["predicted"]["workspace"])')
    [ "$same" = True ] && [ "$direct" -lt "$copy" ] && [ $((copy - direct)) -eq $((ws_copy - ws)) ] && ok ||
        bad "--kv int8 without the copy: same=$same peak $direct vs $copy, workspace $ws vs $ws_copy"
    got=$(plan "$IMG" --gpu "$direct" --quant bf16 --kv int8 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["plans"][0]["max_images"])')
    [ "$got" = 3 ] && ok || bad "max images at the run without the copy ($direct bytes): $got, want 3"
    run "$IMG" x3 --kv int8 --mem-budget $((direct - 1)) >/dev/null 2>"$tmp/e0" && bad "budget below the smaller run: not refused" ||
        { grep -q "exceeds --mem-budget" "$tmp/e0" && ok || bad "budget below the smaller run: $(cat "$tmp/e0")"; }
else
    bad "--kv int8 --mem-budget $((copy - 1)): $(cat "$tmp/direct.err")"
fi

# 2c. the prefill chunk: the largest that fits the budget, the same in plan and run
chunk_of() { py_field "$1" '" ".join(str(v) for v in (j["options"]["chunk"], j["memory"]["predicted_peak"], j["memory"]["peak_tracked"]))'; }
budget=100G
for want in 4532 4096 2048; do
    if run "$IMG" x450 --mem-budget $budget >"$tmp/c$want.json" 2>"$tmp/c$want.err"; then
        read -r got pred tracked <<<"$(chunk_of "$tmp/c$want.json")"
        row=$(plan "$IMG" x450 --gpu "$pred" --json | python3 -c 'import json,sys; r=[p for p in json.load(sys.stdin)["plans"] if p["weights"] == "bf16" and p["kv"] == "bf16"][0]; print(r["memory"]["chunk"], r["memory"]["peak"])')
        [ "$got" = $want ] && [ "$pred" = "$tracked" ] && [ "$row" = "$want $pred" ] && ok ||
            bad "chunk under --mem-budget $budget: run $got (peak $pred, tracked $tracked), plan '$row', want $want"
        budget=$((pred - 1))
    else
        bad "x450 --mem-budget $budget: $(cat "$tmp/c$want.err")"
    fi
done
run "$IMG" x450 --mem-budget $budget >/dev/null 2>"$tmp/e3" && bad "below the 2048 chunk's peak: not refused" ||
    { grep -q "exceeds --mem-budget" "$tmp/e3" && ok || bad "below the 2048 chunk: $(cat "$tmp/e3")"; }
run "$IMG" x450 --chunk 2048 --mem-budget 100G >"$tmp/c.json" && [ "$(chunk_of "$tmp/c.json" | cut -d' ' -f1)" = 2048 ] &&
    ok || bad "--chunk 2048: $(chunk_of "$tmp/c.json")"

# 3. the positions limit: k pages pass the run's context check, k + 1 are refused by it
mt=32700
k=$(plan "$IMG" --gpu 100G --max-tokens $mt --quant bf16 --kv bf16 --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["plans"][0]; print(r["max_images"] if r["limited_by"] == "positions" else -1)')
if [ "$k" -gt 0 ] 2>/dev/null; then
    run "$IMG" x$k --max-tokens $mt --mem-budget 1 >/dev/null 2>"$tmp/e1"
    run "$IMG" x$((k + 1)) --max-tokens $mt --mem-budget 1 >/dev/null 2>"$tmp/e2"
    if grep -q "exceeds --mem-budget" "$tmp/e1" && grep -q "beyond the model's context" "$tmp/e2"; then
        ok
    else bad "positions: x$k: $(cat "$tmp/e1"); x$((k + 1)): $(cat "$tmp/e2")"; fi
else
    bad "positions: max images '$k' not limited by positions"
fi

# 4. --image-size 100x60 is the same page as the 100x60 image
a=$(plan "$IMG" --gpu 4M --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["page"]["tokens"], [x["max_images"] for x in r["plans"]])')
b=$(plan --image-size 100x60 --gpu 4M --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["page"]["tokens"], [x["max_images"] for x in r["plans"]])')
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "--image-size: '$b' vs image '$a'"

# 5. no tokenizer: an upper bound, and said so
"$VLRUN" plan --backend cpu --config "$M/config.json" --image-size 100x60 --gpu 4M --prompt "Read it." --json >"$tmp/nt.json" || bad "plan without tokenizer"
exact=$(plan --image-size 100x60 --gpu 4M --prompt "Read it." --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["text_tokens"])')
python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); exact = int(sys.argv[2])
ok = r["text_tokens"] == 57 + len("Read it.") and not r["text_tokens_exact"] and r["text_tokens"] >= exact
sys.exit(0 if ok else 1)' "$tmp/nt.json" "$exact" && ok || bad "no tokenizer: $(cat "$tmp/nt.json")"
"$VLRUN" plan --backend cpu --config "$M/config.json" --image-size 100x60 --gpu 4M | grep -q "no tokenizer" && ok || bad "no tokenizer note"

# 5b. --system and --assistant-prefix are part of the prompt: plan counts them as the run does
# (the run's prompt tokens less the image's), and the bound without a tokenizer covers them
sa=(--prompt "Read it." --system "Be terse, exact and brief." --assistant-prefix "4827 top")
pt=$(plan "$IMG" --gpu 4M "${sa[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["text_tokens"])')
p0=$(plan "$IMG" --gpu 4M --prompt "Read it." --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["text_tokens"])')
r1=$(run "$IMG" "${sa[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_tokens"])')
r0=$(run "$IMG" --prompt "Read it." | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt_tokens"])')
if [ -n "$pt" ] && [ -n "$r1" ] && [ $((pt - p0)) -eq $((r1 - r0)) ] && [ "$pt" -gt "$p0" ]; then ok; else
    bad "--system/--assistant-prefix: plan $p0 -> $pt text tokens, run $r0 -> $r1 prompt tokens"; fi
nt=$("$VLRUN" plan --backend cpu --config "$M/config.json" --image-size 100x60 --gpu 4M "${sa[@]}" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["text_tokens"])')
want=$((57 + ${#sa[1]} + ${#sa[3]} + ${#sa[5]}))
[ "$nt" = "$want" ] && [ "$nt" -ge "$pt" ] && ok || bad "no tokenizer with --system/--assistant-prefix: $nt, want $want"

# 6. known cards, and the text table
for c in "A10:$(((23028 - 480) * 1048576)):False" "h100:$((81079 * 1048576)):True" "a100-80gb:$(((81920 - 480) * 1048576)):False"; do
    got=$("$VLRUN" plan --config "$SRC/examples/qwen2-vl-7b-instruct.json" --image-size 872x1242 --gpu "${c%%:*}" --json 2>&1 |
        python3 -c 'import json,sys; g=json.load(sys.stdin)["gpu"]; print("%d:%s" % (g["total"], g["total_measured"]))' 2>&1)
    want=${c#*:}
    [ "$got" = "$want" ] && ok || bad "--gpu ${c%%:*}: '$got', want '$want'"
done
"$VLRUN" plan --config "$SRC/examples/qwen2-vl-7b-instruct.json" --gpu A10 --image-size 872x1242 --max-tokens 512 >"$tmp/table.txt" 2>&1
rows=$(grep -cE '^(bf16|nf4|int8) +(bf16|int8) +[0-9]+ ' "$tmp/table.txt")
[ "$rows" = 6 ] && grep -q "^budget: A10 22.02 GiB" "$tmp/table.txt" && ok || bad "table: $(cat "$tmp/table.txt")"

# 7. errors: one line, exit 1, nothing on stdout
expect_error() {
    local want=$1
    shift
    "$VLRUN" plan "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -s "$tmp/out" ] && grep -qF -- "$want" "$tmp/err"; then
        ok
    else bad "plan $*: rc $rc, $(cat "$tmp/err")"; fi
}
expect_error "expected a memory size like 24G or 80G, or a card (A10, L4" --config "$M/config.json" --gpu Z80 --image-size 10x10
expect_error "--image-size: expected WIDTHxHEIGHT" --config "$M/config.json" --gpu 24G --image-size 10y10
expect_error "pass --config FILE" --gpu 24G --image-size 10x10
expect_error "give --gpu CARD|SIZE" --config "$M/config.json"
expect_error "A10" --config "$M/config.json" --gpu A100 --image-size 10x10

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
