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
