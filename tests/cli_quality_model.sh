#!/usr/bin/env bash
# The trained quality model (tests/fixtures/quality-model, issue 17) on the CPU backend: a fixed
# subset of the evaluation set (its ci_items.txt: items every vlrun configuration answered right,
# on the GPU machine and on the CPU) must all be answered right in bf16, NF4 and int8 weights
# with the int8 cache. A numerical regression in the engine's ops, the vision tower, the
# prompt or the quantizers changes answers of a model that reads its pictures, and this names them.
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
root=$(cd "$(dirname "$0")/.." && pwd)
model=$FIX/quality-model
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# the ids, not the numbers in the comments
n_items=$(sed 's/#.*//' "$model/ci_items.txt" | grep -o '[0-9]\+' | wc -l)
for cfg in "bf16:" "nf4:--quant nf4" "int8-kv-int8:--quant int8 --kv int8"; do
    name=${cfg%%:*}
    # shellcheck disable=SC2086
    python3 "$root/scripts/eval_quality.py" --model "$model" --vlrun "$VLRUN" \
        --set "$FIX/quality" --ids "$model/ci_items.txt" --via cli --workers 2 \
        --min-accuracy 1 -- --backend cpu ${cfg#*:} >"$tmp/$name.txt" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL: $name: the trained model no longer answers its $n_items checked items (rc $rc):"
        sed 's/^/    /' "$tmp/$name.txt"
        fail=1
    else
        echo "ok: $name: $(tail -1 "$tmp/$name.txt")"
    fi
done
exit $fail
