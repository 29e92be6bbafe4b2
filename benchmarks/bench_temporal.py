"""Time and peak memory per sample of a frozen base encoder over T = 1, 4, 8 dates: ours vs the reference.

Ours: :class:`terramind.finetune.temporal.TemporalBackbone` (``mean`` aggregator, ``freeze_encoder=True``)
over :class:`terramind.finetune.Backbone` ``terramind_v1_base`` on S2L2A. Reference: terratorch's
``TemporalWrapper(pooling="mean")`` over its ``terratorch_terramind_v1_base`` backbone, frozen
(``requires_grad_(False)``), run in the peer venv. Both get the same random weights (the reference's, saved
and loaded by ours) and the same input ``(1, 12, T, 224, 224)``; the relative difference of the final layer
is reported as a check that both compute the same thing.

Run from the project root with our venv (the reference part runs as a subprocess of the peer venv)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_temporal.py --out benchmarks/temporal_results.json

Each (implementation, T) runs in a fresh process that builds the model once, warms up, then times
``--repeats`` forwards (median wall and process-CPU seconds, 2 threads) and measures the peak RSS growth of
one forward (``VmHWM`` reset just before it, as benchmarks/bench_backbone.py does). The processes alternate
(ref T=1, ours T=1, ref T=4, ...) and the whole sweep runs ``--rounds`` times, so drift of this shared
machine hits both alike; the table takes the median over rounds. Batch 1: time per forward = per sample.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = Path("/work/main/.peer-venv/bin/python")
SIZE = 224


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build_ref(work: Path):  # type: ignore[no-untyped-def]
    import torch
    from terratorch.models.utils import TemporalWrapper
    from terratorch.registry import BACKBONE_REGISTRY

    torch.manual_seed(0)
    encoder = BACKBONE_REGISTRY.build("terratorch_terramind_v1_base", pretrained=False, modalities=["S2L2A"])
    weights = work / "ref_base.pt"
    if not weights.exists():
        torch.save(encoder.state_dict(), weights)
    encoder.requires_grad_(False).eval()
    model = TemporalWrapper(encoder, pooling="mean")
    return lambda x: model({"S2L2A": x})


def _build_ours(work: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "src"))
    from terramind.finetune.backbone import Backbone
    from terramind.finetune.temporal import TemporalBackbone

    encoder = Backbone("terramind_v1_base", ["S2L2A"], weights=str(work / "ref_base.pt"))
    model = TemporalBackbone(encoder, "mean", freeze_encoder=True).eval()
    return lambda x: model({"S2L2A": x})


def child(impl: str, steps: int, repeats: int, work: Path) -> None:
    """Build one implementation, time it on ``(1, 12, steps, 224, 224)`` and print a JSON row."""
    import torch

    torch.set_num_threads(2)
    libc = ctypes.CDLL("libc.so.6")
    fn = (_build_ref if impl == "ref" else _build_ours)(work)
    # importing terratorch sets "medium" (bf16 matmul internals on CPUs that have them): compare exact fp32
    torch.set_float32_matmul_precision("highest")
    inputs = work / f"x_T{steps}.pt"
    if not inputs.exists():
        torch.save(
            torch.randn(1, 12, steps, SIZE, SIZE, generator=torch.Generator().manual_seed(steps)), inputs
        )
    x = torch.load(inputs)
    out = fn(x)[-1]  # warm-up: oneDNN primitive caches, allocator
    torch.save(out, work / f"out_{impl}_T{steps}.pt")
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    rss = _status_kb("VmRSS")
    fn(x)
    peak_mb = (_status_kb("VmHWM") - rss) / 1024
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"impl": impl, "T": steps, "wall_s": statistics.median(wall),
                      "cpu_s": statistics.median(cpu), "peak_mb": peak_mb}))  # fmt: skip


def _run(impl: str, steps: int, repeats: int, work: Path) -> dict:
    python = str(PEER_PYTHON) if impl == "ref" else sys.executable
    cmd = [python, __file__, "--child", impl, str(steps), str(repeats), str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if done.returncode:
        raise SystemExit(f"{impl} T={steps} failed:\n{done.stderr[-3000:]}")
    row: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="1,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=4, metavar=("IMPL", "T", "REPEATS", "WORK"))
    args = ap.parse_args()
    if args.child:
        impl, steps, repeats, work = args.child
        child(impl, int(steps), int(repeats), Path(work))
        return
    import torch

    rows: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for _ in range(args.rounds):
            for steps in map(int, args.steps.split(",")):
                for impl in ("ref", "ours"):  # ref first: it writes the weights and the input
                    row = _run(impl, steps, args.repeats, work)
                    rows.setdefault((impl, steps), []).append(row)
                    print(json.dumps(row), flush=True)
        errors = {}
        for steps in map(int, args.steps.split(",")):
            ref, ours = (torch.load(work / f"out_{i}_T{steps}.pt") for i in ("ref", "ours"))
            errors[steps] = float((ours - ref).norm() / ref.norm())
    table = []
    for steps in map(int, args.steps.split(",")):
        line = {"T": steps, "rel_diff": errors[steps]}
        for impl in ("ours", "ref"):
            runs = rows[(impl, steps)]
            for key in ("wall_s", "cpu_s", "peak_mb"):
                line[f"{impl}_{key}"] = statistics.median(r[key] for r in runs)
        table.append(line)
    header = ["T", "ours s/sample (wall, cpu)", "reference s/sample (wall, cpu)", "ours peak MB",
              "reference peak MB", "rel. diff"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for r in table:
        cells = [str(r["T"]), f"{r['ours_wall_s']:.2f}, {r['ours_cpu_s']:.2f}",
                 f"{r['ref_wall_s']:.2f}, {r['ref_cpu_s']:.2f}", f"{r['ours_peak_mb']:.0f}",
                 f"{r['ref_peak_mb']:.0f}", f"{r['rel_diff']:.1e}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"torch": torch.__version__, "threads": 2, "rows": table}, indent=1)
        )


if __name__ == "__main__":
    main()
