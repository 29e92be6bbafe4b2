"""Throughput of ``terramind batch generate`` on Ray vs ``terramind generate`` of the same scenes one by one.

Run it from the repository root (our package from ./src; needs the ``batch`` extra: ray, pyarrow)::

    python benchmarks/bench_batch.py --out benchmarks/batch_results.json
    # on a GPU machine:
    python benchmarks/bench_batch.py --device cuda --workers 1 --num-gpus-per-worker 1 \
        --model terramind_v1_base --scenes 4 --size 448 --tile 224 --overlap 32 --out batch_gpu.json

Scenes: ``--scenes`` crops of ``--size`` px from the example S2L2A tiles (mirrored to the size where the tile
is smaller), random weights (seeded: every worker builds the same model), output ``--to`` (LULC: no diffusion
decoder). Measured, each on the same scenes and options:

  single      ``terramind generate`` of each scene in its own process (what a user runs one by one): wall time
              per scene, model loading included
  inproc      the scene engine in one process with one generator (``generate_scene``, what a batch worker runs
              per scene), 2 threads: seconds per tile without loading: the baseline of the overhead
  batch 1x2   ``terramind.batch.run`` with 1 worker x 2 threads; per tile: the workers' scene seconds / tiles
  batch 2x1   2 workers x 1 thread each (skipped with ``--workers 1``, e.g. on a GPU)

Overhead at 1 worker = batch 1x2 seconds per tile / inproc seconds per tile - 1 (goal: <= 10 %). The batch's
end-to-end wall (Ray start, model load per worker, scheduling, results table) is reported beside it. With
``--device cuda`` it also samples the GPU's utilisation (``nvidia-smi``) while the batch runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # Ray workers too

TILES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]


def make_scenes(folder: Path, count: int, size: int) -> Path:
    """``count`` scenes of ``size`` px (example tiles, mirrored when smaller) and their manifest CSV."""
    import numpy as np
    import rasterio

    rows = []
    for i in range(count):
        name = TILES[i % len(TILES)]
        with rasterio.open(ROOT / "examples" / "S2L2A" / f"{name}.tif") as src:
            data, profile = src.read(), dict(src.profile)
        reps = -(-size // data.shape[1])
        data = np.concatenate([data, data[:, ::-1]] * reps, axis=1)[:, :size]
        data = np.concatenate([data, data[:, :, ::-1]] * reps, axis=2)[:, :, :size]
        profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256)
        path = folder / f"scene{i}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        rows.append(f"scene{i},{path}\n")
    manifest = folder / "scenes.csv"
    manifest.write_text("name,S2L2A\n" + "".join(rows))
    return manifest


def single(args: argparse.Namespace, manifest: Path, out: Path) -> list[float]:
    """Wall seconds of ``terramind generate`` per scene, each in its own process."""
    walls = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for line in manifest.read_text().splitlines()[1:]:
        name, path = line.split(",")
        argv = [sys.executable, "-m", "terramind.cli.main", "generate", "--input", f"S2L2A={path}",
                "-o", str(out / name), *common(args)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
    return walls


def common(args: argparse.Namespace) -> list[str]:
    return [
        "--to", args.to, "--model", args.model, "--weights", "random", "--tile", str(args.tile),
        "--overlap", str(args.overlap), "--batch-size", str(args.batch_size), "--device", args.device,
    ]  # fmt: skip


def job(args: argparse.Namespace):
    from terramind.batch import GenerateJob

    return GenerateJob(tuple(args.to.split(",")), args.model, "random", tile=args.tile, overlap=args.overlap,
                       batch_size=args.batch_size, device=args.device)  # fmt: skip


def inproc(args: argparse.Namespace, manifest: Path, out: Path) -> dict[str, float]:
    """The worker's code path without Ray: one generator, every scene through the engine."""
    import torch

    from terramind.batch import read_manifest

    torch.set_num_threads(args.threads)
    j = job(args)
    scenes = read_manifest(manifest)
    loaded = j.load(list(scenes[0].inputs))
    seconds, tiles = 0.0, 0
    for scene in scenes:
        done = j.run(loaded, scene, out / scene.name)
        seconds, tiles = seconds + done.seconds, tiles + done.tiles
    return {"seconds": seconds, "tiles": tiles, "s_per_tile": seconds / tiles}


def gpu_sampler(stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.5):
        try:
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            text = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
            samples.append(float(text.split()[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return


def batch(
    args: argparse.Namespace, manifest: Path, out: Path, workers: int, threads: int
) -> dict[str, float]:
    from terramind.batch import Cluster, run

    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=gpu_sampler, args=(stop, samples), daemon=True)
    if args.device.startswith("cuda"):
        sampler.start()
    start = time.perf_counter()
    report = run(job(args), manifest, out, cluster=Cluster(None, workers, threads, args.num_gpus_per_worker),
                 stac=False, progress=False)  # fmt: skip
    wall = time.perf_counter() - start
    stop.set()
    assert not report.failed, report.failed
    seconds, tiles = sum(r.seconds for r in report.records), sum(r.tiles for r in report.records)
    result = {"wall": wall, "tiles": tiles, "worker_seconds": seconds, "s_per_tile": seconds / tiles,
              "tiles_per_s_wall": tiles / wall}  # fmt: skip
    if samples:
        result["gpu_util_mean"] = sum(samples) / len(samples)
        result["gpu_util_max"] = max(samples)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--model", default="terramind_v1_tiny")
    p.add_argument("--to", default="LULC")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="threads of the single and in-process runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="1: only the 1-worker batch")
    p.add_argument("--num-gpus-per-worker", type=float, default=0.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    results: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_scenes(folder, args.scenes, args.size)
        walls = single(args, manifest, folder / "single")
        results["single"] = {"walls": walls, "total": sum(walls)}
        results["inproc"] = inproc(args, manifest, folder / "inproc")
        threads = 2 if args.device == "cpu" else 1
        results["batch_1x2"] = batch(args, manifest, folder / "b12", 1, threads)
        if args.workers > 1:
            results["batch_2x1"] = batch(args, manifest, folder / "b21", 2, 1)
    base = results["inproc"]["s_per_tile"]  # type: ignore[index]
    results["overhead_1_worker"] = results["batch_1x2"]["s_per_tile"] / base - 1  # type: ignore[index]
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
