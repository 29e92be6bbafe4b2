"""An ImpactMesh-layout fixture (zarr zips, 4 dates of S1RTC and S2L2A, static DEM, MASK) read end to end."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from zarr_zips import write_zip

from terramind.core.errors import InputError, ShapeError
from terramind.data.series import days, read_zarr_series
from terramind.data.tiles import modality_inputs
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import TemporalSegmentationTask

SIZE, STEPS = 32, 4
TILES = ("38D_378R_2_3", "282D_485L_3_3")
START = np.datetime64("2022-07-01T10:30:00", "ns")


def _tile(examples_dir: Path, modality: str, tile: str) -> np.ndarray:
    with rasterio.open(examples_dir / modality / f"{tile}.tif") as src:
        return src.read(window=Window(0, 0, SIZE, SIZE))


@pytest.fixture
def impactmesh(examples_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "impactmesh"
    for i, tile in enumerate(TILES):
        times = START + np.arange(STEPS) * np.timedelta64(12, "D") + np.timedelta64(i, "D")
        for modality in ("S2L2A", "S1RTC"):
            data = _tile(examples_dir, modality, tile)
            series = np.stack([data * (1 + 0.05 * t) for t in range(STEPS)]).astype(
                data.dtype
            )  # (T, C, H, W)
            write_zip(root / modality / f"{tile}.zarr.zip", {"bands": series, "time": times})
        dem = _tile(examples_dir, "DEM", tile)[None]  # (1, 1, H, W), no date
        write_zip(root / "DEM" / f"{tile}.zarr.zip", {"bands": dem, "time": np.zeros(1, np.int64)})
        flood = (_tile(examples_dir, "LULC", tile)[0] == 1).astype(np.uint8)[None, None]  # water as "flood"
        write_zip(root / "MASK" / f"{tile}.zarr.zip", {"bands": flood})
    return root


def test_zarr_series_read_with_dates(impactmesh: Path) -> None:
    (s2,) = modality_inputs(["S2L2A"], {}, {}, {}, {})
    arrays = read_zarr_series(impactmesh / "S2L2A" / f"{TILES[0]}.zarr.zip", s2)
    assert arrays.x.shape == (12, STEPS, SIZE, SIZE)
    first = days(date(2022, 7, 1)) + 10.5 / 24
    np.testing.assert_allclose(arrays.times, first + 12 * np.arange(STEPS), atol=1e-9)  # float64 days
    assert arrays.valid.all()
    with pytest.raises(ShapeError, match="more than max_steps=3"):
        read_zarr_series(impactmesh / "S2L2A" / f"{TILES[0]}.zarr.zip", s2, max_steps=3)


def test_zarr_integer_times_with_cf_units(tmp_path: Path) -> None:
    (s1,) = modality_inputs(["S1RTC"], {}, {}, {}, {})
    data = np.ones((2, 2, 16, 16), np.float32)
    path = tmp_path / "x.zarr.zip"
    write_zip(path, {"bands": data, "time": np.array([3, 10])}, {"time": {"units": "days since 2020-01-01"}})
    assert read_zarr_series(path, s1).times.tolist() == [days(date(2020, 1, 4)), days(date(2020, 1, 11))]
    backwards = tmp_path / "backwards.zarr.zip"
    write_zip(
        backwards, {"bands": data, "time": np.array([10, 3])}, {"time": {"units": "days since 2020-01-01"}}
    )
    with pytest.raises(InputError, match="dates are not increasing"):
        read_zarr_series(backwards, s1)


def test_impactmesh_end_to_end_through_a_temporal_task(impactmesh: Path, make_encoder) -> None:
    dm = TemporalDataModule(
        str(impactmesh),
        ["S2L2A", "S1RTC", "DEM"],
        layout="impactmesh",
        split_ratio=(1.0, 0.0, 0.0),
        batch_size=2,
    )
    batch = next(iter(dm.train_dataloader()))
    series = batch["inputs"]
    assert series.inputs["S2L2A"].shape == (2, 12, STEPS, SIZE, SIZE)
    assert series.inputs["DEM"].shape == (2, 1, 1, SIZE, SIZE)  # static: broadcast by the backbone
    assert set(batch["label"].unique().tolist()) <= {0, 1}
    # S1 and S2 share the dates exactly here (group="date"); tiles start a day apart
    assert torch.equal(series.times["S2L2A"], series.times["S1RTC"])
    torch.manual_seed(0)
    backbone = TemporalBackbone(
        make_encoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1}), "attention", max_steps=STEPS
    )
    task = TemporalSegmentationTask(
        backbone, 2, decoder="fcn", decoder_kwargs={"channels": 8}, layer_indices=[1]
    )
    out = task(series)
    assert out.shape == (2, 2, SIZE, SIZE) and torch.isfinite(out).all()
