import json

import numpy as np
import pytest

from terramind.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_real_tile_report(capsys, examples_dir):
    code, out, err = run(capsys, examples_dir / "S2L2A" / "38D_378R_2_3.tif", "--modality", "S2L2A")
    assert code == 0 and err == ""
    assert "224 x 224 px, 12 band(s), int16" in out
    assert "EPSG:32736" in out and "time        not tagged" in out  # the S2 tiles carry no datetime tag
    assert "RED" in out and "1854 ± 2134" in out  # pretraining mean ± std of B4
    assert "result: OK for S2L2A" in out


def test_offset_warning_and_quicklook(capsys, examples_dir, tmp_path):
    png = tmp_path / "l1c.png"
    code, out, _ = run(capsys, examples_dir / "S2L1C" / "609U_541L_3_0.tif", "-m", "s2l1c", "--png", png)
    assert code == 0
    assert "warning  likely +1000 DN offset" in out
    assert f"quicklook: {png}" in out and png.read_bytes()[:8] == PNG_MAGIC


def test_json_report(capsys, examples_dir):
    code, out, _ = run(capsys, examples_dir / "LULC" / "609U_541L_3_0.tif", "-m", "LULC", "--json")
    report = json.loads(out)
    assert code == 0 and report["errors"] == 0
    assert report["crs"] == "EPSG:32616" and report["resolution"] == [10.0, 10.0]
    assert report["time"] is not None and report["time"].startswith("20")
    assert report["band_stats"][0]["min"] == report["band_stats"][0]["max"] == 7  # all snow/ice
    assert any("snow/ice 100%" in f["message"] for f in report["findings"])


def test_tile_with_validation_errors_exits_1(capsys, tiny_geotiff):
    scaled = np.random.default_rng(0).uniform(0, 0.4, (12, 40, 40)).astype("float32")
    code, out, _ = run(capsys, tiny_geotiff(scaled), "-m", "S2L2A")
    assert code == 1
    assert (
        "error    values look scaled to 0-1" in out
        and "note     size 40x40 is not a multiple of the 16" in out
    )
    assert "result: tile has 1 validation error(s)" in out  # the size is a note: the commands pad it


def _text_file(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("this is text, not a GeoTIFF")
    return path


def _nan_tile(tiny_geotiff):
    data = np.full((2, 32, 32), -12.0, "float32")
    data[1, 0, 0] = np.nan
    return tiny_geotiff(data)


@pytest.mark.parametrize(
    ("make", "modality", "expected"),
    [
        (lambda tmp, ex, tiny: tmp / "missing.tif", "S2L2A", "does not exist"),
        (lambda tmp, ex, tiny: _text_file(tmp), "S2L2A", "is not a readable raster"),
        (
            lambda tmp, ex, tiny: ex / "S2L1C" / "38D_378R_2_3.tif",
            "S2L2A",
            "S2L2A expects 12, in this order: COASTAL",
        ),
        (lambda tmp, ex, tiny: _nan_tile(tiny), "S1RTC", "non-finite"),
        (lambda tmp, ex, tiny: ex / "DEM" / "38D_378R_2_3.tif", "Sentinel3", "unknown modality 'Sentinel3'"),
    ],
    ids=["missing", "not-a-raster", "band-count", "non-finite", "unknown-modality"],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, examples_dir, tiny_geotiff, make, modality, expected):
    path = make(tmp_path, examples_dir, tiny_geotiff)
    before = set(tmp_path.iterdir())
    code, out, err = run(capsys, path, "-m", modality, "--png", tmp_path / "q.png")
    assert code == 2 and out == ""
    assert err.startswith("terramind inspect: error: ") and expected in err
    assert err.count("\n") == 1
    assert set(tmp_path.iterdir()) == before  # no quicklook, no temporary file


def test_missing_output_folder(capsys, tmp_path, examples_dir):
    code, out, err = run(
        capsys, examples_dir / "DEM" / "38D_378R_2_3.tif", "-m", "DEM", "--png", tmp_path / "no" / "q.png"
    )
    assert code == 2 and out == ""
    folder = tmp_path / "no"
    expected = f"output folder '{folder}' does not exist: create it first (mkdir -p)"
    assert err == f"terramind inspect: error: {expected}\n"
    assert list(tmp_path.iterdir()) == []


def test_png_suffix_required(capsys, tmp_path, examples_dir):
    code, _, err = run(
        capsys, examples_dir / "DEM" / "38D_378R_2_3.tif", "-m", "DEM", "--png", tmp_path / "q.jpg"
    )
    assert code == 2 and "*.png" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_modality_is_a_usage_error(capsys, examples_dir):
    assert main(["inspect", str(examples_dir / "DEM" / "38D_378R_2_3.tif")]) == 2
    assert (
        "terramind inspect: error: give the tile as FILE --modality M (or --input M=FILE)"
        in capsys.readouterr().err
    )


def test_size_not_a_multiple_of_16_is_a_note(capsys, tiny_geotiff):
    data = np.random.default_rng(0).uniform(500, 3000, (12, 7, 300)).astype("int16")
    code, out, _ = run(capsys, tiny_geotiff(data), "-m", "S2L2A")
    assert code == 0
    assert "note     size 300x7 is not a multiple of the 16-pixel patch: the commands mirror-pad" in out
    assert "result: tile has" not in out
