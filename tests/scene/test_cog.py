"""Scene outputs are Cloud-Optimized GeoTIFFs: tiled, with internal overviews, in GDAL's COG layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio

from terramind.data.geotiff import TILE_SIZE
from terramind.scene import GeoTiffSink, RasterSource, SceneOutput, TileLayout, fill_values, run_scene


def dem_and_lulc(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
    """DEM = the first S1 band; LULC: class 1 where it is above -12, class 2 elsewhere (one-hot logits)."""
    vv = tiles["S1RTC"][:, :1]
    logits = np.zeros((vv.shape[0], 10, *vv.shape[-2:]), np.float32)
    logits[:, 1:2][vv > -12] = 1.0
    logits[:, 2:3][vv <= -12] = 1.0
    return {"DEM": vv, "LULC": logits}


def test_scene_outputs_are_cogs(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    data = np.random.default_rng(2).uniform(-20, -5, (2, 600, 700)).astype("float32")
    s1 = tiny_geotiff(data, name="s1.tif", dtype="float32", nodata=-9999)
    out = tmp_path / "out"
    out.mkdir()
    outputs = [SceneOutput.for_modality(m, out / f"{m}.tif") for m in ("DEM", "LULC")]
    run_scene(
        dem_and_lulc, RasterSource({"S1RTC": s1}), [GeoTiffSink(outputs)], TileLayout(600, 700, 256, 0),
        out / ".work", fill=fill_values(["S1RTC"]), batch=4,
    )  # fmt: skip
    for o in outputs:
        with rasterio.open(o.path) as dst:
            assert dst.driver == "GTiff" and dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dst.block_shapes == [(TILE_SIZE, TILE_SIZE)] * dst.count
            assert dst.overviews(1) == [2, 4]  # halved until the scene fits one 256 px block
            assert dst.nodata == o.nodata and dst.descriptions[0] == o.band_names[0]
            values = dst.read(1)
            if o.categorical:
                assert dst.colormap(1)[1][:3] == o.colormap[1]  # type: ignore[index]
                assert np.array_equal(values, np.where(data[0] > -12, 1, 2))
            else:
                assert np.array_equal(values, data[0])  # one tile per pixel (no overlap): exact
    assert sorted(p.name for p in out.iterdir()) == ["DEM.tif", "LULC.tif"]  # no temporaries left
