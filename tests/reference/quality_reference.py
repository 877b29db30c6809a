#!/usr/bin/env python3
"""quality_reference.py: issue 17's table on the trained quality model, vlrun against
transformers in one run (the GPU machine: torch, transformers 5.17, tokenizers, Pillow; no
bitsandbytes, whose weights come from bnb_emulation.py, proven bit-exact on the committed
bitsandbytes goldens at the start of each run: a gate).

  accuracy     greedy exact match on the whole evaluation set (tests/fixtures/quality):
               transformers fp32, bf16 and bf16 with emulated NF4, NF4 double-quant and int8
               weights (cache-free greedy loop); vlrun in every configuration through
               scripts/eval_quality.py (`vlrun serve`, batched; `--attn naive` through the CLI)
  teacher-forced  on --tf-per-task items a task: the prompt plus the expected answer, every
               position's logits. vlrun through `vlrun logits --assistant-prefix ANSWER`
               (its ids are checked equal to this script's own template encoding); against
               transformers bf16 and against transformers with the same weights (NF4 / NF4-dq /
               int8 emulated): top-1 agreement at every position and at the answer's positions
               (the last prompt position on), cosine min / mean (float64 sums), the positions
               below the cosine gate and the lowest few (what they hold, and the cosine of
               transformers fp32 vs bf16 there: the reference's own rounding)
  answers      share of items whose vlrun greedy answer equals transformers' in the same format

Configurations: weights bf16, nf4, nf4-dq, int8, each with the bf16 and the int8 KV cache, and
bf16 with --attn naive (the baseline reads a bf16 cache only). Gates (exit 1 when one fails), as issue 17 states them:
  - vlrun bf16 vs transformers bf16, and vlrun nf4 / nf4-dq / int8 vs transformers on the same
    values (bf16 cache): top-1 >= 99.5% teacher-forced, cosine >= 0.999 at every position,
    greedy answers identical on >= 99% of the set;
  - every vlrun configuration's accuracy within 1 point of transformers' with the same weights.
Writes OUT/quality_reference.json (every figure), OUT/quality_reference.md (the table),
OUT/eval-*.json (eval_quality.py's per-item answers) and logs.

usage: quality_reference.py --model DIR --vlrun PATH --out DIR [--set DIR] [--tf-per-task 12]
           [--jobs 12] [--no-vlrun]
"""
import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bnb_emulation  # noqa: E402
import eval_quality  # noqa: E402
import teacher_forced  # noqa: E402
import train_quality_model as tq  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Qwen2VLForConditionalGeneration  # noqa: E402

WEIGHTS = ("bf16", "nf4", "nf4-dq", "int8")
# the naive attention (the baseline) reads a bf16 cache only
VLRUN_CONFIGS = [(w, "flash", kv) for w in WEIGHTS for kv in ("bf16", "int8")]
VLRUN_CONFIGS.insert(1, ("bf16", "naive", "bf16"))
GATE_TOP1, GATE_COS, GATE_ANSWERS, GATE_ACC_POINTS = 0.995, 0.999, 0.99, 1.0
WORST_POSITIONS = 4  # the lowest cosines a comparison lists


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def config_name(w, attn, kv):
    return f"vlrun {w}" + (" naive" if attn == "naive" else "") + f" kv{kv}"


def vlrun_args(w, attn, kv):
    a = ["--backend", "cuda", "--kv", kv]
    a += {"bf16": [], "nf4": ["--quant", "nf4"], "nf4-dq": ["--quant", "nf4", "--double-quant"],
          "int8": ["--quant", "int8"]}[w]
    return a + (["--attn", "naive"] if attn == "naive" else [])


# ---- transformers ------------------------------------------------------------------------------

def quantize_dequantize(w, fmt, table):
    """The bf16 weight bitsandbytes' `fmt` gives back for the bf16 weight w (CPU, exact)."""
    if fmt == "int8":
        cb, scb = bnb_emulation.int8_quantize(w, table)
        return bnb_emulation.int8_dequantize(cb, scb)
    state = bnb_emulation.nf4_quantize(w, double_quant=fmt == "nf4-dq")
    return bnb_emulation.nf4_dequantize(state, w.shape)


def load_transformers(model_dir, fmt, table):
    """fp32 / bf16, or bf16 with every Linear bitsandbytes quantizes (decoder and vision tower,
    merger included; not the LM head, embeddings or the patch Conv3d) replaced by its
    quantize-dequantize -> (model on the GPU, number of Linears replaced)."""
    dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype,
                                                            attn_implementation="sdpa")
    n = 0
    if fmt in ("nf4", "nf4-dq", "int8"):
        with torch.no_grad():
            for name, m in model.named_modules():
                if type(m) is torch.nn.Linear and name.split(".")[-1] != "lm_head":
                    m.weight.data = quantize_dequantize(m.weight.data, fmt, table)
                    n += 1
    return model.to("cuda").eval(), n


