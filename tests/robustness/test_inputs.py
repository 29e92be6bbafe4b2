"""Bad inputs through the CLI: each is refused before any model loads, with exit 2, one line naming the
problem, and no file written. Library-only paths (fine-tuning labels and tile sizes) are in
tests/finetune/test_datamodule.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from terramind.evaluate.embeddings import write_embeddings
from terramind.modalities import get_modality

TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
S2 = get_modality("S2L2A").bands


def tif(
    path: Path,
    data: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    nodata: float | None = None,
    crs: str = "EPSG:32632",
    compress: str | None = None,
) -> Path:
    """Write ``(C, H, W)`` data as a GeoTIFF with optional band descriptions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
        "dtype": str(data.dtype), "crs": crs, "transform": TRANSFORM, "nodata": nodata,
    }  # fmt: skip
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names or (), start=1):
            dst.set_band_description(i, name)
    return path


def s2(seed: int = 0, size: int = 32) -> np.ndarray:
    """Plausible S2 L2A reflectance DN, 12 bands that differ from each other."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(200, 3000, (12, size, size)) + np.arange(12)[:, None, None] * 100).astype("int16")


def inspect_json(run_cli, path: Path, modality: str = "S2L2A") -> dict:
    outcome = run_cli(["inspect", path, "-m", modality, "--json"])
    assert outcome.code in (0, 1), outcome.err
    return json.loads(outcome.out)


def test_reversed_band_names_are_reordered(run_cli, tmp_path: Path) -> None:
    data = s2()
    right = tif(tmp_path / "right.tif", data, names=S2)
    reversed_ = tif(tmp_path / "reversed.tif", data[::-1].copy(), names=S2[::-1])
    assert inspect_json(run_cli, reversed_)["band_stats"] == inspect_json(run_cli, right)["band_stats"]


def test_wrong_band_names_are_refused_with_both_lists(run_cli, tmp_path: Path) -> None:
    path = tif(tmp_path / "hh.tif", np.full((2, 32, 32), -12.0, "float32"), names=["HH", "HV"])
    run_cli(["inspect", path, "-m", "S1RTC"]).expect_failure("'HH', 'HV'", "'VV', 'VH'", "not S1RTC bands")


@pytest.mark.parametrize("command", ["inspect", "tokenize"])
def test_impossible_values_are_refused(run_cli, tmp_path: Path, command: str) -> None:
    data = s2().astype("float32")
    data[3, :2, :5] = 1e30
    path = tif(tmp_path / "huge.tif", data)
    args = [command, path, "-m", "S2L2A"] + (["-o", tmp_path / "ids.npz"] if command == "tokenize" else [])
    run_cli(args).expect_failure("10 value(s) that no S2L2A file can hold", "1e+30")


def test_all_nan_is_refused(run_cli, tmp_path: Path) -> None:
    path = tif(tmp_path / "nan.tif", np.full((2, 32, 32), np.nan, "float32"), nodata=float("nan"))
    run_cli(["inspect", path, "-m", "S1RTC"]).expect_failure("no valid pixels")
    out = tmp_path / "ids.npz"
    run_cli(["tokenize", path, "-m", "S1RTC", "-o", out]).expect_failure("no valid pixels")


def test_nan_without_nodata_is_refused_with_a_count(run_cli, tmp_path: Path) -> None:
    data = np.full((2, 32, 32), -12.0, "float32")
    data[1, :3, :3] = np.nan
    path = tif(tmp_path / "nan.tif", data)
    run_cli(["inspect", path, "-m", "S1RTC"]).expect_failure("9 non-finite", "no nodata value")


def test_uint8_s2_is_refused_with_the_reason(run_cli, tmp_path: Path) -> None:
    path = tif(tmp_path / "tci.tif", (s2() // 20).astype("uint8"))
    run_cli(["inspect", path, "-m", "S2L2A"]).expect_failure("uint8", "8 bits cannot hold")


def test_complex_is_refused(run_cli, tmp_path: Path) -> None:
    path = tif(tmp_path / "slc.tif", np.full((2, 32, 32), 1 + 1j, "complex64"))
    run_cli(["inspect", path, "-m", "S1RTC"]).expect_failure("complex64 raster", "magnitude")


def test_truncated_geotiff_names_file_and_band(run_cli, tmp_path: Path) -> None:
    path = tif(tmp_path / "cut.tif", s2(size=128), compress="deflate")
    os.truncate(path, path.stat().st_size // 2)
    for command in ("inspect", "tokenize"):
        args = [command, path, "-m", "S2L2A"] + (["-o", tmp_path / "i.npz"] if command == "tokenize" else [])
        run_cli(args).expect_failure("cut.tif", "cannot be read at band", "truncated or corrupt")


def _scene(tmp_path: Path) -> Path:
    return tif(tmp_path / "scene.tif", s2(size=32))


@pytest.mark.parametrize(
    ("label", "phrases"),
    [
        (np.zeros((3, 32, 32), "uint8"), ("has 3 bands", "a label has one")),
        (np.full((1, 32, 32), 0.5, "float32"), ("1024 fractional value(s)", "e.g. 0.5")),
        (
            np.arange(8, dtype="uint8").repeat(128).reshape(1, 32, 32),
            ("2 (128 px)", "7 (128 px)", "0/1 mask"),
        ),
    ],
    ids=["three-bands", "fractional", "classes-2-7"],
)
def test_bad_water_labels_are_refused(run_cli, tmp_path: Path, label: np.ndarray, phrases) -> None:
    scene, path = _scene(tmp_path), tif(tmp_path / "label.tif", label)
    args = ["zeroshot", "water", "--input", f"S2L2A={scene}", "--output", tmp_path / "w.tif"]
    run_cli([*args, "--label", path]).expect_failure(*phrases)


def _embeddings(tmp_path: Path, emb: np.ndarray) -> tuple[Path, Path]:
    names = [f"t{i}" for i in range(len(emb))]
    path = write_embeddings(tmp_path / "e.npy", names, emb)
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{n},c{i % 5}\n" for i, n in enumerate(names)))
    return path, labels


def test_nan_embeddings_are_refused_naming_rows(run_cli, tmp_path: Path) -> None:
    emb = np.random.default_rng(0).normal(size=(50, 8)).astype("float32")
    emb[[3, 7]] = np.nan
    path, labels = _embeddings(tmp_path, emb)
    run_cli(["fewshot", "--embeddings", path, "--labels", labels, "--queries", "2"]).expect_failure(
        "2 embedding row(s) hold NaN/inf", "'t3', 't7'"
    )


def test_identical_or_empty_embeddings_are_refused(run_cli, tmp_path: Path) -> None:
    path, labels = _embeddings(tmp_path, np.zeros((50, 8), "float32"))
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure("identical")
    np.save(path, np.zeros((50, 0), "float32"))
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure("hold no vectors")


def test_degenerate_episodes_are_refused_with_counts(run_cli, tmp_path: Path) -> None:
    emb = np.random.default_rng(0).normal(size=(20, 8)).astype("float32")
    path, labels = _embeddings(tmp_path, emb)  # 5 classes of 4 samples: 1 shot + 15 queries do not fit
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure(
        "needs 5 classes with at least 16 samples", "c0: 4"
    )


def test_bad_embedding_files_are_named(run_cli, tmp_path: Path) -> None:
    emb = np.random.default_rng(0).normal(size=(20, 8)).astype("float32")
    path, labels = _embeddings(tmp_path, emb)
    run_cli(["fewshot", "--embeddings", tmp_path / "no.npy", "--labels", labels]).expect_failure(
        "no.npy", "does not exist"
    )
    path.with_suffix(".names.txt").write_text("t0\nt1\n")
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure("e.npy", "2 names")
    np.save(path, np.zeros(20, "float32"))
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure("e.npy", "shape (20,)")
    path.write_bytes(b"not an array")
    run_cli(["fewshot", "--embeddings", path, "--labels", labels]).expect_failure(
        "e.npy", "not an embeddings file"
    )


def test_embed_refuses_modalities_on_different_grids(run_cli, tmp_path: Path) -> None:
    s2_file = tif(tmp_path / "S2L2A" / "a.tif", s2())
    s1_file = tif(tmp_path / "S1RTC" / "a.tif", np.full((2, 32, 32), -12.0, "float32"), crs="EPSG:32633")
    args = ["embed", "--input", f"S2L2A={tmp_path / 'S2L2A'}", "--input", f"S1RTC={tmp_path / 'S1RTC'}"]
    run_cli([*args, "--output", tmp_path / "e.npy", "--weights", "none"]).expect_failure(
        str(s1_file), str(s2_file), "CRS differs"
    )


def test_huge_header_is_not_read_whole(run_cli, tmp_path: Path) -> None:
    # a sparse GeoTIFF whose header claims 350000 x 350000 int16 pixels (228 GiB) in a 1.4 MB file
    path = tmp_path / "huge.tif"
    profile = {
        "driver": "GTiff", "width": 350_000, "height": 350_000, "count": 1, "dtype": "int16",
        "crs": "EPSG:32632", "transform": TRANSFORM, "tiled": True, "blockxsize": 1024, "blockysize": 1024,
        "sparse_ok": True, "BIGTIFF": "YES",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile):
        pass
    run_cli(["tokenize", path, "-m", "DEM", "-o", tmp_path / "ids.npz"]).expect_failure(
        "228.2 GiB", "too large to read whole", "window by window"
    )
