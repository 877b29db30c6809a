#!/usr/bin/env bash
# Bad input of every kind ends in exactly one line on stderr ("vlrun: error: ..." naming the
# file/tensor/option), a non-zero exit (not a signal), and nothing on stdout. Corrupt files are
# made at run time from a synthesized checkpoint (vlrun synth) in a temporary directory.
set -u
VLRUN=${VLRUN:?VLRUN must point at the vlrun binary}
FIX=${VL_FIXTURES:?}
TOKDIR=${VL_TOKENIZER_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
IMG=$FIX/tiny-qwen2vl/tiny_input_140x84.png
TOK=$TOKDIR/small_tokenizer.json

# expect_error SUBSTRING ARGS...: run vlrun, check exit 1, one stderr line containing SUBSTRING
expect_error() {
    local want=$1; shift
    "$VLRUN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ ! -s "$tmp/out" ] &&
        grep -q "^vlrun: error: " "$tmp/err" && grep -qF -- "$want" "$tmp/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: vlrun $* -> rc=$rc, stderr($lines lines): $(head -c 400 "$tmp/err"), stdout: $(head -c 200 "$tmp/out")" >&2
    fi
}

# a good model to corrupt: synthesized with the small tokenizer's vocabulary
"$VLRUN" synth --config "$FIX/configs/tiny-synth.json" --out "$tmp/good" --seed 3 || { echo "synth failed"; exit 1; }
cp "$TOK" "$tmp/good/tokenizer.json"
good=$tmp/good
run_ok() { "$VLRUN" --backend cpu --model "$good" "$IMG" --max-tokens 3 --quiet "$@" 2>"$tmp/err"; }
if run_ok; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: good model run: $(cat "$tmp/err")" >&2; fi

# corrupt copies: NAME PYTHON-SNIPPET (b = bytearray of model.safetensors; hl = header length)
corrupt() {
    local name=$1 code=$2
    mkdir -p "$tmp/$name"
    cp "$good/config.json" "$good/tokenizer.json" "$tmp/$name/"
    python3 - "$good/model.safetensors" "$tmp/$name/model.safetensors" <<PY
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
hl = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + hl])
def rewrite(h):
    s = json.dumps(h).encode()
    s += b' ' * (-len(s) % 8)
    data = b[8 + hl:]
    return struct.pack('<Q', len(s)) + s + data
$code
open(sys.argv[2], 'wb').write(b)
PY
}
corrupt truncated        'b = b[:len(b) // 2]'
corrupt hdr_beyond       'b[:8] = struct.pack("<Q", len(b) * 4)'
corrupt bad_json         'b[8:9] = b"#"'
corrupt out_of_range     'h["model.norm.weight"]["data_offsets"][1] += 10**9; b = bytearray(rewrite(h))'
corrupt overlap          'k = sorted((v["data_offsets"][0], n) for n, v in h.items() if n != "__metadata__"); a, c = k[1][1], k[2][1]; L = h[c]["data_offsets"][1] - h[c]["data_offsets"][0]; h[c]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + L]; b = bytearray(rewrite(h))'
corrupt missing_tensor   'h["unused.up_proj.weight"] = h.pop("model.layers.1.mlp.up_proj.weight"); b = bytearray(rewrite(h))'
corrupt wrong_shape      'h["model.norm.weight"]["shape"] = [64]; o = h["model.norm.weight"]["data_offsets"]; o[1] = o[0] + 128; b = bytearray(rewrite(h))'
corrupt unknown_dtype    'h["model.norm.weight"]["dtype"] = "F8_E9M9"; b = bytearray(rewrite(h))'

M="--backend cpu --max-tokens 2 --quiet"
expect_error "model.safetensors"            $M --model "$tmp/truncated" "$IMG"
expect_error "model.safetensors"            $M --model "$tmp/hdr_beyond" "$IMG"
expect_error "model.safetensors"            $M --model "$tmp/bad_json" "$IMG"
expect_error "model.norm.weight"            $M --model "$tmp/out_of_range" "$IMG"
expect_error "overlap"                      $M --model "$tmp/overlap" "$IMG"
expect_error "model.layers.1.mlp.up_proj.weight" $M --model "$tmp/missing_tensor" "$IMG"
expect_error "model.norm.weight"            $M --model "$tmp/wrong_shape" "$IMG"
expect_error "F8_E9M9"                      $M --model "$tmp/unknown_dtype" "$IMG"

