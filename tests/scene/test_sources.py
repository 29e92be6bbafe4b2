"""Scene sources users hold, through ``generate``: GDAL virtual paths, band-files folders, STAC items."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terramind.api import generation as api_generation
from terramind.cli.main import main
from terramind.data.geotiff import GdalPath, as_path, is_gdal_path
from terramind.modalities import get_modality

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"
TINY = Path(__file__).parents[1] / "generation" / "tiny.py"
_spec = importlib.util.spec_from_file_location("gen_tiny_sources", TINY)
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
FAST = ["--tile", "64", "--overlap", "16", "--diffusion-steps", "1", "--batch-size", "4"]
FAST += ["--weights", "random"]


@pytest.fixture
def made(monkeypatch):
    """Replace the real factory by the tiny random generator; record what it was asked for."""
    calls = []

    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        calls.append(dict(inputs=inputs, outputs=outputs))
        return tiny.tiny_generator(inputs, outputs)

    monkeypatch.setattr(api_generation, "create_generator", factory)
    return calls


@pytest.mark.parametrize(
    ("text", "remote"),
    [("https://h/a.tif", True), ("s3://b/k.tif", True), ("/vsizip//x.zip/a.tif", True), ("/tmp/a.tif", False),
     ("a.tif", False), ("/vsimemo/a", True)],
)  # fmt: skip
def test_gdal_paths_are_recognised_and_kept_verbatim(text, remote):
    assert is_gdal_path(text) is remote
    path = as_path(text)
    assert isinstance(path, GdalPath) is remote
    assert str(path) == text  # a pathlib.Path would have merged the "//"


def test_generate_reads_a_scene_inside_a_zip(tmp_path, made):
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(EXAMPLE, "inner/scene.tif")
    out = tmp_path / "out"
    code = main(["generate", "--input", f"S2L2A=/vsizip/{archive}/inner/scene.tif", "--to", "DEM", "-o",
                 str(out), *FAST])  # fmt: skip
    assert code == 0
    with rasterio.open(EXAMPLE) as src, rasterio.open(out / "DEM.tif") as dem:
        assert dem.crs == src.crs and dem.transform == src.transform and dem.shape == src.shape
        assert np.isfinite(dem.read(1)).all()


# ------------------------------------------------------------------------------------ band-files folders
_fspec = importlib.util.spec_from_file_location("safe_fixture", Path(__file__).parent / "safe_fixture.py")
assert _fspec is not None and _fspec.loader is not None
safe_fixture = importlib.util.module_from_spec(_fspec)
_fspec.loader.exec_module(safe_fixture)
S2L2A_IDS, RES, SIDE = safe_fixture.S2L2A_IDS, safe_fixture.RES, safe_fixture.SIDE
make_safe, write_item = safe_fixture.make_safe, safe_fixture.write_item


def test_band_files_source_stacks_on_the_finest_grid(tmp_path):
    from terramind.scene import BandFilesSource

    source = BandFilesSource.from_folder("S2L2A", make_safe(tmp_path))
    with rasterio.open(EXAMPLE) as src:
        original = src.read()[:, :SIDE, :SIDE].astype(np.float32)
        assert source.georef.transform == src.transform and source.georef.crs == src.crs
    assert (source.georef.width, source.georef.height) == (SIDE, SIDE)
    assert source.band_files["BLUE"].name.endswith("_B02_10m.tif")  # the 10 m file, not the 20 m copy
    data, valid = source.read_rows(40, 50)
    x = data["S2L2A"]
    assert x.shape == (12, 50, SIDE) and valid.shape == (50, SIDE)
    for i, band_id in enumerate(S2L2A_IDS):
        if RES.get(band_id, 20) == 10:
            np.testing.assert_array_equal(x[i], original[i, 40:90])  # on the grid: read as they are
        else:
            # bilinear resampling interpolates: every value lies within the coarse band's range
            with rasterio.open(source.band_files[source.georef.band_names[i]]) as f:
                coarse = f.read(1)
            assert coarse.min() <= x[i].min() and x[i].max() <= coarse.max()
            assert not np.array_equal(x[i, :, :-1], x[i, :, 1:])  # not one constant


def test_generate_from_a_safe_folder_writes_the_10m_grid(tmp_path, made):
    safe = make_safe(tmp_path / "in") / safe_fixture.SAFE_NAME
    out = tmp_path / "out"
    assert main(["generate", "--input", f"S2L2A={safe}", "--to", "DEM", "-o", str(out), *FAST]) == 0
    with rasterio.open(EXAMPLE) as src, rasterio.open(out / "DEM.tif") as dem:
        assert dem.crs == src.crs and dem.transform == src.transform
        assert (dem.width, dem.height) == (SIDE, SIDE)
        assert np.isfinite(dem.read(1)).all()
    assert made[0]["inputs"] == ["S2L2A"]


# ------------------------------------------------------------------------------------------- STAC items
def test_stac_item_reads_bands_level_and_baseline(tmp_path):
    from terramind.scene.stac import read_item, stac_source

    scene = read_item(write_item(tmp_path, keys="opaque"))  # matched by eo:bands names, not keys
    assert scene.level == "L2A" and scene.baseline == "05.10" and scene.offset == 1000.0
    assert set(scene.bands) >= set(get_modality("S2L2A").bands)
    source = stac_source("S2L2A", tmp_path / "item.json")
    assert source.band_files["BLUE"].name.endswith("_B02_10m.tif") and source.georef.width == SIDE
    old = read_item(write_item(tmp_path / "old", baseline="02.14"))
    assert old.offset == 0.0  # before baseline 04.00 DN carry no offset


def _dem(out: Path) -> np.ndarray:
    with rasterio.open(out / "DEM.tif") as f:
        assert (f.width, f.height) == (SIDE, SIDE)
        return f.read(1)


def test_generate_from_a_stac_item_applies_the_offset(tmp_path, made, capsys):
    item = write_item(tmp_path / "in")
    safe = tmp_path / "in" / safe_fixture.SAFE_NAME
    runs = {}
    for name, inp, extra in [
        ("item", item, []), ("folder_1000", safe, ["--offset", "S2L2A=1000"]),
        ("folder_0", safe, ["--offset", "S2L2A=0"]), ("item_0", item, ["--offset", "S2L2A=0"]),
    ]:  # fmt: skip
        capsys.readouterr()
        args = ["--input", f"S2L2A={inp}", "--to", "DEM", "-o", str(tmp_path / name), *FAST, *extra]
        assert main(["generate", *args]) == 0
        runs[name] = (_dem(tmp_path / name), capsys.readouterr().err)
    assert "baseline 05.10: DN offset 1000 applied" in runs["item"][1]
    assert "using --offset S2L2A=0 as given (the item implies 1000)" in runs["item_0"][1]
    np.testing.assert_array_equal(runs["item"][0], runs["folder_1000"][0])  # automatic == explicit 1000
    np.testing.assert_array_equal(runs["item_0"][0], runs["folder_0"][0])  # --offset overrides
    assert not np.array_equal(runs["item"][0], runs["item_0"][0])  # and the offset does matter
    with rasterio.open(EXAMPLE) as src, rasterio.open(tmp_path / "item" / "DEM.tif") as dem:
        assert dem.crs == src.crs and dem.transform == src.transform