@torch.no_grad()
def hf_logits(model, ids, pv, grids):
    x = torch.tensor([ids], device="cuda")
    return tq.forward(model, x, torch.ones_like(x), pv.to("cuda", model.dtype),
                      torch.tensor(grids, device="cuda")).logits[0].float().cpu()


def encode_items(items, encoder):
    """Each item: (ids of prompt + answer, prompt length, pixel values, grids)."""
    enc = []
    for it in items:
        pictures = [Image.open(p) for p in it["images"]]
        ids, labels, pv, grids = encoder.encode(pictures, it["question"], it["answer"])
        n_prompt = sum(1 for x in labels if x == -100)
        enc.append((ids[:-1], n_prompt, pv, grids))  # without the end of turn: it is predicted
    return enc


def transformers_runs(a, items, tf_index, encoder, enc):
    """-> {fmt: dict(answers, logits {item id: tensor})}"""
    table = bnb_emulation.fdividef_table()
    runs = {}
    for fmt in ("fp32", "bf16", "nf4", "nf4-dq", "int8"):
        t0 = time.time()
        model, n_q = load_transformers(a.model, fmt, table)
        logits = {items[i]["id"]: hf_logits(model, *enc[i][:1], *enc[i][2:]) for i in tf_index}
        answers = {}
        for it, (ids, n_prompt, pv, grids) in zip(items, enc):
            answers[it["id"]] = tq.greedy_answer(model, encoder, ids[:n_prompt], pv, grids,
                                                 eval_quality.MAX_TOKENS)
        runs[fmt] = dict(answers=answers, logits=logits, linears_quantized=n_q)
        del model
        torch.cuda.empty_cache()
        log(f"transformers {fmt}: {len(logits)} teacher-forced, {len(answers)} greedy, "
            f"{time.time() - t0:.1f} s")
    return runs


# ---- vlrun -------------------------------------------------------------------------------------

def vlrun_logits(a, work, cfg, it, want_ids):
    """One item teacher-forced through `vlrun logits` -> logits (float32 [n, V]), or None when
    vlrun's prompt ids differ from the template's (counted: a gate failure)."""
    tag = "%s-%s-%s-%d" % (*cfg, it["id"])
    lp, ip = os.path.join(work, tag + ".bf16"), os.path.join(work, tag + ".ids")
    cmd = ([a.vlrun, "logits"] + it["images"] + ["--model", a.model, "--prompt", it["question"],
           "--assistant-prefix", it["answer"], "--out", lp, "--ids-out", ip] + vlrun_args(*cfg))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr[-400:]))
    ids = np.fromfile(ip, dtype="<i4").tolist()
    raw = np.fromfile(lp, dtype="<i2")
    os.remove(lp)
    os.remove(ip)
    if ids != want_ids:
        log(f"{tag}: vlrun's prompt ids differ from the template's ({len(ids)} vs "
            f"{len(want_ids)}): {ids[-8:]} vs {want_ids[-8:]}")
        return None
    return torch.from_numpy(raw.reshape(len(ids), -1)).view(torch.bfloat16).float()


def vlrun_teacher_forced(a, items, tf_index, enc):
    out = {cfg: {} for cfg in VLRUN_CONFIGS}
    with tempfile.TemporaryDirectory() as work, \
            concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futs = {pool.submit(vlrun_logits, a, work, cfg, items[i], enc[i][0]): (cfg, items[i]["id"])
                for cfg in VLRUN_CONFIGS for i in tf_index}
        for f in concurrent.futures.as_completed(futs):
            cfg, iid = futs[f]
            out[cfg][iid] = f.result()
    return out


def vlrun_all(a, items, tf_index, enc):
    """Teacher-forced logits, then greedy answers of every configuration."""
    tf = vlrun_teacher_forced(a, items, tf_index, enc)
    log(f"vlrun teacher-forced: {len(VLRUN_CONFIGS)} configurations x {len(tf_index)} items")
    return tf, {cfg: vlrun_accuracy(a, cfg) for cfg in VLRUN_CONFIGS}


def vlrun_accuracy(a, cfg):
    """eval_quality.py over the whole set -> {item id: answer text}, accuracy."""
    name = "eval-%s-%s-kv%s" % cfg
    via = ["--via", "cli", "--workers", str(a.jobs)] if cfg[1] == "naive" else \
        ["--via", "serve", "--workers", "16"]
    # serve sizes its cache pool from the free memory unless told: transformers shares the GPU
    budget = [] if cfg[1] == "naive" else ["--mem-budget", "6G"]
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "eval_quality.py"), "--model", a.model,
           "--set", a.set, "--vlrun", a.vlrun, "--json-out", os.path.join(a.out, name + ".json"),
           *via, "--", *vlrun_args(*cfg), *budget]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    with open(os.path.join(a.out, name + ".txt"), "w") as f:
        f.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
    if r.returncode:
        raise RuntimeError(f"{name}: exit {r.returncode}: {r.stderr[-400:]}")
    d = json.load(open(os.path.join(a.out, name + ".json")))
    return {x["id"]: x["got"] for x in d["items"]}, d["accuracy"]


