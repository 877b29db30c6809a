#!/usr/bin/env python3
"""device_report.py: the figures scripts/device.sh prints, computed from the files its runs write.
Standard library only (the GPU machine's python3). One subcommand per kind of result:

  run JSON [TAG]                one line from a `vlrun --json` report (TTFT, decode, peak, plan)
  vision JSON [TAG]             the vision encoder's time per encoded image in a `vlrun --json`
                                report: timings.vision_s over its image_files (IMAGE xN is one
                                file, encoded once; the same path given N times is N)
  hf JSON [LABEL]               one line per image count of a transformers anchor's JSON list
                                (hf_baseline.py, bench/anchors/hf_qwen2_5_vl.py): TTFT, decode,
                                peak, and the vision encoder per image where measured
  tsvrow JSON TAG BUILD ROUND   the `ab` TSV row of one `vlrun --json` report
  ab TSV                        old against new per run tag: medians and new/old in %, with the
                                rows outside +-LIMIT% (default 2) marked; TSV columns
                                tag build run ttft_s decode_tok_s peak_gib
  bench-ab OLD.json[,...] NEW.json[,...]
                                vlbench rows of two builds (`--json-out`; several rounds: the
                                median per row), matched by bench, case, shape and weight
                                format: time new/old, marked when slower by more than LIMIT%
  compare TAG A.json B.json A.f32 B.f32
                                two runs of the same request (e.g. CPU and CUDA backends): the
                                last-position logits' cosine and how many greedy tokens agree
  anchors DIR                   vlbench.json beside kernels.json (PyTorch anchors) on the shapes
                                both measured
  profile CSV RUN.json          Nsight Compute's per-kernel CSV of one decode step summed by
                                kernel name, beside the step time of an unprofiled run

Exit status: 0, or 1 when `ab` / `bench-ab` find a figure outside the limit (the caller decides
what that means), 2 when a file cannot be read.
"""
import collections
import csv
import json
import math
import os
import statistics
import struct
import sys

GIB = 2**30
LIMIT = float(os.environ.get("VL_AB_LIMIT", "2"))


def load_json(path):
    with open(path) as f:
        return json.load(f)


def run_line(path, tag=""):
    r = load_json(path)
    t, m = r["timings"], r["memory"]
    pred = m["predicted_peak"]
    return (f"{tag + ': ' if tag else ''}images {r['images']} prompt {r['prompt_tokens']}: "
            f"ttft {t['ttft_s']:.3f} s, prefill {t['prefill_tok_s']:.0f} tok/s, "
            f"decode {t['decode_tok_s']:.1f} tok/s, peak {m['peak_device'] / GIB:.3f} GiB, "
            f"predicted {pred / GIB:.3f} GiB, kv {m['kv_cache'] / GIB:.3f} GiB, "
            f"graph {r['options'].get('decode_graph')}, {r.get('device', '?')}")


def vision_line(path, tag=""):
    r = load_json(path)
    encodes = len(r["image_files"])
    vs = r["timings"]["vision_s"]
    print(f"{tag + ': ' if tag else ''}vision {1e3 * vs / encodes:.1f} ms per encoded image "
          f"({vs:.3f} s for {encodes} encode{'s' if encodes != 1 else ''}, {r['images']} "
          f"image{'s' if r['images'] != 1 else ''} in the prompt), {r.get('device', '?')}")
    return 0


def hf_lines(path, label="transformers"):
    for r in load_json(path):
        quant = "" if r.get("quant", "none") == "none" else f" {r['quant']}"
        line = f"{label}{quant} x{r['images']}: prompt {r['prompt_tokens']}: "
        if r.get("oom"):
            line += "out of memory"
        else:
            line += (f"ttft {r['ttft_s']:.3f} s, decode {r.get('decode_tok_s', float('nan')):.1f} "
                     f"tok/s, peak {r['peak_gib']:.3f} GiB")
        if "vision_s" in r:
            line += (f", vision {r['vision_ms_per_image']:.1f} ms per image ({r['vision_s']:.3f} s "
                     f"for {r['images']})")
        elif r.get("vision_oom"):
            line += ", vision out of memory"
        print(line)
    return 0


def tsv_row(path, tag, build, rnd):
    r = load_json(path)
    t, m = r["timings"], r["memory"]
    print(f"{tag}\t{build}\t{rnd}\t{t['ttft_s']:.3f}\t{t['decode_tok_s']:.1f}\t{m['peak_device'] / GIB:.3f}")
    return 0


def pct(new, old):
    """The change in %, rounded as printed: the printed figure is the one compared with LIMIT."""
    return round(100.0 * (new - old) / old, 2) if old else float("nan")


