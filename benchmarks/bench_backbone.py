"""Forward time and peak memory of our TerraMind backbone vs the reference (terratorch), same weights/inputs.

Run it with the reference venv (it imports terratorch; our package comes from ../src)::

    HF_HUB_OFFLINE=1 .peer-venv/bin/python benchmarks/bench_backbone.py --out benchmarks/backbone_results.json

Variants, timed interleaved (A B C ... A B C ...) in one process, 2 threads, median of the repeats:
  ours_fp32        our backbone, fp32 matmuls at full precision
  ref_fp32         the reference, fp32 matmuls at full precision
  ref_shipped      the reference as users get it: importing terratorch sets
                   torch.set_float32_matmul_precision("medium") (clay_v15/model.py), so its "fp32" matmuls
                   run with bf16 internals on CPUs with AVX512-BF16
  ours_bf16        our backbone with bf16 weights and activations (``backbone.to(torch.bfloat16)``)
  ref_bf16         the reference under torch.autocast("cpu", torch.bfloat16)
  ours_auto        our backbone as an inference command runs it by default: ``precision="auto"``
                   (build/precision.py; bf16 autocast on CPUs with avx512_bf16/amx_bf16, else fp32)
Times: wall-clock and process CPU time (user+sys of both threads) per forward; on a shared, oversubscribed
machine the CPU time is the steadier of the two. Peak memory: maxrss growth of one forward (batch 1, then
batch 8) in a fresh subprocess per variant, after the model is built.
Relative errors are ||y - y_ref_fp32|| / ||y_ref_fp32|| on the final (normed, mean-merged) layer.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

VARIANTS = ("ours_fp32", "ref_fp32", "ref_shipped", "ours_bf16", "ref_bf16", "ours_auto")


def build(size: str, seed: int = 0):
    """The reference backbone (S2L2A) with perturbed random weights, and ours loaded from its state dict."""
    from terratorch.registry import BACKBONE_REGISTRY

    from terramind.checkpoints.models import load_backbone_weights
    from terramind.model import CONFIGS, TerraMindBackbone

    torch.manual_seed(seed)
    ref = BACKBONE_REGISTRY.build(f"terratorch_terramind_v1_{size}", pretrained=False, modalities=["S2L2A"])
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for _, p in sorted(ref.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    ours = TerraMindBackbone(CONFIGS[f"terramind_v1_{size}"], ["S2L2A"])
    load_backbone_weights(ours, ref.state_dict(), "reference")
    ours_bf16 = TerraMindBackbone(CONFIGS[f"terramind_v1_{size}"], ["S2L2A"])
    load_backbone_weights(ours_bf16, ref.state_dict(), "reference")
    return ref.eval(), ours.eval(), ours_bf16.to(torch.bfloat16).eval()


def runners(ref, ours, ours_bf16, x):
    """One zero-argument callable per variant, each returning the last layer in fp32."""

    def at(precision, fn):
        def run():
            torch.set_float32_matmul_precision(precision)
            with torch.inference_mode():
                return fn()[-1].float()

        return run

    xb = x.to(torch.bfloat16)

    def ref_autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ref({"S2L2A": x})

    def ours_auto():
        from terramind.build.precision import autocast

        with autocast("auto", "cpu"):
            return ours({"S2L2A": x})

    return {
        "ours_auto": at("highest", ours_auto),
        "ours_fp32": at("highest", lambda: ours({"S2L2A": x})),
        "ref_fp32": at("highest", lambda: ref({"S2L2A": x})),
        "ref_shipped": at("medium", lambda: ref({"S2L2A": x})),
        "ours_bf16": at("highest", lambda: ours_bf16({"S2L2A": xb})),
        "ref_bf16": at("highest", ref_autocast),
    }


def time_interleaved(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU seconds per call, the variants called in turn (A B C A B C ...)."""
    for fn in fns.values():  # warm-up (allocator, oneDNN primitive caches)
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: statistics.median(v) for k, v in wall.items()}, {
        k: statistics.median(v) for k, v in cpu.items()
    }


def peak_memory_mb(size: str, batches: list[int], variant: str) -> dict[int, float]:
    """Maxrss growth (MB) of one forward per batch size (increasing), measured in a fresh process."""
    cmd = [sys.executable, __file__, "--memory-child", size, ",".join(map(str, batches)), variant]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(size: str, batches: str, variant: str) -> None:
    """Print the peak RSS growth (MB) of one forward per batch size.

    Building the models peaks higher than a forward, so the kernel's high-water mark (VmHWM) is reset
    (``/proc/self/clear_refs`` = 5) right before each forward, after returning freed heap pages to the OS.
    """
    torch.set_num_threads(2)
    libc = ctypes.CDLL("libc.so.6")
    ref, ours, ours_bf16 = build(size)
    peaks = {}
    for batch in map(int, batches.split(",")):
        fn = runners(ref, ours, ours_bf16, torch.randn(batch, 12, 224, 224))[variant]
        fn()  # first call allocates one-off caches (oneDNN primitives)
        libc.malloc_trim(0)  # give freed activations back to the OS, so the next forward must map them again
        Path("/proc/self/clear_refs").write_text("5")
        rss = _status_kb("VmRSS")
        fn()
        peaks[batch] = (_status_kb("VmHWM") - rss) / 1024
    print(json.dumps(peaks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,base")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=0, help="0: 15 for batch 1, 5 for batch 8")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--memory-child", nargs=3, metavar=("SIZE", "BATCHES", "VARIANT"))
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        ref, ours, ours_bf16 = build(size)
        batches = sorted(map(int, args.batches.split(",")))
        memory = {} if args.no_memory else {v: peak_memory_mb(size, batches, v) for v in VARIANTS}
        for batch in batches:
            x = torch.randn(batch, 12, 224, 224, generator=torch.Generator().manual_seed(batch))
            fns = runners(ref, ours, ours_bf16, x)
            truth = fns["ref_fp32"]()
            errors = {k: float((fn() - truth).norm() / truth.norm()) for k, fn in fns.items()}
            repeats = args.repeats or (15 if batch == 1 else 5)
            wall, cpu = time_interleaved(fns, repeats)
            peak = {v: m[batch] for v, m in memory.items()}
            row = dict(
                size=size, batch=batch, repeats=repeats, wall_s=wall, cpu_s=cpu, rel_err=errors, peak_mb=peak
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    torch.set_float32_matmul_precision("highest")
    result = dict(torch=torch.__version__, threads=args.threads, rows=rows)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
