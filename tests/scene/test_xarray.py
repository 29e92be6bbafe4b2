"""The notebook form: xarray inputs (lazy, by window); ``generate_scene`` returns an ``xarray.Dataset``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terramind.api import generation as api_generation
from terramind.cli.main import main
from terramind.core.errors import InputError
from terramind.generation.options import GenerationOptions

xr = pytest.importorskip("xarray", reason="the xarray extra is not installed")
rioxarray = pytest.importorskip("rioxarray", reason="the xarray extra is not installed")
dask_array = pytest.importorskip("dask.array", reason="the xarray extra is not installed")

_spec = importlib.util.spec_from_file_location(
    "scene_fixtures_x", Path(__file__).parent / "scene_fixtures.py"
)
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)
EXAMPLE = fx.EXAMPLE
CLI_FAST = ["--tile", "64", "--overlap", "16", "--batch-size", "4", "--weights", "random",
            "--diffusion-steps", "1", "--precision", "fp32", "--seed", "3"]  # fmt: skip


def test_xarray_source_computes_only_the_window_read() -> None:
    from dask import delayed

    from terramind.scene import scene_source

    array = rioxarray.open_rasterio(EXAMPLE)
    good = dask_array.from_array(array.values[:, :112], chunks=(12, 112, 224))

    @delayed
    def broken() -> np.ndarray:
        raise RuntimeError("the second chunk was computed")

    bad = dask_array.from_delayed(broken(), shape=(12, 112, 224), dtype=array.dtype)
    lazy = array.copy(data=dask_array.concatenate([good, bad], axis=1))
    source = scene_source({"S2L2A": lazy})
    data, valid = source.read_rows(0, 100)  # only the first chunk is computed
    np.testing.assert_array_equal(data["S2L2A"], array.values[:, :100].astype(np.float32))
    assert valid.all() and source.georef.transform == array.rio.transform()
    with pytest.raises(RuntimeError, match="second chunk"):
        source.read_rows(150, 10)


def test_xarray_bands_named_out_of_order_are_put_in_catalog_order() -> None:
    from terramind.scene import scene_source

    array = rioxarray.open_rasterio(EXAMPLE)
    ids = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    shuffled = array.assign_coords(band=ids).isel(band=list(range(11, -1, -1)))
    data, _ = scene_source({"S2L2A": shuffled}).read_rows(0, 8)
    np.testing.assert_array_equal(data["S2L2A"], array.values[:, :8].astype(np.float32))


def test_xarray_without_crs_is_refused() -> None:
    from terramind.scene import scene_source

    bare = xr.DataArray(np.ones((12, 16, 16), np.int16), dims=("band", "y", "x"))
    with pytest.raises(InputError, match=r"no CRS: set it with da\.rio\.write_crs"):
        scene_source({"S2L2A": bare})


def test_generate_scene_returns_the_cli_values_with_coords_and_crs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from terramind import generate_scene

    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        return fx.tiny.tiny_generator(inputs, outputs)

    monkeypatch.setattr(api_generation, "create_generator", factory)
    assert main(["generate", "--input", f"S2L2A={EXAMPLE}", "--to", "LULC,DEM", "-o", str(tmp_path / "cli"),
                 *CLI_FAST]) == 0  # fmt: skip
    s2 = rioxarray.open_rasterio(EXAMPLE, chunks={"y": 64})  # dask-backed: read strip by strip
    options = GenerationOptions(diffusion_steps=1, precision="fp32")
    ds = generate_scene({"S2L2A": s2}, ["LULC", "DEM"], options=options, weights=None, tokenizer_weights=None,
                        seed=3, tile=64, overlap=16, batch=4)  # fmt: skip
    assert set(ds.data_vars) == {"LULC", "DEM"}
    assert ds.rio.crs == s2.rio.crs and ds.rio.transform() == s2.rio.transform()
    np.testing.assert_array_equal(ds["x"].values, s2["x"].values)
    np.testing.assert_array_equal(ds["y"].values, s2["y"].values)
    for name in ("LULC", "DEM"):
        with rasterio.open(tmp_path / "cli" / f"{name}.tif") as f:
            np.testing.assert_array_equal(ds[name].values, f.read(1))  # same engine, seed: the same values
            assert ds[name].rio.nodata == f.nodata
    assert ds["LULC"].dtype == np.uint8 and ds["DEM"].dims == ("y", "x")
