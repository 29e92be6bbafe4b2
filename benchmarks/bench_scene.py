"""Per-tile cost of the scene sources; peak memory of a 10980 px wide band-files scene read strip by strip.

Run (writes its fixtures to a temporary folder; with --side 1020 about 5-10 min on 2 busy cores)::

    PYTHONPATH=src python benchmarks/bench_scene.py --side 1020 --repeats 2 --out scene_results.json

Part 1, per-tile cost, one process, interleaved repeats (A B C D A B C D ...), median: the same S2L2A scene
(``--side`` px, the example tile mirrored) run through :func:`terramind.scene.run_scene` with the tiny random
generator of the tests (LULC, 224 px tiles, 32 px overlap, batch 4, COG output), read as

  stacked        one 12-band GeoTIFF (the reference path)
  band_files     12 single-band GeoTIFFs at 10/20/60 m (20/60 m resampled bilinearly, strip by strip)
  pair_stacked   the stacked S2L2A plus an S1RTC on the same grid (two inputs, no warp)
  pair_warped    the stacked S2L2A plus an S1RTC at 20 m on the neighbouring UTM zone, warped window by window

band_files is compared with stacked, pair_warped with pair_stacked (same inputs, only the warp differs).
Reported: CPU seconds (user+sys of the process) and wall seconds per tile.

Part 2, memory, in a fresh subprocess: a 10980 x 10980 px S2L2A scene as band files (4 at 10 m, 6 at 20 m,
2 at 60 m; deflate-compressed tiled GeoTIFFs of a smooth field, so the fixture is small on disk) read with the
engine's read+tile+blend path (:func:`terramind.scene.run_tiles`) and a cheap tile function (the mean of the
bands; no model), every strip of the full width; peak RSS (ru_maxrss) is reported. The model's own memory
is the weights plus one batch of tiles, independent of the scene size.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "generation"))

EXAMPLE = ROOT / "examples" / "S2L2A" / "38D_378R_2_3.tif"
IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")  # catalog order
RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B01": 60, "B09": 60}  # the rest are 20 m
CRS, OTHER = "EPSG:32632", "EPSG:32633"
ORIGIN = (600_000.0, 5_000_000.0)
SIDE = 2040  # a multiple of 6 (60 m bands cover it exactly), about 2048
BIG = 10980  # a Sentinel-2 tile's width at 10 m


def _write(path: Path, data: np.ndarray, crs: str, transform: Affine, **extra: object) -> Path:
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=str(data.dtype), crs=crs, transform=transform, tiled=True, blockxsize=256,
                   blockysize=256, **extra)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _scene(side: int) -> np.ndarray:
    with rasterio.open(EXAMPLE) as src:
        tile = src.read()
    reps = -(-side // tile.shape[1])
    return np.tile(np.concatenate([tile, tile[:, ::-1]], axis=1), (1, reps, reps))[:, :side, :side]


def _band_files(folder: Path, data: np.ndarray, transform: Affine, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    side = data.shape[1]
    for i, band in enumerate(IDS):
        k = RES.get(band, 20) // 10
        coarse = data[i].reshape(side // k, k, side // k, k).mean(axis=(1, 3)).astype(data.dtype)
        _write(
            folder / f"T32TXX_{band}_{k * 10}m.tif", coarse[None], CRS, transform * Affine.scale(k), **extra
        )
    return folder


def _s1(folder: Path, side: int, transform: Affine) -> tuple[Path, Path]:
    """S1RTC on the S2 grid, and the same at 20 m on the neighbouring UTM zone."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    vv = -15 + 5 * np.sin(x / 50) * np.cos(y / 50)
    s1 = np.stack([vv, vv - 6]).astype(np.float32)
    same = _write(folder / "s1_same.tif", s1, CRS, transform)
    dst_t, w, h = calculate_default_transform(
        CRS, OTHER, side, side, *_bounds(transform, side), resolution=20
    )
    out = np.full((2, h, w), np.nan, np.float32)
    reproject(s1, out, src_transform=transform, src_crs=CRS, dst_transform=dst_t, dst_crs=OTHER,
              resampling=Resampling.bilinear, dst_nodata=np.nan)  # fmt: skip
    other = _write(folder / "s1_other.tif", out, OTHER, dst_t, nodata=np.nan)
    return same, other


def _bounds(transform: Affine, side: int) -> tuple[float, float, float, float]:
    left, top = transform.c, transform.f
    return left, top - side * 10.0, left + side * 10.0, top


