#!/usr/bin/env python3
"""sdpa_attention.py: the PyTorch anchors of vlbench's attention cases, run in the same command:
scaled_dot_product_attention on its cuDNN and FlashAttention-2 backends, bf16, at the shapes of
`vlbench attention --kinds prefill,chunk,vision` (Qwen2-VL-7B: causal 28 query / 4 kv heads d128
in one call of n queries over n keys; a 2048-query chunk at the end of a 38192-key cache; vision
16 heads d80 over 5456 tokens as one block). K and V are expanded to the query heads (the SDPA
backends differ on GQA). TFLOP/s counts the query-key pairs the mask lets through, as vlbench
does: 4 D H pairs / time. The median of 20 timed calls after 3 untimed (CUDA events).

usage: sdpa_attention.py [LENGTH,...]   (default 4096,16384,38192)
Prints one line per case and backend; writes OUT/sdpa_attention.json when OUT is set.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash2": SDPBackend.FLASH_ATTENTION}


def median_seconds(fn, iters=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def case(name, heads, d, n_q, n_kv, causal):
    dev = torch.device("cuda")
    q = torch.randn(1, heads, n_q, d, dtype=torch.bfloat16, device=dev)
    k = torch.randn(1, heads, n_kv, d, dtype=torch.bfloat16, device=dev)
    v = torch.randn(1, heads, n_kv, d, dtype=torch.bfloat16, device=dev)
    mask = None
    if causal and n_q != n_kv:  # the chunk: query i sees keys 0 .. n_kv - n_q + i
        mask = torch.ones(n_q, n_kv, dtype=torch.bool, device=dev).tril(n_kv - n_q)
    pairs = n_q * n_kv
    if causal:
        pairs = sum(n_kv - n_q + i + 1 for i in range(n_q))
    rows = []
    for backend, kind in BACKENDS.items():
        try:
            with sdpa_kernel([kind]):
                if mask is None:
                    t = median_seconds(
                        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                else:
                    t = median_seconds(
                        lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
            row = dict(case=name, n_q=n_q, n_kv=n_kv, backend=backend, us=t * 1e6,
                       tflops=4 * d * heads * pairs / t / 1e12)
        except Exception as e:  # a backend that refuses the shape
            row = dict(case=name, n_q=n_q, n_kv=n_kv, backend=backend, error=str(e)[:160])
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main():
    lengths = [4096, 16384, 38192]
    if len(sys.argv) > 1:
        lengths = [int(x) for x in sys.argv[1].split(",")]
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    rows = []
    for n in lengths:
        rows += case("prefill causal", 28, 128, n, n, True)
    rows += case("chunk at cache end", 28, 128, 2048, 38192, True)
    rows += case("vision one block", 16, 80, 5456, 5456, False)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "sdpa_attention.json"), "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
