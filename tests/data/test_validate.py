from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from terramind.data.geotiff import GeoRef, Raster, read_raster, write_raster
from terramind.data.validate import THRESHOLDS, Thresholds, band_stats, summarize_file, validate_tile

SAMPLES = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3")
# Spec section 9: CIRRUS means 1010, 1016, 1069 (offset) vs 59, 17 (none); no L2A tile carries it.
L1C_WITH_OFFSET = {"282D_485L_3_3", "433D_629L_3_1", "609U_541L_3_0"}


def make(data, nodata=None):
    data = np.asarray(data)
    georef = GeoRef(
        None, Affine.identity(), data.shape[2], data.shape[1], nodata, None, ("",) * data.shape[0]
    )
    return Raster(data, georef, Path("mem.tif"))


def levels(findings, level):
    return [f.message for f in findings if f.level == level]


def s2(value=1500.0, size=224, bands=12, dtype="int16", seed=0):
    rng = np.random.default_rng(seed)
    return (value + rng.uniform(-400, 400, (bands, size, size))).astype(dtype)


@pytest.mark.parametrize("folder", ["S2L1C", "S2L2A"])
def test_offset_detector_on_the_real_tiles(examples_dir, folder):
    flagged = {
        s
        for s in SAMPLES
        if any(
            "offset" in m
            for m in levels(validate_tile(read_raster(examples_dir / folder / f"{s}.tif"), folder), "warning")
        )
    }
    assert flagged == (L1C_WITH_OFFSET if folder == "S2L1C" else set())


@pytest.mark.parametrize("folder", ["S2L2A", "S2L1C", "S2RGB", "S1RTC", "DEM", "LULC", "NDVI"])
def test_real_tiles_have_no_errors(examples_dir, folder):
    for sample in SAMPLES:
        findings = validate_tile(read_raster(examples_dir / folder / f"{sample}.tif", folder), folder)
        assert levels(findings, "error") == [], (sample, findings)
        assert levels(findings, "ok")


def test_offset_detected_on_l2a_without_cirrus():
    findings = validate_tile(make(s2(2000.0)), "S2L2A")
    assert any("+1000 DN offset" in m and "every band" in m for m in levels(findings, "warning"))
    # zeros are the no-data value of offset products and do not hide the offset
    data = s2(2000.0)
    data[:, :8, :8] = 0
    assert any("offset" in m for m in levels(validate_tile(make(data), "S2L2A"), "warning"))
    assert not any("offset" in m for m in levels(validate_tile(make(s2(1300.0)), "S2L2A"), "warning"))


def test_thresholds_come_from_the_table():
    data = make(s2(2000.0))
    assert any("offset" in m for m in levels(validate_tile(data, "S2L2A"), "warning"))
    strict = Thresholds(offset_min=5000.0)
    assert not any("offset" in m for m in levels(validate_tile(data, "S2L2A", thresholds=strict), "warning"))
    assert THRESHOLDS.pretrain_size == 224 and THRESHOLDS.patch == 16


def test_reflectance_scaled_to_unit_range():
    errors = levels(validate_tile(make(s2(1500.0, dtype="float32") / 10000.0), "S2L2A"), "error")
    assert any("scaled to 0-1" in m and "10000" in m for m in errors)
    rgb = np.random.default_rng(1).uniform(0, 1, (3, 224, 224)).astype("float32")
    findings = validate_tile(make(rgb), "S2RGB")
    assert any("255" in m for m in levels(findings, "error"))
    assert any("dtype float32" in m for m in levels(findings, "warning"))


def test_s1_linear_power_is_flagged():
    linear = np.random.default_rng(0).uniform(0.001, 0.3, (2, 224, 224))
    assert any("10*log10" in m for m in levels(validate_tile(make(linear), "S1RTC"), "error"))
    db = 10 * np.log10(linear)
    assert levels(validate_tile(make(db), "S1RTC"), "error") == []


def test_lulc_ids_outside_the_classes():
    ids = np.full((1, 224, 224), 2, np.uint8)
    ids[0, :3, :3] = 12
    assert any("[12]" in m for m in levels(validate_tile(make(ids), "LULC"), "error"))
    ids[0, :3, :3] = 0
    findings = validate_tile(make(ids), "LULC")
    assert levels(findings, "error") == []
    assert any("no data" in m for m in levels(findings, "warning"))
    assert any("trees" in m for m in levels(findings, "ok"))


