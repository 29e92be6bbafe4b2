"""A scene held in memory as xarray (notebooks): a ``DataArray``/``Dataset`` with a CRS, read by window.

:class:`XarraySource` takes a ``DataArray`` with dims ``(band, y, x)`` (or ``(y, x)`` for one band) whose CRS
and transform rioxarray knows (``da.rio.crs``, e.g. from ``rioxarray.open_rasterio`` or
``da.rio.write_crs``), or a ``Dataset`` of one such variable or of one 2-D variable per band. Bands named like
the catalog (``BLUE``) or by Sentinel-2 id (``B02``) are put in catalog order; unnamed bands (rioxarray's
1..N) are taken in order. Only the rows of the strip asked for are computed, so a dask-backed array is read
window by window. Nodata is the array's ``rio.nodata`` (or its encoded nodata); NaN is invalid too.

It plugs into :func:`terramind.scene.scene_source` as any input value with ``dims``; an in-memory array is
not warped, so it must be on the target grid (give it first, or name it with ``grid``). xarray and rioxarray
come with the extra ``xarray`` (imported through :func:`terramind.core.optional.require`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from terramind.core.errors import InputError, ShapeError
from terramind.core.optional import require
from terramind.data.geotiff import GeoRef, as_path
from terramind.data.policy import check_pixels
from terramind.modalities import get_modality
from terramind.scene.band_files import catalog_band

BAND_DIM = "band"


def is_xarray(value: object) -> bool:
    """Whether an input value is an xarray object (duck-typed: xarray is imported only when one is)."""
    return hasattr(value, "dims") and hasattr(value, "coords")


def _as_array(value: Any, modality: str) -> Any:
    """Return one (band, y, x) DataArray: a Dataset's only variable, or its 2-D variables as bands."""
    xr = require("xarray", "xarray")
    if isinstance(value, xr.Dataset):
        names = list(value.data_vars)
        if len(names) == 1:
            value = value[names[0]]
        else:
            value = (
                value.to_dataarray(dim=BAND_DIM)
                if hasattr(value, "to_dataarray")
                else value.to_array(BAND_DIM)
            )
    if not isinstance(value, xr.DataArray):
        raise InputError(f"{modality} input is a {type(value).__name__}: give an xarray DataArray or Dataset")
    if value.ndim == 2:
        value = value.expand_dims(BAND_DIM)
    if value.ndim != 3 or BAND_DIM not in value.dims:
        raise ShapeError(
            f"{modality} DataArray has dims {value.dims}: give (band, y, x) (rioxarray's layout) or (y, x)"
        )
    return value.transpose(BAND_DIM, value.rio.y_dim, value.rio.x_dim)


def _band_order(array: Any, modality: str) -> list[int]:
    """Positions of the modality's bands along ``band``: by name when the coordinate names them."""
    spec = get_modality(modality)
    count = array.sizes[BAND_DIM]
    expected = 1 if spec.classes is not None else spec.num_bands
    if count != expected:
        raise ShapeError(
            f"{spec.name} DataArray has {count} band(s); expected {expected}: {', '.join(spec.bands)}"
        )
    labels = [str(v) for v in array[BAND_DIM].values] if BAND_DIM in array.coords else []
    names = [catalog_band(v) for v in labels]
    if expected > 1 and all(n in spec.bands for n in names) and len(set(names)) == count:
        return [names.index(b) for b in spec.bands]
    return list(range(count))


class XarraySource:
    """One input modality from an xarray object, read strip by strip (a :class:`terramind.scene.Source`).

    Attributes:
        modality: Canonical modality name.
        georef: The array's grid (CRS and transform from rioxarray).
        files: A stand-in for the resume key (an in-memory array has no file).
        notes: Nothing is decided for the user here (present for :func:`terramind.scene.notes`).
    """

    def __init__(self, modality: str, value: Any) -> None:
        """Check the array and find its grid and band order.

        Raises:
            InputError: No CRS, or not an xarray object.
            ShapeError: Wrong dims or band count.
        """
        require("rioxarray", "xarray")  # registers the .rio accessor
        spec = get_modality(modality)
        self.modality = spec.name
        self.array = _as_array(value, spec.name)
        if self.array.rio.crs is None:
            raise InputError(
                f"{spec.name} DataArray has no CRS: set it with da.rio.write_crs('EPSG:...') (rioxarray)"
            )
        self.order = _band_order(self.array, spec.name)
        nodata = self.array.rio.nodata if self.array.rio.nodata is not None else self.array.rio.encoded_nodata
        self.nodata = None if nodata is None else float(nodata)
        self.georef = GeoRef(
            self.array.rio.crs, self.array.rio.transform(recalc=True), self.array.rio.width,
            self.array.rio.height, self.nodata, None, tuple(spec.bands),
        )  # fmt: skip
        self.files: dict[str, Path] = {
            spec.name: as_path(f"xarray://{spec.name}/{self.array.name or 'array'}")
        }
        self.notes: list[str] = []

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Compute rows ``[top, top + height)`` only (a dask array reads just this window)."""
        y_dim = self.array.rio.y_dim
        window = self.array.isel({y_dim: slice(top, top + height)})
        x = np.asarray(window.values, dtype=np.float32)[self.order]
        ok = np.isfinite(x)
        if self.nodata is not None:
            ok &= x != np.float32(self.nodata)
        where = f"{self.modality} DataArray, rows {top}-{top + height}"
        check_pixels(x, get_modality(self.modality), None, where, allow_nonfinite=True, require_valid=False)
        return {self.modality: x}, np.asarray(ok.all(axis=0))
