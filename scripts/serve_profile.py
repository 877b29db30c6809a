#!/usr/bin/env python3
"""serve_profile.py: where a batched decode step of `vlrun serve` spends its GPU time.

Reads the CSV that Nsight Compute (ncu --csv --metrics gpu__time_duration.sum) wrote for a
window of the server's kernels (scripts/device_serve.sh profile), cuts it into steps at each
embed_kernel (every prefill chunk and decode step starts with one), keeps the decode steps
(they run attn_decode_kernel and no prefill attention) with the most rows, and prints their
median GPU time and, summed over those steps and divided by their count, the time per step of
each kernel. ncu runs kernels one at a time, so the sum is GPU time without gaps: set against
the server's wall time per decode step (its /metrics), the difference is time the GPU waited.
usage: serve_profile.py NCU.csv [--rows-from-grid]
"""
import csv
import statistics
import sys


def rows_of(path):
    """(kernel name, grid, microseconds) per kernel, in launch order."""
    out = {}
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own ==PROF== lines are not CSV
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        us = v / 1e3 if unit.startswith("n") else v * 1e3 if unit.startswith("m") else v
        out[int(r["ID"])] = (r["Kernel Name"], r.get("Grid Size", ""), us)
    return [out[i] for i in sorted(out)]


def short(name):
    base = name.split("(")[0]
    return base if len(base) < 90 else base[:87] + "..."


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ks = rows_of(sys.argv[1])
    if not ks:
        sys.exit("serve_profile: no kernel timings in %s" % sys.argv[1])
    steps, cur = [], None
    for k in ks:
        if k[0].startswith("embed_kernel") or " embed_kernel" in k[0]:
            if cur:
                steps.append(cur)
            cur = []
        if cur is not None:
            cur.append(k)
    if cur:
        steps.append(cur)
    # a complete decode step ends in the sampler; a prefill chunk has the prefill attention
    decode = [s for s in steps if any("attn_decode_kernel" in k[0] for k in s)
              and not any("prefill" in k[0] for k in s) and "sample" in s[-1][0]]
    print("%d kernels, %d steps cut, %d complete decode steps" % (len(ks), len(steps), len(decode)))
    if not decode:
        return
    # rows of a step: the embed kernel's grid is one CTA per row
    def rows(s):
        g = s[0][1].strip("()").split(",")
        return int(g[0]) if g and g[0].strip().isdigit() else 0
    most = max(rows(s) for s in decode)
    sel = [s for s in decode if rows(s) == most]
    tot = [sum(k[2] for k in s) for s in sel]
    print("decode steps of %d rows: %d, GPU time per step median %.0f us (min %.0f, max %.0f), "
          "%d kernels a step" % (most, len(sel), statistics.median(tot), min(tot), max(tot),
                                 len(sel[0])))
    by = {}
    for s in sel:
        for name, grid, us in s:
            key = (short(name), grid)
            n, t = by.get(key, (0, 0.0))
            by[key] = (n + 1, t + us)
    print("| kernel | grid | launches a step | us a step | us each |")
    print("|---|---|---|---|---|")
    for (name, grid), (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        per = t / len(sel)
        if per < 5:
            continue
        print("| %s | %s | %.1f | %.1f | %.2f |" % (name, grid, n / len(sel), per, t / n))


if __name__ == "__main__":
    main()