def ab_table(path):
    """Medians per (tag, build); each new build against 'old'. Higher decode is better; lower
    TTFT and peak are better: a row is marked when it is worse by more than LIMIT%."""
    cols = collections.defaultdict(lambda: collections.defaultdict(list))
    with open(path) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            for k in ("ttft_s", "decode_tok_s", "peak_gib"):
                cols[(row["tag"], row["build"])][k].append(float(row[k]))
    worse = 0
    print(f"{'run':24} {'build':8} {'n':>2} {'ttft s':>8} {'decode tok/s':>13} {'peak GiB':>9}"
          f" {'decode vs old':>14} {'ttft vs old':>12} {'peak vs old':>12}")
    for tag in dict.fromkeys(t for t, _ in cols):
        old = cols.get((tag, "old"))
        for (t, build), v in cols.items():
            if t != tag:
                continue
            med = {k: statistics.median(x) for k, x in v.items()}
            line = (f"{tag:24} {build:8} {len(v['decode_tok_s']):>2} {med['ttft_s']:8.3f}"
                    f" {med['decode_tok_s']:13.1f} {med['peak_gib']:9.3f}")
            if old and build != "old":
                o = {k: statistics.median(x) for k, x in old.items()}
                d = [pct(med[k], o[k]) for k in ("decode_tok_s", "ttft_s", "peak_gib")]
                bad = d[0] < -LIMIT or d[1] > LIMIT or d[2] > LIMIT
                worse += bad
                line += f" {d[0]:+13.2f}% {d[1]:+11.2f}% {d[2]:+11.2f}%" + ("  <-- worse" if bad else "")
            print(line)
    builds = collections.defaultdict(set)
    for tag, build in cols:
        builds[tag].add(build)
    missing = [tag for tag, b in builds.items() if "old" not in b or len(b) < 2]
    for tag in missing:
        print(f"ab: {tag}: nothing to compare (the runs of {'old' if 'old' not in builds[tag] else 'new'} failed)")
    if not cols:
        print("ab: no run finished")
    print(f"ab: {worse} run(s) worse than old by more than {LIMIT:g}%")
    return 1 if worse or missing or not cols else 0


def bench_rows(paths):
    """Median time per row over the comma-separated vlbench JSON files."""
    times = collections.defaultdict(list)
    for path in paths.split(","):
        for r in load_json(path)["rows"]:
            if r.get("status", "ok") == "ok" and r.get("ms"):
                times[(r["bench"], r["case"], r["shape"], r["quant"])].append(r["ms"])
    return {k: statistics.median(v) for k, v in times.items()}


def bench_ab(old_path, new_path):
    old, new = bench_rows(old_path), bench_rows(new_path)
    slower = 0
    print(f"{'bench':10} {'case':22} {'shape':36} {'quant':6} {'old us':>9} {'new us':>9} {'new/old':>8}")
    for key in new:
        if key not in old:
            print(f"{key[0]:10} {key[1]:22} {key[2]:36} {key[3]:6} {'-':>9} {new[key] * 1e3:9.1f}   (new row)")
            continue
        d = pct(new[key], old[key])
        bad = d > LIMIT
        slower += bad
        print(f"{key[0]:10} {key[1]:22} {key[2]:36} {key[3]:6} {old[key] * 1e3:9.1f}"
              f" {new[key] * 1e3:9.1f} {d:+7.2f}%" + ("  <-- slower" if bad else ""))
    gone = [k for k in old if k not in new]
    for key in gone:
        print(f"{key[0]:10} {key[1]:22} {key[2]:36} {key[3]:6} {old[key] * 1e3:9.1f} {'-':>9}   (old row only)")
    both = len(set(old) & set(new))
    print(f"bench-ab: {both} rows in both, {slower} slower than old by more "
          f"than {LIMIT:g}%, {len(gone)} old rows missing from new")
    return 1 if slower or not both else 0


def floats(path):
    data = open(path, "rb").read()
    return struct.unpack(f"<{len(data) // 4}f", data)


def compare(tag, a_json, b_json, a_f32, b_f32):
    a, b = load_json(a_json), load_json(b_json)
    la, lb = floats(a_f32), floats(b_f32)
    dot = sum(x * y for x, y in zip(la, lb))
    na, nb = math.sqrt(sum(x * x for x in la)), math.sqrt(sum(y * y for y in lb))
    same = sum(x == y for x, y in zip(a["tokens"], b["tokens"]))
    print(f"{tag}: last-logits cosine {dot / na / nb:.6f}, greedy tokens equal {same}/{len(a['tokens'])}")
    return 0


