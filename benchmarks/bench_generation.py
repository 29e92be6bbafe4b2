"""Generation benchmark: ours vs the reference (terratorch), interleaved, one worker process per measurement.

Scenarios on one 224 px S2L2A tile (random weights, batch 1, 2 threads, the default sampling of both:
temperature 1, top-p 0.8, chained outputs):

- ``lulc``: S2L2A -> LULC (no diffusion);
- ``s1rtc``: S2L2A -> S1RTC with 10 diffusion steps;
- ``five``: S2L2A -> S1GRD, S1RTC, DEM, LULC, NDVI (10 diffusion steps; S2L2A is the input so it is not
  regenerated -- the reference would also keep the S2L2A tokenizer resident);
- per scenario, interleaved: ours with its defaults (``precision="auto"``: bf16 on CPUs with avx512_bf16 or
  amx_bf16), the reference as shipped, ours in true fp32 and the reference in true fp32; when ``auto`` chose
  bf16, its error against fp32 on the same tokens;
- the rates that bound them, measured in the same run (``rates`` worker): this CPU's matmul GFLOP/s in fp32
  and bf16 (2048^3, 2 threads) and one diffusion UNet step's GFLOP/s in each precision (FLOPs counted by
  ``torch.utils.flop_counter``), i.e. the fraction of the matmul rate the decoder reaches; with ``--profile``
  also where a step's time goes, per operator family (``torch.profiler``);
- ours on a 2240 x 2240 scene (S2L2A -> LULC, tiles 224, overlap 32, batch 4): tiles per second; other
  sizes with ``--scene-size WIDTHxHEIGHT``. Peak memory is set by the width (a strip of tile rows is held)
  and the weights, not by the height.

Ours reads its tokenizers from files, as a user with the released weights does: random tokenizers written
once to ``bench_results/random_tokenizers`` (5.3 GB for the five outputs). By default ours loads each output
decoder only while it decodes (this load is inside the timed call); the row "decoders kept" keeps them
resident, as the reference does. The reference builds random tokenizers in memory (outside the timed call).

Every measurement runs in a fresh process (``--worker``) so its peak memory (``ru_maxrss``) is its own; the
parent alternates ours and reference for each scenario. The reference runs with the matmul precision that
importing terratorch leaves ("medium", which lets oneDNN use bf16 on CPUs that have it) and, as a second row,
with "highest" (true fp32, like ours).

Usage::

    .venv/bin/python benchmarks/bench_generation.py [--model terramind_v1_base] [--repeats 2] [--scene]
        [--scenarios lulc,s1rtc,five] [--diffusion-steps 10] [--warmup 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = ROOT / "bench_results" / "random_tokenizers"
OURS_PY = Path(os.environ.get("BENCH_OURS_PY", ROOT / ".venv" / "bin" / "python"))
PEER_PY = Path(os.environ.get("BENCH_PEER_PY", ROOT / ".peer-venv" / "bin" / "python"))
SCENARIOS = {"lulc": ["LULC"], "s1rtc": ["S1RTC"], "five": ["S1GRD", "S1RTC", "DEM", "LULC", "NDVI"]}
DIFFUSION_STEPS = int(os.environ.get("BENCH_DIFFUSION_STEPS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "0"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tile():
    import torch

    return torch.rand(1, 12, 224, 224, generator=torch.Generator().manual_seed(0)) * 3000 + 200


def worker_files(outputs: list[str]) -> dict:
    """Write random tokenizers (seeded per modality) in the release's file layout, once."""
    import zlib

    import torch

    from terramind.api.tokenizers import create_tokenizer
    from terramind.checkpoints.tokenizers import TOKENIZERS

    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for modality in outputs:
        path = TOKENIZER_DIR / TOKENIZERS[modality].hub.filename
        if not path.exists():
            torch.manual_seed(zlib.crc32(modality.encode()))
            torch.save(create_tokenizer(modality).state_dict(), path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)
            written.append(modality)
    os.sync()  # no write-back of gigabytes during the timed runs that follow
    return {"written": written}


def worker_ours(model: str, outputs: list[str], repeats: int, precision: str, keep: bool = False) -> dict:
    import torch

    from terramind.api.generation import create_generator
    from terramind.generation import GenerationOptions

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    gen = create_generator(
        model, inputs=["S2L2A"], outputs=outputs, tokenizer_weights=TOKENIZER_DIR, keep_decoders=keep
    )
    build = time.perf_counter() - t0
    x, times = _tile(), []
    options = GenerationOptions(diffusion_steps=DIFFUSION_STEPS, precision=precision)
    for i in range(WARMUP):
        gen.generate({"S2L2A": x}, options, seed=i)
    for i in range(repeats):
        t0 = time.perf_counter()
        gen.generate({"S2L2A": x}, options, seed=i)
        times.append(time.perf_counter() - t0)
    from terramind.build.precision import resolve_precision

    chosen = resolve_precision(precision, "cpu").precision
    result = {"build_s": build, "times": times, "peak_mb": _peak_mb(), "precision": chosen}
    if chosen == "bf16":
        result["bf16_error"] = _bf16_error(gen, x)
    return result


