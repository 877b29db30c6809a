#!/usr/bin/env python3
"""loadgen.py: the load generator of `vlrun serve` in Python 3's standard library, for machines
without node (the GPU machine): the same options and the same JSON as bench/loadgen.mjs
(bench/README.md, "loadgen"), so scripts/serve_bench.sh summarizes either. N concurrent clients
(one thread each), each sending a fixed number of streamed greedy chat completions over
http.client: one-page requests (examples/page.png, 128 tokens out) and, every K-th, a 28-page
request (the same page 28 times). Server-sent events are parsed here; time to first token and the
gaps between content chunks are measured per request; errors are counted by HTTP status (0: no
answer, an error event in the stream, as the openai client reports them, or a stream that ends
before `data: [DONE]`). /metrics is polled every 0.5 s for the largest queue and batch; the peak
device memory and the KV pool are read once at the end. One JSON object on stdout (or --out FILE)."""
import base64
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USAGE = """usage: python3 bench/loadgen.py --url http://HOST:PORT [options]
  --clients N          concurrent clients (default 1)
  --requests N         requests per client (default 4)
  --long-every K       every K-th request of a client is the long one (default 0: never)
  --pages N            images in the long request (default 28)
  --max-tokens N       tokens out of the one-page request (default 128)
  --long-max-tokens N  tokens out of the long request (default 128)
  --image FILE         the page (default examples/page.png)
  --api-key KEY        sent as Authorization: Bearer KEY (default: $VLRUN_API_KEY)
  --timeout-s S        per-request limit (default 600)
  --out FILE           write the JSON there instead of stdout"""

NUM = {"--clients": "clients", "--requests": "requests", "--long-every": "long_every",
       "--pages": "pages", "--max-tokens": "max_tokens", "--long-max-tokens": "long_max_tokens",
       "--timeout-s": "timeout_s"}
STR = {"--url": "url", "--image": "image", "--api-key": "api_key", "--out": "out"}


def parse_args(argv):
    o = {"clients": 1, "requests": 4, "long_every": 0, "pages": 28, "max_tokens": 128,
         "long_max_tokens": 128, "image": os.path.join(ROOT, "examples/page.png"),
         "api_key": os.environ.get("VLRUN_API_KEY") or "unused", "timeout_s": 600,
         "url": None, "out": None}
    for i in range(0, len(argv), 2):
        k, v = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if k in NUM and v is not None and v.isascii() and v.isdigit():
            o[NUM[k]] = int(v)
        elif k in STR and v is not None:
            o[STR[k]] = v
        else:
            raise ValueError("bad option %s %s\n%s" % (k, v or "", USAGE))
    if not o["url"] or o["clients"] < 1 or o["requests"] < 1:
        raise ValueError(USAGE)
    return o


