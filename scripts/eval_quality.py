#!/usr/bin/env python3
"""eval_quality.py: exact-match accuracy of a model on a quality set (issue 17): each item's
pictures and question through vlrun, greedy, and its answer compared with the expected one.

A set is a folder written by tests/reference/quality_task.py: items.jsonl (id, task, images,
question, answer) and the images. The answer must equal the expected one exactly after
stripping surrounding whitespace and a final period.

  --via cli    one `vlrun IMAGES --prompt Q --greedy --stop-at-eos --json` per item (default;
               the CPU backend, or a few items)
  --via serve  one `vlrun serve` on a free port, the items sent by --workers clients at once
               (temperature 0): the CUDA backend's start-up paid once

usage: eval_quality.py --model DIR [--set DIR] [--vlrun PATH] [--via cli|serve] [--limit N]
           [--tasks t1,t2] [--ids FILE] [--workers 8] [--json-out FILE] [--min-accuracy F]
           [-- VLRUN_ARGS...]
VLRUN_ARGS go to every vlrun (e.g. --backend cuda --quant nf4 --kv int8 --tokenizer FILE).
--ids FILE: only the items whose ids the file lists (whitespace-separated; '#' starts a comment).
Prints one line per task and the total; exit 1 when --min-accuracy is not met (each wrong item
then named with its expected and given answer), 2 on an error.
Python's standard library only (the GPU machine has no node).
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import loadgen  # noqa: E402  (data: URLs and the HTTP client)

MAX_TOKENS = 8  # the longest answer ("bottom right", four digits) is 4 tokens of the small
#                 tokenizer, plus the end of turn
ITEM_S, READY_S, STOP_S = 300, 300, 60


def read_ids(path):
    ids = []
    with open(path) as f:
        for line in f:
            ids += [int(w) for w in line.split("#")[0].split()]
    return set(ids)


def load_set(path, tasks, limit, ids=None):
    items = []
    with open(os.path.join(path, "items.jsonl")) as f:
        for line in f:
            it = json.loads(line)
            if (tasks and it["task"] not in tasks) or (ids is not None and it["id"] not in ids):
                continue
            it["images"] = [os.path.join(path, p) for p in it["images"]]
            items.append(it)
    return items[:limit] if limit else items


def normalize(text):
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def via_cli(vlrun, model, extra, item):
    argv = ([vlrun] + item["images"] + ["--prompt", item["question"], "--model", model,
            "--max-tokens", str(MAX_TOKENS), "--greedy", "--stop-at-eos", "--json"] + extra)
    p = subprocess.run(argv, capture_output=True, timeout=ITEM_S)
    if p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.decode(errors="replace")[-600:]))
    return json.loads(p.stdout)["text"]


def ask(server, item):
    """One item through `vlrun serve` (server: a loadgen.ServeProcess), greedy: its text."""
    content = [{"type": "image_url", "image_url": {"url": loadgen.data_url(f)}}
               for f in item["images"]]
    content.append({"type": "text", "text": item["question"]})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}],
                       "max_tokens": MAX_TOKENS, "temperature": 0}).encode()
    conn = server.client.connect(ITEM_S)
    try:
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError("item %s: HTTP %d: %s" % (item["id"], resp.status, data[:300]))
        return json.loads(data)["choices"][0]["message"]["content"]
    finally:
        conn.close()


def score(items, texts):
    """Each item's answer text against its expected answer -> result dicts."""
    return [dict(id=it["id"], task=it["task"], answer=it["answer"], got=text,
                 ok=normalize(text) == it["answer"]) for it, text in zip(items, texts)]


def evaluate(items, answer_of, workers):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return score(items, list(pool.map(answer_of, items)))


def tally(results):
    """-> {task: (items, right)} in the results' order, and (items, right) in all."""
    by = {}
    for r in results:
        n, k = by.get(r["task"], (0, 0))
        by[r["task"]] = (n + 1, k + r["ok"])
    return by, (len(results), sum(r["ok"] for r in results))


def accuracy(results):
    """-> the share right, and the share right per task."""
    by, (n, k) = tally(results)
    return k / n if n else 0.0, {t: v[1] / v[0] for t, v in by.items()}


def report(results):
    by, (n, k) = tally(results)
    for task, (tn, tk) in by.items():
        print("%-8s %4d / %4d  %6.1f%%" % (task, tk, tn, 100.0 * tk / tn))
    print("%-8s %4d / %4d  %6.1f%%" % ("all", k, n, 100.0 * k / n if n else 0.0))
    return accuracy(results)


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--set", default=os.path.join(ROOT, "tests", "fixtures", "quality"))
    ap.add_argument("--vlrun", default=os.path.join(ROOT, "build", "vlrun"))
    ap.add_argument("--via", choices=("cli", "serve"), default="cli")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--tasks", default="")
    ap.add_argument("--ids")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--json-out")
    ap.add_argument("--min-accuracy", type=float, default=None)
    a = ap.parse_args(argv)
    try:
        ids = read_ids(a.ids) if a.ids else None
        items = load_set(a.set, set(filter(None, a.tasks.split(","))), a.limit, ids)
        if ids is not None and len(items) != len(ids):
            raise ValueError("%d of the ids in %s are not in the set" % (len(ids) - len(items),
                                                                         a.ids))
    except (OSError, ValueError, KeyError) as e:
        print("eval_quality: the set %s: %s" % (a.set, e), file=sys.stderr)
        return 2
    if not items:
        print("eval_quality: no items in %s" % a.set, file=sys.stderr)
        return 2
    try:
        if a.via == "cli":
            results = evaluate(items, lambda it: via_cli(a.vlrun, a.model, extra, it),
                               a.workers or 1)
        else:
            server = loadgen.ServeProcess(
                [a.vlrun, "serve", "--model", a.model, "--port", "0"] + extra, READY_S)
            try:
                results = evaluate(items, lambda it: ask(server, it), a.workers or 8)
            finally:
                rc = server.stop(STOP_S)
            if rc != 0:
                raise RuntimeError("vlrun serve exited %s" % rc)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        print("eval_quality: %s" % e, file=sys.stderr)
        return 2
    acc, by_task = report(results)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(dict(model=a.model, set=a.set, via=a.via, vlrun_args=extra, accuracy=acc,
                           by_task=by_task, items=results), f, indent=1)
    if a.min_accuracy is not None and acc < a.min_accuracy:
        print("eval_quality: accuracy %.3f below %.3f" % (acc, a.min_accuracy), file=sys.stderr)
        for r in results:
            if not r["ok"]:
                print("  item %d (%s): expected %r, got %r" % (r["id"], r["task"], r["answer"],
                                                             r["got"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