def _bf16_error(gen, x) -> dict:
    """Greedy token agreement, and the decoders' relative error on identical tokens, bf16 vs fp32."""
    from terramind.generation import GenerationOptions

    greedy = GenerationOptions(temperature=0.0, precision="fp32")
    t32 = gen.generate_tokens({"S2L2A": x}, greedy, seed=0)
    t16 = gen.generate_tokens({"S2L2A": x}, greedy.replace(precision="bf16"), seed=0)
    agree = {k: float((t32[k] == t16[k]).float().mean()) for k in t32}
    errors = {}
    for precision in ("fp32", "bf16"):
        opts = GenerationOptions(diffusion_steps=DIFFUSION_STEPS, precision=precision)
        errors[precision] = gen.decode(t32, opts, standardize=False)
    rel = {
        k: float((errors["bf16"][k].double() - v.double()).norm() / v.double().norm().clamp_min(1e-12))
        for k, v in errors["fp32"].items()  # LULC comes back as class ids: compare as numbers
    }
    return {"token_agreement": agree, "decoded_rel_error": rel}


def worker_rates(repeats: int, profile: bool) -> dict:
    """Matmul and diffusion-step GFLOP/s in fp32 and bf16, interleaved; optionally a per-family profile."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from terramind.api.tokenizers import create_tokenizer

    torch.set_num_threads(2)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    tok = create_tokenizer("S1RTC", decode_only=True).eval()
    x, t, codes = torch.randn(1, 2, 224, 224), torch.tensor([999]), torch.rand(1, 5, 14, 14)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        tok.decoder(x, t, codes)
    step_flop = counter.get_total_flops()
    out: dict = {"step_gflop": step_flop / 1e9}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        matmul = functools.partial(torch.matmul, a.to(dtype), b.to(dtype))
        out[f"matmul_gflops_{precision}"] = 2 * 2048**3 / 1e9 / _median_call(matmul, 5)
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            step = functools.partial(
                tok._denoiser(codes, False), x, t
            )  # the decode's own step (weights cast once)
            seconds = _median_call(step, repeats)
            out[f"step_s_{precision}"] = seconds
            out[f"step_gflops_{precision}"] = step_flop / 1e9 / seconds
            if profile:
                out[f"profile_{precision}"] = _families(step)
        rate = out[f"matmul_gflops_{precision}"]
        out[f"step_fraction_{precision}"] = out[f"step_gflops_{precision}"] / rate
    return out


def _median_call(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


FAMILIES = ("convolution", "mkldnn", "conv", "addmm", "bmm", "mm", "attention", "group_norm", "silu", "cat",
            "copy_", "to", "add", "mul", "upsample", "clamp")  # fmt: skip


def _families(fn) -> dict:
    """Self CPU milliseconds of one call per operator family (first matching name fragment)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    totals: dict = {}
    for event in prof.key_averages():
        name = event.key.lower()
        family = next((f for f in FAMILIES if f in name), "other")
        totals[family] = totals.get(family, 0.0) + event.self_cpu_time_total / 1e3
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def worker_ref(model: str, outputs: list[str], repeats: int, precision: str) -> dict:
    import warnings

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from terratorch.registry import FULL_MODEL_REGISTRY  # importing terratorch sets "medium"

        torch.set_float32_matmul_precision(precision)
        t0 = time.perf_counter()
        net = FULL_MODEL_REGISTRY.build(
            f"terratorch_{model}_generate", pretrained=False, modalities=["S2L2A"], output_modalities=outputs,
            timesteps=DIFFUSION_STEPS, standardize=True,
        ).eval()  # fmt: skip
        build = time.perf_counter() - t0
        x, times = _tile(), []
        for _ in range(WARMUP):
            with torch.inference_mode():
                net({"S2L2A": x.clone()})
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.inference_mode():
                net({"S2L2A": x.clone()})
            times.append(time.perf_counter() - t0)
    return {"build_s": build, "times": times, "peak_mb": _peak_mb()}