def anchors(o):
    vb, pt = (load_json(os.path.join(o, n)) if os.path.exists(os.path.join(o, n)) else None
              for n in ("vlbench.json", "kernels.json"))
    if vb:
        floor = vb.get("launch_floor_us")  # absent in reports before S23
        print(f"device {vb['device']}: copy {vb['copy_GBps']:.0f} GB/s, bf16 peak "
              f"{vb['bf16_peak_TFLOPs']:.0f} TFLOP/s"
              + (f", launch floor {floor:.1f} us" if isinstance(floor, (int, float)) else "")
              + (f" (PyTorch copy_: {pt['copy_GBps']:.0f} GB/s)" if pt and "copy_GBps" in pt else ""))
    if not (vb and pt):
        print("anchors: vlbench.json or kernels.json missing: no side-by-side table")
        return 0
    rows = [r for r in vb["rows"] if r["status"] == "ok"]

    def cell(us, rate, unit):
        return "-" if us is None or rate is None else f"{us:.1f} ({rate:.0f} {unit})"

    print("\nGEMV / GEMM: time in us (rate); NF4/int8 rates count their own bytes")
    print(f"{'kind':5} {'m':>5} {'N':>7} {'K':>6} {'quant':7} {'vlrun':>22} {'cuBLAS (vlbench)':>22} {'torch F.linear':>22}")
    for g in pt.get("gemm", []):
        m = 1 if g["kind"] == "gemv" else g["m"]
        unit, key = ("GB/s", "GBps") if m == 1 else ("TFLOP/s", "TFLOPs")
        t_us = g["us"] if m == 1 else g["ms"] * 1e3
        t_rate = g.get("GBps") if m == 1 else g.get("tflops")
        for r in rows:
            if r["bench"] in ("gemv", "gemm") and r["m"] == m and r["n"] == g["n"] and r["k"] == g["k"]:
                a_us = r["anchor_ms"] * 1e3 if r["anchor_ms"] is not None else None
                print(f"{g['kind']:5} {m:>5} {r['n']:>7} {r['k']:>6} {r['quant']:7} "
                      f"{cell(r['ms'] * 1e3, r[key], unit):>22} {cell(a_us, r['anchor_' + key], unit):>22} "
                      f"{cell(t_us, t_rate, unit):>22}")
    print("\nattention prefill / vision, TFLOP/s (torch: SDPA with K/V expanded to all heads)")
    for s in pt.get("sdpa", []):
        for r in rows:
            if ("tflops" in s and r["bench"] == "attention" and r["n_q"] == s["s"] and r["n_kv"] == s["s"]
                    and r["head_dim"] == s["d"] and r["heads"] == s["hq"] and r["causal"] == s["causal"]
                    and r["n_seg"] == 0):
                print(f"{s['case']:12} s={s['s']:>6} d={s['d']:>3}  vlrun {r['TFLOPs']:7.1f}   "
                      f"torch {s['backend']:9} {s['tflops']:7.1f}")
    print("\ndecode attention, GB/s of K+V")
    for d in pt.get("decode_attn", []):
        for r in rows:
            if "GBps" in d and r["bench"] == "attention" and r["n_q"] == 1 and r["n_kv"] == d["s"]:
                print(f"n_kv={d['s']:>6}  vlrun {r['GBps']:7.0f}   torch {d['backend']:9} {d['GBps']:7.0f}")
    return 0


def profile(csv_path, run_path):
    # the program's own stdout shares the file: the table starts at ncu's header row
    lines = open(csv_path).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID",'))
    rows = list(csv.reader(lines[start:]))
    head, rows = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    ix = {k: i for i, k in enumerate(head)}
    scale = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
             "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
    per = {}
    for r in rows:
        v = float(r[ix["Metric Value"]].replace(",", "")) * scale.get(r[ix["Metric Unit"]], 1)
        per.setdefault((r[ix["ID"]], r[ix["Kernel Name"]]), {})[r[ix["Metric Name"]]] = v
    t = collections.defaultdict(lambda: [0, 0.0, 0.0])  # name -> [count, ns, bytes]
    for (_, name), d in per.items():
        e = t[name.replace("(anonymous namespace)::", "").split("(")[0].split("<")[0][:60]]
        e[0] += 1
        e[1] += d.get("gpu__time_duration.sum", 0)
        e[2] += d.get("dram__bytes_read.sum", 0)
    tot_ns = sum(e[1] for e in t.values()) or 1
    tot_b = sum(e[2] for e in t.values())
    run = load_json(run_path)
    step_ms = 1e3 / run["timings"]["decode_tok_s"]
    print(f"kernels {len(per)}, kernel time {tot_ns / 1e6:.3f} ms, DRAM read {tot_b / 1e9:.3f} GB "
          f"({tot_b / tot_ns:.0f} GB/s over kernel time); step {step_ms:.3f} ms "
          f"({run['timings']['decode_tok_s']:.1f} tok/s): {step_ms - tot_ns / 1e6:.3f} ms between kernels")
    print(f"{'kernel':60s} {'n':>4s} {'total us':>9s} {'us each':>8s} {'GB/s':>6s} {'share':>6s}")
    for name, (c, ns, b) in sorted(t.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:60s} {c:4d} {ns / 1e3:9.1f} {ns / 1e3 / c:8.2f} {b / ns if ns else 0:6.0f} {ns / tot_ns:6.1%}")
    return 0


COMMANDS = {"run": (lambda p, tag="": print(run_line(p, tag)) or 0, 1), "tsvrow": (tsv_row, 4),
            "vision": (vision_line, 1), "hf": (hf_lines, 1),
            "ab": (ab_table, 1), "bench-ab": (bench_ab, 2), "compare": (compare, 5),
            "anchors": (anchors, 1), "profile": (profile, 2)}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS or len(sys.argv) - 2 < COMMANDS[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(COMMANDS[sys.argv[1]][0](*sys.argv[2:]))
    except (OSError, ValueError, KeyError, StopIteration) as e:
        print(f"{sys.argv[1]}: cannot read the results ({type(e).__name__}: {e})")
        sys.exit(2)
