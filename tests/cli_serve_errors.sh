#!/usr/bin/env bash
# `vlrun serve` answers every bad request with its own status and an OpenAI-style error body,
# and keeps serving: the server runs on the CPU backend with tiny-a on a free port (read from
# its ready line), with an API key from $VLRUN_API_KEY and --allow-local-images; curl sends
#   before that: a server that cannot start exits 1 with one error line (no model, bad option,
#     an image argument, a missing images folder; later: the port taken)
#   auth: /health needs no key, the others 401 authentication_error without it or with a
#     wrong one; 404 unknown path, 405 wrong method (with Allow)
#   400 invalid_request_error with the param: malformed JSON, wrong types, n = 2, base64 that is
#     not an image, a data: URL that is not base64, a remote URL without --allow-remote-images,
#     local paths outside the allowed folder (absolute, .., a symbolic link out), a request that
#     could never fit (code context_length_exceeded)
#   413 for a 100 MB body, announced (refused before it is read) and chunked
#   success: a local image in the folder; streaming and non-streaming give the same text; a
#     stop string ends the text before it with finish_reason "stop"; /metrics counts each status
#   SIGTERM: exit status 0 and the "stopped" line
set -u
VLRUN=${VLRUN:?}
FIX=${VL_FIXTURES:?}
TOK=${VL_TOKENIZER_DIR:?}/small_tokenizer.json
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
}

