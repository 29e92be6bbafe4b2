"""``finetune predict`` on time series: outputs named after the sample, zarr grids kept, any size padded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from zarr_zips import write_zip

from terramind.core.errors import InputError
from terramind.data.series import Series, collate_series, read_zarr_series
from terramind.data.tiles import modality_inputs
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import TemporalSegmentationTask
from terramind.finetune.writer import GeoTiffPredictionWriter

MakeSeries = Callable[..., Path]
TILES = ("38D_378R_2_3", "282D_485L_3_3", "433D_629L_3_1")  # the conftest's series
CLASSES = 4


def _task(make_encoder: Callable[..., Any], channels: dict[str, int]) -> TemporalSegmentationTask:
    torch.manual_seed(0)
    backbone = TemporalBackbone(make_encoder(channels), "mean")
    return TemporalSegmentationTask(
        backbone, CLASSES, decoder="fcn", decoder_kwargs={"channels": 8}, layer_indices=[1]
    )


def _predict(task: L.LightningModule, dm: L.LightningDataModule, out: Path) -> list[Path]:
    trainer = L.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", callbacks=[GeoTiffPredictionWriter(str(out))],
    )  # fmt: skip
    trainer.predict(task, dm, return_predictions=False)
    return sorted(out.glob("*.tif"))


def test_predictions_are_named_after_the_sample_on_its_grid(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=1)
    dm = TemporalDataModule(str(root), ["S2L2A", "DEM"], label_folder=None, batch_size=2)
    written = _predict(_task(make_encoder, {"S2L2A": 12, "DEM": 1}), dm, tmp_path / "pred")
    assert [p.name for p in written] == sorted(f"{t}_pred.tif" for t in TILES)  # not <first date>_pred.tif
    for tile in TILES:
        first = sorted((root / "S2L2A" / tile).glob("*.tif"))[0]
        with rasterio.open(tmp_path / "pred" / f"{tile}_pred.tif") as pred, rasterio.open(first) as src:
            assert (pred.crs, pred.transform, pred.shape) == (src.crs, src.transform, src.shape)


def test_series_of_120_px_gives_a_120_px_map(
    examples_dir: Path, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    size = 120  # BigEarthNet's patch side: not a multiple of the 16 px patch
    root = tmp_path / "series"
    with rasterio.open(examples_dir / "S2L2A" / f"{TILES[0]}.tif") as src:
        data, profile = (
            src.read(window=Window(0, 0, size, size)),
            {**src.profile, "width": size, "height": size},
        )
    for t in range(2):
        day = (date(2021, 6, 1) + timedelta(days=5 * t)).isoformat()
        (root / "S2L2A" / "a").mkdir(parents=True, exist_ok=True)
        with rasterio.open(root / "S2L2A" / "a" / f"a_{day}.tif", "w", **profile) as dst:
            dst.write((data * (1 + 0.1 * t)).astype(data.dtype))
    dm = TemporalDataModule(str(root), ["S2L2A"], label_folder=None, batch_size=1)
    task = _task(make_encoder, {"S2L2A": 12})
    (written,) = _predict(task, dm, tmp_path / "pred")
    with rasterio.open(written) as pred:
        assert pred.shape == (size, size) and pred.transform == profile["transform"]
        classes = pred.read(1)
    # the crop of the prediction on the mirror-padded series (128 px): the same pixels
    batch = collate_series([dm.predict_dataloader().dataset[0]])["inputs"]
    x = np.pad(
        batch.inputs["S2L2A"].numpy(), [(0, 0)] * 3 + [(0, 8), (0, 8)], mode="reflect"
    )  # (B, C, T, H, W)
    task.eval()
    with torch.no_grad():
        full = task(Series({"S2L2A": torch.from_numpy(x)}, batch.times, batch.valid))
    np.testing.assert_array_equal(classes, full[0].argmax(0)[:size, :size].numpy())


SIZE, STEPS = 32, 2
UTM = "EPSG:32633"
GRID = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)


def _impactmesh(examples_dir: Path, root: Path) -> None:
    """Three samples: grid in ``spatial_ref`` (GeoTransform), grid in x/y coordinates, no grid."""
    with rasterio.open(examples_dir / "S2L2A" / f"{TILES[0]}.tif") as src:
        data = src.read(window=Window(0, 0, SIZE, SIZE))
    bands = np.stack([data, data]).astype(np.int16)  # (T, C, H, W)
    times = np.datetime64("2022-07-01", "ns") + np.arange(STEPS) * np.timedelta64(12, "D")
    gdal = " ".join(str(v) for v in (GRID.c, GRID.a, GRID.b, GRID.f, GRID.d, GRID.e))
    wkt = CRS.from_string(UTM).to_wkt()
    ref = {"spatial_ref": {"crs_wkt": wkt, "GeoTransform": gdal}}
    centres_x = GRID.c + GRID.a * (np.arange(SIZE) + 0.5)
    centres_y = GRID.f + GRID.e * (np.arange(SIZE) + 0.5)
    samples = {
        "ref": ({"bands": bands, "time": times, "spatial_ref": np.zeros((), np.int32)}, ref),
        "xy": ({"bands": bands, "time": times, "spatial_ref": np.zeros((), np.int32), "x": centres_x,
                "y": centres_y}, {"spatial_ref": {"crs_wkt": wkt}}),
        "none": ({"bands": bands, "time": times}, None),
    }  # fmt: skip
    for name, (arrays, attrs) in samples.items():
        write_zip(root / "S2L2A" / f"{name}.zarr.zip", arrays, attrs)


def test_zarr_grids_round_trip_into_the_predictions_and_a_sample_without_one_is_said(
    examples_dir: Path, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = tmp_path / "impactmesh"
    _impactmesh(examples_dir, root)
    dm = TemporalDataModule(str(root), ["S2L2A"], layout="impactmesh", label_folder=None, batch_size=3)
    with pytest.warns(UserWarning, match=r"none: .*none\.zarr\.zip states no grid .*written without a CRS"):
        written = _predict(_task(make_encoder, {"S2L2A": 12}), dm, tmp_path / "pred")
    assert [p.name for p in written] == ["none_pred.tif", "ref_pred.tif", "xy_pred.tif"]
    for name in ("ref", "xy"):
        with rasterio.open(tmp_path / "pred" / f"{name}_pred.tif") as pred:
            assert pred.crs == CRS.from_string(UTM) and pred.shape == (SIZE, SIZE)
            # x/y centres are exact decimal multiples of 10 m: the corner comes back to float64 rounding
            assert pred.transform.almost_equals(GRID, precision=1e-6)
    with rasterio.open(tmp_path / "pred" / "none_pred.tif") as pred:
        assert pred.crs is None and pred.shape == (SIZE, SIZE)


def test_zarr_coordinates_that_are_no_grid_are_refused(tmp_path: Path) -> None:
    (s1,) = modality_inputs(["S1RTC"], {}, {}, {}, {})
    bands = np.ones((1, 2, 4, 4), np.float32)
    wkt = {"spatial_ref": {"crs_wkt": CRS.from_string(UTM).to_wkt()}}
    base = {"bands": bands, "spatial_ref": np.zeros((), np.int32)}
    irregular = tmp_path / "irregular.zarr.zip"
    write_zip(irregular, {**base, "x": np.array([0.0, 10, 20, 35]), "y": np.array([40.0, 30, 20, 10])}, wkt)
    with pytest.raises(InputError, match="x/y coordinates are not regularly spaced"):
        read_zarr_series(irregular, s1)
    short = tmp_path / "short.zarr.zip"
    write_zip(short, {**base, "x": np.array([0.0, 10, 20]), "y": np.array([40.0, 30, 20, 10])}, wkt)
    with pytest.raises(InputError, match=r"coordinates x \(3\) and y \(4\) do not give the 4x4 grid"):
        read_zarr_series(short, s1)