def test_ndvi_bounds():
    ndvi = np.random.default_rng(0).uniform(-0.2, 0.9, (1, 224, 224))
    assert levels(validate_tile(make(ndvi), "NDVI"), "error") == []
    assert any(
        "outside the valid -1..1" in m for m in levels(validate_tile(make(ndvi * 10000), "NDVI"), "error")
    )


def test_size_checks():
    odd = validate_tile(make(s2(size=100)), "S2L2A")  # any size works (padded): a note, not an error
    assert any("multiple of the 16" in m and "mirror-pad" in m for m in levels(odd, "note"))
    assert not any("multiple of the 16" in m for m in levels(odd, "error") + levels(odd, "warning"))
    warnings = levels(validate_tile(make(s2(size=256)), "S2L2A"), "warning")
    assert any("pretrained on 224x224" in m for m in warnings)


def test_nonfinite_fraction_and_nodata():
    data = np.full((2, 224, 224), -12.0)
    data[0, 0, :224] = np.nan
    errors = levels(validate_tile(make(data), "S1RTC"), "error")
    assert errors == ["0.22% of the values are NaN/inf: fill them (e.g. with the band mean) first"]
    dem = np.full((1, 224, 224), 300, np.int16)
    dem[0, :112] = -9999
    findings = validate_tile(make(dem, nodata=-9999), "DEM")
    assert any("50.00% of the values are nodata" in m for m in levels(findings, "warning"))
    assert band_stats(make(dem, nodata=-9999), "DEM")[0].min == 300  # nodata is excluded from statistics


def test_band_count_mismatch_skips_band_detectors():
    findings = validate_tile(make(s2(bands=13)), "S2L2A")
    assert any("13 band(s), but S2L2A has 12" in m for m in levels(findings, "error"))
    assert not any("offset" in f.message for f in findings)


def test_far_from_pretraining_statistics():
    dem = np.full((1, 224, 224), 5000.0)
    assert any("DEM mean 5000" in m for m in levels(validate_tile(make(dem), "DEM"), "warning"))


def test_band_stats_match_numpy(examples_dir):
    raster = read_raster(examples_dir / "S1RTC" / "282D_485L_3_3.tif", "S1RTC")
    vv = band_stats(raster, "S1RTC")[0]
    assert (vv.name, vv.pretrain_mean, vv.pretrain_std) == ("VV", -10.93, 4.391)
    assert vv.mean == pytest.approx(raster.data[0].mean())
    assert vv.min == pytest.approx(-27.73, abs=0.01)  # the tile's minimum, to the 2 decimals written here


def test_windowed_summary_equals_the_whole_array(tmp_path, examples_dir):
    # a raster larger than one window, with nodata: window-by-window statistics equal whole-array numpy
    rng = np.random.default_rng(0)
    data = rng.uniform(-25, -5, (2, 100, 70)).astype("float32")
    data[:, :10, :10] = -9999
    georef = GeoRef(None, Affine.identity(), 70, 100, -9999.0, None, ("VV", "VH"))
    path = write_raster(tmp_path / "s1.tif", data, georef)
    windowed = summarize_file(path, "S1RTC", block=32)  # 4 x 3 windows, the last ones partial
    whole = read_raster(path, "S1RTC")
    assert band_stats(windowed, "S1RTC") == pytest.approx(band_stats(whole, "S1RTC"))
    valid = data[0][data[0] != -9999]
    stats = band_stats(windowed, "S1RTC")[0]
    # float64 sums of float32 values: equal to numpy's mean within float32 resolution of the values
    assert stats.mean == pytest.approx(valid.astype(np.float64).mean(), rel=1e-6)
    assert (stats.min, stats.max) == (float(valid.min()), float(valid.max()))
    assert validate_tile(windowed, "S1RTC") == validate_tile(whole, "S1RTC")
    lulc = examples_dir / "LULC" / f"{SAMPLES[0]}.tif"
    assert validate_tile(summarize_file(lulc, "LULC", block=50), "LULC") == validate_tile(
        read_raster(lulc, "LULC"), "LULC"
    )


def test_negative_s2_values_are_not_told_to_multiply():
    errors = levels(validate_tile(make(-s2(1500.0, dtype="float32") / 10000.0), "S2L2A"), "error")
    assert any("0 or negative" in m for m in errors)
    assert not any("multiply" in m for m in errors)
