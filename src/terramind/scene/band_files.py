"""A scene held as one file per band (Sentinel-2 as distributed), read as one stacked input.

:class:`BandFilesSource` takes a folder, a SAFE product or granule (``GRANULE/*/IMG_DATA/R10m|R20m|R60m``) or
a list of single-band files, recognises each file's band by its name (``B02.tif``, ``*_B8A.tif``,
``T33UUP_20240101T101010_B11_20m.jp2``; Sentinel-2 band ids resolved by :data:`S2_BAND_IDS`), keeps the
finest file of each band (a SAFE holds most bands at several resolutions), and stacks the modality's bands in
catalog order on the **finest grid present**. Coarser bands are resampled window by window through a
:class:`rasterio.vrt.WarpedVRT` (bilinear by default, as suits reflectance; any rasterio resampling name can
be given), so memory stays at one strip of rows.

A band the modality needs that no file holds is refused naming it; so are bands on another CRS or footprint.
Given a target ``grid`` (another input's, :mod:`terramind.scene.warp`), every band is warped straight onto it
instead, in one resampling step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from terramind.core.errors import InputError
from terramind.data.geotiff import S2_BAND_IDS, GeoRef, as_path, open_georef, open_raster
from terramind.data.policy import check_pixels
from terramind.modalities import get_modality
from terramind.scene.warp import bounds, check_resampling, read_warped

DEFAULT_RESAMPLING = "bilinear"  # reflectance varies smoothly; nearest would leave 20/60 m blocks
BAND_FILE_SUFFIXES = (".tif", ".tiff", ".jp2")
# a Sentinel-2 band id standing alone between separators: "B02", "T33UUP_..._B11_20m", "x-b8a.tif"
_BAND_ID_RE = re.compile(r"(?:^|[_.\-])B(0?[1-9]|1[0-2]|8A)(?=$|[_.\-])", re.IGNORECASE)


def catalog_band(name: str) -> str:
    """Return a band given as an S2 id (``B02``, ``b8a``) or a catalog name as the catalog name."""
    key = name.strip().upper()
    return S2_BAND_IDS.get(re.sub(r"^B0*(\d)", r"B\1", key), key)


def band_of(path: Path) -> str | None:
    """Return the catalog band name a file's name carries (``..._B8A_20m.jp2`` -> ``NIR_NARROW``), or None."""
    found = _BAND_ID_RE.findall(Path(str(path)).stem)
    if len(found) != 1:
        return None
    number = found[0].upper().lstrip("0")
    return S2_BAND_IDS.get(f"B{number}")


