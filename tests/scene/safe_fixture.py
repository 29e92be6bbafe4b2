"""Test fixtures: a SAFE-like band-files product from the example tile and a STAC item of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"
SAFE_NAME = "S2B_MSIL2A_20240101T101010_N0510_R022_T38DXX.SAFE"
S2L2A_IDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
)  # catalog order
RES = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B01": 60, "B09": 60}  # the rest are 20 m
SIDE = 216  # the example tile cropped to a multiple of 6, so 20 m and 60 m grids cover it exactly


def _write_band(path: Path, band: np.ndarray, transform, crs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=band.shape[1], height=band.shape[0], count=1, dtype=str(band.dtype))
    with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
        dst.write(band[None])


def make_safe(root: Path, *, skip: tuple[str, ...] = (), shift: str | None = None) -> Path:
    """A SAFE-like product of 12 single-band GeoTIFFs at 10/20/60 m from the example tile (block means).

    Also holds a 20 m copy of B02 (the 10 m one must win) and TCI/SCL files (no band id: ignored).
    """
    with rasterio.open(EXAMPLE) as src:
        data, transform, crs = src.read()[:, :SIDE, :SIDE], src.transform, src.crs
    granule = root / SAFE_NAME / "GRANULE" / "L2A_T38DXX" / "IMG_DATA"

    def put(band_id: str, res: int, layer: np.ndarray) -> None:
        k = res // 10
        coarse = layer.reshape(SIDE // k, k, SIDE // k, k).mean(axis=(1, 3)).astype(layer.dtype)
        moved = transform @ transform.translation(3, 0) if band_id == shift else transform
        name = f"T38DXX_20240101T101010_{band_id}_{res}m.tif"
        _write_band(granule / f"R{res}m" / name, coarse, moved @ moved.scale(k), crs)

    for i, band_id in enumerate(S2L2A_IDS):
        if band_id not in skip:
            put(band_id, RES.get(band_id, 20), data[i])
    put("B02", 20, data[1])
    put("TCI", 10, data[3])
    put("SCL", 20, data[0])
    return root


def write_item(folder: Path, *, level: str = "S2MSI2A", baseline: str = "05.10", keys: str = "id") -> Path:
    """A STAC item JSON whose assets are the SAFE fixture's band files (relative hrefs; eo:bands names)."""
    safe = make_safe(folder) / SAFE_NAME
    assets = {}
    for path in sorted(safe.rglob("*_B*_*m.tif")):
        band_id = path.stem.split("_")[2]
        key = band_id if keys == "id" else f"asset{len(assets)}"
        if key in assets:
            key += f"_{path.stem.split('_')[3]}"
        assets[key] = {"href": str(path.relative_to(folder)), "type": "image/tiff; application=geotiff",
                       "roles": ["data"], "eo:bands": [{"name": band_id}]}  # fmt: skip
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "S2B_38DXX_20240101_0_L2A",
        "stac_extensions": [], "geometry": None, "bbox": None, "links": [], "assets": assets,
        "properties": {"datetime": "2024-01-01T10:10:10Z", "s2:product_type": level,
                       "s2:processing_baseline": baseline},
    }  # fmt: skip
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path
