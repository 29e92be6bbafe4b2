"""Sources of a whole scene: where the engine reads row strips of every input, with their validity.

A :class:`Source` knows its grid (:attr:`~Source.georef`), the files that identify its content (for the resume
key) and reads ``(top, height)`` row strips of every input it holds, with a (height, W) validity mask. Several
sources on one grid combine into one (:func:`combined`); a pixel is valid only where every source is valid.
Sources of other kinds (xarray, :mod:`.xarray_source`) plug in by implementing the protocol;
:func:`scene_source` picks the source of each input by its form (band-files folder, list of band files, STAC
item JSON, raster file or URL).

**One grid.** Inputs need not share a grid: the scene is read on a target grid (the first input's, or the
one ``grid`` names) and every input on another grid is warped onto it window by window (:mod:`.warp`;
bilinear, class maps nearest), with a note saying so; inputs that do not overlap are refused with both
footprints. :class:`RasterSource` reads GeoTIFFs (COGs included) in physical units, each input's bands in the
catalog's order; S1 backscatter in linear power is converted to dB (:mod:`.units`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rasterio.windows import Window

from terramind.core.errors import InputError, ShapeError
from terramind.data.geotiff import GeoRef, as_path, band_positions, open_georef, read_window
from terramind.data.policy import check_pixels
from terramind.modalities import get_modality, stats
from terramind.scene.band_files import DEFAULT_RESAMPLING, BandFilesSource
from terramind.scene.stac import is_stac_item, stac_source
from terramind.scene.units import decibel_note, needs_decibels, to_decibels
from terramind.scene.warp import check_overlap, check_resampling, read_warped, resampling_for
from terramind.scene.xarray_source import XarraySource, is_xarray


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


BandChoice = tuple[Sequence[str], Sequence[str] | None]
"""Of one input, the bands wanted (in this order) and the bands its files hold when they do not name them
(None: the modality's), as a fine-tuned model reads them (:class:`terramind.data.tiles.ModalityInput`)."""


def check_scene_inputs(
    inputs: Mapping[str, Path],
    *,
    grid: GeoRef | None = None,
    bands: Mapping[str, BandChoice] | None = None,
    grid_name: str | None = None,
) -> GeoRef:
    """Check input files against their modalities and the target grid; return the target grid.

    Inputs on other grids are fine (they are warped, :mod:`terramind.scene.warp`) as long as they overlap it.

    Args:
        inputs: Per modality, a raster file (local, GDAL virtual path or URL).
        grid: The target grid (default: the first input's).
        bands: Inputs read as a band subset (their counts are checked when the bands are looked up).
        grid_name: What ``grid`` is called in messages (the input it belongs to).

    Raises:
        InputError: A missing/unreadable file, or an input that does not overlap the target grid.
        ShapeError: A band count that differs from the modality's.
    """
    if not inputs:
        raise InputError("no input files given")
    georefs = {get_modality(n).name: open_georef(p) for n, p in inputs.items()}
    for name, georef in georefs.items():
        spec = get_modality(name)
        if name in (bands or {}):
            continue
        expected = 1 if spec.classes is not None else spec.num_bands
        if georef.count != expected:
            raise ShapeError(
                f"{spec.name} input {str(inputs[name])!r} has {georef.count} band(s); expected {expected}: "
                f"{', '.join(spec.bands)}"
            )
    first_name, first = next(iter(georefs.items()))
    target = grid or first
    for name, georef in georefs.items():
        check_overlap(
            name, georef, grid_name or ("the target grid" if grid is not None else first_name), target
        )
    return target


SCAN_ROWS = 256  # rows per read of the pre-scan: 256 x 10980 px x 12 bands of float32 is 135 MB


def scan_scene(
    inputs: Mapping[str, InputValue],
    *,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    say: Callable[[str], None] | None = None,
) -> GeoRef:
    """Read every input once, strip by strip, before any model loads; return the target grid.

    Every window goes through the reading policy (:mod:`terramind.data.policy`: impossible values, NaN
    without nodata, unreadable blocks), so a bad scene is refused in seconds rather than after the weights
    have loaded and part of the scene has been computed. Memory stays at one strip. What the source decided
    for the user (warping, S1 converted to dB) goes to ``say``, once.

    Args:
        inputs: As for :func:`scene_source`.
        grid: As for :func:`scene_source`.
        resampling: As for :func:`scene_source`.
        say: Receives each note (e.g. the CLI's ``note``).

    Raises:
        InputError: A file that cannot be read, values the policy refuses, or no valid pixel at all.
        ShapeError: A band count that differs from the modality's.
    """
    source = scene_source(inputs, grid=grid, resampling=resampling)
    for message in notes(source):
        if say is not None:
            say(message)
    height = source.georef.height
    any_valid = False
    for top in range(0, height, SCAN_ROWS):  # every strip, so that a bad block anywhere is found now
        any_valid |= bool(source.read_rows(top, min(SCAN_ROWS, height - top))[1].any())
    if not any_valid:
        files = ", ".join(str(p) for p in source.files.values())
        raise InputError(f"no valid pixels in {files}: every pixel is nodata or NaN")
    return source.georef


def notes(source: Source) -> list[str]:
    """Return what a source decided for the user (warps, unit conversions), one line each."""
    parts = getattr(source, "sources", [source])
    return [line for part in parts for line in getattr(part, "notes", [])]


InputValue = Path | str | Sequence[Path] | Any
"""One input as given: a raster file or URL, a band-files folder/SAFE, a STAC item, a list of band files, or
an xarray ``DataArray``/``Dataset`` (:mod:`.xarray_source`)."""


def _native(name: str, value: InputValue, resampling: str) -> Source | Path:
    """Return an input's own source (band files, STAC, xarray) on its native grid, or a raster's path."""
    if is_xarray(value):
        return XarraySource(name, value)
    if not isinstance(value, (str, Path)):
        return BandFilesSource(name, [as_path(v) for v in value], resampling=resampling)
    path = as_path(value)
    if path.is_dir():
        return BandFilesSource.from_folder(name, path, resampling=resampling)
    if is_stac_item(path):
        return stac_source(name, path, resampling=resampling)
    return path


def scene_source(
    inputs: Mapping[str, InputValue],
    *,
    resampling: str = DEFAULT_RESAMPLING,
    grid: str | None = None,
    bands: Mapping[str, BandChoice] | None = None,
    onto: tuple[str, GeoRef] | None = None,
) -> Source:
    """Return the source of a scene's inputs, each by its form, all read on one target grid.

    Args:
        inputs: Per modality, a GeoTIFF (local, GDAL virtual path or URL), a folder/SAFE of band files, a
            list of band files or a STAC item JSON (:mod:`terramind.scene.stac`).
        resampling: How continuous inputs are resampled onto another grid (band files coarser than the
            finest, inputs on another grid); class maps are always ``nearest`` (:mod:`terramind.scene.warp`).
        grid: The input whose grid the scene is read on (default: the first input's).
        bands: Inputs read as a band subset (a fine-tuned model's bands): they are read in that order.
        onto: A grid from elsewhere (what it is called in notes, the grid), instead of an input's: every
            input on another grid is warped onto it (a date of a time series read on the first date's grid).

    Raises:
        InputError: An input that cannot be read, a band missing, an unknown ``grid`` or inputs that do
            not overlap.
    """
    check_resampling(resampling)
    named = {get_modality(k).name: v for k, v in inputs.items()}
    if not named:
        raise InputError("no scene inputs given")
    natives = {name: _native(name, value, resampling) for name, value in named.items()}
    if onto is not None:
        target_name, target = onto
    else:
        target_name = grid_input(list(named), grid)
        first = natives[target_name]
        target = open_georef(first) if isinstance(first, Path) else first.georef
    target = replace(target, band_names=(), nodata=None)
    rasters = {n: v for n, v in natives.items() if isinstance(v, Path)}
    sources: list[Source] = []
    if rasters:
        picked = {n: b for n, b in (bands or {}).items() if get_modality(n).name in rasters}
        sources.append(
            RasterSource(rasters, grid=target, resampling=resampling, grid_name=target_name, bands=picked)
        )
    for name, native in natives.items():
        if isinstance(native, BandFilesSource):
            check_overlap(name, native.native, target_name, target)
            same = native.georef.same_grid(target) is None
            sources.append(native if same else _onto(native, target, target_name))
        elif not isinstance(native, Path):  # in memory (xarray): read as it is, so it must be on the grid
            problem = native.georef.same_grid(target)
            if problem:
                raise InputError(
                    f"{name} (in memory) is not on the grid of {target_name} ({problem}): an in-memory "
                    f"array is not warped; give it first (or as the grid) so the others are warped onto it"
                )
            sources.append(native)
    others = {get_modality(n).name: b[0] for n, b in (bands or {}).items()}
    others = {n: b for n, b in others.items() if not isinstance(natives[n], Path)}
    return combined(sources) if not others else _Selected(combined(sources), others)


class _Selected:
    """A source whose inputs (stacked in catalog order) are read as a band subset, in the order wanted."""

    def __init__(self, source: Source, bands: Mapping[str, Sequence[str]]) -> None:
        self.source, self.georef, self.files = source, source.georef, source.files
        self.sources = getattr(source, "sources", [source])  # for notes()
        self.index = {
            n: [list(get_modality(n).bands).index(b) for b in wanted] for n, wanted in bands.items()
        }

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        data, valid = self.source.read_rows(top, height)
        return {n: x[self.index[n]] if n in self.index else x for n, x in data.items()}, valid


def grid_input(names: Sequence[str], grid: str | None) -> str:
    """Return the input whose grid the outputs are on: ``grid`` (``--grid MOD``) or the first of ``names``.

    Raises:
        InputError: ``grid`` names none of the inputs.
    """
    if grid is None:
        return names[0]
    wanted = get_modality(grid).name
    if wanted not in names:
        raise InputError(f"--grid {grid}: no such input; the grid is one input's, one of {', '.join(names)}")
    return wanted


def _onto(source: BandFilesSource, target: GeoRef, target_name: str) -> BandFilesSource:
    """Band files read straight onto another input's grid (one resampling step), with a note saying so."""
    moved = BandFilesSource(source.modality, source.band_files, resampling=source.resampling, grid=target)
    moved.notes = [warp_note(source.modality, source.native, target_name, target, source.resampling)]
    return moved


def warp_note(name: str, native: GeoRef, target_name: str, target: GeoRef, resampling: str) -> str:
    """Return the one line that says an input is warped, from what onto what, and how."""
    return (
        f"{name} ({native.crs}, {native.resolution[0]:g} m) is warped onto the grid of {target_name} "
        f"({target.crs}, {target.resolution[0]:g} m, {target.width}x{target.height} px) with {resampling} "
        f"resampling"
    )


class RasterSource:
    """Rows of one or several input GeoTIFFs on one grid, with their validity.

    A pixel is valid when it is finite and differs from its file's nodata value in every band of every input.
    An input on another grid than the target is warped window by window (:mod:`terramind.scene.warp`;
    pixels it does not cover are invalid). S1 backscatter in linear power is converted to dB
    (:mod:`terramind.scene.units`).

    Attributes:
        inputs: Canonical modality -> file.
        georef: The grid read on.
        notes: What was decided for the user (warps, unit conversions), one line each.
    """

    def __init__(
        self,
        inputs: Mapping[str, Path],
        *,
        grid: GeoRef | None = None,
        resampling: str = DEFAULT_RESAMPLING,
        grid_name: str | None = None,
        bands: Mapping[str, BandChoice] | None = None,
    ) -> None:
        """Open the inputs and decide how each is read.

        Args:
            inputs: Per modality, a raster file (local, GDAL virtual path or URL).
            grid: The target grid (default: the first input's).
            resampling: Resampling of continuous inputs on another grid (class maps: ``nearest``).
            grid_name: What the target grid is called in notes and messages.
            bands: Per input read as a band subset, the bands wanted and those its file holds.

        Raises:
            InputError: As :func:`check_scene_inputs`, or S1 whose unit is neither dB nor linear power.
        """
        self.inputs = {get_modality(k).name: as_path(v) for k, v in inputs.items()}
        choice = {get_modality(k).name: v for k, v in (bands or {}).items()}
        self.georef = check_scene_inputs(self.inputs, grid=grid, bands=choice, grid_name=grid_name)
        self.files = self.inputs
        georefs = {k: open_georef(p) for k, p in self.inputs.items()}
        self.nodata = {k: g.nodata for k, g in georefs.items()}
        # the modality's bands by the files' band names when they have them (reordered), else by position
        self.bands = {
            k: band_positions(georefs[k], p, k, *choice.get(k, (None, None))) for k, p in self.inputs.items()
        }
        name = grid_name or next(iter(self.inputs))
        self.warped = {
            k: resampling_for(k, resampling)
            for k, g in georefs.items()
            if g.same_grid(self.georef) is not None
        }
        self.notes = [warp_note(k, georefs[k], name, self.georef, r) for k, r in self.warped.items()]
        self.decibels = {k for k, p in self.inputs.items() if needs_decibels(k, p, self.bands[k])}
        self.notes += [decibel_note(k, self.inputs[k]) for k in sorted(self.decibels)]

    def _read(self, name: str, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """One input's window as float32 with its (C, h, W) validity (warped: NaN where not covered)."""
        path = self.inputs[name]
        if name in self.warped:
            x = read_warped(path, self.georef, window, self.bands[name], self.warped[name])
            check_pixels(x, get_modality(name), None, str(path), allow_nonfinite=True, require_valid=False)
            return x, np.isfinite(x)
        x = read_window(path, window, band_indexes=self.bands[name], modality=name).astype(np.float32)
        ok = np.isfinite(x)
        if self.nodata[name] is not None:
            ok &= x != np.float32(self.nodata[name])
        return x, ok

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every input as float32, with the combined valid mask."""
        window = Window(0, top, self.georef.width, height)
        valid = np.ones((height, self.georef.width), dtype=bool)
        data = {}
        for name in self.inputs:
            x, ok = self._read(name, window)
            if name in self.decibels:
                x = to_decibels(x)
                ok &= np.isfinite(x)
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