def band_files_in(folder: Path) -> list[Path]:
    """Return the raster files under ``folder`` (recursively, as in a SAFE product), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in BAND_FILE_SUFFIXES and p.is_file())


def _finest(paths: Iterable[Path]) -> tuple[Path, GeoRef]:
    """Return the file of one band with the smallest pixels (a SAFE holds a band at 10, 20 and 60 m)."""
    found = [(p, open_georef(p)) for p in paths]
    return min(found, key=lambda pg: pg[1].resolution[0] * pg[1].resolution[1])


class BandFilesSource:
    """One input modality stacked from single-band files, on the finest grid among them.

    Attributes:
        modality: Canonical modality name.
        band_files: Catalog band name -> the file read for it, in catalog order.
        resampling: Rasterio resampling name used for bands coarser than the grid.
        native: The finest band's grid, with the modality's band names.
        georef: The grid read on: ``native``, or the target grid given.
        files: ``MOD:BAND`` -> file, for the resume key.
        notes: What was decided for the user (a warp onto another input's grid), one line each.
    """

    def __init__(
        self,
        modality: str,
        paths: Iterable[Path | str] | Mapping[str, Path | str],
        *,
        resampling: str = DEFAULT_RESAMPLING,
        grid: GeoRef | None = None,
    ) -> None:
        """Recognise the bands of ``paths`` (files whose names carry no band id are ignored).

        Args:
            modality: The modality the bands make up (e.g. ``S2L2A``).
            paths: Files recognised by name, or ``band -> file`` (band as a catalog name or an S2 id).
            resampling: Rasterio resampling name for bands coarser than the finest.
            grid: Read on this grid instead of the finest band's (an input's on another grid).

        Raises:
            InputError: A band of the modality missing, an unknown resampling, or bands whose CRS or
                footprint differ.
        """
        spec = get_modality(modality)
        self.modality, self.resampling = spec.name, check_resampling(resampling)
        by_band: dict[str, list[Path]] = {}
        named: list[tuple[str | None, Path]]
        if isinstance(paths, Mapping):
            named = [(catalog_band(k), as_path(p)) for k, p in paths.items()]
        else:
            named = [(band_of(as_path(p)), as_path(p)) for p in paths]
        for band, path in named:
            if band is not None:
                by_band.setdefault(band, []).append(path)
        missing = [b for b in spec.bands if b not in by_band]
        if missing:
            ids = {v: k for k, v in S2_BAND_IDS.items()}
            names = ", ".join(f"{ids.get(b, b)} ({b})" for b in missing)
            raise InputError(
                f"{spec.name} band files: no file for band(s) {names}; every band needs a file whose name "
                f"carries its id (e.g. *_B02_10m.jp2)"
            )
        chosen = {b: _finest(by_band[b]) for b in spec.bands}
        self.band_files = {b: pg[0] for b, pg in chosen.items()}
        self._georefs = {b: pg[1] for b, pg in chosen.items()}
        finest = min(spec.bands, key=lambda b: self._georefs[b].resolution[0])
        self.native = replace(self._georefs[finest], band_names=tuple(spec.bands))
        self._check_footprints()
        self.georef = self.native if grid is None else replace(grid, band_names=tuple(spec.bands))
        self.files = {f"{spec.name}:{b}": p for b, p in self.band_files.items()}
        self.notes: list[str] = []

    @classmethod
    def from_folder(
        cls, modality: str, folder: Path, *, resampling: str = DEFAULT_RESAMPLING, grid: GeoRef | None = None
    ) -> BandFilesSource:
        """Read the band files of a folder or SAFE product (searched recursively).

        Raises:
            InputError: The folder holds no band file at all (or as for the constructor).
        """
        files = band_files_in(folder)
        if not any(band_of(p) for p in files):
            raise InputError(
                f"{str(folder)!r} is a folder without Sentinel-2 band files (*.tif/*.jp2 named with a band "
                f"id such as *_B02_10m.jp2): give a GeoTIFF file or a folder of band files"
            )
        return cls(modality, files, resampling=resampling, grid=grid)

    def _check_footprints(self) -> None:
        target = bounds(self.native)
        for band, georef in self._georefs.items():
            where = f"{self.modality} band {band} ({str(self.band_files[band])!r})"
            if georef.crs != self.native.crs:
                raise InputError(f"{where} is in {georef.crs}, the other bands in {self.native.crs}")
            # edges may differ by less than one of the band's own pixels (a 60 m grid over a 10 m one)
            slack = max(georef.resolution)
            if any(abs(a - b) >= slack for a, b in zip(bounds(georef), target, strict=True)):
                raise InputError(
                    f"{where} covers {bounds(georef)}, the {self.native.resolution[0]:g} m bands cover "
                    f"{target}: the band files are not one scene"
                )

    def _read_band(self, band: str, window: Window) -> tuple[np.ndarray, float | None]:
        """One band's window on the grid and its nodata (warped bands: NaN where there is none)."""
        path = self.band_files[band]
        if self._georefs[band].same_grid(self.georef) is None:
            with open_raster(path) as dataset:
                return dataset.read(1, window=window), dataset.nodata
        return read_warped(path, self.georef, window, [0], self.resampling)[0], None

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every band on the grid, stacked (C, height, W) float32."""
        window = Window(0, top, self.georef.width, height)
        layers, valid = [], np.ones((height, self.georef.width), dtype=bool)
        for band in self.band_files:
            x, nodata = self._read_band(band, window)
            x = x.astype(np.float32)
            valid &= np.isfinite(x)
            if nodata is not None:
                valid &= x != np.float32(nodata)
            layers.append(x)
        data = np.stack(layers)
        where = f"{self.modality} band files, rows {top}-{top + height}"
        check_pixels(
            data, get_modality(self.modality), None, where, allow_nonfinite=True, require_valid=False
        )
        return {self.modality: data}, valid
