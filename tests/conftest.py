"""Shared fixtures: the real example tiles and a factory for tiny generated GeoTIFFs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# A UTM grid like the TerraMesh tiles: 10 m pixels, north-up.
TINY_TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0)
TINY_CRS = "EPSG:32632"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The repository's ``examples/`` folder (35 real TerraMesh tiles, 7 modalities x 5 samples)."""
    assert (EXAMPLES / "S2L2A").is_dir(), f"example tiles missing under {EXAMPLES}"
    return EXAMPLES


TinyGeoTiff = Callable[..., Path]


@pytest.fixture
def tiny_geotiff(tmp_path: Path) -> TinyGeoTiff:
    """Factory writing a small GeoTIFF into ``tmp_path``; returns its path.

    Call as ``tiny_geotiff(data=None, *, name="tiny.tif", bands=3, size=32, dtype="int16", crs=TINY_CRS,
    transform=TINY_TRANSFORM, nodata=None, band_names=None, tags=None, seed=0)``. Without ``data`` the
    pixels are seeded random values in ``[0, 1000)``.
    """

    def make(
        data: np.ndarray | None = None,
        *,
        name: str = "tiny.tif",
        bands: int = 3,
        size: int = 32,
        dtype: str = "int16",
        crs: str | None = TINY_CRS,
        transform: Affine = TINY_TRANSFORM,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> Path:
        if data is None:
            data = np.random.default_rng(seed).uniform(0, 1000, (bands, size, size)).astype(dtype)
        path = tmp_path / name
        profile = {
            "driver": "GTiff",
            "width": data.shape[2],
            "height": data.shape[1],
            "count": data.shape[0],
            "dtype": str(data.dtype),
            "crs": crs,
            "transform": transform,
            "nodata": nodata,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, band in enumerate(band_names or (), start=1):
                dst.set_band_description(i, band)
            if tags:
                dst.update_tags(**tags)
        return path

    return make
