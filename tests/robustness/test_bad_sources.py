"""Scene sources users hold, failing cleanly: URLs GDAL cannot open, URL outputs, band files, STAC items."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"
GEN = ["generate", "--to", "DEM", "--weights", "random"]


@pytest.fixture
def no_network_wait(monkeypatch):
    """A URL fails in seconds: one try, a 2 s timeout (the sandbox has no network)."""
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "2")


@pytest.mark.parametrize(
    "url", ["https://example.invalid/scene.tif", "/vsicurl/https://example.invalid/s.tif"]
)
def test_url_gdal_cannot_open_is_one_line(run_cli, tmp_path, no_network_wait, url):
    outcome = run_cli([*GEN, "--input", f"S2L2A={url}", "-o", tmp_path / "out"])
    outcome.expect_failure("GDAL cannot open", url, "check the URL, the network and the credentials")


def test_missing_file_inside_a_zip_names_the_path(run_cli, tmp_path):
    path = f"/vsizip/{tmp_path}/absent.zip/scene.tif"
    outcome = run_cli([*GEN, "--input", f"S2L2A={path}", "-o", tmp_path / "out"])
    outcome.expect_failure("GDAL cannot open", path)


@pytest.mark.parametrize("out", ["s3://bucket/out", "https://example.invalid/out", "/vsis3/bucket/out"])
def test_output_url_is_refused(run_cli, tmp_path, out):
    outcome = run_cli([*GEN, "--input", f"S2L2A={EXAMPLE}", "-o", out])
    outcome.expect_failure("is a URL or GDAL virtual path", "give a local path")


_fspec = importlib.util.spec_from_file_location(
    "safe_fixture", Path(__file__).parents[1] / "scene" / "safe_fixture.py"
)
assert _fspec is not None and _fspec.loader is not None
safe_fixture = importlib.util.module_from_spec(_fspec)
_fspec.loader.exec_module(safe_fixture)


def test_band_missing_from_a_folder_is_named(run_cli, tmp_path):
    safe = safe_fixture.make_safe(tmp_path / "in", skip=("B8A", "B11"))
    outcome = run_cli([*GEN, "--input", f"S2L2A={safe}", "-o", tmp_path / "out"])
    outcome.expect_failure("no file for band(s) B8A (NIR_NARROW), B11 (SWIR_1)")


def test_band_of_another_footprint_is_refused(run_cli, tmp_path):
    safe = safe_fixture.make_safe(tmp_path / "in", shift="B05")
    outcome = run_cli([*GEN, "--input", f"S2L2A={safe}", "-o", tmp_path / "out"])
    outcome.expect_failure("band RED_EDGE_1", "the band files are not one scene")


def test_l1c_item_given_as_l2a_is_refused(run_cli, tmp_path):
    item = safe_fixture.write_item(tmp_path / "in", level="S2MSI1C")
    outcome = run_cli([*GEN, "--input", f"S2L2A={item}", "-o", tmp_path / "out"])
    outcome.expect_failure("is a Sentinel-2 L1C product (s2:product_type S2MSI1C), not S2L2A", "S2L1C=")


def test_not_a_stac_item_is_refused(run_cli, tmp_path):
    bad = tmp_path / "item.json"
    bad.write_text('{"type": "FeatureCollection", "features": []}')
    outcome = run_cli([*GEN, "--input", f"S2L2A={bad}", "-o", tmp_path / "out"])
    outcome.expect_failure("is not a readable STAC item", "give an item JSON")


def test_folder_without_band_files_is_called_a_folder(run_cli, tmp_path):
    folder = tmp_path / "scene"
    folder.mkdir()
    (folder / "notes.txt").write_text("no rasters here")
    outcome = run_cli([*GEN, "--input", f"S2L2A={folder}", "-o", tmp_path / "out"])
    outcome.expect_failure("is a folder without Sentinel-2 band files", "give a GeoTIFF file or a folder")
