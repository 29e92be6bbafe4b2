"""PNG quicklooks of GeoTIFFs of any size: read decimated, nodata as gaps, drawn by :mod:`terramind.viz`.

One home for the picture of a scene file: ``terramind generate --png`` draws its outputs with it and
``terramind serve`` draws a job's inputs and outputs with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from terramind.modalities import get_modality
from terramind.viz import save_quicklook

QUICKLOOK_PIXELS = 1024  # longest side of a quicklook; larger scenes are read decimated


def write_quicklook(tif: Path, png: Path, modality: str, *, title: str | None = None) -> Path:
    """Render a PNG of a GeoTIFF of ``modality`` (decimated to at most 1024 px; nodata shown as gaps).

    Class maps are drawn as they are (their "no data" is a class); for values, pixels equal to the file's
    nodata become gaps.

    Args:
        tif: The GeoTIFF (its band count must be the modality's).
        png: The PNG to write (replaced atomically).
        modality: Catalog name of the file's modality.
        title: Optional title above the picture.

    Returns:
        The written PNG path.
    """
    spec = get_modality(modality)
    with rasterio.open(tif) as src:
        scale = max(1.0, max(src.width, src.height) / QUICKLOOK_PIXELS)
        shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
    if spec.classes is None:
        values = data.astype(np.float32)
        data = values if nodata is None else np.where(data == nodata, np.nan, values)
    return save_quicklook(png, spec.name, data, title=title)
