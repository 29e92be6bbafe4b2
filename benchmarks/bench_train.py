"""Pretraining throughput: tokens/s, samples/s and peak memory of one training step, tiny and base sizes.

Times the step the trainer runs (encode, decode of every target, masked-token loss, backward, clipping,
AdamW) on synthetic batches (random pixels of S2L2A, S1RTC, DEM in; their tokens and LULC out), so it needs
no data and no weights. The mask draws, which the DataLoader workers do in training, are timed apart.
Prints a markdown table.

    .venv/bin/python benchmarks/bench_train.py                       # CPU, 2 threads, tiny + base
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch 64 --precision bf16   # one GPU

"tokens" counts the encoder inputs plus the decoder targets of each sample (``num_input_tokens +
num_target_tokens``), the unit of the 500B-token pretraining budget (arXiv 2504.11171). Peak memory is
``torch.cuda.max_memory_allocated`` on GPU and the process's peak RSS growth on CPU (coarse).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

from terramind.data.sample import Batch
from terramind.train.config import (
    DataSection,
    MaskingSection,
    ModalityEntry,
    ModelSection,
    OptimSection,
    PretrainConfig,
)
from terramind.train.engine import training_attention
from terramind.train.optim import build_optimizer
from terramind.train.pretrain import MaskDrawer, PretrainModule

MODALITIES = (
    ModalityEntry("S2L2A"),
    ModalityEntry("S1RTC"),
    ModalityEntry("DEM"),
    ModalityEntry("LULC", input="token"),
)
CHANNELS = {"S2L2A": 12, "S1RTC": 2, "DEM": 1}
VOCAB = {"S2L2A": 15360, "S1RTC": 15360, "DEM": 15360, "LULC": 4375}


def synthetic_batch(batch: int, crop: int, device: str) -> Batch:
    gen = torch.Generator().manual_seed(0)
    pixels = {m: torch.randn(batch, c, crop, crop, generator=gen) * 1000 for m, c in CHANNELS.items()}
    grid = crop // 16
    tokens = {m: torch.randint(0, v, (batch, grid, grid), generator=gen) for m, v in VOCAB.items()}
    keys = tuple(str(i) for i in range(batch))
    return Batch(keys, pixels, tokens, torch.zeros(batch, 2)).to(device)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(
    size: str, batch: int, steps: int, device: str, precision: str, checkpointing: bool
) -> dict[str, float]:
    config = PretrainConfig(
        modalities=MODALITIES,
        model=ModelSection(size=size, activation_checkpointing=checkpointing),
        masking=MaskingSection(num_input_tokens=128, num_target_tokens=128),
        optim=OptimSection(warmup_steps=1),
        data=DataSection(batch_size=batch),
    )
    module = PretrainModule(config).to(device)
    optimizer, _ = build_optimizer(
        module.model, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_steps=1, total_steps=steps
    )
    data = synthetic_batch(batch, 224, "cpu")
    autocast = (
        torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    rss0 = peak_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    drawer = MaskDrawer(module.masking, seed=0, rank=0)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step(i: int) -> tuple[float, float]:
        """One step; returns (seconds drawing masks, seconds of the step proper)."""
        start = time.perf_counter()
        batch = drawer(data, i).to(device)  # done by the workers in training
        sync()
        drawn = time.perf_counter()
        with autocast:
            loss = module.compute_loss(batch, step=i).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        return drawn - start, time.perf_counter() - drawn

    step(0)  # warm-up (allocations, kernels)
    times = [step(i) for i in range(1, steps + 1)]
    masking = sum(t[0] for t in times) / steps
    seconds = sum(t[1] for t in times) / steps
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else peak_rss_mb() - rss0
    params = sum(p.numel() for p in module.model.parameters()) / 1e6
    tokens = batch * (config.masking.num_input_tokens + config.masking.num_target_tokens)
    return {
        "params_m": params,
        "step_s": seconds,
        "tok_s": tokens / seconds,
        "samples_s": batch / seconds,
        "memory_mb": memory,
        "masking_ms": masking * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--cudnn-attention", action="store_true", help="allow SDPA's cuDNN backend")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    )
    print(
        f"device: {device_name}; batch {args.batch}; 128 input + 128 target tokens per sample; "
        f"{args.precision}; activation checkpointing {'on' if args.activation_checkpointing else 'off'}; "
        f"cuDNN attention {'on' if args.cudnn_attention else 'off'}\n"
    )
    print("| size | params (M) | s/step | tokens/s | samples/s | peak memory (MB) | masks (ms/batch) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        attention = contextlib.nullcontext() if args.cudnn_attention else training_attention()  # as trainers
        with attention:
            r = bench(
                size, args.batch, args.steps, args.device, args.precision, args.activation_checkpointing
            )
        print(
            f"| {size} | {r['params_m']:.1f} | {r['step_s']:.3f} | {r['tok_s']:.0f} | {r['samples_s']:.2f} | "
            f"{r['memory_mb']:.0f} | {r['masking_ms']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
