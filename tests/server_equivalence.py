#!/usr/bin/env python3
"""server_equivalence.py: `vlrun serve` answers 12 greedy requests sent at once exactly as the CLI
answers each alone (Python's standard library only, so that it runs on the GPU machine too).

For tiny-a and tiny-b (--max-pixels 200704, as the node tests), on the backend VL_SERVE_BACKEND
(default cpu; cuda on the GPU machine, scripts/device_serve.sh): the server is started with
--port 0 (its ready line names the port), 12 requests go at once (0 to 3 images from the fixture
images and examples/page.png, every other one streamed, max_tokens from 3 to 16, a system
message on every third) and each answer must equal the CLI's greedy run of the same request on
the same backend: the text byte for byte, finish_reason ("stop" for the CLI's eos, "length" for
max_tokens) and usage (prompt, completion and total tokens). The CLI's reference is
`vlrun IMAGES --prompt P [--system S] --max-tokens N --stop-at-eos --greedy --json`; a run needs
an image, so a request without one is checked against the first turn of `vlrun --chat --greedy`
(its answer on stdout, its token counts and stop on the turn line). tiny-eos adds a request
that ends at the end-of-turn token. Then SIGTERM: the server must exit 0. Every wait is bounded.
Environment: VLRUN, VL_FIXTURES, VL_TOKENIZER_DIR (as the CLI tests); exit 0, or 1 on a failure.
"""
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import loadgen  # noqa: E402  (the SSE parser, data: URLs and the HTTP client of the load test)

VLRUN = os.environ["VLRUN"]
FIX = os.environ["VL_FIXTURES"]
TOK = os.path.join(os.environ["VL_TOKENIZER_DIR"], "small_tokenizer.json")
BACKEND = os.environ.get("VL_SERVE_BACKEND", "cpu")
IMG = os.path.join(FIX, "models", "images")
POOL = [os.path.join(IMG, f) for f in ("img_a_56x84.png", "img_b_100x60.png",
                                       "img_c_45x130.png")] + [
    os.path.join(loadgen.ROOT, "examples", "page.png")]
PIXELS = ["--max-pixels", "200704"]
READY_S, REQUEST_S, STOP_S = 120, 300, 60
FINISH = {"eos": "stop", "max_tokens": "length", "end of turn": "stop", "--max-tokens": "length"}
FAILS = []


def check(name, cond, detail=""):
    if not cond:
        FAILS.append(name)
        print("FAIL: %s%s" % (name, ": " + str(detail) if detail else ""), flush=True)
    return cond


def requests():
    """The 12 requests: i % 4 images rotating through POOL, varied text, tokens and stream."""
    prompts = ["What is on this page?", "Describe these pictures.\nWhat differs?\tBriefly.",
               "Compare them — 1, 2, 3?", "Name a colour."]
    out = []
    for i in range(12):
        out.append({"images": [POOL[(i + k) % 4] for k in range(i % 4)],
                    "prompt": "%s (%d)" % (prompts[i % 4] if i % 4 else "Say something.", i),
                    "system": "You answer in one word." if i % 3 == 2 else None,
                    "max_tokens": 3 + (i * 5) % 14, "stream": i % 2 == 1})
    return out


def model_args(model):
    return ["--backend", BACKEND, "--model", os.path.join(FIX, "models", model), "--tokenizer",
            TOK] + PIXELS


