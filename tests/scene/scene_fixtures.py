"""Test fixtures written by the tests themselves: two inputs on neighbouring UTM zones, S1 in linear power,
an L1C scene whose metadata carries the +1000 offset, and the tiny random generator factory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"
TINY = Path(__file__).parents[1] / "generation" / "tiny.py"
_spec = importlib.util.spec_from_file_location("gen_tiny_scene_fixtures", TINY)
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

S2_CRS, S1_CRS = "EPSG:32632", "EPSG:32633"  # neighbouring UTM zones, meeting at 12 deg E
S2_ORIGIN = (799_000.0, 5_000_000.0)  # east of zone 32 (beyond 12 deg E, as UTM allows): 12.8 deg E, 45.1 N
S1_RES = 20.0
WAVE = 50.0  # S1 field: -15 + 5 sin(x/WAVE) cos(y/WAVE) over S1 pixels; steepest slope 5*sqrt(2)/WAVE dB/px


def write(
    path: Path, data: np.ndarray, crs: str, transform: Affine, nodata: float | None = None, **tags
) -> Path:
    """Write a GeoTIFF (C, H, W) with optional nodata and tags."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=str(data.dtype), crs=crs, transform=transform, nodata=nodata)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def s2_on_zone_32(folder: Path, side: int = 224) -> Path:
    """The example S2L2A tile (int16 DN) on EPSG:32632 near the zone's eastern edge (mirrored past 224)."""
    with rasterio.open(EXAMPLE) as src:
        data = src.read()
    extra = max(0, side - data.shape[1])
    data = np.pad(data, ((0, 0), (0, extra), (0, extra)), mode="reflect")[:, :side, :side]
    transform = Affine(10.0, 0.0, S2_ORIGIN[0], 0.0, -10.0, S2_ORIGIN[1])
    return write(folder / "s2_32632.tif", data, S2_CRS, transform)


def s1_field(height: int, width: int) -> np.ndarray:
    """The smooth S1RTC field (2, H, W) float32 in dB (VH 6 dB below VV)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    vv = -15.0 + 5.0 * np.sin(x / WAVE) * np.cos(y / WAVE)
    return np.stack([vv, vv - 6.0]).astype(np.float32)


def s1_on_zone_33(folder: Path, s2: Path, *, margin: float = 400.0, shift: float = 0.0,
                  linear: bool = False) -> Path:  # fmt: skip
    """S1RTC at 20 m on EPSG:32633 covering the S2 tile's footprint (plus ``margin`` m; ``shift`` m east)."""
    with rasterio.open(s2) as src:
        left, bottom, right, top = transform_bounds(src.crs, S1_CRS, *src.bounds)
    left, top = left - margin + shift, top + margin
    width = int((right + margin + shift - left) // S1_RES) + 1
    height = int((top - (bottom - margin)) // S1_RES) + 1
    data = s1_field(height, width)
    if linear:
        data = (10.0 ** (data / 10.0)).astype(np.float32)
        data[:, :3, :3] = -9999.0  # nodata stays nodata through the conversion
    transform = Affine(S1_RES, 0.0, left, 0.0, -S1_RES, top)
    return write(folder / ("s1_linear.tif" if linear else "s1_32633.tif"), data, S1_CRS, transform, -9999.0)
