"""A/B of one bf16 diffusion UNet step on the CPU: the weight layouts the eager decode can cast to, interleaved.

The bf16 path of a DiVAE decode (``precision="auto"`` on CPUs with avx512_bf16/amx_bf16) runs the UNet's
feature maps channels-last (NHWC, :mod:`terramind.tokenizers.unet`) and casts the conv/linear weights to bf16
once per decode (``ImageTokenizer._denoiser``). A torch.profiler breakdown of one step (S1RTC, 224 px, 2
threads) showed ``aten::copy_`` of every 3x3 conv weight, once per call: oneDNN wants the weight in the input's
memory format, so a contiguous (NCHW) weight is copied to channels-last in each of the 85 convolutions of
every step. Variants, each on the same decoder, noise, timestep and codes:

- ``plain``: weights cast to bf16 in their own (contiguous) layout -- the decode before this change;
- ``nhwc``: 4-D conv weights cast to bf16 *and* channels-last once -- no per-call copy.

Both hand oneDNN the same bf16 weights in the same layout, so the outputs must be bit-identical (checked
here); the fp32 path casts nothing and is untouched. Measurement: one process, 2 threads, the variants
alternated (A B A B ...) so a shared machine's load hits both alike; the median of ``--pairs`` calls each,
after one warm-up call each; the load average is recorded before and after.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_unet_step.py [--pairs 7] [--modality S1RTC]
        [--json benchmarks/unet_step_results.json]

Results (``benchmarks/unet_step_results.json``; AMD EPYC, 2 cores with avx512_bf16, torch 2.13, the machine
shared with other jobs, load average 2.3-2.6 during the run): see the json; summary in the module's last
run below.
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
        packed = PrepackedUNet(unet, weights["nhwc"])  # the decode now
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
