#!/usr/bin/env python3
"""serve_report.py DIR [--budget-gib G] [--title TEXT]: the summary of scripts/device_serve.sh's
bench part, against the issue's goals for `vlrun serve` (issue 16): at 16 one-page clients, the
aggregate output tok/s at least 10x the single-stream decode tok/s; the 28-page mix under
--mem-budget completes with the peak device memory within the budget and no error (queueing is
not an error). Standard library only (the GPU machine's python3).

DIR holds one folder per weight format (bf16, nf4, ...), each with:
  anchor.json     `vlrun examples/page.png --max-tokens 128 --json`: the single stream
  one-page/       scripts/serve_bench.sh's OUT_DIR for the one-page runs (clients-N.json, ...)
  mix/            the same for the 28-page mix under the budget
  notes.txt       what the script skipped or cut short (one line each; optional)
Writes DIR/summary.json and DIR/summary.md and prints the markdown."""
import glob
import json
import os
import sys

GIB = 2**30
GOAL_RATIO = 10
GOAL_CLIENTS = 16


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def runs_of(folder):
    """The loadgen reports of one serve_bench.sh folder, by client count; and its server's end."""
    s = load(os.path.join(folder, "summary.json")) or {}
    runs = s.get("runs")
    if runs is None:  # cut short before serve_bench.sh wrote its summary: the counts it finished
        runs = [r for r in map(load, glob.glob(os.path.join(folder, "clients-*.json"))) if r]
    return sorted(runs, key=lambda r: r["clients"]), s.get("server_exit"), s.get("ready_line")


def row(r, single):
    peak = r["server"]["peak_device_bytes"]
    return {"clients": r["clients"], "requests": r["requests"], "ok": r["ok"],
            "errors_by_status": r["errors_by_status"], "error_samples": r["error_samples"],
            "output_tokens": r["output_tokens"], "output_tok_s": r["output_tok_s"],
            "ratio_to_single_stream": r["output_tok_s"] / single if single else None,
            "decode_tok_s": r["server"].get("decode_tok_s"),
            "decode_ratio_to_single_stream": (r["server"]["decode_tok_s"] / single
                                              if single and r["server"].get("decode_tok_s")
                                              else None),
            "mean_decode_rows": r["server"].get("mean_decode_rows"),
            "ttft_s": r["ttft_s"], "ttft_long_s": r["ttft_long_s"], "per_token_s": r["per_token_s"],
            "peak_device_gib": peak / GIB if peak else None,
            "kv_pool_gib": r["server"]["kv_bytes_total"] / GIB,
            "max_queue_length": r["server"]["max_queue_length"],
            "max_running": r["server"]["max_running"], "wall_s": r["wall_s"]}


def one_format(d, budget_gib):
    anchor = load(os.path.join(d, "anchor.json"))
    single = anchor["timings"]["decode_tok_s"] if anchor else None
    one, one_exit, one_ready = runs_of(os.path.join(d, "one-page"))
    mix, mix_exit, mix_ready = runs_of(os.path.join(d, "mix"))
    out = {"single_stream_decode_tok_s": single,
           "anchor_peak_device_gib": anchor["memory"]["peak_device"] / GIB if anchor else None,
           "one_page": [row(r, single) for r in one], "one_page_server_exit": one_exit,
           "one_page_ready_line": one_ready, "mix": [row(r, single) for r in mix],
           "mix_server_exit": mix_exit, "mix_ready_line": mix_ready, "goals": {}}
    at = [r for r in out["one_page"] if r["clients"] == GOAL_CLIENTS]
    if at and at[0]["decode_ratio_to_single_stream"] is not None:
        out["goals"]["decode_ratio_at_16"] = at[0]["decode_ratio_to_single_stream"] >= GOAL_RATIO
    for r in out["mix"]:
        peak = r["peak_device_gib"]  # None: not measured (the CPU backend)
        out["goals"]["mix_%d_within_budget" % r["clients"]] = None if peak is None else (
            peak <= budget_gib)
        out["goals"]["mix_%d_no_error" % r["clients"]] = (
            r["ok"] == r["requests"] and not r["errors_by_status"])
    try:
        with open(os.path.join(d, "notes.txt")) as f:
            out["notes"] = [line.strip() for line in f if line.strip()]
    except OSError:
        out["notes"] = []
    return out


