"""``terramind reconstruct`` on example tiles with a tiny random tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from test_tokenize import EXAMPLES, TILE, tiny_factory  # noqa: F401  (fixture)

from terramind.cli.main import main
from terramind.evaluate.reconstruction import psnr, reconstruction_scores, ssim
from terramind.modalities import get_modality


def test_reconstruct_dem_writes_physical_units_and_scores(
    tiny_factory: list,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = EXAMPLES / "DEM" / TILE
    out, png = tmp_path / "rec.tif", tmp_path / "rec.png"
    argv = ["reconstruct", str(src), "-m", "DEM", "--diffusion-steps", "2", "-o", str(out), "--png", str(png)]
    assert main([*argv, "--weights", "random"]) == 0
    printed = capsys.readouterr().out
    assert "psnr_db" in printed and "ssim" in printed
    with rasterio.open(out) as rec, rasterio.open(src) as ds:
        data = rec.read()
        assert data.shape == (1, 224, 224) and data.dtype == np.float32
        assert rec.transform == ds.transform and rec.crs == ds.crs
    # x0 is clipped to [-1, 1] standardized units: mean +- std in metres
    assert data.min() >= 670.665 - 951.272 - 1e-2 and data.max() <= 670.665 + 951.272 + 1e-2
    assert png.stat().st_size > 0


def test_reconstruct_lulc_reports_pixel_accuracy(
    tiny_factory: list,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lulc.tif"
    argv = [
        "reconstruct",
        str(EXAMPLES / "LULC" / TILE),
        "-m",
        "LULC",
        "-o",
        str(out),
        "--weights",
        "random",
        "--precision",
        "bf16",
    ]
    assert main(argv) == 0
    assert "pixel_accuracy" in capsys.readouterr().out
    with rasterio.open(out) as rec:
        assert rec.dtypes[0] == "uint8" and int(rec.read().max()) <= 9
        assert rec.colormap(1)[1][:3] != (0, 0, 0)


def test_scores_are_perfect_for_identity_and_lower_for_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, (2, 32, 32))
    same = reconstruction_scores(get_modality("S1RTC"), x, x.copy())
    noisy = reconstruction_scores(get_modality("S1RTC"), x, x + rng.normal(0, 10, x.shape))
    # identical images: any error is rounding (PSNR > 100 dB is an RMSE below 1e-5 of the range)
    assert same["ssim"] == pytest.approx(1.0) and same["psnr_db"] > 100
    assert noisy["ssim"] < same["ssim"] - 0.02 and noisy["psnr_db"] < 30
    classes = rng.integers(0, 10, (1, 8, 8))
    assert reconstruction_scores(get_modality("LULC"), classes, classes)["pixel_accuracy"] == 1.0


def test_reconstruct_old_spellings_still_work_with_a_note(
    tiny_factory: list,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "rec.tif"
    argv = ["reconstruct", str(EXAMPLES / "DEM" / TILE), "-m", "DEM", "-o", str(out), "--weights", "none"]
    assert main([*argv, "--steps", "1", "--bf16", "--json"]) == 0
    captured = capsys.readouterr()
    for old, new in (
        ("--steps", "--diffusion-steps"),
        ("--bf16", "--precision bf16"),
        ("--weights none", "--weights random"),
    ):
        assert f"'{new}'" in captured.err and old in captured.err
    assert tiny_factory == [("DEM", None)]  # 'none' still means random weights
    assert json.loads(captured.out.splitlines()[-1])["modality"] == "DEM"


def test_scores_match_torchmetrics() -> None:
    tm = pytest.importorskip("torchmetrics.functional.image")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 40, 50, generator=gen, dtype=torch.float64) * 100
    y = x + torch.randn(3, 40, 50, generator=gen, dtype=torch.float64) * 10
    span = float(x.max() - x.min())
    ref_psnr = float(tm.peak_signal_noise_ratio(y[None], x[None], data_range=span))
    ref_ssim = float(tm.structural_similarity_index_measure(y[None], x[None], data_range=span))
    # torchmetrics keeps its data range in float32: relative error up to a few float32 eps (1.2e-7)
    assert psnr(x, y, span) == pytest.approx(ref_psnr, rel=1e-6)
    # the same float64 arithmetic in the same order: equal to float64 rounding
    assert ssim(x, y, span) == pytest.approx(ref_ssim, rel=1e-12)