# ---- comparisons -------------------------------------------------------------------------------

def compare(test, ref, enc_of, noise=None):
    """Teacher-forced agreement of two {item id: logits} over the items both hold, and the
    positions of the lowest cosines: item, position, what the position holds (image pad, other
    prompt, answer), and there the cosine of transformers fp32 vs bf16 (noise: {item id: cosines}),
    the reference's own rounding at that position."""
    cos_all, ccos_all, top1_all, top1_answer, where, missing = [], [], [], [], [], 0
    for iid, r in ref.items():
        if test[iid] is None:
            missing += 1
            continue
        c = teacher_forced.compare(test[iid], r)
        cos_all.append(c["cos"])
        ccos_all.append(c["ccos"])
        top1_all.append(c["top1"])
        top1_answer.append(c["top1"][enc_of[iid][1] - 1:])
        where += [(iid, p) for p in range(len(c["cos"]))]
    cos, t1, t1a = torch.cat(cos_all), torch.cat(top1_all), torch.cat(top1_answer)
    worst = []
    for k in cos.argsort()[:WORST_POSITIONS].tolist():
        iid, p = where[k]
        ids, n_prompt = enc_of[iid][0], enc_of[iid][1]
        what = ("answer" if p >= n_prompt - 1 else
                "image pad" if ids[p] == tq.SPECIAL["image_token_id"] else "prompt")
        worst.append(dict(item=iid, position=p, holds=what, cos=float(cos[k]),
                          fp32_vs_bf16_cos=float(noise[iid][p]) if noise else None))
    return dict(missing_items=missing, positions=int(t1.numel()), top1=float(t1.double().mean()),
                top1_answer=float(t1a.double().mean()), answer_positions=int(t1a.numel()),
                cos_min=float(cos.min()), cos_mean=float(cos.mean()),
                below_cos_gate=int((cos < GATE_COS).sum()), worst=worst,
                centered_cos_min=float(torch.cat(ccos_all).min()))


def accuracy(answers, items):
    return eval_quality.accuracy(eval_quality.score(items, [answers[it["id"]] for it in items]))


