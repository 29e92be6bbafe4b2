"""Peak memory of S2L2A -> S1RTC with ``precision="auto"``, prepacked bf16 convolutions on and off.

Each variant runs in its own process (its ``ru_maxrss`` is its own), through ``bench_generation``'s worker
(base model, one 224 px tile, 10 DDIM steps, tokenizers from ``bench_results/random_tokenizers``, one timed
generation, no warm-up). ``off`` replaces :func:`terramind.tokenizers.unet.prepacks` in the decode by one that
answers False, so the decode runs plain bf16 autocast on its cast weights, as before prepacking.

Usage (from the repository root; writes the random tokenizers first if ``bench_generation`` has not)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_prepack_memory.py

Result on the 2-core machine (2026-11-30, idle): off 2316 MB, on 2440 MB (packing each conv weight straight
from its fp32 weight; 2542 MB when the decode still held a dense bf16 copy of them as well).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(variant: str) -> dict:
    """Run one generation with prepacking ``on`` or ``off``; return its time and peak memory."""
    sys.path.insert(0, str(HERE))
    import bench_generation
    import terramind.tokenizers.image as image

    if variant == "off":
        image.prepacks = lambda device, dtype: False  # the decode's own name for it
    bench_generation.worker_files(["S1RTC"])
    bench_generation.WARMUP = 0
    result = bench_generation.worker_ours("terramind_v1_base", ["S1RTC"], 1, "auto")
    return {"variant": variant, "seconds": result["times"][0], "peak_mb": result["peak_mb"]}


def main() -> None:
    """Run both variants in fresh processes and print one JSON line each."""
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(sys.argv[2])))
        return
    for variant in ("off", "on"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", variant], check=True, capture_output=True, text=True
        ).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
