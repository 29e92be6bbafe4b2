"""onnxruntime vs eager on this CPU: exported backbone (tiny, base) and diffusion decoder step, interleaved.

Each part is exported to ONNX with :func:`terramind.api.export.export` (random weights, 224 px, batch 1; the
export checks the file against eager before publishing it), then timed on the same input in one process,
rounds rotating the order of:

- ``eager_fp32``: the eager module in fp32 (``--precision fp32``, the parity path);
- ``eager_auto``: what ``precision="auto"`` runs here (:func:`terramind.build.precision.resolve_precision`:
  bf16 autocast on CPUs with avx512_bf16/amx_bf16); the decoder step as the decode runs it (weights cast to
  bf16 once, channels-last, convolutions prepacked after the first call);
- ``ort``: onnxruntime's CPU execution provider on the exported fp32 graph (all graph optimisations,
  ``intra_op_num_threads`` = ``--threads``, pool threads not spinning between runs).

Reported per part: median wall and CPU milliseconds of each, per-round speedups of ort over each eager
variant, and the relative error against eager fp32 (max abs difference over max magnitude). The question it
answers (issue 16): would onnxruntime beat what ``auto`` does? It is not wired in.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_export.py [--parts tiny,base,step] [--rounds 7]
        [--threads 2] [--json benchmarks/export_results.json]

Results (``export_results.json``; AMD EPYC, 2 cores with avx512_bf16, torch 2.13, onnxruntime CPU EP, 2
threads, a quiet spell: load average 0.5-1.4), median ms eager_fp32 / eager_auto (bf16) / ort:

=====  =========  ==========  =====  ===============  ===============  ==================================
part   fp32       auto        ort    ort vs fp32      ort vs auto      relative error ort / auto vs fp32
=====  =========  ==========  =====  ===============  ===============  ==================================
tiny   24.7       19.0        25.4   0.98x            0.73x            <1e-6 / 4.3e-3
base   281        140         208    1.36x            0.68x            <1e-6 / 5.8e-3
step   996        486         896    1.11x            0.54x            2.2e-6 / 1.0e-2
=====  =========  ==========  =====  ===============  ===============  ==================================

Verdict: onnxruntime runs the exported graphs in fp32 (its CPU EP has no bf16 matmuls) and beats eager fp32
by up to 1.36x (base backbone), but loses to what ``precision="auto"`` runs here by 1.4-1.9x: keep eager.
On a CPU without native bf16 (auto = fp32) onnxruntime would be the faster engine for the base backbone.
Under heavy load (3-4 on 2 cores) the 2-thread comparison is meaningless -- torch's per-operator thread
synchronisation suffers far more from an oversubscribed machine than onnxruntime's larger kernels (ort
measured 3-4x faster than eager then) -- so rerun it idle.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PARTS = {  # name -> (export part, model, modality)
    "tiny": ("backbone", "terramind_v1_tiny", "S2L2A"),
    "base": ("backbone", "terramind_v1_base", "S2L2A"),
    "step": ("decoder-step", "terramind_v1_base", "S1RTC"),
}


def _eager_auto(built: Any, part: str) -> Callable[[], Any]:
    """The call ``precision="auto"`` makes on this CPU (fp32 where auto resolves to fp32)."""
    from torch.func import functional_call

    from terramind.build.precision import resolve_precision
    from terramind.tokenizers.image import _cast_weights
    from terramind.tokenizers.unet import PrepackedUNet, channels_last, prepacks

    choice = resolve_precision("auto", "cpu")
    if choice.dtype is None:
        return functools.partial(built.module, *built.inputs)
    if part == "decoder-step":  # the decode's own step: weights cast once per decode (tokenizers/image.py)
        unet = built.module.unet
        with torch.autocast("cpu", dtype=choice.dtype):  # as the decode casts them: inside autocast
            weights = _cast_weights(unet, choice.dtype, channels_last=channels_last("cpu"))
            packed = prepacks("cpu", choice.dtype)
        call = functools.partial(PrepackedUNet(unet, weights) if packed else functional_call, *(
            built.inputs if packed else (unet, weights, built.inputs)))  # fmt: skip
    else:
        call = functools.partial(built.module, *built.inputs)

    def run() -> Any:
        with torch.autocast("cpu", dtype=choice.dtype):
            return call()

    return run


def _ort(path: Path, built: Any, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # onnxruntime's pool threads spin after each run by default: interleaved with eager calls on a 2-core
    # machine they would steal the eager call's cores (and deployment would not run two engines at once)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {n: x.numpy() for n, x in zip(built.input_names, built.inputs, strict=True)}
    return lambda: session.run(list(built.output_names), feeds)


def measure(name: str, rounds: int, threads: int, folder: Path) -> dict[str, Any]:
    """Export one part and time its three runners, interleaved."""
    from terramind.api.export import build_part, export

    part, model, modality = PARTS[name]
    path = folder / f"{name}.onnx"
    t0 = time.perf_counter()
    report = export(part, "onnx", path, model=model, modality=modality, repeats=1)
    export_s = time.perf_counter() - t0
    built = build_part(part, model, None, modality, 224, 1)  # the same seeded weights and inputs
    calls = {
        "eager_fp32": functools.partial(built.module, *built.inputs),
        "eager_auto": _eager_auto(built, part),
        "ort": _ort(path, built, threads),
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}  # process CPU seconds (both threads)
    with torch.inference_mode():
        outs = {k: c() for k, c in calls.items()}  # warm-up, and the outputs compared below
        order = list(calls)
        for i in range(rounds):
            for k in order[i % 3 :] + order[: i % 3]:  # rotate: no runner always first
                start, cpu0 = time.perf_counter(), time.process_time()
                calls[k]()
                times[k].append(time.perf_counter() - start)
                cpu[k].append(time.process_time() - cpu0)
    ref = outs["eager_fp32"]
    ref = ref if isinstance(ref, torch.Tensor) else ref[0]
    ort0 = torch.from_numpy(outs["ort"][0])
    auto0 = outs["eager_auto"] if isinstance(outs["eager_auto"], torch.Tensor) else outs["eager_auto"][0]
    scale = float(ref.abs().max())
    return {
        "part": part,
        "model": model,
        "modality": modality,
        "export_s": export_s,
        "file_mb": report.size_bytes / 1e6,
        "median_ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
        "median_cpu_ms": {k: statistics.median(v) * 1e3 for k, v in cpu.items()},
        "times_ms": {k: [round(x * 1e3, 2) for x in v] for k, v in times.items()},
        "ort_speedup_vs": {
            k: statistics.median(a / b for a, b in zip(times[k], times["ort"], strict=True))
            for k in ("eager_fp32", "eager_auto")
        },
        "rel_error_vs_eager_fp32": {
            "ort": float((ort0 - ref).abs().max()) / scale,
            "eager_auto": float((auto0.float() - ref).abs().max()) / scale,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="tiny,base,step", help=f"comma-separated of {', '.join(PARTS)}")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from terramind.build.precision import resolve_precision

    result: dict[str, Any] = {
        "threads": args.threads,
        "torch": torch.__version__,
        "auto": resolve_precision("auto", "cpu").precision,
        "loadavg_before": os.getloadavg(),
        "parts": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts.split(","):
            result["parts"][name] = measure(name, args.rounds, args.threads, Path(tmp))
            print(name, json.dumps({k: v for k, v in result["parts"][name].items() if k != "times_ms"}),
                  flush=True)  # fmt: skip
    result["loadavg_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
