import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from rasterio.windows import Window

from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.data import GeoRef, RasterWriter, open_georef, read_raster, read_window, write_raster
from terramind.data.geotiff import parse_time
from terramind.modalities import LULC_CLASSES

SAMPLES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
FOLDERS = ("S2L2A", "S2L1C", "S2RGB", "S1RTC", "DEM", "LULC", "NDVI")


@pytest.mark.parametrize("folder", FOLDERS)
def test_real_tiles_read_with_their_modality(examples_dir, folder):
    rasters = [read_raster(examples_dir / folder / f"{s}.tif", folder) for s in SAMPLES]
    for raster in rasters:
        assert raster.data.shape[1:] == (224, 224)
        assert raster.georef.resolution == (10.0, 10.0)
        assert raster.georef.crs is not None and raster.georef.crs.is_projected
    # all modalities of a sample share one grid (examples/)
    ref = read_raster(examples_dir / "S2L2A" / f"{SAMPLES[0]}.tif").georef
    assert rasters[0].georef.same_grid(ref) is None


def test_real_tile_metadata(examples_dir):
    raster = read_raster(examples_dir / "S1RTC" / "282D_485L_3_3.tif", "S1RTC")
    assert raster.data.dtype == np.float64
    assert raster.georef.crs.to_epsg() == 32722
    assert raster.georef.time == datetime(2021, 7, 21, 8, 40, 10)
    assert raster.georef.transform.c == pytest.approx(790236.04, abs=0.01)  # origin as written, to the cm
    assert open_georef(raster.path) == raster.georef


def test_same_grid_names_the_difference(examples_dir):
    a = open_georef(examples_dir / "DEM" / "282D_485L_3_3.tif")
    b = open_georef(examples_dir / "DEM" / "38D_378R_2_3.tif")
    assert "CRS" in a.same_grid(b)
    assert "size" in a.same_grid(a.window(Window(0, 0, 16, 16)))


def test_roundtrip_keeps_georef_dtype_nodata_names(tiny_geotiff, tmp_path):
    src = tiny_geotiff(
        bands=2,
        dtype="float32",
        nodata=-9999.0,
        band_names=["VV", "VH"],
        tags={"datetime": "2020-01-02T03:04:05"},
    )
    raster = read_raster(src, "S1GRD")
    out = write_raster(tmp_path / "out.tif", raster.data, raster.georef)
    back = read_raster(out, "S1GRD")
    assert back.georef == raster.georef
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data, raster.data)
    with rasterio.open(out) as ds:
        assert ds.profile["compress"] == "deflate"


def test_roundtrip_of_a_real_tile_from_a_tensor(examples_dir, tmp_path):
    raster = read_raster(examples_dir / "S2L2A" / "38D_378R_2_3.tif", "S2L2A")
    out = write_raster(tmp_path / "s2.tif", torch.from_numpy(raster.data), raster.georef)
    back = read_raster(out, "S2L2A")
    assert back.georef.same_grid(raster.georef) is None and back.georef.crs == raster.georef.crs
    assert back.data.dtype == np.int16
    np.testing.assert_array_equal(back.data, raster.data)


def test_class_map_with_colormap(examples_dir, tmp_path):
    lulc = read_raster(examples_dir / "LULC" / "282D_485L_3_3.tif", "LULC")
    palette = {c.id: tuple(int(c.colour[i : i + 2], 16) for i in (1, 3, 5)) for c in LULC_CLASSES}
    out = write_raster(
        tmp_path / "lulc.tif", lulc.data[0], lulc.georef, colormap=palette, band_names=["LULC"]
    )
    with rasterio.open(out) as ds:
        assert ds.colormap(1)[1] == (*palette[1], 255)
        assert ds.descriptions == ("LULC",)
        np.testing.assert_array_equal(ds.read(1), lulc.data[0])


