#!/usr/bin/env python3
"""train_quality_model.py: train the small Qwen2-VL of issue 17 from scratch on the synthetic
tasks of quality_task.py, so that quality figures mean something (answers right or wrong).
Runs where torch + transformers 5.17 are (the GPU machine), a few minutes on one GPU, fixed seeds.

The model is a transformers Qwen2VLForConditionalGeneration small enough to commit, with every
width a multiple of 64 (so NF4 and int8 quantize every linear layer as on the real model), head
dims of the 7B (128 in the decoder, 80 in the vision tower), GQA and several layers:
  decoder: hidden 256, 2 heads of 128, 1 kv head, MLP 768, 3 layers, M-RoPE [16, 24, 24],
           the small 4096-token tokenizer (make_small_tokenizer.py), tied embeddings;
  vision:  width 320, 4 heads of 80, MLP 640, 2 blocks, merger 1280 -> 256.
Prompts are the Qwen2-VL chat template exactly as vlrun builds it for `vlrun IMAGES --prompt Q`
(the default system prompt). The loss is the mean cross-entropy of the answer and its end-of-turn
token plus PROMPT_WEIGHT times that of the prompt's own next tokens: the prompt is predictable
(the template, the task's fixed question, an image's pad count), and learning it makes every
position's logits peaked, so that teacher-forced top-1 agreement is judged on decided positions
everywhere, not on the near-ties of an untrained distribution.
Training items: quality_task.item(seed 1, i) for i = 0, 1, ... (each drawn once); the held-out
check during training uses seed 2 items (the committed evaluation set's seed), never trained on.

usage: train_quality_model.py QWEN_TOKENIZER_JSON OUT_DIR [--small] [--seconds 300] [--batch 48]
           [--lr 1e-3] [--seed 0] [--workers 8] [--init MODEL_DIR] [--first-item N]
           [--z-loss W]
--init continues from a saved model (its weights; the optimizer starts afresh, with the
warm-up), on training items from --first-item on (say, the steps x batch the first run drew),
so that a model can be trained over several calls of the GPU machine's 10-minute limit.
writes OUT_DIR/{config.json, model.safetensors (bf16), preprocessor_config.json,
tokenizer.json (the small tokenizer), train_log.json}: steps, loss curve, teacher-forced answer accuracy on 240 held-out items, and
their greedy exact-match accuracy per task (transformers, bf16 weights, fp32 compute).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_small_tokenizer  # noqa: E402
import quality_task  # noqa: E402
# the tiny goldens' token ids, prompt layout and image processor: the same here
from make_model_goldens import (IM_END, IM_START, MAX_PIXELS, MIN_PIXELS, SPECIAL,  # noqa: E402
                                ImageProcessor, qwen2_vl_config)

import transformers  # noqa: E402
from transformers import Qwen2VLForConditionalGeneration  # noqa: E402

PAD = IM_END  # never a label; masked out of attention
PROMPT_WEIGHT = 0.1
TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=3, num_attention_heads=2,
            num_key_value_heads=1, mrope_section=[16, 24, 24])
VISION = dict(depth=2, embed_dim=320, num_heads=4, mlp_ratio=2)
HELD_OUT = 240
TRAIN_SEED, EVAL_SEED = 1, 2


def build_model():
    return Qwen2VLForConditionalGeneration._from_config(qwen2_vl_config(TEXT, VISION, True),
                                                        dtype=torch.float32)


class Encoder:
    """Items -> (ids, labels, pixel_values, grids) through the small tokenizer and the PIL
    image processor, in vlrun's prompt layout (see make_model_goldens.py)."""

    def __init__(self, small_tokenizer_path):
        self.tok = Tokenizer.from_file(small_tokenizer_path)
        self.proc = ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False).ids

    def prompt(self, grids, question):
        ids = [IM_START] + self.enc("system\nYou are a helpful assistant.") + [IM_END]
        ids += self.enc("\n") + [IM_START] + self.enc("user\n")
        for g in grids:
            ids += [SPECIAL["vision_start_token_id"]]
            ids += [SPECIAL["image_token_id"]] * (g[0] * g[1] * g[2] // 4)
            ids += [SPECIAL["vision_end_token_id"]]
        ids += self.enc(question) + [IM_END] + self.enc("\n") + [IM_START]
        return ids + self.enc("assistant\n")

    def encode(self, pictures, question, answer):
        pv = self.proc(images=[p.convert("RGB") for p in pictures], return_tensors="pt")
        grids = pv["image_grid_thw"].tolist()
        ids = self.prompt(grids, question)
        target = self.enc(answer) + [IM_END]
        labels = [-100] * len(ids) + target
        return ids + target, labels, pv["pixel_values"].float(), grids


class Stream(torch.utils.data.IterableDataset):
    """Training items seed 1 from first on, never repeated, in blocks of one batch: worker w of n
    yields blocks w, w + n, ..., so the loader's batch k is items first + k x batch on, and every
    batch holds each task alike (items cycle through the tasks; a worker striding by single items
    would see only the tasks of its residue, alternating batches between two sets of tasks)."""

    def __init__(self, small_tokenizer_path, first, batch):
        self.path = small_tokenizer_path
        self.first = first
        self.batch = batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        encoder = Encoder(self.path)
        block = w
        while True:
            for m in range(self.batch):
                i = self.first + block * self.batch + m
                task, pictures, question, answer = quality_task.item(TRAIN_SEED, i)
                yield encoder.encode(pictures, question, answer)
            block += n


def collate(batch):
    """-> ids, labels (-100 but on the answer), mask, pixel_values, grids."""
    L = max(len(b[0]) for b in batch)
    ids = torch.full((len(batch), L), PAD, dtype=torch.long)
    labels = torch.full((len(batch), L), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for r, (i, lab, _, _) in enumerate(batch):
        ids[r, :len(i)] = torch.tensor(i)
        labels[r, :len(lab)] = torch.tensor(lab)
        mask[r, :len(i)] = 1
    pixel_values = torch.cat([b[2] for b in batch])
    grids = torch.tensor([g for b in batch for g in b[3]])
    return ids, labels, mask, pixel_values, grids


def forward(model, ids, mask, pixel_values, grids):
    mm = (ids == SPECIAL["image_token_id"]).long()
    return model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm,
                 pixel_values=pixel_values, image_grid_thw=grids)


def loss_of(logits, ids, labels, mask, z_loss=0.0):
    """Answer cross-entropy + PROMPT_WEIGHT x the prompt's (position p predicts token p + 1)
    + z_loss x the mean square of log-sum-exp over every position (the "z-loss" of PaLM)."""
    logits, want, lab = logits[:, :-1].float(), ids[:, 1:], labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), want, reduction="none")
    answer, valid = lab != -100, mask[:, 1:] == 1
    prompt = valid & ~answer
    loss = ce[answer].mean() + PROMPT_WEIGHT * ce[prompt].mean()
    if z_loss:
        # Cross-entropy ignores a common offset of a position's logits, so training leaves it
        # wherever it drifts. Where it drifted to about 0 (fixed question words), the logits
        # vector is 10x shorter than elsewhere and its raw cosine 10x more sensitive to rounding:
        # transformers' own bf16 vs fp32 fell below 0.999 there. Pulling log Z towards 0 gives
        # every position the same footing.
        loss = loss + z_loss * torch.logsumexp(logits, -1)[valid].square().mean()
    return loss