def fmt(x, scale=1.0, digits=1):
    return "-" if x is None else "%.*f" % (digits, x * scale)


def table(rows):
    lines = ["| clients | ok / requests | errors | out tok/s | x single | decode tok/s | x single "
             "| rows / step | TTFT p50 / p99 ms | per-token p50 / p99 ms | peak GiB | KV pool GiB "
             "| max queue / running |",
             "|" + "---|" * 13]
    for r in rows:
        lines.append("| %d | %d / %d | %s | %.1f | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s "
                     "| %d / %d |" % (
            r["clients"], r["ok"], r["requests"],
            json.dumps(r["errors_by_status"]) if r["errors_by_status"] else "-",
            r["output_tok_s"], fmt(r["ratio_to_single_stream"], digits=2),
            fmt(r.get("decode_tok_s")), fmt(r.get("decode_ratio_to_single_stream"), digits=2),
            fmt(r.get("mean_decode_rows")),
            fmt(r["ttft_s"]["p50"], 1e3), fmt(r["ttft_s"]["p99"], 1e3),
            fmt(r["per_token_s"]["p50"], 1e3), fmt(r["per_token_s"]["p99"], 1e3),
            fmt(r["peak_device_gib"], digits=2), fmt(r["kv_pool_gib"], digits=2),
            r["max_queue_length"], r["max_running"]))
    return lines


def markdown(s):
    md = ["# vlrun serve: %s" % s["title"], "",
          "Aggregate output tok/s = completion tokens of all requests / wall time of the run "
          "(prefill included); decode tok/s = the tokens of the server's batched decode steps "
          "during the run / their wall time (/metrics: vlrun_decode_tokens_total, "
          "vlrun_decode_seconds_total; prefill chunks excluded); rows / step = the mean batch of "
          "those steps; x single = a rate over the single-stream decode tok/s. Goals: decode x "
          "single >= %d at %d one-page clients (the issue's aggregate decode); the mix within "
          "--mem-budget %g GiB with no error." % (GOAL_RATIO, GOAL_CLIENTS, s["budget_gib"]), ""]
    for q, f in s["formats"].items():
        md += ["## %s" % q, "",
               "single stream (page.png, 128 tokens): decode %s tok/s, peak %s GiB" % (
                   fmt(f["single_stream_decode_tok_s"]),
                   fmt(f["anchor_peak_device_gib"], digits=2)), ""]
        for part, label in (("one_page", "one-page requests"), ("mix", "28-page mix")):
            ready = f[part + "_ready_line"] or ("cut short" if f[part] else "not run")
            md += ["%s (server exit %s): %s" % (label, f[part + "_server_exit"], ready), ""]
            if f[part]:
                md += table(f[part]) + [""]
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}
        md += ["goals: " + (", ".join("%s %s" % (k, verdict[v])
                                      for k, v in f["goals"].items()) or "none measured"), ""]
        md += ["note: " + n for n in f["notes"]] + ([""] if f["notes"] else [])
    return "\n".join(md)


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    d, budget, title = argv[0], 24.0, "bench"
    opts = dict(zip(argv[1::2], argv[2::2]))
    budget = float(opts.get("--budget-gib", budget))
    title = opts.get("--title", title)
    formats = {}
    for q in sorted(os.listdir(d)):
        if os.path.isdir(os.path.join(d, q)):
            formats[q] = one_format(os.path.join(d, q), budget)
    s = {"title": title, "budget_gib": budget, "formats": formats}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(s, f, indent=2)
    text = markdown(s)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