# ---- refused before serving: exit 1 with one error line
refuse() { # refuse NAME PATTERN ARGS...: exit status 1 and the error line matching PATTERN
    local name=$1 pattern=$2
    shift 2
    local out rc
    out=$(env -u VLRUN_MODEL "$VLRUN" serve "$@" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" -eq 1 ] && grep -q "^vlrun: error: .*$pattern" <<<"$out" && ok || bad "$name: exit $rc: $out"
}
refuse "no model" "needs --model DIR"
refuse "port range" "option --port" --model "$FIX/models/tiny-a" --port 70000
refuse "an image" "takes no images" --model "$FIX/models/tiny-a" x.png
refuse "unknown option" "unknown option --bogus" --model "$FIX/models/tiny-a" --bogus
refuse "images folder" "--allow-local-images /nonexistent: not a folder" --model "$FIX/models/tiny-a" --allow-local-images /nonexistent
refuse "vision cache size" "option --vision-cache: expected a size like 64M or 0, got 'lots'" --model "$FIX/models/tiny-a" --vision-cache lots
"$VLRUN" serve --help | grep -q '^usage: vlrun serve --model DIR' && ok || bad "serve --help"

mkdir -p "$tmp/imgs"
cp "$FIX/models/images/img_a_56x84.png" "$tmp/imgs/a.png"
ln -s /etc/hostname "$tmp/imgs/out.png"
printf 'not an image at all' >"$tmp/imgs/text.png"

VLRUN_API_KEY=sekret "$VLRUN" serve --backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" \
    --port 0 --allow-local-images "$tmp/imgs" --grace-seconds 5 2>"$tmp/err" &
pid=$!
for _ in $(seq 600); do
    grep -q 'listening on' "$tmp/err" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
line=$(grep 'listening on' "$tmp/err")
port=$(sed -n 's/.*http:\/\/127\.0\.0\.1:\([0-9]*\) (model tiny-a, pool [0-9]* blocks of [0-9]* tokens, max request [0-9]* tokens)$/\1/p' "$tmp/err")
if [ -z "$port" ]; then
    cat "$tmp/err"
    echo "FAIL: no ready line"
    exit 1
fi
echo "$line"
url=http://127.0.0.1:$port
KEY=(-H "Authorization: Bearer sekret")

# req NAME WANT_STATUS WANT_TYPE WANT_PARAM WANT_CODE CURL_ARGS...: one request; the status and
# the error body's type, param and code must be the ones given ("-": not checked, "null": null)
req() {
    local name=$1 want_status=$2 want_type=$3 want_param=$4 want_code=$5
    shift 5
    local status
    status=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@")
    local got
    got=$(python3 -c '
import json, sys
try:
    e = json.load(open(sys.argv[1]))["error"]
    print(e["type"], e["param"] if e["param"] is not None else "null",
          e["code"] if e["code"] is not None else "null", bool(e["message"]))
except Exception as x:
    print("no-error-body", x)' "$tmp/body")
    read -r t p c m <<<"$got"
    if [ "$status" = "$want_status" ] && [ "$t" = "$want_type" ] && [ "$m" = True ] &&
        { [ "$want_param" = - ] || [ "$p" = "$want_param" ]; } &&
        { [ "$want_code" = - ] || [ "$c" = "$want_code" ]; }; then
        ok
    else
        bad "$name: status $status ($got), want $want_status $want_type $want_param $want_code: $(head -c 300 "$tmp/body")"
    fi
}
chat() { # chat NAME STATUS TYPE PARAM CODE BODY
    local name=$1 s=$2 t=$3 p=$4 c=$5 body=$6
    req "$name" "$s" "$t" "$p" "$c" "${KEY[@]}" -H 'Content-Type: application/json' \
        --data-binary "$body" "$url/v1/chat/completions"
}

# ---- auth, paths, methods
[ "$(curl -s "$url/health")" = '{"status":"ok"}' ] && ok || bad "/health without a key"
req "models without key" 401 authentication_error null invalid_api_key "$url/v1/models"
req "models wrong key" 401 authentication_error null invalid_api_key -H "Authorization: Bearer nope" "$url/v1/models"
curl -s "${KEY[@]}" "$url/v1/models" | grep -q '"id":"tiny-a"' && ok || bad "/v1/models with the key"
req "unknown path" 404 invalid_request_error null - "${KEY[@]}" "$url/v1/nothing"
req "wrong method" 405 invalid_request_error null - "${KEY[@]}" "$url/v1/chat/completions"
curl -s -D - -o /dev/null -X DELETE "$url/health" | grep -qi '^Allow: GET' && ok || bad "405 without Allow"

# ---- bad bodies
U='"messages":[{"role":"user","content":"hi"}]'
chat "malformed JSON" 400 invalid_request_error null - '{"messages": ['
chat "not an object" 400 invalid_request_error null - '[1]'
chat "no messages" 400 invalid_request_error messages - '{"model":"x"}'
chat "max_tokens string" 400 invalid_request_error max_tokens - "{$U,\"max_tokens\":\"5\"}"
chat "temperature range" 400 invalid_request_error temperature - "{$U,\"temperature\":9}"
chat "stream type" 400 invalid_request_error stream - "{$U,\"stream\":\"yes\"}"
chat "n = 2" 400 invalid_request_error n - "{$U,\"n\":2}"
chat "role" 400 invalid_request_error 'messages[0].role' - '{"messages":[{"role":"tool","content":"x"}]}'
img() { printf '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}},{"type":"text","text":"hi"}]}],"max_tokens":4,"temperature":0}' "$1"; }
chat "base64 not an image" 400 invalid_request_error messages - "$(img "data:image/png;base64,$(printf 'hello, not a png' | base64 -w0)")"
chat "data: not base64" 400 invalid_request_error messages - "$(img 'data:image/png;base64,%%%%')"
chat "remote not allowed" 400 invalid_request_error messages - "$(img 'http://127.0.0.1:1/a.png')"
chat "absolute path outside" 400 invalid_request_error messages - "$(img "$FIX/models/images/img_a_56x84.png")"
chat "dot-dot outside" 400 invalid_request_error messages - "$(img '../../etc/hostname')"
chat "symlink out" 400 invalid_request_error messages - "$(img 'out.png')"
chat "missing file" 400 invalid_request_error messages - "$(img 'nothere.png')"
chat "local file not an image" 400 invalid_request_error messages - "$(img 'text.png')"
chat "could never fit" 400 invalid_request_error messages context_length_exceeded "{$U,\"max_tokens\":16000000}"

# ---- 413: a 100 MB body, announced and chunked
truncate -s 100M "$tmp/big"
req "100 MB announced" 413 invalid_request_error null - "${KEY[@]}" --data-binary "@$tmp/big" "$url/v1/chat/completions"
req "100 MB chunked" 413 invalid_request_error null - "${KEY[@]}" -H 'Transfer-Encoding: chunked' --data-binary "@$tmp/big" "$url/v1/chat/completions"

# ---- successes: still serving after all that
body=$(img 'a.png')
curl -s "${KEY[@]}" --data-binary "$body" "$url/v1/chat/completions" >"$tmp/whole"
curl -sN "${KEY[@]}" --data-binary "${body%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
    "$url/v1/chat/completions" >"$tmp/stream"
python3 - "$tmp/whole" "$tmp/stream" <<'EOF' && ok || bad "local image, stream vs whole"
import json, sys
w = json.load(open(sys.argv[1]))
assert w["object"] == "chat.completion" and w["choices"][0]["finish_reason"] in ("stop", "length"), w
assert w["usage"]["completion_tokens"] >= 1 and w["usage"]["prompt_tokens"] > 10, w
events = open(sys.argv[2]).read().split("\n\n")
assert events[-1] == "" and events[-2] == "data: [DONE]", events[-3:]
chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
assert text == w["choices"][0]["message"]["content"], (text, w)
assert chunks[-2]["choices"][0]["finish_reason"] == w["choices"][0]["finish_reason"]
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == w["usage"], chunks[-1]
print("answer", repr(text))
EOF
stop=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
print(json.dumps(t[2:4]) if len(t) >= 4 else "")' "$tmp/whole")
if [ -n "$stop" ]; then
    curl -s "${KEY[@]}" --data-binary "${body%\}},\"stop\":[$stop]}" "$url/v1/chat/completions" >"$tmp/stopped"
    python3 - "$tmp/whole" "$tmp/stopped" "$stop" <<'EOF' && ok || bad "stop string"
import json, sys
full = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
s = json.load(open(sys.argv[2]))
stop = json.loads(sys.argv[3])
want = full[: full.find(stop)]
assert s["choices"][0]["message"]["content"] == want, (s, want)
assert s["choices"][0]["finish_reason"] == "stop", s
# the usage of a request ended at a stop string: its prompt, and tokens up to the stop (> 0,
# at most the whole answer's)
u, w = s["usage"], json.load(open(sys.argv[1]))["usage"]
assert u["prompt_tokens"] == w["prompt_tokens"] and 0 < u["completion_tokens"] <= w["completion_tokens"], (u, w)
EOF
else
    bad "the answer is too short for a stop string test: $(cat "$tmp/whole")"
fi

# ---- /metrics counted each reply by status
curl -s "${KEY[@]}" "$url/metrics" >"$tmp/metrics"
python3 - "$tmp/metrics" <<'EOF' && ok || bad "metrics: $(grep requests_total "$tmp/metrics")"
import re, sys
text = open(sys.argv[1]).read()
got = {m[0]: int(m[1]) for m in re.findall(r'vlrun_requests_total\{status="(\d+)"\} (\d+)', text)}
want = {"200": 5, "400": 17, "401": 2, "404": 1, "405": 2, "413": 2}
assert got == want, (got, want)
for name in ("vlrun_queue_length", "vlrun_running_sequences", "vlrun_kv_blocks_total",
             "vlrun_kv_blocks_free", "vlrun_kv_bytes_used", "vlrun_kv_bytes_free",
             "vlrun_peak_device_bytes", "vlrun_prompt_tokens_total",
             "vlrun_completion_tokens_total", "vlrun_time_to_first_token_seconds_count",
             "vlrun_time_per_output_token_seconds_bucket{le=\"+Inf\"}"):
    assert re.search("^" + re.escape(name) + r" \d", text, re.M), name
assert re.search(r'^vlrun_time_to_first_token_seconds_count 3$', text, re.M), "ttft count"
EOF

# ---- a second server on the same port: refused
refuse "port taken" "could not listen on 127.0.0.1 port $port" --backend cpu --model "$FIX/models/tiny-a" --tokenizer "$TOK" --port "$port"

# ---- SIGTERM: a clean stop
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" -eq 0 ] && grep -q '^vlrun serve: stopped$' "$tmp/err" && ok || bad "SIGTERM: exit $rc: $(tail -3 "$tmp/err")"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