def _tile_fn():  # type: ignore[no-untyped-def]
    import tiny  # tests/generation/tiny.py

    from terramind.generation.scene import generator_tile_fn
    from terramind.scene import SceneOutput

    cache: dict[tuple[str, ...], object] = {}

    def make(inputs: Sequence[str]):  # type: ignore[no-untyped-def]
        key = tuple(inputs)
        if key not in cache:
            generator = tiny.tiny_generator(list(inputs), ["LULC"])
            generator.keep_loaded()
            out = [SceneOutput.for_modality("LULC", Path("LULC.tif"))]
            cache[key] = generator_tile_fn(generator, out, seed=0)
        return cache[key]

    return make


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(case: Mapping[str, object], work: Path, make) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    from terramind.scene import GeoTiffSink, SceneOutput, TileLayout, fill_values, run_scene, scene_source

    inputs = case["inputs"]
    out = work / "out"
    out.mkdir(exist_ok=True)
    fn = make(list(inputs))  # type: ignore[arg-type]
    t0, c0 = time.perf_counter(), _cpu()
    source = scene_source(inputs)  # type: ignore[arg-type]
    layout = TileLayout(source.georef.height, source.georef.width, 224, 32)
    sink = GeoTiffSink([SceneOutput.for_modality("LULC", out / "LULC.tif")])
    run_scene(fn, source, [sink], layout, out / ".work", fill=fill_values(list(inputs)), batch=4,  # type: ignore[arg-type]
              overwrite=True)  # fmt: skip
    return time.perf_counter() - t0, _cpu() - c0, layout.num_tiles


def per_tile(work: Path, repeats: int, side: int = SIDE) -> dict[str, dict[str, float]]:
    """Part 1: interleaved runs of the four cases; median seconds per tile."""
    transform = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    data = _scene(side)
    stacked = _write(work / "stacked.tif", data, CRS, transform)
    bands = _band_files(work / "bands", data, transform)
    same, other = _s1(work, side, transform)
    cases = {
        "stacked": {"inputs": {"S2L2A": stacked}},
        "band_files": {"inputs": {"S2L2A": bands}},
        "pair_stacked": {"inputs": {"S2L2A": stacked, "S1RTC": same}},
        "pair_warped": {"inputs": {"S2L2A": stacked, "S1RTC": other}},
    }
    make = _tile_fn()
    for case in cases.values():  # warm-up: model built, files in the page cache
        _run(case, work, make)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    tiles = 0
    for _ in range(repeats):
        for name, case in cases.items():
            wall, cpu, tiles = _run(case, work, make)
            times[name].append((wall / tiles, cpu / tiles))
            print(f"{name}: {wall / tiles * 1000:.1f} ms/tile wall, {cpu / tiles * 1000:.1f} ms/tile cpu",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {
        name: {
            "wall_s_per_tile": statistics.median(w for w, _ in t),
            "cpu_s_per_tile": statistics.median(c for _, c in t),
            "tiles": tiles,
        }
        for name, t in times.items()
    }


def memory(work: Path) -> dict[str, float]:
    """Part 2 (run in a fresh process): peak RSS reading a 10980 px wide band-files scene strip by strip."""
    from terramind.scene import BandFilesSource, TileLayout, run_tiles

    transform = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    folder = work / "big"
    folder.mkdir()
    row = (1000 + 500 * np.sin(np.arange(BIG) / 300)).astype(np.uint16)
    for band in IDS:
        k = RES.get(band, 20) // 10
        n = BIG // k
        layer = np.broadcast_to(row[: n * k : k][None, :], (n, n)).copy()[None]
        _write(
            folder / f"T32TXX_{band}_{k * 10}m.tif",
            layer,
            CRS,
            transform * Affine.scale(k),
            compress="deflate",
        )
        del layer
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    source = BandFilesSource.from_folder("S2L2A", folder)
    layout = TileLayout(BIG, BIG, 224, 32)

    def mean_of_bands(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        return {"out": tiles["S2L2A"].mean(axis=1, keepdims=True)}

    class Null:
        rows = 0

        def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
            Null.rows += valid.shape[0]

    t0 = time.perf_counter()
    fill = {"S2L2A": np.zeros(12, np.float32)}
    run_tiles(layout, source, mean_of_bands, Null(), channels={"out": 1}, fill=fill, batch=4)
    assert Null.rows == BIG, Null.rows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"width": BIG, "height": BIG, "tiles": layout.num_tiles, "seconds": time.perf_counter() - t0,
            "peak_rss_mib": peak, "rss_before_read_mib": base}  # fmt: skip


def main() -> None:
    """Run both parts and print (and optionally write) the results as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--side", type=int, default=SIDE, help="scene side in px (a multiple of 6)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)  # the subprocess
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scene-") as folder:
        if args.memory_only:
            print(json.dumps(memory(Path(folder))))
            return
        results: dict[str, object] = {"per_tile": per_tile(Path(folder), args.repeats, args.side)}
    done = subprocess.run(
        [sys.executable, __file__, "--memory-only"], capture_output=True, text=True, check=True
    )
    results["memory"] = json.loads(done.stdout.strip().splitlines()[-1])
    t = results["per_tile"]
    assert isinstance(t, dict)
    results["overhead"] = {
        "band_files_vs_stacked_cpu": t["band_files"]["cpu_s_per_tile"] / t["stacked"]["cpu_s_per_tile"] - 1,
        "warped_vs_same_grid_cpu": t["pair_warped"]["cpu_s_per_tile"] / t["pair_stacked"]["cpu_s_per_tile"]
        - 1,
        "band_files_vs_stacked_wall": t["band_files"]["wall_s_per_tile"] / t["stacked"]["wall_s_per_tile"]
        - 1,
        "warped_vs_same_grid_wall": t["pair_warped"]["wall_s_per_tile"] / t["pair_stacked"]["wall_s_per_tile"]
        - 1,
    }
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
