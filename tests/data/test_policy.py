"""The reading policy as every reader applies it: band names, dtypes, impossible values, NaN, no valid
pixels, truncated files, oversized whole reads."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from rasterio.windows import Window

import terramind.data.geotiff as geotiff
from terramind.core.errors import InputError, ShapeError
from terramind.data import read_raster, read_window
from terramind.data.policy import HARD_LIMITS, REFUSED_DTYPES
from terramind.modalities import get_modality

S2 = get_modality("S2L2A").bands


def _s2(size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.uniform(200, 3000, (12, size, size)) + np.arange(12)[:, None, None] * 100).astype("int16")


def test_permuted_band_names_are_reordered(tiny_geotiff, caplog) -> None:
    data = _s2()
    right = read_raster(tiny_geotiff(data, name="right.tif"), "S2L2A")
    order = np.random.default_rng(1).permutation(12)
    shuffled = tiny_geotiff(data[order], name="shuffled.tif", band_names=[S2[i] for i in order])
    with caplog.at_level(logging.WARNING):
        read = read_raster(shuffled, "S2L2A")
    np.testing.assert_array_equal(read.data, right.data)
    assert read.georef.band_names == tuple(S2[i] for i in range(12))
    assert "bands read by the names" in caplog.text


def test_sentinel2_band_ids_count_as_names(tiny_geotiff) -> None:
    ids = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    data = _s2()
    path = tiny_geotiff(data[::-1].copy(), band_names=ids[::-1])
    np.testing.assert_array_equal(read_raster(path, "S2L2A").data, data)


def test_foreign_or_missing_band_names_are_refused_with_both_lists(tiny_geotiff) -> None:
    path = tiny_geotiff(np.full((2, 8, 8), -12.0, "float32"), band_names=["HH", "HV"])
    with pytest.raises(InputError, match=r"\['HH', 'HV'\] that are not S1RTC bands.*\['VV', 'VH'\]"):
        read_raster(path, "S1RTC")
    rgb = tiny_geotiff(bands=3, band_names=["RED", "GREEN", "NIR_BROAD"], name="rgb.tif")
    with pytest.raises(InputError, match=r"not S2RGB bands"):
        read_raster(rgb, "S2RGB")


def test_generic_or_repeated_descriptions_fall_back_to_positions(tiny_geotiff) -> None:
    data = np.full((2, 8, 8), -12.0, "float32")
    assert read_raster(tiny_geotiff(data, band_names=["bands", "bands"]), "S1RTC").data.shape == (2, 8, 8)
    dem = tiny_geotiff(np.full((1, 8, 8), 300, "int16"), band_names=["elevation"], name="dem.tif")
    assert read_raster(dem, "DEM").data[0, 0, 0] == 300  # one band: a name cannot misorder it


@pytest.mark.parametrize(
    ("modality", "dtype", "phrase"),
    [
        ("S2L2A", "uint8", "8 bits cannot hold"),
        ("LULC", "float32", "whole class ids"),
        ("S1RTC", "complex64", "complex64 raster"),
    ],
)
def test_refused_dtypes(tiny_geotiff, modality: str, dtype: str, phrase: str) -> None:
    bands = get_modality(modality).num_bands
    path = tiny_geotiff(np.ones((bands, 8, 8), dtype))
    with pytest.raises(InputError, match=phrase):
        read_raster(path, modality)
    assert set(REFUSED_DTYPES) <= set(HARD_LIMITS)  # every refused-dtype modality also has hard limits


def test_impossible_values_are_refused_with_a_count(tiny_geotiff) -> None:
    data = np.full((2, 8, 8), -12.0, "float32")
    data[0, 0, :4] = 1e30
    path = tiny_geotiff(data)
    with pytest.raises(InputError, match=r"4 value\(s\) that no S1RTC file can hold \(1e\+30\.\.1e\+30"):
        read_raster(path, "S1RTC")
    with pytest.raises(InputError, match=r"window col 0, row 0, 8x1"):
        read_window(path, Window(0, 0, 8, 1), modality="S1RTC")
    assert read_window(path, Window(0, 4, 8, 4), modality="S1RTC").shape == (2, 4, 8)  # clean rows pass
    hi = HARD_LIMITS["S1RTC"][1]
    data[0, 0, :4] = hi  # the limit itself is still possible
    assert read_raster(tiny_geotiff(data, name="edge.tif"), "S1RTC").data.max() == hi


def test_nan_is_masked_only_where_nodata_is_declared(tiny_geotiff, caplog) -> None:
    data = np.full((2, 8, 8), -12.0, "float32")
    data[1, :2, :3] = np.nan
    with pytest.raises(
        InputError, match=r"6 non-finite \(NaN/inf\) value\(s\) in band\(s\) \[2\] and no nodata"
    ):
        read_raster(tiny_geotiff(data, name="plain.tif"), "S1RTC")
    with caplog.at_level(logging.WARNING):
        masked = read_raster(tiny_geotiff(data, name="nodata.tif", nodata=-9999), "S1RTC")
    assert int((masked.data == -9999).sum()) == 6 and np.isfinite(masked.data).all()
    assert "6 NaN value(s) masked as nodata (-9999" in caplog.text
    data[0, 0, 0] = np.inf  # inf is never nodata
    with pytest.raises(InputError, match="7 non-finite"):
        read_raster(tiny_geotiff(data, name="inf.tif", nodata=-9999), "S1RTC")


def test_no_valid_pixels(tiny_geotiff) -> None:
    path = tiny_geotiff(np.full((1, 8, 8), -9999, "int16"), nodata=-9999)
    with pytest.raises(InputError, match="no valid pixels"):
        read_raster(path, "DEM")


def test_truncated_file_names_file_band_and_window(tiny_geotiff) -> None:
    path = tiny_geotiff(_s2(128), name="cut.tif")
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(InputError, match=r"cut\.tif' cannot be read at band \d+ .*truncated or corrupt"):
        read_raster(path, "S2L2A")
    with pytest.raises(
        InputError, match=r"cut\.tif' \(window col 0, row 96, 128x32\) cannot be read at band"
    ):
        read_window(path, Window(0, 96, 128, 32))


def test_whole_reads_above_the_limit_point_at_windows(tiny_geotiff, monkeypatch) -> None:
    path = tiny_geotiff(np.ones((1, 64, 64), "int16"))
    monkeypatch.setattr(geotiff, "MAX_READ_BYTES", 64 * 64 * 2 - 1)  # one byte short of this raster
    with pytest.raises(InputError, match=r"too large to read whole .*window by window"):
        read_raster(path, "DEM")
    assert read_window(path, Window(0, 0, 64, 64)).shape == (1, 64, 64)
    assert read_raster(path, "DEM", window=Window(0, 0, 32, 32)).data.shape == (1, 32, 32)


def test_unnamed_band_count_still_checked(tiny_geotiff) -> None:
    with pytest.raises(ShapeError, match="S1RTC expects 2, in this order: VV, VH"):
        read_raster(tiny_geotiff(np.ones((3, 8, 8), "float32")), "S1RTC")
