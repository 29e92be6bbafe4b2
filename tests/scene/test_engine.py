"""run_scene and its three callers: GeoTIFF source and sink, resume, progress, streaming, one nodata rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from terramind.core.errors import InputError, ResumeError
from terramind.data import geotiff
from terramind.data.tiles import modality_inputs
from terramind.evaluate import zeroshot
from terramind.evaluate.zeroshot import map_water, water_mask
from terramind.finetune.scene import predict_scene
from terramind.modalities import standardize
from terramind.scene import (
    GeoTiffSink,
    RasterSource,
    SceneOutput,
    TileLayout,
    combined,
    fill_values,
    output_nodata,
    run_scene,
    tqdm_progress,
)

S2_TILE = "282D_485L_3_3"  # a tile with water and land (see tests/evaluate/test_water.py)


def doubled_dem(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
    """A per-pixel stand-in: DEM = 2 x the first S1 band (blending equal values keeps them)."""
    return {"DEM": 2 * tiles["S1RTC"][:, :1]}


def _s1(tiny_geotiff) -> tuple[Path, np.ndarray]:  # type: ignore[no-untyped-def]
    data = np.random.default_rng(1).uniform(-20, -5, (2, 70, 90)).astype("float32")
    data[:, 3:7, 40:60] = -9999
    return tiny_geotiff(data, name="s1.tif", nodata=-9999, dtype="float32"), data


def test_run_scene_writes_the_tile_function_on_the_input_grid(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    path, data = _s1(tiny_geotiff)
    source = RasterSource({"S1RTC": path})
    layout = TileLayout(70, 90, tile=32, overlap=8)
    (tmp_path / "out").mkdir()
    out = SceneOutput.for_modality("DEM", tmp_path / "out" / "DEM.tif")
    written = run_scene(
        doubled_dem, source, [GeoTiffSink([out])], layout, tmp_path / "out" / ".work",
        fill=fill_values(["S1RTC"]), batch=3,
    )  # fmt: skip
    assert written == [out.path] and not (tmp_path / "out" / ".work").exists()
    with rasterio.open(out.path) as dst, rasterio.open(path) as src:
        assert dst.transform == src.transform and dst.crs == src.crs and dst.nodata == -9999
        result = dst.read(1)
    invalid = data[0] == -9999
    assert (result[invalid] == -9999).all()
    # blending equal values: exact up to float32 rounding of |2 x -20| (a few ulps, < 1e-4)
    assert np.allclose(result[~invalid], 2 * data[0][~invalid], atol=1e-4)


def test_run_scene_refuses_a_layout_off_the_grid(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    path, _ = _s1(tiny_geotiff)
    out = SceneOutput.for_modality("DEM", tmp_path / "DEM.tif")
    with pytest.raises(InputError, match="not the scene's 90x70"):
        run_scene(
            doubled_dem, RasterSource({"S1RTC": path}), [GeoTiffSink([out])], TileLayout(64, 64, 32, 8),
            tmp_path / ".work", fill=fill_values(["S1RTC"]),
        )  # fmt: skip


def test_combined_sources_read_as_one(tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    s1, _ = _s1(tiny_geotiff)
    dem = tiny_geotiff(np.ones((1, 70, 90), "float32"), name="dem.tif", dtype="float32", nodata=0)
    both = RasterSource({"S1RTC": s1, "DEM": dem})
    parts = combined([RasterSource({"S1RTC": s1}), RasterSource({"DEM": dem})])
    (a, va), (b, vb) = both.read_rows(2, 10), parts.read_rows(2, 10)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a) and np.array_equal(va, vb)
    with pytest.raises(InputError, match="given by two sources"):
        combined([RasterSource({"S1RTC": s1}), RasterSource({"S1RTC": s1})])


class PixelModel(nn.Module):
    """Per-pixel stand-in: 'class 1' where standardised VV > 0; raises after ``fail_after`` calls if set."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls, self.tiles, self.fail_after = 0, 0, fail_after

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.fail_after is not None and self.calls == self.fail_after:
            raise KeyboardInterrupt  # an interruption after ``fail_after`` batches
        self.calls += 1
        self.tiles += inputs["S1RTC"].shape[0]
        vv = inputs["S1RTC"][:, :1] * self.scale
        return torch.cat([-vv, vv], dim=1) * 10


