"""Sources of a whole scene: where the engine reads row strips of every input, with their validity.

A :class:`Source` knows its grid (:attr:`~Source.georef`), the files that identify its content (for the resume
key) and reads ``(top, height)`` row strips of every input it holds, with a (height, W) validity mask. Several
sources on one grid combine into one (:func:`combined`); a pixel is valid only where every source is valid.
Sources of other kinds (xarray, warped onto one grid) plug in by implementing the protocol;
:func:`scene_source` picks the source of each input by its form (band-files folder, STAC item JSON,
raster file or URL).

:class:`RasterSource` reads co-registered GeoTIFFs (COGs included) in physical units, each input's bands in
the catalog's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from rasterio.windows import Window

from terramind.core.errors import InputError, ShapeError
from terramind.data.geotiff import GeoRef, as_path, band_positions, open_georef, read_window
from terramind.modalities import get_modality, stats
from terramind.scene.band_files import DEFAULT_RESAMPLING, BandFilesSource
from terramind.scene.stac import is_stac_item, stac_source


class Source(Protocol):
    """Row strips of the inputs of a scene on one grid."""

    @property
    def georef(self) -> GeoRef:
        """The grid every input lies on."""
        ...

    @property
    def files(self) -> Mapping[str, Path]:
        """Per input, the file whose content identifies it (for the resume key)."""
        ...

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return inputs (C, height, W) float32 of rows ``[top, top + height)`` and a (height, W) mask."""
        ...


def check_scene_inputs(inputs: Mapping[str, Path]) -> GeoRef:
    """Check input files against their modalities and each other; return the shared grid.

    Raises:
        InputError: A missing/unreadable file, or inputs on different grids (naming what differs).
        ShapeError: A band count that differs from the modality's.
    """
    first: tuple[str, GeoRef] | None = None
    for name, path in inputs.items():
        spec = get_modality(name)
        georef = open_georef(path)
        expected = 1 if spec.classes is not None else spec.num_bands
        if georef.count != expected:
            raise ShapeError(
                f"{spec.name} input {str(path)!r} has {georef.count} band(s); expected {expected}: "
                f"{', '.join(spec.bands)}"
            )
        if first is None:
            first = (spec.name, georef)
            continue
        diff = first[1].same_grid(georef)
        if diff is not None:
            raise InputError(
                f"{spec.name} input {str(path)!r} is not on the grid of the {first[0]} input: {diff}; "
                f"reproject or crop the inputs to one grid (e.g. gdalwarp -tr/-te)"
            )
    if first is None:
        raise InputError("no input files given")
    return first[1]


SCAN_ROWS = 256  # rows per read of the pre-scan: 256 x 10980 px x 12 bands of float32 is 135 MB


def scan_scene(inputs: Mapping[str, Path]) -> GeoRef:
    """Read every input once, strip by strip, before any model loads; return the shared grid.

    Every window goes through the reading policy (:mod:`terramind.data.policy`: impossible values, NaN
    without nodata, unreadable blocks), so a bad scene is refused in seconds rather than after the weights
    have loaded and part of the scene has been computed. Memory stays at one strip.

    Raises:
        InputError: A file that cannot be read, values the policy refuses, or no valid pixel at all.
        ShapeError: A band count that differs from the modality's.
    """
    source = scene_source(inputs)
    height = source.georef.height
    any_valid = False
    for top in range(0, height, SCAN_ROWS):  # every strip, so that a bad block anywhere is found now
        any_valid |= bool(source.read_rows(top, min(SCAN_ROWS, height - top))[1].any())
    if not any_valid:
        files = ", ".join(str(p) for p in source.files.values())
        raise InputError(f"no valid pixels in {files}: every pixel is nodata or NaN")
    return source.georef


def scene_source(inputs: Mapping[str, Path], *, resampling: str = DEFAULT_RESAMPLING) -> Source:
    """Return the source of a scene's inputs, each by its form: a band-files folder, or a raster/URL.

    Args:
        inputs: Per modality, a GeoTIFF (local, GDAL virtual path or URL), a folder/SAFE of band files or
            a STAC item JSON (:mod:`terramind.scene.stac`).
        resampling: How band files coarser than the finest are resampled (:mod:`terramind.scene.band_files`).

    Raises:
        InputError: An input that cannot be read, a band missing, or inputs on different grids.
    """
    rasters: dict[str, Path] = {}
    sources: list[Source] = []
    for name, value in inputs.items():
        path = as_path(value)
        if path.is_dir():
            sources.append(BandFilesSource.from_folder(name, path, resampling=resampling))
        elif is_stac_item(path):
            sources.append(stac_source(name, path, resampling=resampling))
        else:
            rasters[get_modality(name).name] = path
    if rasters:
        sources.insert(0, RasterSource(rasters))
    return combined(sources)


class RasterSource:
    """Rows of one or several co-registered input GeoTIFFs, with their validity.

    A pixel is valid when it is finite and differs from its file's nodata value in every band of every input.
    """

    def __init__(self, inputs: Mapping[str, Path]) -> None:
        self.inputs = {get_modality(k).name: as_path(v) for k, v in inputs.items()}
        self.georef = check_scene_inputs(self.inputs)
        self.files = self.inputs
        self.nodata = {k: open_georef(p).nodata for k, p in self.inputs.items()}
        # the modality's bands by the files' band names when they have them (reordered), else by position
        self.bands = {k: band_positions(open_georef(p), p, k) for k, p in self.inputs.items()}

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every input as float32, with the combined valid mask."""
        window = Window(0, top, self.georef.width, height)
        valid = np.ones((height, self.georef.width), dtype=bool)
        data = {}
        for name, path in self.inputs.items():
            x = read_window(path, window, band_indexes=self.bands[name], modality=name).astype(np.float32)
            ok = np.isfinite(x)
            if self.nodata[name] is not None:
                ok &= x != np.float32(self.nodata[name])
            valid &= ok.all(axis=0)
            data[name] = x
        return data, valid


def fill_values(
    modalities: Sequence[str], offset: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Return what invalid pixels become before a tile reaches the model: the modality's mean.

    A mean standardizes to 0, the least informative value; class maps get class 0 ("no data").
    """
    out = {}
    for name in modalities:
        spec = get_modality(name)
        if spec.classes is not None:
            out[spec.name] = np.zeros(1)
        else:
            out[spec.name] = stats(spec, offset=(offset or {}).get(spec.name, 0.0))[0]
    return out


class _Combined:
    """Several sources on one grid read as one (inputs merged, validity intersected)."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.georef = self.sources[0].georef
        self.files: dict[str, Path] = {}
        for source in self.sources:
            problem = self.georef.same_grid(source.georef)
            if problem:
                raise InputError(
                    f"scene sources {sorted(source.files)} and {sorted(self.files)} differ: {problem}"
                )
            clash = set(self.files) & set(source.files)
            if clash:
                raise InputError(f"input(s) {sorted(clash)} given by two sources; give each input once")
            self.files.update(source.files)

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        data: dict[str, np.ndarray] = {}
        valid = np.ones((height, self.georef.width), dtype=bool)
        for source in self.sources:
            part, ok = source.read_rows(top, height)
            data.update(part)
            valid &= ok
        return data, valid


def combined(sources: Source | Sequence[Source]) -> Source:
    """One source of several on the same grid (a single source is returned as it is).

    Raises:
        InputError: No sources, sources on different grids, or an input given twice.
    """
    if not isinstance(sources, Sequence):
        return sources
    if not sources:
        raise InputError("no scene inputs given")
    return sources[0] if len(sources) == 1 else _Combined(sources)