def cli_run(model, req):
    """The CLI's greedy answer: {text, finish, prompt_tokens, completion_tokens}."""
    argv = [VLRUN] + model_args(model) + req["images"] + ["--prompt", req["prompt"]]
    if req["system"] is not None:
        argv += ["--system", req["system"]]
    argv += ["--max-tokens", str(req["max_tokens"]), "--stop-at-eos", "--greedy", "--json"]
    p = subprocess.run(argv, capture_output=True, timeout=REQUEST_S)
    if p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.decode(errors="replace")))
    r = json.loads(p.stdout)
    return {"text": r["text"], "finish": FINISH.get(r["stop_reason"], r["stop_reason"]),
            "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["generated_tokens"]}


TURN = re.compile(r"^\[turn 1: prefill (\d+) tokens .*\| answer (\d+) tokens, .* \| stop: ([^|]+?) \|",
                  re.M)


def cli_chat(model, req):
    """A request without images: the first turn of `vlrun --chat --greedy`."""
    argv = [VLRUN, "--chat", "--greedy", "--max-tokens", str(req["max_tokens"])] + model_args(model)
    if req["system"] is not None:
        argv += ["--system", req["system"]]
    p = subprocess.run(argv, input=(req["prompt"] + "\n").encode(), capture_output=True,
                       timeout=REQUEST_S)
    err = p.stderr.decode(errors="replace")
    m = TURN.search(err)
    if p.returncode or not m or not p.stdout.endswith(b"\n"):
        raise RuntimeError("%s: rc %d: %s" % (" ".join(argv), p.returncode, err[-600:]))
    return {"text": p.stdout[:-1].decode("utf-8", "replace"), "finish": FINISH.get(m[3], m[3]),
            "prompt_tokens": int(m[1]), "completion_tokens": int(m[2])}


def Server(model):
    """`vlrun serve MODEL --port 0` (loadgen.ServeProcess): url, client, stderr(), stop()."""
    return loadgen.ServeProcess([VLRUN, "serve"] + model_args(model) + ["--port", "0"], READY_S)


def chat_body(req):
    content = [{"type": "image_url", "image_url": {"url": loadgen.data_url(f)}}
               for f in req["images"]]
    content.append({"type": "text", "text": req["prompt"]})
    messages = [] if req["system"] is None else [{"role": "system", "content": req["system"]}]
    messages.append({"role": "user", "content": content})
    body = {"model": "tiny", "messages": messages, "max_tokens": req["max_tokens"],
            "temperature": 0}
    if req["stream"]:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def ask(server, req):
    """The server's answer: {text, finish, prompt_tokens, completion_tokens, total, chunks}."""
    conn = server.client.connect(REQUEST_S)
    try:
        conn.request("POST", "/v1/chat/completions", body=chat_body(req),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("HTTP %d: %s" % (resp.status, resp.read()[:400]))
        if not req["stream"]:
            r = json.loads(resp.read())
            c = r["choices"][0]
            return {"text": c["message"]["content"], "finish": c["finish_reason"],
                    "usage": r["usage"], "chunks": 1}
        got = {"text": "", "finish": None, "usage": None, "chunks": 0}
        for c in loadgen.read_events(resp, time.monotonic() + REQUEST_S):
            got["chunks"] += 1
            got["usage"] = c.get("usage") or got["usage"]
            for ch in c.get("choices") or []:
                got["text"] += (ch.get("delta") or {}).get("content") or ""
                got["finish"] = ch.get("finish_reason") or got["finish"]
        return got
    finally:
        conn.close()


def compare(name, got, want):
    check(name + ": text", got["text"] == want["text"],
          "server %r CLI %r" % (got["text"], want["text"]))
    check(name + ": finish_reason", got["finish"] == want["finish"],
          "%s, CLI %s" % (got["finish"], want["finish"]))
    u = got["usage"] or {}
    total = want["prompt_tokens"] + want["completion_tokens"]
    check(name + ": usage", u.get("prompt_tokens") == want["prompt_tokens"] and
          u.get("completion_tokens") == want["completion_tokens"] and
          u.get("total_tokens") == total, "%s; CLI prompt %d completion %d" % (
              u, want["prompt_tokens"], want["completion_tokens"]))


def serve_and_compare(model, reqs):
    # the references first, one CLI run at a time: the requests then have the machine to
    # themselves (a first token more than 60 s after the stream's start loses the connection)
    wants = [cli_run(model, r) if r["images"] else cli_chat(model, r) for r in reqs]
    server = Server(model)
    check(model + ": listens on 127.0.0.1", server.url.startswith("http://127.0.0.1:"), server.url)
    try:
        with concurrent.futures.ThreadPoolExecutor(len(reqs)) as pool:
            answers = [pool.submit(ask, server, r) for r in reqs]
            for i, (a, want) in enumerate(zip(answers, wants)):
                name = "%s request %d (%d images%s)" % (model, i, len(reqs[i]["images"]),
                                                       ", streamed" if reqs[i]["stream"] else "")
                try:
                    got = a.result(timeout=REQUEST_S)
                except Exception as e:  # noqa: BLE001 (any failure is this request's FAIL)
                    check(name + ": answered", False, e)
                    continue
                if reqs[i]["stream"]:
                    check(name + ": several chunks", got["chunks"] > 2, got["chunks"])
                compare(name, got, want)
    finally:
        code = server.stop(STOP_S)
        check(model + ": exit 0 after SIGTERM", code == 0, "%s: %s" % (code, server.stderr()))
    return wants


def main():
    for model in ("tiny-a", "tiny-b"):
        serve_and_compare(model, requests())
    # tiny-eos answers the fixture images with two tokens and the end of turn: finish "stop"
    eos = [{"images": POOL[:3] + POOL[:1], "prompt": "Describe these pictures.\nWhat differs "
            "between\tthem?\n  Answer briefly: 1, 2, 3 — ok?", "system": None, "max_tokens": 8,
            "stream": s} for s in (False, True)]
    wants = serve_and_compare("tiny-eos", eos)
    check("tiny-eos: the CLI stops at eos", all(w["finish"] == "stop" for w in wants), wants)
    print("server_equivalence (%s backend): %s" % (
        BACKEND, "OK" if not FAILS else "%d failed" % len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