def test_finetune_scene_resumes_after_an_interruption_with_progress(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    path, data = _s1(tiny_geotiff)
    specs = modality_inputs(["S1RTC"], {}, {}, {}, {})
    kwargs = {
        "out_channels": 2,
        "kind": "classes",
        "tile": 32,
        "overlap": 8,
        "batch": 2,
        "checkpoint_seconds": 0,
    }
    (tmp_path / "ref").mkdir()
    (tmp_path / "run").mkdir()
    reference = predict_scene(PixelModel(), {"S1RTC": path}, specs, tmp_path / "ref" / "o.tif", **kwargs)  # type: ignore[arg-type]
    total = TileLayout(70, 90, 32, 8).num_tiles  # 3 rows x 4 columns
    bars: list[tuple[int, int, list[int]]] = []

    def progress(n_total: int, done: int):  # type: ignore[no-untyped-def]
        bars.append((n_total, done, []))
        return bars[-1][2].append

    out = tmp_path / "run" / "o.tif"
    with pytest.raises(KeyboardInterrupt):  # after 3 batches: one row of 4 tiles and half of the next
        predict_scene(PixelModel(fail_after=3), {"S1RTC": path}, specs, out, progress=progress, **kwargs)  # type: ignore[arg-type]
    assert not out.exists() and (tmp_path / "run" / ".terramind-predict-o").is_dir()
    model = PixelModel()
    predict_scene(model, {"S1RTC": path}, specs, out, progress=progress, **kwargs)  # type: ignore[arg-type]
    assert model.tiles == total - 6  # only the remaining tiles are computed
    assert [b[:2] for b in bars] == [(total, 0), (total, 6)] and sum(bars[1][2]) == total - 6
    with rasterio.open(out) as a, rasterio.open(reference) as b:
        assert np.array_equal(a.read(), b.read())
    assert not (tmp_path / "run" / ".terramind-predict-o").exists()
    vv = standardize("S1RTC", data)[0]
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    invalid = data[0] == -9999
    assert (classes[invalid] == 255).all() and np.array_equal(classes[~invalid], (vv > 0)[~invalid])


def ndwi_lulc(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
    """LULC logits: water (1) where NDWI > 0, flooded vegetation (3) where NDWI > -0.2, else trees (2)."""
    s2 = tiles["S2L2A"]
    ndwi = (s2[:, 2] - s2[:, 7]) / (s2[:, 2] + s2[:, 7] + 1e-6)
    logits = np.zeros((s2.shape[0], 10, *s2.shape[-2:]), np.float32)
    logits[:, 1][ndwi > 0] = 10.0
    logits[:, 3][(ndwi <= 0) & (ndwi > -0.2)] = 10.0
    logits[:, 2][ndwi <= -0.2] = 10.0
    return {"LULC": logits}


@pytest.mark.parametrize("flooded", [False, True])
def test_map_water_streams_and_gives_the_mask_of_the_lulc_map(
    tmp_path: Path,
    examples_dir: Path,
    tiny_geotiff,
    monkeypatch: pytest.MonkeyPatch,
    flooded: bool,  # type: ignore[no-untyped-def]
) -> None:
    with rasterio.open(examples_dir / "S2L2A" / f"{S2_TILE}.tif") as src:
        bands = src.read().astype("float32")
    bands[:, 100:110, 50:80] = 0  # an invalid patch (the file's nodata)
    s2 = tiny_geotiff(bands, name="s2.tif", nodata=0, dtype="float32", size=224)

    def whole_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("map_water read a whole raster")

    monkeypatch.setattr(geotiff, "read_raster", whole_read)
    out = map_water(
        ndwi_lulc,
        {"S2L2A": s2},
        tmp_path / "w.tif",
        tile=96,
        overlap=16,
        keep_lulc=True,
        flooded_vegetation=flooded,
    )
    with rasterio.open(out) as dst, rasterio.open(tmp_path / "w_lulc.tif") as kept:
        water, lulc = dst.read(1), kept.read(1)
        assert dst.nodata == 255 and kept.nodata == 0
    expected = np.where(lulc == 0, 255, water_mask(lulc, flooded)).astype(np.uint8)  # the old whole-map rule
    assert np.array_equal(water, expected)
    assert (water[100:110, 50:80] == 255).all() and {0, 1} <= set(np.unique(water).tolist())
    if flooded:  # flooded vegetation (3) counts as water too
        assert (water[lulc == 3] == 1).all() and (lulc == 3).any()
    else:
        assert (water[lulc == 3] == 0).all()


def test_one_nodata_convention() -> None:
    assert output_nodata("classes", "LULC") == 0  # the LULC "no data" class
    assert output_nodata("classes") == 255 and output_nodata("values") == -9999.0
    assert output_nodata("values", "DEM") == -9999.0
    assert SceneOutput.for_modality("LULC", Path("l.tif")).nodata == 0
    assert SceneOutput.for_modality("S1RTC", Path("s.tif")).nodata == -9999.0
    assert zeroshot.NO_DATA == 255 and zeroshot.water_output(Path("w.tif")).nodata == 255


def test_an_interrupted_water_run_with_another_rule_is_refused(tmp_path: Path, examples_dir: Path) -> None:
    s2 = examples_dir / "S2L2A" / f"{S2_TILE}.tif"
    calls = [0]

    def interrupted(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        calls[0] += 1
        if calls[0] == 4:  # after the first row of 3 tiles (saved for resuming)
            raise KeyboardInterrupt
        return ndwi_lulc(tiles, indices)

    out = tmp_path / "w.tif"
    kwargs = {"tile": 96, "overlap": 16, "batch": 1}
    with pytest.raises(KeyboardInterrupt):
        map_water(interrupted, {"S2L2A": s2}, out, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ResumeError, match=r"option flooded_vegetation \(False -> True\).*--overwrite"):
        map_water(ndwi_lulc, {"S2L2A": s2}, out, flooded_vegetation=True, **kwargs)  # type: ignore[arg-type]
    assert not out.exists()
    map_water(ndwi_lulc, {"S2L2A": s2}, out, flooded_vegetation=True, overwrite=True, **kwargs)  # type: ignore[arg-type]
    with rasterio.open(out) as dst:
        assert set(np.unique(dst.read(1)).tolist()) <= {0, 1}
    assert not (tmp_path / ".terramind-zeroshot-w").exists()


def test_the_progress_bar_counts_tiles_from_a_resumed_run(capsys: pytest.CaptureFixture[str]) -> None:
    update = tqdm_progress("predict")(12, 6)  # a resumed run: 6 of 12 tiles were done before
    update(2)
    update(4)
    err = capsys.readouterr().err
    assert "predict" in err and "6/12" in err and "12/12" in err and "tile" in err
