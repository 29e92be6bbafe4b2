"""Whole-scene prediction from a time series (``predict_series_scene``) on series of the example tiles."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform

from terramind.cli._series_scene import run_series_scene
from terramind.core.errors import InputError, ShapeError, TerraMindError
from terramind.data.series import SeriesDataset, SeriesSample, collate_series, series_source
from terramind.data.tiles import modality_inputs
from terramind.finetune.scene import predict_series_scene, scene_series
from terramind.finetune.tasks import SegmentationTask
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_tasks import TemporalSegmentationTask
from terramind.scene.run import DenseTask

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
    return {
        "S2L2A": root / "S2L2A" / TILE,
        "S1RTC": root / "S1RTC" / TILE,
        "DEM": root / "DEM" / f"{TILE}.tif",
    }


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
        tiles = [
            {m: x[..., top : top + 16, left : left + 16] for m, x in series.inputs.items()}
            for left in (0, 16)
        ]
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


def _reproject(path: Path, crs: str) -> None:
    """Rewrite a date of the series in another CRS (the same place, other pixels)."""
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        profile = {**src.profile, "crs": crs, "transform": transform, "width": width, "height": height}
        with WarpedVRT(src, crs=crs, transform=transform, width=width, height=height,
                       resampling=Resampling.nearest) as vrt:  # fmt: skip
            data = vrt.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


@pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning"
)  # rasterio's own transform math
def test_a_date_on_another_crs_is_warped_onto_the_first_dates_grid(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=None)
    moved = sorted((root / "S2L2A" / TILE).glob("*.tif"))[2]
    _reproject(moved, "EPSG:3857")
    said: list[str] = []
    out = _predict(_task(make_encoder), scene_series(_paths(root)), tmp_path / "p.tif", say=said.append)
    warped = [line for line in said if "warped" in line]
    assert len(warped) == 1 and warped[0].startswith("S2L2A 2021-04-11: S2L2A (EPSG:3857")
    assert "onto the grid of S2L2A 2021-04-01" in warped[0]
    first = sorted((root / "S2L2A" / TILE).glob("*.tif"))[0]
    with rasterio.open(out) as pred, rasterio.open(first) as src:
        assert (pred.crs, pred.transform, pred.shape) == (src.crs, src.transform, src.shape)
        assert (pred.read() != pred.nodata).all()  # every pixel has valid dates (the other two at least)


def test_dates_not_increasing_more_than_max_steps_and_a_single_time_model_are_refused(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=None)
    series = scene_series(_paths(root))
    backwards = {**series, "S2L2A": series["S2L2A"][::-1]}
    with pytest.raises(
        InputError, match=r"S2L2A series: dates are not increasing \(.*2021-04-11 then .*2021-04-06"
    ):
        _predict(_task(make_encoder), backwards, tmp_path / "a.tif")
    with pytest.raises(ShapeError, match="S2L2A series has 3 dates, more than max_steps=2"):
        _predict(_task(make_encoder, max_steps=2), series, tmp_path / "b.tif")
    torch.manual_seed(0)
    single = SegmentationTask(make_encoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1}), CLASSES, decoder="fcn",
                              decoder_kwargs={"channels": 8}, layer_indices=[1])  # fmt: skip
    with pytest.raises(ShapeError, match=r"S2L2A has a time axis \(3 dates\) but this model takes one date"):
        _predict(single, series, tmp_path / "c.tif")
    far = series["S1RTC"][1].path  # a date of another place: refused as a single-time input would be
    with rasterio.open(far, "r+") as dst:
        dst.transform = dst.transform * Affine.translation(100000, 0)
    far_date = r"S1RTC 2021-04-06: S1RTC does not overlap S2L2A 2021-04-01: .*same place"
    with pytest.raises(InputError, match=far_date):
        _predict(_task(make_encoder), series, tmp_path / "d.tif")
    assert not list(tmp_path.glob("*.tif"))  # nothing written, no work folder left
    assert not list(tmp_path.glob(".terramind-*"))


def _args(tmp_path: Path, **options: Any) -> argparse.Namespace:
    """The namespace ``finetune scene`` parses (``--series``, ``--input``, tiling, device, precision...)."""
    defaults = {"series": None, "input": None, "grid": None, "resampling": "bilinear", "tile": 16,
                "overlap": 0, "batch_size": 2, "device": "cpu", "overwrite": False, "precision": "fp32",
                "stac": False, "output": tmp_path / "cli.tif"}  # fmt: skip
    return argparse.Namespace(**{**defaults, **options})


def _one_line_error(
    args: argparse.Namespace, task: DenseTask, kind: type[TerraMindError], *phrases: str
) -> None:
    with pytest.raises(kind) as caught:
        run_series_scene(args, task)
    message = str(caught.value)
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert not args.output.exists()


def test_run_series_scene_writes_what_the_library_writes_and_refuses_bad_series_in_one_line(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=1)
    specs = modality_inputs(MODS, {}, {}, {}, {})
    model = _task(make_encoder).model
    assert model.out_channels == CLASSES  # what load_dense_task reads of a fine-tuned model
    task = DenseTask(model, specs, model.out_channels, "values")
    paths = _paths(root)
    series, dem = {m: p for m, p in paths.items() if m != "DEM"}, {"DEM": paths["DEM"]}
    out = run_series_scene(_args(tmp_path, series=series, input=dem), task)
    library = _predict(task, scene_series(paths), tmp_path / "lib.tif")
    with rasterio.open(out) as a, rasterio.open(library) as b:
        np.testing.assert_array_equal(a.read(), b.read())  # the same computation, through the CLI's namespace
    files = sorted((root / "S2L2A" / TILE).glob("*.tif"))
    listing = tmp_path / "backwards.csv"
    listing.write_text("".join(f"{f},{f.stem.rsplit('_', 1)[1]}\n" for f in files[::-1]))
    bad = _args(tmp_path, output=tmp_path / "bad.tif")
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": {**series, "S2L2A": listing}, "input": dem}),
                    task, InputError, "dates are not increasing", "oldest first")  # fmt: skip
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": paths, "max_steps": 2}), task, ShapeError,
                    "S2L2A series has 3 dates, more than max_steps=2")  # fmt: skip
    torch.manual_seed(0)
    single = SegmentationTask(make_encoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1}), CLASSES, decoder="fcn",
                              decoder_kwargs={"channels": 8}, layer_indices=[1])  # fmt: skip
    single_task = DenseTask(single.model, specs, CLASSES, "values")
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": paths}), single_task, ShapeError,
                    "S2L2A has a time axis (3 dates)", "takes one date")  # fmt: skip
    zarr = tmp_path / "s2.zarr.zip"
    zarr.write_bytes(b"")
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": {**paths, "S2L2A": zarr}}), task, InputError,
                    "is a zarr zip", "give the dates as GeoTIFFs")  # fmt: skip
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": paths, "grid": "S1GRD"}), task, InputError,
                    "--grid S1GRD: no such input")  # fmt: skip
    _one_line_error(argparse.Namespace(**{**vars(bad), "series": series, "input": paths}), task, InputError,
                    "given by both --series and --input")  # fmt: skip


def test_precision_bf16_is_close_to_fp32_and_auto_is_said_once(
    make_series: MakeSeries,
    make_encoder: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = make_series(steps=2, masked=None)
    task = _task(make_encoder)
    outs = {
        p: _predict(task, scene_series(_paths(root)), tmp_path / f"{p}.tif", precision=p)
        for p in ("fp32", "bf16")
    }
    with rasterio.open(outs["fp32"]) as a, rasterio.open(outs["bf16"]) as b:
        exact, low = a.read(), b.read()
    assert not np.array_equal(exact, low)  # bf16 autocast did run
    # bf16 keeps 8 significant bits: relative error 2^-9 per rounding; the chain (2 encoder layers, the
    # mean, neck, 2 decoder convolutions, head) rounds at most 16 times, each bounded by the output scale
    np.testing.assert_allclose(low, exact, rtol=0, atol=16 * 2**-9 * np.abs(exact).max())
    capsys.readouterr()
    for name in ("auto1", "auto2"):
        _predict(task, scene_series(_paths(root)), tmp_path / f"{name}.tif", precision="auto")
    said = capsys.readouterr().err
    assert said.count("precision auto ->") <= 1  # once per process (a test before may have said it already)


class _FailingAfter(torch.nn.Module):
    """The temporal model, interrupted (KeyboardInterrupt) after ``calls`` forward passes."""

    def __init__(self, model: torch.nn.Module, calls: int) -> None:
        super().__init__()
        self.model, self.calls = model, calls

    @property
    def backbone(self) -> torch.nn.Module:
        return self.model.backbone  # type: ignore[return-value]

    def forward(self, series: Any) -> torch.Tensor:
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.model(series)


def test_an_interrupted_series_scene_resumes_to_the_uninterrupted_result(
    make_series: MakeSeries, make_encoder: Callable[..., Any], tmp_path: Path
) -> None:
    root = make_series(steps=3, masked=1)
    task = _task(make_encoder)
    series = scene_series(_paths(root))
    (tmp_path / "ref").mkdir()
    reference = _predict(task, series, tmp_path / "ref" / "p.tif", batch=1)
    out = tmp_path / "p.tif"
    run = {"batch": 1, "checkpoint_seconds": 0}
    with pytest.raises(KeyboardInterrupt):
        _predict(argparse.Namespace(model=_FailingAfter(task.model, 2)), series, out, **run)
    assert not out.exists() and list(tmp_path.glob(".terramind-predict-p/*"))  # the state of 2 tiles is kept
    counting = _FailingAfter(task.model, 100)
    _predict(argparse.Namespace(model=counting), series, out, **run)
    assert counting.calls == 100 - 2  # only the 2 tiles not done before
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        np.testing.assert_array_equal(a.read(), b.read())
