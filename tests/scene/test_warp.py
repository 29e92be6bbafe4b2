"""Inputs on different grids: warped window by window onto one target grid, through generate and zeroshot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform

from terramind.api import generation as api_generation
from terramind.cli import zeroshot
from terramind.cli.main import main
from terramind.scene import scene_source

_spec = importlib.util.spec_from_file_location("scene_fixtures", Path(__file__).parent / "scene_fixtures.py")
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

FAST = ["--tile", "64", "--overlap", "16", "--batch-size", "4", "--weights", "random"]


@pytest.fixture
def tiny_factory(monkeypatch):
    """The tiny random generator instead of the real one (for generate and zeroshot water)."""

    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        return fx.tiny.tiny_generator(inputs, outputs)

    monkeypatch.setattr(api_generation, "create_generator", factory)
    monkeypatch.setattr(zeroshot, "create_generator", factory)


def _grid(path: Path) -> tuple:
    with rasterio.open(path) as f:
        return f.crs, f.transform, (f.width, f.height)


def test_a_warped_input_reads_as_gdal_reprojects_it(tmp_path: Path) -> None:
    s2 = fx.s2_on_zone_32(tmp_path)
    s1 = fx.s1_on_zone_33(tmp_path, s2)
    source = scene_source({"S2L2A": s2, "S1RTC": s1})
    with rasterio.open(s2) as f:
        assert (source.georef.crs, source.georef.transform) == (f.crs, f.transform)
    with rasterio.open(s1) as f:
        expected = np.full((2, 224, 224), np.nan, np.float32)
        reproject(f.read(), expected, src_transform=f.transform, src_crs=f.crs, src_nodata=f.nodata,
                  dst_transform=source.georef.transform, dst_crs=source.georef.crs, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)  # fmt: skip
    data, valid = source.read_rows(50, 40)  # one strip: the window is warped, not the scene
    assert data["S1RTC"].shape == (2, 40, 224) and valid.all()  # the S1 footprint covers the S2 tile
    # the same GDAL bilinear kernel; the two approximate the UTM-to-UTM transform to within 1/8 source px
    # (GDAL's default error threshold), and the field's slope is at most 5*sqrt(2)/WAVE = 0.14 dB per px,
    # so they agree to 0.125 * 0.14 = 0.018 dB; 0.02 dB bounds it
    np.testing.assert_allclose(data["S1RTC"], expected[:, 50:90], atol=0.02)
    np.testing.assert_array_equal(
        data["S2L2A"], rasterio.open(s2).read(window=((50, 90), (0, 224))).astype(np.float32)
    )  # the target input is read as it is


def test_a_partly_covering_input_is_nodata_where_it_is_missing(tmp_path: Path) -> None:
    s2 = fx.s2_on_zone_32(tmp_path)
    s1 = fx.s1_on_zone_33(tmp_path, s2, margin=0.0, shift=1000.0)  # 1 km east: a western strip uncovered
    source = scene_source({"S2L2A": s2, "S1RTC": s1})
    _, valid = source.read_rows(0, 224)
    rows, cols = np.mgrid[0:224, 0:224] + 0.5
    t = source.georef.transform
    xs, ys = t.c + t.a * cols.ravel(), t.f + t.e * rows.ravel()  # pixel centres (a north-up grid)
    with rasterio.open(s1) as f:
        x1, y1 = (np.asarray(v).reshape(224, 224) for v in transform(source.georef.crs, f.crs, xs, ys))
        left, bottom, right, top = f.bounds
    # a pixel centre one S1 pixel inside the footprint is covered; one S1 pixel outside it is not (bilinear
    # reaches half a source pixel beyond the last centre, so the band in between may go either way)
    pad = fx.S1_RES
    inside = (x1 > left + pad) & (x1 < right - pad) & (y1 > bottom + pad) & (y1 < top - pad)
    outside = (x1 < left - pad) | (x1 > right + pad) | (y1 < bottom - pad) | (y1 > top + pad)
    assert inside.sum() > 10_000 and outside.sum() > 5_000  # the fixture really is partial
    assert valid[inside].all() and not valid[outside].any()


def test_generate_writes_on_the_first_input_grid_or_the_one_named(
    tmp_path: Path, tiny_factory, capsys
) -> None:  # type: ignore[no-untyped-def]
    s2 = fx.s2_on_zone_32(tmp_path)
    s1 = fx.s1_on_zone_33(tmp_path, s2)
    inputs = ["--input", f"S2L2A={s2}", "--input", f"S1RTC={s1}", "--to", "DEM"]
    assert main(["generate", *inputs, "-o", str(tmp_path / "a"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "S1RTC (EPSG:32633, 20 m) is warped onto the grid of S2L2A (EPSG:32632, 10 m" in err
    assert "bilinear" in err and err.count("is warped onto") == 1  # said once, not per read
    assert _grid(tmp_path / "a" / "DEM.tif") == _grid(s2)
    with rasterio.open(tmp_path / "a" / "DEM.tif") as f:
        assert np.isfinite(f.read(1)).all() and (f.read(1) != f.nodata).all()

    assert main(["generate", *inputs, "-o", str(tmp_path / "b"), "--grid", "S1RTC", *FAST]) == 0
    assert "S2L2A (EPSG:32632, 10 m) is warped onto the grid of S1RTC" in capsys.readouterr().err
    assert _grid(tmp_path / "b" / "DEM.tif") == _grid(s1)


def test_zeroshot_water_writes_on_the_target_grid(tmp_path: Path, tiny_factory) -> None:  # type: ignore[no-untyped-def]
    s2 = fx.s2_on_zone_32(tmp_path)
    s1 = fx.s1_on_zone_33(tmp_path, s2)
    out = tmp_path / "water.tif"
    args = ["zeroshot", "water", "--input", f"S2L2A={s2}", "--input", f"S1RTC={s1}", "-o", str(out), *FAST]
    assert main(args) == 0
    assert _grid(out) == _grid(s2)
    with rasterio.open(out) as f:
        values = f.read(1)
    # 255 only where the random model picks LULC "no data"; a mask on another grid would not be 0/1 mostly
    assert set(np.unique(values).tolist()) <= {0, 1, 255} and np.isin(values, [0, 1]).mean() > 0.5
