"""GPU throughput of our backbone and generator: eager and compiled, fp32 and bf16 (no reference on GPUs).

Random weights (the decoders perturbed so their outputs are not trivially zero), 224 px tiles, CUDA events
around each call after a warm-up (the warm-up of a compiled case includes the compilation, reported apart as
``first_call_s``), peak memory from the CUDA allocator. TF32 is off, so fp32 is true fp32. Cases run in
priority order within a wall-clock budget; the JSON is rewritten after every row, so a run cut short still
reports what it measured. It also counts host synchronisations of the diffusion decode loop (CUDA sync debug
mode, 10 vs 20 steps: the difference is what a step adds) and writes a short profile of the bf16 decode.

Usage (from the repository root, with the package importable)::

    PYTHONPATH=src python benchmarks/bench_gpu.py --out gpu.json
    PYTHONPATH=src python benchmarks/bench_gpu.py --device cpu --size tiny --tile 64 --batch 1  # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import torch

from terramind.api.generation import create_generator
from terramind.api.models import create_backbone
from terramind.generation import GenerationOptions
from terramind.generation.generate import Generator
from terramind.layers.compile import compile_module

SCENARIOS = {"LULC": ["LULC"], "S1RTC": ["S1RTC"], "five": ["S1GRD", "S1RTC", "DEM", "LULC", "NDVI"]}
# Most important first (the bf16-vs-fp32 goal is S1RTC at batch 8); compiled cases pay their
# compilation in the warm-up, so the costly ones come last. ("gen", scenario, precision, compiled),
# ("backbone", size, ...), ("syncs",) and ("profile", compiled) run in this order until the budget is spent.
CASES: list[tuple[Any, ...]] = [
    ("gen", "S1RTC", "fp32", False), ("gen", "S1RTC", "bf16", False), ("gen", "S1RTC", "bf16", True),
    ("gen", "LULC", "fp32", False), ("gen", "LULC", "bf16", False), ("syncs",), ("profile", False),
    ("profile", True), ("backbone", "tiny", "fp32", False), ("backbone", "tiny", "bf16", False),
    ("backbone", "base", "fp32", False), ("backbone", "base", "bf16", False), ("gen", "five", "fp32", False),
    ("gen", "five", "bf16", False), ("gen", "S1RTC", "fp32", True), ("backbone", "base", "bf16", True),
    ("gen", "five", "bf16", True),
]  # fmt: skip
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class Clock:
    """Median seconds per call: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        """Wait for queued GPU work."""
        if self.cuda:
            torch.cuda.synchronize()

    def first(self, fn: Callable[[], object]) -> float:
        """Wall seconds of one call (the warm-up, which compiles in compiled cases)."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def median(self, fn: Callable[[], object], repeats: int) -> float:
        """Median seconds of ``repeats`` further calls."""
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def peak_gb(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset (0 on the CPU)."""
    return torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def bench_backbone(args: argparse.Namespace, size: str, precision: str, compiled: bool) -> dict[str, Any]:
    """Backbone forward on S2L2A tiles, weights in the precision's dtype."""
    dev, dtype = torch.device(args.device), DTYPES[precision]
    model = create_backbone(f"terramind_v1_{size}", ["S2L2A"]).to(dev).to(dtype).eval()
    x = torch.randn(args.backbone_batch, 12, args.tile, args.tile, device=dev, dtype=dtype)
    run = compile_module(model, dev) if compiled else model
    clock = Clock(dev)
    reset_peak(dev)
    with torch.inference_mode():
        first = clock.first(lambda: run({"S2L2A": x}))
        seconds = clock.median(lambda: run({"S2L2A": x}), args.repeats)
    return row(f"backbone {size}", args.backbone_batch, precision, compiled, first, seconds, peak_gb(dev))


def make_generator(args: argparse.Namespace, scenario: str) -> Generator:
    """A generator with resident decoders, perturbed so that diffusion outputs are not exactly zero."""
    gen = create_generator(
        f"terramind_v1_{args.size}", inputs=["S2L2A"], outputs=SCENARIOS[scenario], keep_decoders=True
    ).to(args.device)
    torch.manual_seed(0)
    with torch.no_grad():
        for tokenizer in gen.tokenizers.values():
            if isinstance(tokenizer, torch.nn.Module):
                for p in tokenizer.parameters():
                    p.add_(torch.randn_like(p) * 0.02)
    return gen


