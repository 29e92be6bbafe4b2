"""Time series that users get wrong, failing in one line: ``terramind embed-series`` and the Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from terramind.core.errors import ShapeError
from terramind.data.series import Series, require_single_time
from terramind.finetune.backbone import Backbone
from terramind.finetune.temporal import TemporalBackbone

CMD = ["embed-series", "--model", "tiny", "--weights", "random", "--device", "cpu"]
GRID = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)


def _tif(path: Path, *, bands: int = 12, transform: Affine = GRID, value: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": bands, "dtype": "int16",
               "crs": "EPSG:32632", "transform": transform}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((bands, 32, 32), value, np.int16))
    return path


def _series(folder: Path, dates: list[str], bands: int = 12) -> Path:
    for d in dates:
        _tif(folder / f"tile_{d}.tif", bands=bands)
    return folder


def test_dates_not_increasing_in_a_csv(run_cli, tmp_path):
    a, b = _tif(tmp_path / "in" / "a.tif"), _tif(tmp_path / "in" / "b.tif")
    listing = tmp_path / "in" / "list.csv"
    listing.write_text(f"{a},2021-06-10\n{b},2021-06-01\n")
    outcome = run_cli([*CMD, "--series", f"S2L2A={listing}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure(
        "dates are not increasing", "a.tif 2021-06-10 then b.tif 2021-06-01", "oldest first"
    )


def test_two_files_of_one_date(run_cli, tmp_path):
    folder = _series(tmp_path / "s2", ["2021-06-01"])
    _tif(folder / "other_20210601.tif")
    outcome = run_cli([*CMD, "--series", f"S2L2A={folder}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure("dates are not increasing", "2021-06-01")


def test_dates_on_different_grids_are_refused(run_cli, tmp_path):
    folder = _series(tmp_path / "s2", ["2021-06-01"])
    _tif(folder / "tile_2021-06-11.tif", transform=GRID * Affine.translation(3, 0))
    outcome = run_cli([*CMD, "--series", f"S2L2A={folder}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure(
        "tile_2021-06-11.tif is not on the grid of tile_2021-06-01.tif", "transform differs", "reproject"
    )


def test_more_dates_than_max_steps(run_cli, tmp_path):
    folder = _series(tmp_path / "s2", ["2021-06-01", "2021-06-06", "2021-06-11"])
    outcome = run_cli([*CMD, "--series", f"S2L2A={folder}", "--max-steps", "2", "-o", tmp_path / "e.npy"])
    outcome.expect_failure("S2L2A series", "has 3 dates, more than max_steps=2")


def test_file_without_a_date_in_its_name(run_cli, tmp_path):
    folder = _series(tmp_path / "s2", ["2021-06-01"])
    _tif(folder / "cloudfree.tif")
    outcome = run_cli([*CMD, "--series", f"S2L2A={folder}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure("no date in the name of ['cloudfree.tif']", "tile_2021-06-01.tif")


def test_csv_row_without_a_date(run_cli, tmp_path):
    a = _tif(tmp_path / "in" / "a.tif")
    listing = tmp_path / "in" / "list.csv"
    listing.write_text(f"{a},June\n")
    outcome = run_cli([*CMD, "--series", f"S2L2A={listing}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure("row 1", "each row is path,date[,modality]")


def test_modalities_with_different_dates_need_group_modality(run_cli, tmp_path):
    s2 = _series(tmp_path / "s2", ["2021-06-01", "2021-06-06", "2021-06-11"])
    s1 = tmp_path / "s1"
    for d in ["2021-06-02", "2021-06-08"]:
        _tif(s1 / f"s1_{d}.tif", bands=2)
    argv = [*CMD, "--series", f"S2L2A={s2}", "--series", f"S1RTC={s1}", "-o", tmp_path / "e.npy"]
    run_cli(argv).expect_failure("different numbers of dates", "group='modality'")
    assert run_cli([*argv, "--group", "modality"]).code == 0


def test_every_date_missing(run_cli, tmp_path):
    folder = tmp_path / "s2"
    for d in ["2021-06-01", "2021-06-06"]:
        path = _tif(folder / f"tile_{d}.tif", value=-9999)
        with rasterio.open(path, "r+") as dst:
            dst.nodata = -9999
    outcome = run_cli([*CMD, "--series", f"S2L2A={folder}", "-o", tmp_path / "e.npy"])
    outcome.expect_failure("no valid date", "at least one")


def test_time_axis_given_to_a_single_time_model():
    x = {"S2L2A": torch.zeros(1, 12, 4, 32, 32)}
    with pytest.raises(ShapeError, match=r"S2L2A has a time axis \(B, C, T, H, W\) with T=4 but this model"):
        require_single_time(x)
    encoder = Backbone("terramind_v1_tiny", ["S2L2A"], encoder_depth=1)
    with pytest.raises(ShapeError, match=r"expected a \(B, C, H, W\) image"):
        encoder(x)  # the single-time encoder refuses it too (its own message)
    TemporalBackbone(encoder, "mean")(x)  # wrapped, the same input works


def test_stamps_that_do_not_match_the_series():
    x = torch.zeros(1, 12, 3, 32, 32)
    bad = Series({"S2L2A": x}, {"S2L2A": torch.zeros(1, 2)}, {"S2L2A": torch.ones(1, 3, dtype=torch.bool)})
    encoder = Backbone("terramind_v1_tiny", ["S2L2A"], encoder_depth=1)
    with pytest.raises(ShapeError, match=r"times\['S2L2A'\] must be \(B, T\) = \(1, 3\), got \(1, 2\)"):
        TemporalBackbone(encoder, "mean")(bad)