def test_write_checks(tiny_geotiff, tmp_path):
    georef = open_georef(tiny_geotiff(bands=1, size=32))
    with pytest.raises(ShapeError, match="does not match"):
        write_raster(tmp_path / "a.tif", np.zeros((1, 16, 32)), georef)
    with pytest.raises(InputError, match="colormap"):
        write_raster(tmp_path / "a.tif", np.zeros((32, 32), "float32"), georef, colormap={0: (0, 0, 0)})
    with pytest.raises(InputError, match="does not exist"):
        write_raster(tmp_path / "missing" / "a.tif", np.zeros((32, 32)), georef)
    write_raster(tmp_path / "a.tif", np.zeros((32, 32), "uint8"), georef)
    with pytest.raises(InputError, match="exists"):
        write_raster(tmp_path / "a.tif", np.zeros((32, 32), "uint8"), georef)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "tiny.tif"]


def test_float_to_integer_output_rounds_and_refuses_overflow(tiny_geotiff, tmp_path):
    georef = open_georef(tiny_geotiff(bands=1, size=32))
    probs = np.full((32, 32), 2.6)
    out = write_raster(tmp_path / "classes.tif", probs, georef, dtype="uint8")
    assert read_raster(out).data.max() == 3
    with pytest.raises(InputError, match="do not fit the output dtype uint8"):
        write_raster(tmp_path / "wrap.tif", np.full((32, 32), 300.0), georef, dtype="uint8")
    with pytest.raises(InputError, match="do not fit"):
        write_raster(tmp_path / "nan.tif", np.full((32, 32), np.nan), georef, dtype="int16")
    assert not (tmp_path / "wrap.tif").exists() and not (tmp_path / "nan.tif").exists()


def test_nodata_inherited_only_when_it_fits(tiny_geotiff, tmp_path):
    georef = open_georef(tiny_geotiff(bands=1, dtype="float32", nodata=-9999.0))
    as_float = write_raster(tmp_path / "f.tif", np.zeros((32, 32), "float32"), georef)
    as_uint8 = write_raster(tmp_path / "u.tif", np.zeros((32, 32), "uint8"), georef)
    assert open_georef(as_float).nodata == -9999.0
    assert open_georef(as_uint8).nodata is None


def test_window_read_matches_full_read_and_shifts_transform(examples_dir):
    path = examples_dir / "S2L1C" / "637U_59R_1_3.tif"
    full = read_raster(path, "S2L1C")
    win = Window(32, 48, 64, 80)
    part = read_raster(path, "S2L1C", window=win)
    np.testing.assert_array_equal(part.data, full.data[:, 48:128, 32:96])
    assert part.georef.transform @ (0, 0) == full.georef.transform @ (32, 48)
    assert (part.georef.width, part.georef.height) == (64, 80)
    picked = read_window(path, win, band_indexes=[10, 3])
    np.testing.assert_array_equal(picked, full.data[[10, 3], 48:128, 32:96])
    with pytest.raises(ShapeError, match="inside"):
        read_window(path, Window(200, 0, 64, 64))
    with pytest.raises(ShapeError, match="out of range"):
        read_window(path, win, band_indexes=[13])


def test_raster_writer_assembles_windows(tiny_geotiff, tmp_path):
    georef = open_georef(tiny_geotiff(bands=1, size=512))
    expected = np.arange(512 * 512, dtype="int32").reshape(1, 512, 512)
    with RasterWriter(tmp_path / "big.tif", georef, 1, "int32") as writer:
        for row in (0, 256):
            for col in (0, 256):
                writer.write(expected[:, row : row + 256, col : col + 256], Window(col, row, 256, 256))
        assert not (tmp_path / "big.tif").exists()  # invisible until closed
    with rasterio.open(tmp_path / "big.tif") as ds:
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        np.testing.assert_array_equal(ds.read(), expected)


def test_raster_writer_exception_leaves_no_file_and_keeps_old(tiny_geotiff, tmp_path):
    georef = open_georef(tiny_geotiff(bands=1, size=32))
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="crash"), RasterWriter(target, georef, 1, "uint8") as writer:
        writer.write(np.ones((1, 16, 16), "uint8"), Window(0, 0, 16, 16))
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tif"]
    write_raster(target, np.full((32, 32), 7, "uint8"), georef)
    with pytest.raises(ShapeError), RasterWriter(target, georef, 1, "uint8", overwrite=True) as writer:
        writer.write(np.ones((2, 16, 16), "uint8"), Window(0, 0, 16, 16))
    assert read_raster(target).data.max() == 7  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "tiny.tif"]


