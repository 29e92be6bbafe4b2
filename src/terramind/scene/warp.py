"""Inputs on different grids read on one target grid: footprints, the overlap check, warped windows.

A scene's inputs need not share a grid (S2 on its UTM zone, S1 from another product on the next zone): each
input whose grid differs from the target grid is read through a :class:`rasterio.vrt.WarpedVRT` onto that
grid, one window (row strip) at a time, so memory stays at one strip. The target grid is the first input's,
or the one the caller names (``--grid MOD``).

Resampling comes from the catalog: class maps (a modality with classes) are resampled ``nearest`` (a class
id is not a quantity to interpolate), everything else ``bilinear``. Pixels of the target grid that the input
does not cover are NaN, so they are invalid (nodata) in every output; source nodata pixels take no part in
the interpolation. Inputs whose footprints do not overlap the target's are refused, both footprints in the
target CRS in the message.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from terramind.core.errors import InputError
from terramind.data.geotiff import GeoRef, PathLike, open_raster
from terramind.modalities import get_modality

Bounds = tuple[float, float, float, float]  # (left, bottom, right, top)


def resampling_for(modality: str, continuous: str = "bilinear") -> str:
    """Return a modality's resampling: ``nearest`` for class maps (catalog classes), else ``continuous``."""
    return "nearest" if get_modality(modality).classes is not None else continuous


def check_resampling(name: str) -> str:
    """Return a rasterio resampling name, or refuse an unknown one listing the names there are.

    Raises:
        InputError: The name is not one of :class:`rasterio.enums.Resampling`.
    """
    if name not in Resampling.__members__:
        raise InputError(
            f"unknown resampling {name!r}: use one of {', '.join(sorted(Resampling.__members__))}"
        )
    return name


def bounds(georef: GeoRef) -> Bounds:
    """Return the footprint of a grid in its own CRS."""
    t = georef.transform
    xs, ys = (t.c, t.c + t.a * georef.width), (t.f, t.f + t.e * georef.height)
    return min(xs), min(ys), max(xs), max(ys)


def footprint(georef: GeoRef, target: GeoRef) -> Bounds:
    """Return the footprint of ``georef`` in the target's CRS (its own bounds when either has no CRS)."""
    if georef.crs is None or target.crs is None or georef.crs == target.crs:
        return bounds(georef)
    left, bottom, right, top = transform_bounds(georef.crs, target.crs, *bounds(georef), densify_pts=21)
    return left, bottom, right, top


def _text(b: Bounds) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in b) + ")"


def check_overlap(name: str, georef: GeoRef, target_name: str, target: GeoRef) -> None:
    """Refuse an input whose footprint does not overlap the target grid's (both in the target CRS).

    Raises:
        InputError: No overlap, or one grid has a CRS and the other not (nothing to warp between).
    """
    if (georef.crs is None) != (target.crs is None):
        raise InputError(
            f"{name} and {target_name} cannot be put on one grid: one has a CRS and the other not "
            f"({georef.crs} vs {target.crs}); give both inputs georeferenced"
        )
    mine, theirs = footprint(georef, target), bounds(target)
    if mine[0] >= theirs[2] or mine[2] <= theirs[0] or mine[1] >= theirs[3] or mine[3] <= theirs[1]:
        raise InputError(
            f"{name} does not overlap {target_name}: {name} covers {_text(mine)}, {target_name} covers "
            f"{_text(theirs)} (left, bottom, right, top in {target.crs}); give inputs of the same place"
        )


def read_warped(
    path: PathLike, target: GeoRef, window: Window, band_indexes: Sequence[int], resampling: str
) -> np.ndarray:
    """Read a window of the target grid from a raster on another grid, as float32 (NaN: not covered).

    Args:
        path: The raster (anything GDAL opens).
        target: The grid to read on.
        window: Window of the target grid.
        band_indexes: 0-based bands of the file, in the order wanted.
        resampling: Rasterio resampling name.
    """
    with open_raster(path) as dataset, WarpedVRT(
        dataset, crs=target.crs, transform=target.transform, width=target.width, height=target.height,
        resampling=Resampling[resampling], src_nodata=dataset.nodata, nodata=np.nan, dtype="float32",
    ) as vrt:  # fmt: skip
        out: np.ndarray = vrt.read([i + 1 for i in band_indexes], window=window)
    return out