def same_answers(x, y):
    return sum(eval_quality.normalize(x[k]) == eval_quality.normalize(y[k]) for k in y) / len(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--vlrun", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", default=os.path.join(ROOT, "tests", "fixtures", "quality"))
    ap.add_argument("--tf-per-task", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--no-vlrun", action="store_true", help="transformers' rows only")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    items = eval_quality.load_set(a.set, set(), 0)
    seen, tf_index = {}, []
    for i, it in enumerate(items):
        seen[it["task"]] = seen.get(it["task"], 0) + 1
        if seen[it["task"]] <= a.tf_per_task:
            tf_index.append(i)
    encoder = tq.Encoder(os.path.join(a.model, "tokenizer.json"))
    enc = encode_items(items, encoder)
    enc_of = {it["id"]: e for it, e in zip(items, enc)}
    report = dict(model=a.model, set=a.set, items=len(items), tf_items=len(tf_index),
                  rows={}, gates=[])
    # the emulation proven bit-exact on bitsandbytes' own output in this run (CPU, seconds)
    lines = io.StringIO()
    with contextlib.redirect_stdout(lines):
        proven = bnb_emulation.check_goldens(os.path.join(ROOT, "tests", "fixtures", "bnb_goldens"))
    report["bnb_emulation_vs_goldens"] = lines.getvalue().splitlines()
    report["gates"].append(dict(what="bnb_emulation.py identical to the bitsandbytes goldens",
                                ok=bool(proven)))
    # vlrun's processes run beside transformers (the GPU holds both; the numbers do not mix)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    tf_future = None if a.no_vlrun else pool.submit(vlrun_all, a, items, tf_index, enc)
    hf = transformers_runs(a, items, tf_index, encoder, enc)
    ref = hf["bf16"]["logits"]
    noise = {iid: teacher_forced.compare(hf["fp32"]["logits"][iid], r)["cos"]
             for iid, r in ref.items()}
    for fmt, run in hf.items():
        row = dict(accuracy=accuracy(run["answers"], items), linears=run["linears_quantized"])
        if fmt != "bf16":
            row["vs_transformers_bf16"] = compare(run["logits"], ref, enc_of, noise)
            row["answers_same_as_bf16"] = same_answers(run["answers"], hf["bf16"]["answers"])
        report["rows"]["transformers " + fmt] = row
        report.setdefault("transformers_answers", {})[fmt] = run["answers"]
    if tf_future is not None:
        tf, greedy = tf_future.result()
        for cfg in VLRUN_CONFIGS:
            name = config_name(*cfg)
            answers, acc = greedy[cfg]
            same = hf[cfg[0]]
            row = dict(accuracy=accuracy(answers, items), eval_quality_accuracy=acc,
                       vs_transformers_bf16=compare(tf[cfg], ref, enc_of, noise),
                       vs_transformers_same_weights=compare(tf[cfg], same["logits"], enc_of,
                                                            noise),
                       vs_transformers_fp32=compare(tf[cfg], hf["fp32"]["logits"], enc_of),
                       answers_same_as_transformers=same_answers(answers, same["answers"]))
            report["rows"][name] = row
            log(f"{name}: accuracy {row['accuracy'][0]:.3f}, top-1 vs same weights "
                f"{row['vs_transformers_same_weights']['top1']:.4f}")
            gate(report, name, row, hf, cfg)
    pool.shutdown()
    with open(os.path.join(a.out, "quality_reference.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_table(report, os.path.join(a.out, "quality_reference.md"))
    failed = [g for g in report["gates"] if not g["ok"]]
    for g in report["gates"]:
        log(("ok   " if g["ok"] else "FAIL ") + g["what"])
    return 1 if failed else 0


def gate(report, name, row, hf, cfg):
    w, attn, kv = cfg
    hf_acc = report["rows"]["transformers " + w]["accuracy"][0]
    diff = abs(row["accuracy"][0] - hf_acc) * 100
    report["gates"].append(dict(what=f"{name}: accuracy {row['accuracy'][0]:.3f} within "
                                f"{GATE_ACC_POINTS} point of transformers {w} ({hf_acc:.3f})",
                                ok=diff <= GATE_ACC_POINTS + 1e-9))
    if attn != "flash" or kv != "bf16":
        return
    c = row["vs_transformers_same_weights"]
    report["gates"].append(dict(
        what=f"{name} vs transformers {w}: top-1 {c['top1']:.4f} >= {GATE_TOP1}, cosine min "
             f"{c['cos_min']:.5f} >= {GATE_COS}, answers identical "
             f"{row['answers_same_as_transformers']:.3f} >= {GATE_ANSWERS}",
        ok=c["top1"] >= GATE_TOP1 and c["cos_min"] >= GATE_COS and c["missing_items"] == 0 and
        row["answers_same_as_transformers"] >= GATE_ANSWERS))


def write_table(report, path):
    lines = [f"Quality model: {report['model']}; {report['items']} items, teacher-forced on "
             f"{report['tf_items']}.", "",
             "| | accuracy | top-1 vs transformers bf16 (answer positions) | cosine min / mean "
             "| vs transformers, same weights: top-1 / cosine min | answers = transformers' |",
             "|---|---|---|---|---|---|"]
    for name, r in report["rows"].items():
        acc = f"{100 * r['accuracy'][0]:.1f}%"
        vb = r.get("vs_transformers_bf16")
        v1 = f"{100 * vb['top1']:.2f}% ({100 * vb['top1_answer']:.2f}%)" if vb else "—"
        v2 = f"{vb['cos_min']:.5f} / {vb['cos_mean']:.6f}" if vb else "—"
        vs = r.get("vs_transformers_same_weights")
        v3 = f"{100 * vs['top1']:.2f}% / {vs['cos_min']:.5f}" if vs else "—"
        same = r.get("answers_same_as_transformers", r.get("answers_same_as_bf16"))
        v4 = f"{100 * same:.1f}%" if same is not None else "—"
        lines.append(f"| {name} | {acc} | {v1} | {v2} | {v3} | {v4} |")
    lines += ["", "Lowest cosines against transformers with the same weights (item, position: what "
              "it holds, cosine; transformers fp32 vs bf16 there), the cosine min of the logits less "
              "their mean (blind to a common offset), and vlrun's cosine min against transformers "
              "fp32:"]
    for name, r in report["rows"].items():
        vs = r.get("vs_transformers_same_weights")
        if vs:
            pos = "; ".join(f"{w['item']}, {w['position']}: {w['holds']}, {w['cos']:.5f} "
                            f"({w['fp32_vs_bf16_cos']:.5f})" for w in vs["worst"])
            lines.append(f"- {name}: {vs['below_cos_gate']} of {vs['positions']} positions "
                         f"below {GATE_COS}: {pos}; centered cosine min "
                         f"{vs['centered_cos_min']:.5f}; vs fp32 min "
                         f"{r['vs_transformers_fp32']['cos_min']:.5f}")
    lines += ["", "Gates:"] + [("- ok: " if g["ok"] else "- FAIL: ") + g["what"]
                               for g in report["gates"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