def pct(xs, p):
    """Nearest-rank percentile of an unsorted list (None when empty)."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def summary(xs):
    return {"p50": pct(xs, 50), "p99": pct(xs, 99), "n": len(xs)}


def data_url(path):
    ext = os.path.splitext(path)[1][1:].lower()
    mime = "image/jpeg" if ext == "jpg" else "image/" + ext
    with open(path, "rb") as f:
        return "data:%s;base64,%s" % (mime, base64.b64encode(f.read()).decode("ascii"))


def request_bodies(o):
    """The one-page and the long request, each encoded once: {long, body (bytes)}."""
    url = data_url(o["image"])

    def make(n, max_tokens, long):
        parts = [{"type": "image_url", "image_url": {"url": url}} for _ in range(n)]
        parts.append({"type": "text",
                      "text": "Summarize these pages." if n > 1 else "What is on this page?"})
        req = {"model": "vlrun", "temperature": 0, "max_tokens": max_tokens, "stream": True,
               "stream_options": {"include_usage": True},
               "messages": [{"role": "user", "content": parts}]}
        return {"long": long, "body": json.dumps(req).encode()}

    return {"one": make(1, o["max_tokens"], False), "long": make(o["pages"], o["long_max_tokens"],
                                                               True)}


class Server:
    """Where the server is and how to ask it: a fresh connection per request."""

    def __init__(self, url, api_key):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("--url %s: want http://HOST:PORT" % url)
        self.host, self.port, self.base = u.hostname, u.port or 80, u.path.rstrip("/")
        self.headers = {"Authorization": "Bearer " + api_key}

    def connect(self, timeout_s):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)

    def metrics(self):
        """/metrics as {'name{labels}': value} (Prometheus text format, comments skipped)."""
        conn = self.connect(30)
        try:
            conn.request("GET", self.base + "/metrics", headers=self.headers)
            r = conn.getresponse()
            text = r.read().decode("utf-8", "replace")
            if r.status != 200:
                raise RuntimeError("/metrics: HTTP %d" % r.status)
        finally:
            conn.close()
        out = {}
        for line in text.split("\n"):
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            v = float(value)
            out[name] = int(v) if v.is_integer() else v
        return out


class ServeProcess:
    """A `vlrun serve ... --port 0` child (argv), its stderr collected; ready once a line names
    the URL it listens on (within ready_s, else RuntimeError with its stderr). client: a Server
    for it. For the tests and scripts that start a server themselves."""

    def __init__(self, argv, ready_s):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.err, self.url, ready = [], None, threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.err.append(line.decode(errors="replace"))
                m = re.search(r"listening on (http://\S+)", self.err[-1])
                if m and not self.url:
                    self.url = m[1].rstrip("/")
                    ready.set()
            ready.set()  # exited before its ready line

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(ready_s) or not self.url:
            self.proc.kill()
            self.proc.wait(60)
            raise RuntimeError("vlrun serve: no ready line in %d s: %s" % (ready_s, self.stderr()))
        self.client = Server(self.url, "unused")

    def stderr(self):
        return "".join(self.err)[-2000:]

    def stop(self, stop_s=60):
        """SIGTERM, then the exit code (SIGKILL and None after stop_s seconds)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(stop_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(stop_s)
            return None


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def error_message(status, raw):
    """The openai client's message for an HTTP error: the status and the body's error.message."""
    try:
        err = json.loads(raw)["error"]
        return "%d %s" % (status, err.get("message") if isinstance(err, dict) else err)
    except (ValueError, KeyError, TypeError):
        return "%d %s" % (status, raw.decode("utf-8", "replace")[:200] or "status code (no body)")


def read_events(resp, deadline):
    """The parsed `data:` payloads of a server-sent event stream, up to `[DONE]`. A stream that
    ends before it is an error: http.client reads a connection closed mid-stream as the end."""
    while True:
        if time.monotonic() > deadline:
            raise RequestError(0, "Request timed out.")
        line = resp.readline()
        if not line:
            raise RequestError(0, "the stream ended before data: [DONE]")
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        chunk = json.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            e = chunk["error"]
            raise RequestError(0, e.get("message", str(e)) if isinstance(e, dict) else str(e))
        yield chunk


def stream_chunks(server, kind, rec, timeout_s, t0):
    """Sends one request and reads its stream into rec (tokens, ttft, gaps)."""
    conn = server.connect(timeout_s)
    try:
        headers = dict(server.headers, **{"Content-Type": "application/json",
                                          "Accept": "text/event-stream"})
        conn.request("POST", server.base + "/v1/chat/completions", body=kind["body"],
                     headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RequestError(resp.status, error_message(resp.status, resp.read()))
        last = None
        for c in read_events(resp, time.monotonic() + timeout_s):
            if c.get("usage"):
                rec["tokens"] = c["usage"]["completion_tokens"]
            ch = c.get("choices") or []
            d = ch[0].get("delta") if ch else None
            if not d or not d.get("content"):
                continue
            now = time.perf_counter()
            if last is None:
                rec["ttft"] = now - t0
            else:
                rec["gaps"].append(now - last)
            last = now
    finally:
        conn.close()


def one_request(server, kind, timeout_s):
    """One streamed request: its times and tokens, or its error (HTTP status, 0 without one)."""
    t0 = time.perf_counter()
    rec = {"long": kind["long"], "ok": False, "tokens": 0, "ttft": None, "gaps": []}
    try:
        stream_chunks(server, kind, rec, timeout_s, t0)
        rec["ok"] = True
    except RequestError as e:
        rec["status"], rec["error"] = e.status, str(e)[:200]
    except (OSError, http.client.HTTPException, ValueError) as e:
        rec["status"], rec["error"] = 0, ("%s: %s" % (type(e).__name__, e))[:200]
    rec["seconds"] = time.perf_counter() - t0
    return rec


class MetricsWatch(threading.Thread):
    """Polls /metrics while the run lasts: the largest queue and running count seen."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.seen = {"max_queue_length": 0, "max_running": 0}

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.server.metrics()
                for key, name in (("max_queue_length", "vlrun_queue_length"),
                                  ("max_running", "vlrun_running_sequences")):
                    self.seen[key] = max(self.seen[key], m.get(name) or 0)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError):
                pass  # a busy server answers the next poll
            self.stop.wait(0.5)

    def finish(self):
        self.stop.set()
        self.join()
        return self.seen


def settled_metrics(server, timeout_s=10.0):
    """/metrics once the engine has published the step that finished the last request: a
    client has its answer before the engine thread publishes that step's counters, so a read
    right after the run may lag one step. Running and queued both 0 are only published after
    the last step (at most timeout_s of polling, then what is there)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        m = server.metrics()
        idle = not m.get("vlrun_running_sequences") and not m.get("vlrun_queue_length")
        if idle or time.perf_counter() > deadline:
            return m
        time.sleep(0.02)


def decode_of(m0, m):
    """The engine's decode steps during the run, from /metrics before (m0) and after (m): the
    aggregate decode rate is their tokens over their wall time (prefill chunks excluded)."""
    d = lambda k: (m.get(k) or 0) - (m0.get(k) or 0)  # noqa: E731
    tokens, seconds = d("vlrun_decode_tokens_total"), d("vlrun_decode_seconds_total")
    steps = d("vlrun_decode_steps_total")
    return {"decode_tokens": tokens, "decode_seconds": seconds,
            "decode_tok_s": tokens / seconds if seconds > 0 else None,
            "mean_decode_rows": tokens / steps if steps > 0 else None,
            "prefill_seconds": d("vlrun_prefill_seconds_total"),
            # recorded when the server started: the figures, not the run's difference
            "graphs_recorded": m.get("vlrun_decode_graphs_recorded_total"),
            "graph_seconds": m.get("vlrun_decode_graph_seconds_total"),
            "graph_bytes": m.get("vlrun_decode_graph_bytes")}


def report(o, recs, wall_s, seen, m0, m):
    ok = [r for r in recs if r["ok"]]
    errors = {}
    for r in recs:
        if not r["ok"]:
            errors[str(r["status"])] = errors.get(str(r["status"]), 0) + 1
    tokens = sum(r["tokens"] for r in ok)
    ttft = lambda rs: summary([r["ttft"] for r in rs if r["ttft"] is not None])  # noqa: E731
    used, free = m.get("vlrun_kv_bytes_used"), m.get("vlrun_kv_bytes_free")
    return {
        "clients": o["clients"], "requests_per_client": o["requests"],
        "long_every": o["long_every"], "pages": o["pages"], "max_tokens": o["max_tokens"],
        "long_max_tokens": o["long_max_tokens"], "image": os.path.basename(o["image"]),
        "wall_s": wall_s, "requests": len(recs), "ok": len(ok), "errors_by_status": errors,
        "error_samples": [r["error"] for r in recs if not r["ok"]][:5],
        "output_tokens": tokens, "output_tok_s": tokens / wall_s,
        "ttft_s": ttft(ok),
        "ttft_one_page_s": ttft([r for r in ok if not r["long"]]),
        "ttft_long_s": ttft([r for r in ok if r["long"]]),
        "per_token_s": summary([g for r in ok for g in r["gaps"]]),
        "server": dict({"peak_device_bytes": m.get("vlrun_peak_device_bytes"),
                        "kv_bytes_total": (used or 0) + (free or 0),
                        "kv_blocks_total": m.get("vlrun_kv_blocks_total")}, **seen,
                       **decode_of(m0, m)),
    }


def run_clients(o, server, kinds):
    """Every client's requests, one thread a client; the records in client order."""
    per_client = [[] for _ in range(o["clients"])]

    def client(c):
        for r in range(o["requests"]):
            long = o["long_every"] > 0 and (r + c) % o["long_every"] == o["long_every"] - 1
            per_client[c].append(one_request(server, kinds["long" if long else "one"],
                                             o["timeout_s"]))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(o["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for recs in per_client for r in recs]


def main(argv):
    try:
        o = parse_args(argv)
        server = Server(o["url"], o["api_key"])
        kinds = request_bodies(o)
    except (ValueError, OSError) as e:
        print("loadgen: %s" % e, file=sys.stderr)
        return 2
    try:
        m0 = server.metrics()
    except (OSError, http.client.HTTPException, RuntimeError, ValueError) as e:
        print("loadgen: %s" % e, file=sys.stderr)
        return 1
    watch = MetricsWatch(server)
    watch.start()
    t0 = time.perf_counter()
    recs = run_clients(o, server, kinds)
    wall_s = time.perf_counter() - t0
    seen = watch.finish()
    try:
        m = settled_metrics(server)
    except (OSError, http.client.HTTPException, RuntimeError, ValueError) as e:
        print("loadgen: %s" % e, file=sys.stderr)
        return 1
    text = json.dumps(report(o, recs, wall_s, seen, m0, m), indent=2) + "\n"
    if o["out"]:
        with open(o["out"], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
