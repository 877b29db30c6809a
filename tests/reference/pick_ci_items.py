#!/usr/bin/env python3
"""pick_ci_items.py: tests/fixtures/quality-model/ci_items.txt from eval_quality.py reports: per
task, the first N items (by id) that every report answered right, so that the CPU engine's CI
check (tests/cli_quality_model.sh) holds a retrained model only to answers no configuration
got wrong.

usage: pick_ci_items.py REPORT.json... [--per-task 6] [--note TEXT] > ci_items.txt
(REPORTs: eval_quality.py --json-out files over the same set, e.g. bench/results/DATE-quality/
eval-*.json and cpu/*.json.)
"""
import argparse
import json
import textwrap

TASKS = ("count", "color", "shape", "where", "number", "compare")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--per-task", type=int, default=6)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    runs = [{i["id"]: i for i in json.load(open(p))["items"]} for p in a.reports]
    ids = sorted(runs[0])
    if any(sorted(r) != ids for r in runs):
        raise SystemExit("pick_ci_items: the reports cover different items")
    right = [i for i in ids if all(r[i]["ok"] for r in runs)]
    head = ("tests/cli_quality_model.sh: ids of tests/fixtures/quality items, the first %d a "
            "task that all %d reports answered right (tests/reference/pick_ci_items.py)%s"
            % (a.per_task, len(runs), ". " + a.note if a.note else "."))
    for line in textwrap.wrap(head, 96):
        print("# " + line)
    for t in TASKS:
        chosen = [i for i in right if runs[0][i]["task"] == t][:a.per_task]
        print(" ".join(map(str, chosen)) + "  # " + t)


if __name__ == "__main__":
    main()