# missing model dir / files / config keys
expect_error "/nonexistent/model"           $M --model /nonexistent/model "$IMG"
mkdir -p "$tmp/nocfg" && cp "$good/model.safetensors" "$tmp/nocfg/"
expect_error "config.json"                  $M --model "$tmp/nocfg" "$IMG"
mkdir -p "$tmp/noweights" && cp "$good/config.json" "$tmp/noweights/"
expect_error "noweights"                    $M --model "$tmp/noweights" "$IMG"
mkdir -p "$tmp/badcfg" && cp "$good/model.safetensors" "$tmp/badcfg/"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); del c['text_config']['hidden_size']; json.dump(c, open(sys.argv[2],'w'))" "$good/config.json" "$tmp/badcfg/config.json"
expect_error "hidden_size"                  $M --model "$tmp/badcfg" "$IMG"
mkdir -p "$tmp/jsoncfg" && cp "$good/model.safetensors" "$tmp/jsoncfg/" && echo '{"text_config": {' >"$tmp/jsoncfg/config.json"
expect_error "config.json"                  $M --model "$tmp/jsoncfg" "$IMG"
# preprocessor_config.json: sizes held to the family's, and agreement with config.json; a FIFO
# where the checkpoint should be is refused, not opened
for d in ppbig ppmis fifoshard; do mkdir -p "$tmp/$d" && cp "$good/config.json" "$good/tokenizer.json" "$tmp/$d/"; done
cp "$good/model.safetensors" "$tmp/ppbig/" && echo '{"temporal_patch_size": 1024}' >"$tmp/ppbig/preprocessor_config.json"
expect_error '"temporal_patch_size" must be 2' $M --model "$tmp/ppbig" "$IMG"
cp "$good/model.safetensors" "$tmp/ppmis/" && echo '{"patch_size": 16}' >"$tmp/ppmis/preprocessor_config.json"
expect_error "vision_config.patch_size is 14" $M --model "$tmp/ppmis" "$IMG"
mkfifo "$tmp/fifoshard/model.safetensors"
expect_error "FIFO"                         $M --model "$tmp/fifoshard" "$IMG"
# a FIFO as config.json, tokenizer.json or preprocessor_config.json: refused by name, not
# reported as missing and never waited on
for f in config tokenizer preprocessor_config; do
    mkdir -p "$tmp/fifo_$f" && cp "$good"/* "$tmp/fifo_$f/" && rm -f "$tmp/fifo_$f/$f.json"
    mkfifo "$tmp/fifo_$f/$f.json"
    expect_error "$f.json is a FIFO"          $M --model "$tmp/fifo_$f" "$IMG"
done
expect_error "preprocessor_config.json is a FIFO" preprocess --model "$tmp/fifo_preprocessor_config" "$IMG"

# images
expect_error "/nonexistent.png"             $M --model "$good" /nonexistent.png
printf 'not an image at all' >"$tmp/fake.png"
expect_error "fake.png"                     $M --model "$good" "$tmp/fake.png"
python3 - "$tmp" <<'PY'
import struct, sys, zlib
def png(w, h):
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 4)) + chunk(b'IEND', b'')
open(sys.argv[1] + '/huge.png', 'wb').write(png(100000, 100000))
open(sys.argv[1] + '/zero.png', 'wb').write(png(0, 0))
PY
expect_error "huge.png"                     $M --model "$good" "$tmp/huge.png"
expect_error "zero.png"                     $M --model "$good" "$tmp/zero.png"

# options
expect_error "x0"                           $M --model "$good" "$IMG" x0
expect_error "x-1"                          $M --model "$good" "$IMG" x-1
expect_error "xabc"                         $M --model "$good" "$IMG" xabc
expect_error "x3"                           $M --model "$good" x3
expect_error "--max-tokens"                 --backend cpu --model "$good" "$IMG" --max-tokens 0
expect_error "--max-tokens"                 --backend cpu --model "$good" "$IMG" --max-tokens -5
expect_error "--max-tokens"                 --backend cpu --model "$good" "$IMG" --max-tokens 40000
expect_error "--max-tokens"                 --backend cpu --model "$good" "$IMG" --max-tokens 32760
expect_error "--max-tokens"                 --backend cpu --model "$good" "$IMG" --max-tokens 12abc
expect_error "expected auto or a number of tokens in [1, 1048576], got 'abc'" --backend cpu --model "$good" "$IMG" --chunk abc
expect_error "expected auto or a number of tokens in [1, 1048576], got '0'" --backend cpu --model "$good" "$IMG" --chunk 0
expect_error "--frobnicate"                 --backend cpu --model "$good" "$IMG" --frobnicate
expect_error "--backend"                    --backend tpu --model "$good" "$IMG"
expect_error "--quant"                      --quant int3 --model "$good" "$IMG"
expect_error "--temperature"                --temperature hot --model "$good" "$IMG"
expect_error "--model"                      "$IMG" --model
expect_error "no image"                     --backend cpu --model "$good"
expect_error "--mem-budget"                 --mem-budget 12Q --model "$good" "$IMG"
expect_error "unknown key 'foo'"            --cuda-opt foo=1 --model "$good" "$IMG"
expect_error "no_graphs takes 0 or 1"       --cuda-opt no_graphs=2 --model "$good" "$IMG"
expect_error "expected KEY=VALUE"           --cuda-opt no_graphs --model "$good" "$IMG"
expect_error "--kv"                         --backend cpu --model "$good" "$IMG" --kv fp8
expect_error "--kv int8 with --attn naive"  --backend cpu --model "$good" "$IMG" --kv int8 --attn naive
# a budget below the smallest run: refused before loading, with the counts that would fit
# under --quant nf4 and --kv int8 (each 0 here)
expect_error "with --quant nf4: 0; with --kv int8: 0; with both: 0" \
    --backend cpu --model "$good" "$IMG" x3 --mem-budget 4K
expect_error "with --quant nf4: 0"          --backend cpu --model "$good" "$IMG" --kv int8 --mem-budget 4K
expect_error "tokenizer"                    tokenize --tokenizer /nonexistent/tokenizer.json hello
expect_error "preprocess"                   preprocess

# --dump-logits into a directory that does not exist: error, and no file left behind
expect_error "--dump-logits"                $M --model "$good" "$IMG" --dump-logits "$tmp/no/such/dir/l.f32"

# shapes the CUDA kernels lack: refused right after the config is parsed, before a device is
# opened (so the same line on machines with and without a GPU), naming the config's values.
# cfg_variant NAME PYTHON: tiny-synth.json with t (text_config) / v (vision_config) edited
cfg_variant() {
    python3 - "$FIX/configs/tiny-synth.json" "$tmp/$1.json" <<PY
import json, sys
c = json.load(open(sys.argv[1])); t = c["text_config"]; v = c["vision_config"]
$2
json.dump(c, open(sys.argv[2], "w"))
PY
}
cfg_variant text_d256  't["head_dim"] = 256; t["rope_parameters"]["mrope_section"] = [32, 48, 48]'
cfg_variant text_d600  't["head_dim"] = 600; t["rope_parameters"]["mrope_section"] = [100, 100, 100]'
cfg_variant vis_d132   'v["embed_dim"] = 264; v["num_heads"] = 2'
cfg_variant heads_70k  't["num_attention_heads"] = t["num_key_value_heads"] = 70000; t["head_dim"] = 6; t["rope_parameters"]["mrope_section"] = [1, 1, 1]'
R="--backend cuda --random-weights --tokenizer $TOK --max-tokens 2 --quiet"
expect_error "num_attention_heads 4, num_key_value_heads 2, head_dim 256) does not run on the CUDA backend: head_dim 256 is above 128" \
    $R --config "$tmp/text_d256.json" "$IMG"
expect_error "use --attn naive"             $R --config "$tmp/text_d256.json" "$IMG"
expect_error "head_dim 600 is outside 1..512" $R --config "$tmp/text_d600.json" "$IMG" --attn naive
expect_error "vision_config.embed_dim 264 / num_heads = 132) does not run on the CUDA backend: head_dim 132 is above 128" \
    $R --config "$tmp/vis_d132.json" "$IMG"
expect_error "70000 heads is above 65535"   $R --config "$tmp/heads_70k.json" "$IMG"
# --attn naive takes head dims up to 512: past the shape check (what follows depends on the device)
"$VLRUN" $R --config "$tmp/text_d256.json" "$IMG" --attn naive >/dev/null 2>"$tmp/err"
if grep -q "does not run on the CUDA backend" "$tmp/err"; then
    fail=$((fail + 1)); echo "FAIL: --attn naive at head_dim 256 refused: $(cat "$tmp/err")" >&2
else
    pass=$((pass + 1))
fi
# the CPU backend runs them all (its attention takes any shape)
"$VLRUN" --backend cpu --random-weights --tokenizer "$TOK" --config "$tmp/text_d256.json" "$IMG" --max-tokens 2 --quiet 2>"$tmp/err"
if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: cpu at head_dim 256: $(cat "$tmp/err")" >&2; fi

# Outputs go to NAME.tmp created afresh, then renamed: a FIFO at NAME.tmp must not block the run
# and a symlink there must not redirect the write into its target.
mkdir -p "$tmp/outs" && echo "keep me" >"$tmp/outs/victim"
mkfifo "$tmp/outs/l.f32.tmp" "$tmp/outs/px.f32.tmp"
ln -s "$tmp/outs/victim" "$tmp/outs/lg.f32.tmp"
check_out() { # LABEL FILE: the command succeeded, FILE is a regular file, victim unchanged
    if [ "$1" = 0 ] && [ -f "$2" ] && [ ! -L "$2" ] && [ -s "$2" ] &&
        [ "$(cat "$tmp/outs/victim")" = "keep me" ] && [ ! -e "$2.tmp" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: output $2 (rc=$1): $(head -c 300 "$tmp/err")" >&2
    fi
}
timeout 60 "$VLRUN" --backend cpu --model "$good" "$IMG" --max-tokens 2 --quiet \
    --dump-logits "$tmp/outs/l.f32" >/dev/null 2>"$tmp/err"
check_out $? "$tmp/outs/l.f32"
timeout 60 "$VLRUN" preprocess "$IMG" --out "$tmp/outs/px.f32" >/dev/null 2>"$tmp/err"
check_out $? "$tmp/outs/px.f32"
timeout 60 "$VLRUN" logits --backend cpu --model "$good" "$IMG" --out "$tmp/outs/lg.f32" \
    >/dev/null 2>"$tmp/err"
check_out $? "$tmp/outs/lg.f32"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