def held_out(encoder):
    items = []
    for i in range(HELD_OUT):
        task, pictures, question, answer = quality_task.item(EVAL_SEED, i)
        items.append((task, answer, encoder.encode(pictures, question, answer)))
    return items


@torch.no_grad()
def teacher_forced_accuracy(model, items, device):
    """Share of held-out items whose every answer token (and end of turn) is the argmax."""
    model.eval()
    ok = 0
    for k in range(0, len(items), 48):
        ids, labels, mask, pv, grids = collate([it[2] for it in items[k:k + 48]])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = forward(model, ids.to(device), mask.to(device), pv.to(device),
                             grids.to(device)).logits
        pred = logits[:, :-1].argmax(-1).cpu()
        want = labels[:, 1:]
        hit = ((pred == want) | (want == -100)).all(-1)
        ok += int(hit.sum())
    model.train()
    return ok / len(items)


@torch.no_grad()
def greedy_answer(model, encoder, prompt_ids, pv, grids, max_tokens=8):
    """One item's greedy answer text: a full forward per token, no cache (none of generate's
    cache or stopping rules involved), until the end of turn or max_tokens."""
    device = next(model.parameters()).device
    seq, out = list(prompt_ids), []
    for _ in range(max_tokens):
        x = torch.tensor([seq], device=device)
        logits = forward(model, x, torch.ones_like(x), pv.to(device, model.dtype),
                         torch.tensor(grids, device=device)).logits
        nxt = int(logits[0, -1].argmax())
        if nxt == IM_END:
            break
        out.append(nxt)
        seq.append(nxt)
    return encoder.tok.decode(out)