def test_band_selection_by_name(tiny_geotiff):
    path = tiny_geotiff(bands=3, band_names=["RED", "GREEN", "BLUE"])
    full = read_raster(path, "S2RGB")
    picked = read_raster(path, "S2RGB", bands=["blue", "RED"])
    np.testing.assert_array_equal(picked.data, full.data[[2, 0]])
    assert picked.georef.band_names == ("BLUE", "RED")
    with pytest.raises(ModalityError, match="NIR"):
        read_raster(path, "S2RGB", bands=["NIR"])
    with pytest.raises(InputError, match="no band"):
        read_raster(path, "S2L2A", bands=["NIR_BROAD"])


def test_band_selection_needs_band_names(examples_dir):
    with pytest.raises(InputError, match="no band names"):
        read_raster(examples_dir / "S2L2A" / "282D_485L_3_3.tif", "S2L2A", bands=["RED"])


def test_bad_inputs(tmp_path, tiny_geotiff, examples_dir):
    with pytest.raises(InputError, match="does not exist"):
        read_raster(tmp_path / "nope.tif")
    text = tmp_path / "text.tif"
    text.write_text("not a raster")
    with pytest.raises(InputError, match="not a readable raster"):
        read_raster(text)
    with pytest.raises(ShapeError, match="expects 12, in this order: COASTAL_AEROSOL, BLUE"):
        read_raster(examples_dir / "S2L1C" / "282D_485L_3_3.tif", "S2L2A")
    with pytest.raises(ModalityError, match="unknown modality"):
        read_raster(examples_dir / "DEM" / "282D_485L_3_3.tif", "S3")
    with pytest.raises(ModalityError, match="not a raster modality"):
        read_raster(examples_dir / "DEM" / "282D_485L_3_3.tif", "caption")


def test_nonfinite_values(tiny_geotiff):
    data = np.zeros((2, 16, 16), "float32")
    data[1, 3, 4] = np.nan
    data[1, 5, 5] = np.inf
    path = tiny_geotiff(data)
    with pytest.raises(InputError, match=r"2 non-finite .* band\(s\) \[2\]"):
        read_raster(path, "S1RTC")
    assert np.isnan(read_raster(path, "S1RTC", allow_nonfinite=True).data).sum() == 1


def test_plain_image_without_crs(tiny_geotiff):
    path = tiny_geotiff(bands=1, crs=None, dtype="uint8")
    assert read_raster(path, "LULC").georef.crs is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-07-23T13:22:41.000000000", datetime(2021, 7, 23, 13, 22, 41)),
        ("2021:07:23 13:22:41", datetime(2021, 7, 23, 13, 22, 41)),
        ("2021-07-23T13:22:41.5Z", datetime(2021, 7, 23, 13, 22, 41, 500000, tzinfo=timezone.utc)),
        ("2021-07-23", datetime(2021, 7, 23)),
        ("yesterday", None),
        ("2021-13-40", None),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@settings(max_examples=12, deadline=None)
@given(
    dtype=st.sampled_from(["uint8", "int16", "uint16", "int32", "float32", "float64"]),
    bands=st.integers(1, 4),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_roundtrip_property(dtype, bands, height, width, seed):
    rng = np.random.default_rng(seed)
    data = (rng.uniform(0, 200, (bands, height, width))).astype(dtype)
    georef = GeoRef(CRS.from_epsg(32632), Affine(10, 0, 5e5, 0, -10, 6e6), width, height)
    with tempfile.TemporaryDirectory() as tmp:
        back = read_raster(write_raster(Path(tmp) / "r.tif", data, georef))
    assert back.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, data)
    assert back.georef.same_grid(georef) is None
