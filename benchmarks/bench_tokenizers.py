"""Tokenizer speed: ours vs the reference (terratorch), interleaved in one process, 2 threads.

Run with the PEER venv (it has terratorch; our package is put on sys.path; terratorch is not our dependency):

    HF_HUB_OFFLINE=1 .peer-venv/bin/python benchmarks/bench_tokenizers.py [--repeats 3] [--out bench.json]

Both tokenizers are full-size S2L2A DiVAEs holding the same weights. Encode is timed at batch 1 and 4. The
decoder is timed per diffusion step (a 2-step decode, divided by 2; the scheduler step is negligible) and
extrapolated to 10 and 50 steps; one true 10-step decode at batch 1 checks the extrapolation. GFLOP/s come
from ``torch.utils.flop_counter`` on one UNet step. bf16 = ``torch.autocast("cpu", torch.bfloat16)`` around
the same calls, with its error against our fp32 decode of the same ids and noise.

Note: importing terratorch sets ``torch.set_float32_matmul_precision("medium")`` (bf16 matmuls on CPU); we set
"highest" so both run true fp32, and report the reference once more under its own import-time setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
warnings.simplefilter("ignore")

from terratorch.registry import FULL_MODEL_REGISTRY  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from terramind.checkpoints.tokenizers import load_image_tokenizer  # noqa: E402

IMPORT_PRECISION = torch.get_float32_matmul_precision()  # what terratorch's import left behind
SIZE = 224


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, alternating between them so drift hits all alike."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def bf16(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn()

    return run


def step_flops(ours: torch.nn.Module, batch: int) -> float:
    x = torch.randn(batch, 12, SIZE, SIZE)
    codes = torch.rand(batch, 5, SIZE // 16, SIZE // 16)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        ours.decoder(x, torch.tensor(999), codes)
    return float(counter.get_total_flops())


def gen() -> torch.Generator:
    """The reference's decode generator (peer_terratorch: seed + 3000)."""
    return torch.Generator().manual_seed(3000)


def bench_batch(ref: torch.nn.Module, ours: torch.nn.Module, batch: int, repeats: int) -> dict[str, object]:
    """Encode and per-step decode times, fp32 and bf16, at one batch size."""
    x = torch.randn(batch, 12, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ids = ours.encode(x)
    enc = interleave({"ref": lambda: ref.tokenize(x), "ours": lambda: ours.encode(x)}, repeats)
    dec = interleave(
        {
            "ref": lambda: ref.decode_tokens(ids, timesteps=2, generator=gen()),
            "ours": lambda: ours.decode(ids, steps=2, generator=gen()),
            "ref_bf16": bf16(lambda: ref.decode_tokens(ids, timesteps=2, generator=gen())),
            "ours_bf16": bf16(lambda: ours.decode(ids, steps=2, generator=gen())),
        },
        repeats,
    )
    flops = step_flops(ours, batch)
    per_step = {k: v / 2 for k, v in dec.items()}
    return {
        "encode_s": enc,
        "encode_speedup": enc["ref"] / enc["ours"],
        "decode_step_s": per_step,
        "decode_10_steps_s": {k: 10 * v for k, v in per_step.items()},
        "decode_50_steps_s": {k: 50 * v for k, v in per_step.items()},
        "step_gflop": flops / 1e9,
        "gflops_per_s": {k: flops / 1e9 / v for k, v in per_step.items()},
        "speedup_vs_ref_fp32": {k: per_step["ref"] / v for k, v in per_step.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)
    ref = FULL_MODEL_REGISTRY.build("terratorch_terramind_v1_tokenizer_s2l2a", pretrained=False).eval()
    with torch.no_grad():
        for p in ref.parameters():  # the reference init leaves the UNet output at exactly 0
            p.add_(torch.randn_like(p) * 0.02)
    path = Path("/tmp/bench_tokenizer_s2l2a.pt")
    torch.save(ref.state_dict(), path)
    ours = load_image_tokenizer("S2L2A", path)
    path.unlink()

    results: dict[str, object] = {"threads": 2, "import_precision": IMPORT_PRECISION, "size": SIZE}
    with torch.inference_mode():
        for batch in (1, 4):
            results[f"B{batch}"] = bench_batch(ref, ours, batch, args.repeats)
            print(json.dumps({f"B{batch}": results[f"B{batch}"]}, indent=1), flush=True)
        ids = ours.encode(torch.randn(1, 12, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
        full = interleave(
            {
                "ref": lambda: ref.decode_tokens(ids, timesteps=10, generator=gen()),
                "ours": lambda: ours.decode(ids, steps=10, generator=gen()),
            },
            1,
        )
        results["B1_decode_10_steps_measured_s"] = full
        fp32 = ours.decode(ids, steps=10, generator=gen())
        low = bf16(lambda: ours.decode(ids, steps=10, generator=gen()))()
        assert isinstance(low, torch.Tensor)
        results["bf16_vs_fp32_10_steps"] = {
            "max_abs": float((low.float() - fp32).abs().max()),
            "rmse": float((low.float() - fp32).pow(2).mean().sqrt()),
            "units": "standardized (x0 clipped to [-1, 1])",
        }
        torch.set_float32_matmul_precision(IMPORT_PRECISION)
        results["ref_import_precision_step_s"] = (
            interleave({"ref": lambda: ref.decode_tokens(ids, timesteps=2, generator=gen())}, 1)["ref"] / 2
        )
    print(json.dumps({k: results[k] for k in results if not k.startswith("B")}, indent=1))
    print(json.dumps({k: results[k] for k in ("B1_decode_10_steps_measured_s",)}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