@torch.no_grad()
def greedy_accuracy(model, items, encoder):
    """Greedy answers against the expected, per task."""
    model.eval()
    by = {}
    for task, answer, (ids, labels, pv, grids) in items:
        n_prompt = sum(1 for x in labels if x == -100)
        got = greedy_answer(model, encoder, ids[:n_prompt], pv, grids).strip()
        n, k = by.get(task, (0, 0))
        by[task] = (n + 1, k + (got == answer))
    model.train()
    return {t: k / n for t, (n, k) in by.items()}, sum(k for n, k in by.values()) / len(items)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizer")
    ap.add_argument("out_dir")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--init", help="start from this saved model's weights")
    ap.add_argument("--small", action="store_true",
                    help="the tokenizer given is already the small one (make_small_tokenizer.py)")
    ap.add_argument("--first-item", type=int, default=0)
    ap.add_argument("--z-loss", type=float, default=0.0,
                    help="weight of the mean square of log-sum-exp per position (PaLM: 1e-4)")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    small = os.path.join(a.out_dir, "tokenizer.json")
    with open(small, "w", encoding="utf-8") as f:
        if a.small:
            with open(a.tokenizer, encoding="utf-8") as src:
                f.write(src.read())
        else:
            json.dump(make_small_tokenizer.derive(a.tokenizer), f, ensure_ascii=False)
    torch.manual_seed(a.seed)
    device = "cuda"
    if a.init:
        model = Qwen2VLForConditionalGeneration.from_pretrained(a.init, dtype=torch.float32)
    else:
        model = build_model()
    model = model.to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    encoder = Encoder(small)
    checks = held_out(encoder)
    loader = torch.utils.data.DataLoader(Stream(small, a.first_item, a.batch), batch_size=a.batch,
                                         collate_fn=collate,
                                         num_workers=a.workers, prefetch_factor=4,
                                         persistent_workers=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup, log, t0, step, skipped = 300, [], time.time(), 0, 0
    loss_sum, loss_n = torch.zeros((), device=device), 0  # since the last log line
    for ids, labels, mask, pv, grids in loader:
        elapsed = time.time() - t0
        if elapsed > a.seconds:
            break
        # warmup, then cosine over the time budget down to a tenth
        frac = min(1.0, elapsed / a.seconds)
        lr = a.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = forward(model, ids, mask, pv.to(device), grids.to(device)).logits
        loss = loss_of(logits, ids, labels, mask, a.z_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        # a batch whose bf16 gradients overflowed: clipping by an infinite norm would write NaN
        # into every weight (inf x 0), so it is skipped (and counted)
        if torch.isfinite(norm):
            opt.step()
            loss_sum += loss.detach()
            loss_n += 1
        else:
            skipped += 1
        step += 1
        if step % 100 == 0:
            # the mean of the last 100 batches (those stepped): one batch's loss says little
            entry = dict(step=step, seconds=round(time.time() - t0, 1),
                         loss=float(loss_sum) / max(1, loss_n), lr=lr, skipped=skipped)
            if step % 500 == 0:
                entry["held_out_teacher_forced"] = teacher_forced_accuracy(model, checks, device)
            log.append(entry)
            loss_sum.zero_()
            loss_n = 0
            print(json.dumps(entry), flush=True)
    tf = teacher_forced_accuracy(model, checks, device)
    model = model.to(torch.bfloat16)
    model.save_pretrained(a.out_dir)
    for junk in ("generation_config.json",):
        p = os.path.join(a.out_dir, junk)
        if os.path.exists(p):
            os.remove(p)
    encoder.proc.save_pretrained(a.out_dir)
    # the saved bf16 weights, reloaded as a user would, computed in fp32
    model = Qwen2VLForConditionalGeneration.from_pretrained(a.out_dir, dtype=torch.float32)
    model = model.to(device).eval()
    by_task, greedy = greedy_accuracy(model, checks, encoder)
    result = dict(transformers=transformers.__version__, torch=torch.__version__,
                  params=n_params, steps=step, skipped_steps=skipped,
                  seconds=round(time.time() - t0, 1),
                  batch=a.batch, lr=a.lr, z_loss=a.z_loss, seed=a.seed, init=a.init,
                  first_item=a.first_item,
                  text=TEXT, vision=VISION,
                  held_out_items=HELD_OUT, held_out_teacher_forced=tf,
                  held_out_greedy=greedy, held_out_greedy_by_task=by_task, log=log)
    with open(os.path.join(a.out_dir, "train_log.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "log"}), flush=True)


if __name__ == "__main__":
    main()
