"""GPU throughput of our backbone and generator (no reference: terratorch is not installed on GPU hosts).

Random weights, 224 px tiles, CUDA events around each call after a warm-up, peak memory from the CUDA
allocator. Usage (from the repository root, with the package importable)::

    PYTHONPATH=src python benchmarks/bench_gpu.py --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch

from terramind.api.generation import create_generator
from terramind.api.models import create_backbone
from terramind.generation import GenerationOptions
from terramind.generation.generate import Generator


def cuda_time(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after one warm-up, timed with CUDA events."""
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def bench_backbone(size: str, batch: int, dtype: torch.dtype, repeats: int) -> dict[str, object]:
    """Backbone forward on S2L2A tiles."""
    model = create_backbone(f"terramind_v1_{size}", ["S2L2A"]).cuda().to(dtype).eval()
    x = torch.randn(batch, 12, 224, 224, device="cuda", dtype=dtype)
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        seconds = cuda_time(lambda: model({"S2L2A": x}), repeats)
    return {
        "what": f"backbone {size}",
        "batch": batch,
        "dtype": str(dtype).removeprefix("torch."),
        "s_per_call": seconds,
        "tiles_per_s": batch / seconds,
        "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


def bench_generation(gen: Generator, batch: int, precision: str, repeats: int) -> dict[str, object]:
    """Generate S2L2A -> the generator's outputs with 10 DDIM steps, on reflectance-like input."""
    x = torch.rand(batch, 12, 224, 224, generator=torch.Generator().manual_seed(0)) * 3000
    torch.cuda.reset_peak_memory_stats()
    options = GenerationOptions(diffusion_steps=10, precision=precision)
    with torch.inference_mode():
        seconds = cuda_time(lambda: gen.generate({"S2L2A": x}, options, seed=0), repeats)
    return {
        "what": "generate base S2L2A->" + ",".join(s.name for s in gen.outputs),
        "batch": batch,
        "dtype": precision,
        "s_per_call": seconds,
        "tiles_per_s": batch / seconds,
        "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


def main() -> None:
    """Run every case and print a markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for size, batch in (("tiny", 64), ("base", 64)):
        for dtype in (torch.float32, torch.bfloat16):
            rows.append(bench_backbone(size, batch, dtype, args.repeats))
            print(rows[-1], flush=True)
    for outputs in (["LULC"], ["S1RTC"], ["S1GRD", "S1RTC", "DEM", "LULC", "NDVI"]):
        gen = create_generator("terramind_v1_base", inputs=["S2L2A"], outputs=outputs).to("cuda")
        for batch in (1, 8):
            for precision in ("fp32", "bf16"):
                rows.append(bench_generation(gen, batch, precision, max(2, args.repeats // 2)))
                print(rows[-1], flush=True)
    table = ["| what | batch | dtype | s/call | tiles/s | peak GB |", "|---|---|---|---|---|---|"]
    table += [
        f"| {r['what']} | {r['batch']} | {r['dtype']} | {r['s_per_call']:.4f} | {r['tiles_per_s']:.1f} | "
        f"{r['peak_gb']:.2f} |"
        for r in rows
    ]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("\n".join(table))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
