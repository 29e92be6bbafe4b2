"""A/B of one bf16 diffusion UNet step on the CPU: how the decode hands its weights to oneDNN, interleaved.

The bf16 path of a DiVAE decode (``precision="auto"`` on CPUs with avx512_bf16/amx_bf16) runs the UNet's
feature maps channels-last (:mod:`terramind.tokenizers.unet`) and casts the conv/linear weights to bf16 once
per decode. A torch.profiler breakdown of one step (S1RTC, 224 px, 2 threads) showed 80 % in
``aten::mkldnn_convolution`` and 8 % in ``aten::copy_`` of the conv weights, once per call: eager oneDNN
copies a contiguous weight to the input's channels-last layout, then reorders it to its blocked layout, in
each of the 85 convolutions of every step. GroupNorm, SiLU, adds and attention were 1-2 % each (no cheap win
there). Variants, on the same decoder, noise, timestep and codes:

- ``plain``: weights cast to bf16 in their own (contiguous) layout -- the decode before issue 16's change;
- ``nhwc``: the same, 4-D conv weights also channels-last -- no per-call copy, still a per-call reorder;
- ``packed``: :class:`terramind.tokenizers.unet.PrepackedUNet` -- what the decode runs now: each conv weight
  reordered once by oneDNN for the input size it sees (no per-call copy or reorder).

All hand oneDNN the same bf16 values, so the outputs must be bit-identical (checked); the fp32 path casts
nothing and is untouched. Measurement: one process, 2 threads, rounds alternating the order (A B C, C B A,
...) so a shared machine's load hits all alike; median of ``--pairs`` rounds after warm-up calls; wall and
process CPU time; load average before and after.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_unet_step.py [--pairs 11] [--modality S1RTC]
        [--json benchmarks/unet_step_results.json]

Results (``unet_step_results.json``; AMD EPYC, 2 cores with avx512_bf16, torch 2.13, a quiet spell: load
average 0.45-0.98), median of 11 rounds: plain 0.636 s, nhwc 0.528 s (1.20x, 11/11 rounds faster), packed
0.477 s (1.33x, 11/11; CPU time 1.27 -> 0.95 s); all three bit-identical. Under load (2.4-3.7, steps ~7x
slower) packed still won 10/11 rounds (1.31x) and nhwc 9/11 (1.14x). Kept: packed (the decode's path now).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.func import functional_call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=7, help="timed calls per variant (alternated)")
    ap.add_argument("--modality", default="S1RTC")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from terramind.api.tokenizers import create_tokenizer
    from terramind.tokenizers.image import _cast_weights  # what the decode casts, once per decode
    from terramind.tokenizers.unet import PrepackedUNet

    torch.set_num_threads(args.threads)
    tok = create_tokenizer(args.modality, decode_only=True).eval()
    unet = tok.decoder
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, tok.num_channels, 224, 224, generator=g)
    t, codes = torch.tensor([999]), torch.rand(1, 5, 14, 14, generator=g)
    load_before, bf16 = os.getloadavg(), torch.bfloat16
    times: dict[str, list[float]] = {"plain": [], "nhwc": [], "packed": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}  # CPU seconds of both threads: not the waits
    outs = {}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        weights = {
            "plain": _cast_weights(unet, bf16),  # the decode before this change
            "nhwc": _cast_weights(unet, bf16, channels_last=True),
        }
        calls = {k: functools.partial(functional_call, unet, w, (x, t, codes)) for k, w in weights.items()}
        packed = PrepackedUNet(unet, dict(weights["nhwc"]))  # the decode now (packs its dict in place)
        calls["packed"] = functools.partial(packed, x, t, codes)
        for name, call in calls.items():
            call()  # warm-up (the packed variant packs its weights in this call)
            outs[name] = call()  # compared below
        order = list(calls)
        for i in range(args.pairs):
            for name in order if i % 2 == 0 else order[::-1]:  # A B C, C B A, ...: no variant always first
                t0, c0 = time.perf_counter(), time.process_time()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratios = {  # per round, plain / variant: robust to load that changes between rounds
        k: statistics.median(a / b for a, b in zip(times["plain"], v, strict=True))
        for k, v in times.items()
        if k != "plain"
    }
    result = {
        "modality": args.modality,
        "threads": args.threads,
        "torch": torch.__version__,
        "times_s": times,
        "median_s": medians,
        "cpu_s": cpu,
        "median_cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
        "median_cpu_speedup_vs_plain": {
            k: statistics.median(cpu["plain"]) / statistics.median(v) for k, v in cpu.items() if k != "plain"
        },
        "median_round_speedup_vs_plain": ratios,
        "rounds_faster_than_plain": {
            k: f"{sum(b < a for a, b in zip(times['plain'], v, strict=True))}/{args.pairs}"
            for k, v in times.items()
            if k != "plain"
        },
        "bit_identical_to_plain": {k: bool(torch.equal(outs["plain"], o)) for k, o in outs.items()},
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