def worker_scene(model: str, size: str, batch: int) -> dict:
    import numpy as np
    import rasterio
    import torch
    from affine import Affine
    from rasterio.windows import Window

    from terramind.api.generation import create_generator
    from terramind.generation.scene import generate_scene, generator_tile_fn
    from terramind.scene import SceneOutput, fill_values

    torch.set_num_threads(2)
    width, height = _scene_shape(size)
    gen = create_generator(model, inputs=["S2L2A"], outputs=["LULC"], tokenizer_weights=TOKENIZER_DIR)
    with tempfile.TemporaryDirectory(dir=ROOT / "bench_results") as tmp:
        path = Path(tmp) / "scene.tif"
        profile = dict(driver="GTiff", width=width, height=height, count=12, dtype="int16", crs="EPSG:32632",
                       transform=Affine(10, 0, 500000, 0, -10, 6000000), tiled=True)  # fmt: skip
        rng = np.random.default_rng(0)
        with rasterio.open(path, "w", **profile) as dst:
            for top in range(0, height, 256):  # in strips, so the input never sits whole in memory
                rows = min(256, height - top)
                data = rng.integers(0, 5000, (12, rows, width), dtype=np.int16)
                dst.write(data, window=Window(0, top, width, rows))
        outputs = [SceneOutput.for_modality("LULC", Path(tmp) / "LULC.tif")]
        counted = {"tiles": 0}

        def progress(total: int, done: int):
            counted["tiles"] = total
            return lambda n: None

        t0 = time.perf_counter()
        generate_scene(
            generator_tile_fn(gen, outputs, seed=0, keep_decoders=True), {"S2L2A": path}, outputs,
            work_dir=Path(tmp) / "work", batch=batch, fill=fill_values(["S2L2A"]), progress=progress,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
    return {"tiles": counted["tiles"], "seconds": elapsed, "tiles_per_s": counted["tiles"] / elapsed,
            "peak_mb": _peak_mb(), "width": width, "height": height}  # fmt: skip


def _scene_shape(size: str) -> tuple[int, int]:
    """``"2240"`` (square) or ``"10980x448"`` (width x height)."""
    width, _, height = size.partition("x")
    return int(width), int(height or width)


def run_worker(python: Path, *args: str) -> dict:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="terramind_v1_base")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scenarios", default="lulc,s1rtc,five")
    ap.add_argument("--scene", action="store_true", help="also time a whole scene (ours)")
    ap.add_argument("--scene-size", default="2240", help="N (square) or WIDTHxHEIGHT")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench_results" / "generation.json")
    ap.add_argument("--diffusion-steps", type=int, default=DIFFUSION_STEPS)
    ap.add_argument("--warmup", type=int, default=WARMUP, help="untimed runs before the timed ones")
    ap.add_argument("--rates", action="store_true", help="also measure matmul and diffusion-step GFLOP/s")
    ap.add_argument("--profile", action="store_true", help="with --rates: per-family profile of a step")
    ap.add_argument("--kept", action="store_true", help="five: also ours with the decoders kept resident")
    args = ap.parse_args()
    os.environ["BENCH_DIFFUSION_STEPS"], os.environ["BENCH_WARMUP"] = (
        str(args.diffusion_steps),
        str(args.warmup),
    )
    if args.worker:
        kind, *rest = args.worker
        if kind == "files":
            result = worker_files(rest[0].split(","))
        elif kind == "scene":
            result = worker_scene(rest[0], rest[1], int(rest[2]))
        elif kind == "rates":
            result = worker_rates(int(rest[0]), rest[1] == "profile")
        elif kind == "ref":
            result = worker_ref(rest[0], rest[1].split(","), int(rest[2]), rest[3])
        else:
            result = worker_ours(rest[0], rest[1].split(","), int(rest[2]), rest[3], kind == "ours-kept")
        print(json.dumps(result))
        return
    rows = []
    if args.rates:
        rates = run_worker(OURS_PY, "rates", "3", "profile" if args.profile else "-")
        rows.append({"scenario": "rates", "who": "ours", **rates})
        print("rates:", json.dumps(rates), flush=True)
    scenarios = [n for n in args.scenarios.split(",") if n] if args.repeats > 0 else []  # 0: scene only
    needed = {m for n in scenarios for m in SCENARIOS[n]} | ({"LULC"} if args.scene else set())
    if needed:  # none for --rates alone (--repeats 0 without --scene)
        print("tokenizer files:", run_worker(OURS_PY, "files", ",".join(sorted(needed))), flush=True)
    for name in scenarios:
        outs = ",".join(SCENARIOS[name])
        plan = [
            ("ours default (auto)", OURS_PY, "ours", "auto"),
            ("reference (as imported: medium)", PEER_PY, "ref", "medium"),
            ("ours fp32", OURS_PY, "ours", "fp32"),
            ("reference fp32 (highest)", PEER_PY, "ref", "highest"),
        ]
        if name == "five" and args.kept:
            plan.insert(1, ("ours fp32 (decoders kept)", OURS_PY, "ours-kept", "fp32"))
        for label, python, kind, precision in plan:
            result = run_worker(python, kind, args.model, outs, str(args.repeats), precision)
            result.update(scenario=name, who=label, median_s=statistics.median(result["times"]))
            rows.append(result)
            line = (
                f"{name:6s} {label:34s} median {result['median_s']:8.2f} s  peak {result['peak_mb']:8.0f} MB"
            )
            print(line, flush=True)
    if args.scene:
        result = run_worker(OURS_PY, "scene", args.model, str(args.scene_size), "4")
        result.update(scenario=f"scene {args.scene_size}", who="ours fp32")
        rows.append(result)
        rate = f"{result['tiles_per_s']:.2f} tiles/s"
        print(
            f"scene  {result['tiles']} tiles in {result['seconds']:.1f} s = {rate}, peak {result['peak_mb']:.0f} MB"  # noqa: E501
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": args.model, "threads": 2, "diffusion_steps": args.diffusion_steps, "warmup": args.warmup}
    args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    sys.exit(main())