def reflectance(args: argparse.Namespace) -> torch.Tensor:
    """Reflectance-like S2L2A input (DN 0-3000), the same in every case."""
    return torch.rand(args.batch, 12, args.tile, args.tile, generator=torch.Generator().manual_seed(0)) * 3000


def bench_generation(
    args: argparse.Namespace, gen: Generator, scenario: str, precision: str, compiled: bool
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Generate S2L2A -> the scenario's outputs (10 DDIM steps); returns the row and the last outputs."""
    dev = torch.device(args.device)
    x = reflectance(args)
    options = GenerationOptions(diffusion_steps=args.diffusion_steps, precision=precision, compile=compiled)
    out: dict[str, torch.Tensor] = {}

    def call() -> None:
        out.update(gen.generate({"S2L2A": x}, options, seed=0))

    clock = Clock(dev)
    reset_peak(dev)
    first = clock.first(call)
    seconds = clock.median(call, args.repeats)
    what = f"generate {args.size} S2L2A->" + ",".join(SCENARIOS[scenario])
    return row(what, args.batch, precision, compiled, first, seconds, peak_gb(dev)), out


def row(
    what: str, batch: int, precision: str, compiled: bool, first: float, seconds: float, peak: float
) -> dict[str, Any]:
    """One result row."""
    return {
        "what": what, "batch": batch, "precision": precision, "compiled": compiled, "first_call_s": first,
        "s_per_call": seconds, "tiles_per_s": batch / seconds, "peak_gb": peak,
    }  # fmt: skip


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (0 when both are all zero)."""
    scale = float(b.float().abs().max())
    return float((a.float() - b.float()).abs().max()) / scale if scale else 0.0


def differences(out: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per output: relative error of images, fraction of differing pixels of class maps."""
    return {
        k: relative_error(v, base[k]) if v.is_floating_point() else float((v != base[k]).float().mean())
        for k, v in out.items()
    }


def count_decode_syncs(args: argparse.Namespace, gen: Generator, steps: int) -> int:
    """Host synchronisations during one bf16 decode of ``steps`` DDIM steps (CUDA sync debug mode)."""
    tokens = gen.generate_tokens({"S2L2A": reflectance(args)}, GenerationOptions(precision="bf16"), seed=0)
    options = GenerationOptions(diffusion_steps=steps, precision="bf16", compile=False)
    gen.decode(tokens, options)  # warm-up outside the count
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            gen.decode(tokens, options)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def profile_decode(args: argparse.Namespace, gen: Generator, compiled: bool) -> dict[str, Any]:
    """Device vs host time of one bf16 generate call and its top operators by device time."""
    from torch.profiler import ProfilerActivity, profile

    x = reflectance(args)
    options = GenerationOptions(diffusion_steps=args.diffusion_steps, precision="bf16", compile=compiled)
    gen.generate({"S2L2A": x}, options, seed=0)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof:
        gen.generate({"S2L2A": x}, options, seed=0)
        torch.cuda.synchronize()
    events = prof.key_averages()
    top = sorted(events, key=lambda e: e.self_device_time_total, reverse=True)[:15]
    return {
        "compiled": compiled,
        "device_ms": sum(e.self_device_time_total for e in events) / 1e3,
        "host_ms": sum(e.self_cpu_time_total for e in events) / 1e3,
        "top": [{"op": e.key, "device_ms": e.self_device_time_total / 1e3, "calls": e.count} for e in top],
    }


class Report:
    """Rows and checks, rewritten to the JSON file after each addition."""

    def __init__(self, path: str | None, device: torch.device) -> None:
        self.path = path
        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        self.data: dict[str, Any] = {"device": name, "torch": torch.__version__, "rows": [], "checks": {}}

    def add_row(self, r: dict[str, Any]) -> None:
        """Record and print one row."""
        self.data["rows"].append(r)
        print(json.dumps(r), flush=True)
        self.save()

    def check(self, name: str, value: object) -> None:
        """Record and print one check."""
        self.data["checks"][name] = value
        print(f"{name}: {json.dumps(value)}", flush=True)
        self.save()

    def save(self) -> None:
        """Write the JSON file (if one was asked for)."""
        if self.path:
            with open(self.path, "w") as fh:
                json.dump(self.data, fh, indent=1)

    def table(self) -> str:
        """The rows as a markdown table."""
        lines = ["| what | batch | precision | compiled | first call s | s/call | tiles/s | peak GB |",
                 "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r['what']} | {r['batch']} | {r['precision']} | {'yes' if r['compiled'] else 'no'} | "
            f"{r['first_call_s']:.2f} | {r['s_per_call']:.4f} | {r['tiles_per_s']:.1f} | {r['peak_gb']:.2f} |"
            for r in self.data["rows"]
        ]
        return "\n".join(lines)


class Runner:
    """Runs the cases, keeping one generator per scenario and each case's outputs for the comparisons."""

    def __init__(self, args: argparse.Namespace, report: Report) -> None:
        self.args, self.report = args, report
        self.generators: dict[str, Generator] = {}
        self.outputs: dict[tuple[str, str, bool], dict[str, torch.Tensor]] = {}

    def wanted(self, case: tuple[Any, ...]) -> bool:
        """Whether the command line asks for this case."""
        args, kind = self.args, case[0]
        cuda_only = kind in ("syncs", "profile") and args.device != "cuda"
        compiled = (kind == "profile" and case[1]) or (kind in ("gen", "backbone") and case[3])
        if cuda_only or (compiled and args.no_compile):
            return False
        if kind == "gen":
            return bool(case[1] in args.scenarios)
        if kind == "backbone":
            return bool(case[1] in args.backbones)
        return "S1RTC" in args.scenarios

    def generator(self, scenario: str) -> Generator:
        """The scenario's generator, built on first use."""
        if scenario not in self.generators:
            self.generators[scenario] = make_generator(self.args, scenario)
        return self.generators[scenario]

    def run(self, case: tuple[Any, ...]) -> None:
        """Run one case and report it."""
        args, report, kind = self.args, self.report, case[0]
        if kind == "backbone":
            report.add_row(bench_backbone(args, *case[1:]))
        elif kind == "syncs":
            gen = self.generator("S1RTC")
            report.check(
                "decode host syncs (10 steps, 20 steps)", [count_decode_syncs(args, gen, n) for n in (10, 20)]
            )
        elif kind == "profile":
            report.check(
                f"profile bf16 S1RTC compiled={case[1]}",
                profile_decode(args, self.generator("S1RTC"), case[1]),
            )
        else:
            self.generation(*case[1:])

    def generation(self, scenario: str, precision: str, compiled: bool) -> None:
        """Time one generation case; compare its outputs with eager fp32 and eager in its precision."""
        r, out = bench_generation(self.args, self.generator(scenario), scenario, precision, compiled)
        self.report.add_row(r)
        self.outputs[(scenario, precision, compiled)] = {k: v.clone() for k, v in out.items()}
        for base in ((scenario, "fp32", False), (scenario, precision, False)):
            if base != (scenario, precision, compiled) and base in self.outputs:
                name = f"{scenario} {precision} compiled={compiled} vs {base[1]} eager"
                self.report.check(f"difference: {name}", differences(out, self.outputs[base]))


def main() -> None:
    """Run every case and print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="base", help="model size of the generator (tiny for a CPU smoke test)")
    ap.add_argument("--tile", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8, help="tiles per generation call")
    ap.add_argument("--backbone-batch", type=int, default=64)
    ap.add_argument("--diffusion-steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--backbones", nargs="*", default=["tiny", "base"])
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled cases")
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting new cases after this")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    deadline = time.perf_counter() + args.budget_s
    report = Report(args.out, device)
    runner = Runner(args, report)
    for case in filter(runner.wanted, CASES):
        if time.perf_counter() > deadline:
            report.check(f"skipped {' '.join(map(str, case))}", "budget spent")
            continue
        try:
            runner.run(case)
        except Exception as err:  # one broken case must not cost the others their device time
            traceback.print_exc()
            report.check(f"error {' '.join(map(str, case))}", f"{type(err).__name__}: {err}"[:1000])
    print(f"device: {report.data['device']}, torch {torch.__version__}")
    print(report.table())


if __name__ == "__main__":
    main()
