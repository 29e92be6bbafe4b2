"""Whole-scene prediction from a time series (``predict_series_scene``) on series built from the example tiles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import Resampling, calculate_default_transform, reproject

from terramind.core.errors import InputError, ShapeError
from terramind.data.series import SeriesDataset, SeriesSample, collate_series, series_source
from terramind.data.tiles import modality_inputs
from terramind.finetune.scene import predict_series_scene, scene_series
from terramind.finetune.tasks import SegmentationTask
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_tasks import TemporalSegmentationTask

MakeSeries = Callable[..., Path]
TILE = "38D_378R_2_3"
MODS = ["S2L2A", "S1RTC", "DEM"]
CLASSES = 4


def _task(make_encoder: Callable[..., Any], max_steps: int | None = None) -> TemporalSegmentationTask:
    torch.manual_seed(0)
    encoder = make_encoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1})
    backbone = TemporalBackbone(encoder, "mean", max_steps=max_steps)
    return TemporalSegmentationTask(
        backbone, CLASSES, decoder="fcn", decoder_kwargs={"channels": 8}, layer_indices=[1]
    )


def _paths(root: Path) -> dict[str, Path]:
    return {"S2L2A": root / "S2L2A" / TILE, "S1RTC": root / "S1RTC" / TILE, "DEM": root / "DEM" / f"{TILE}.tif"}


def _predict(task: Any, series: Any, out: Path, **kwargs: Any) -> Path:
    specs = modality_inputs(MODS, {}, {}, {}, {})
    options = {"out_channels": CLASSES, "kind": "values", "tile": 16, "overlap": 0, "precision": "fp32"}
    return predict_series_scene(task.model, series, specs, out, **{**options, **kwargs})


def test_scene_over_a_series_equals_the_tilewise_model_on_the_first_grid(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=1)
    task = _task(make_encoder)
    out = _predict(task, scene_series(_paths(root)), tmp_path / "pred.tif", batch=2)
    first = sorted((root / "S2L2A" / TILE).glob("*.tif"))[0]
    with rasterio.open(out) as pred, rasterio.open(first) as src:
        assert (pred.crs, pred.transform, pred.width, pred.height) == (
            src.crs, src.transform, src.width, src.height
        )  # fmt: skip
        written = pred.read()
    # the same sample through the datamodule's reader, cut into the scene's four 16 px tiles
    specs = modality_inputs(MODS, {}, {}, {}, {})
    sample = SeriesSample(TILE, {m: series_source(p, m) for m, p in _paths(root).items()})
    series = collate_series([SeriesDataset([sample], specs)[0]])["inputs"]
    assert not series.valid["S2L2A"][0, 1]  # the all-nodata date is missing in every tile too
    task.model.eval()
    for top in (0, 16):
        tiles = [{m: x[..., top : top + 16, left : left + 16] for m, x in series.inputs.items()} for left in (0, 16)]
        batch = type(series)(
            {m: torch.cat([t[m] for t in tiles]) for m in tiles[0]},
            {m: t.repeat(2, 1) for m, t in series.times.items()},
            {m: v.repeat(2, 1) for m, v in series.valid.items()},
        )
        with torch.no_grad():
            want = task.model(batch).numpy()
        got = np.stack([written[:, top : top + 16, left : left + 16] for left in (0, 16)])
        # tiles do not overlap: each pixel is one tile's value times weight 1 over weight 1 (exact in
        # float64), so only float32 reductions in another order could differ: |logits| < 10, eps 1.2e-7
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
