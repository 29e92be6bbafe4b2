"""GeoTIFF input and output on rasterio: tiles in, aligned outputs out, windows for large scenes.

Reading returns the pixels with everything needed to write an output on the same grid (:class:`GeoRef`).
A read that knows its modality applies the reading policy of :mod:`terramind.data.policy` (dtypes,
impossible values, NaN, no valid pixels) and trusts the file's band descriptions over positions: when the
file names its bands, they are matched to the catalog's names (Sentinel-2 ids such as ``B04`` included) and
reordered when they are a permutation; names that are not the modality's bands are refused, both lists in
the message. Whole-array reads refuse rasters above :data:`MAX_READ_BYTES`; larger scenes are read
window by window (:func:`read_window`). A file that opens but fails on read (truncated, corrupt) is an
:class:`InputError` naming the file, band and window.
Every output goes through :func:`terramind.core.files.atomic_path` (temporary file, fsync, verify, then
rename), so an interrupted run or a full disk never leaves a half-written GeoTIFF: GDAL reports some write
errors only when the file is flushed or closed, so each output is re-opened and its first and last blocks
read back before it is renamed into place. Outputs are deflate-compressed, tiled when large, and
``BIGTIFF=IF_SAFER`` so scene-sized outputs past 4 GB still work.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType

import affine
import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
import rasterio.shutil
import torch
from rasterio.crs import CRS
from rasterio.windows import Window

from terramind.core.errors import InputError, ModalityError, OutputError, ShapeError
from terramind.core.files import atomic_path, check_output_path, temp_name
from terramind.data.policy import check_pixels, mask_nonfinite
from terramind.modalities import ModalitySpec, get_modality

PathLike = str | os.PathLike[str]
log = logging.getLogger(__name__)

# Whole-array reads refuse rasters above this many bytes (2 GiB): a header can claim any size, and a scene
# larger than this is processed window by window anyway.
MAX_READ_BYTES = 2 * 1024**3
# Sentinel-2 band ids as GDAL and most tools write them in band descriptions -> the catalog's band names.
S2_BAND_IDS: dict[str, str] = {
    "B1": "COASTAL_AEROSOL", "B2": "BLUE", "B3": "GREEN", "B4": "RED", "B5": "RED_EDGE_1",
    "B6": "RED_EDGE_2", "B7": "RED_EDGE_3", "B8": "NIR_BROAD", "B8A": "NIR_NARROW", "B9": "WATER_VAPOR",
    "B10": "CIRRUS", "B11": "SWIR_1", "B12": "SWIR_2",
}  # fmt: skip

# Tags that carry the acquisition time, most specific first: TerraMesh tiles use ``datetime``; GDAL writes
# the TIFF baseline tag as ``TIFFTAG_DATETIME`` ("YYYY:MM:DD HH:MM:SS").
TIME_TAGS = ("datetime", "DATETIME", "acquisition_time", "ACQUISITION_DATE", "TIFFTAG_DATETIME")
_TIME_RE = re.compile(
    r"^(\d{4})[-:](\d{2})[-:](\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
# Outputs at least this large (either side) are tiled; smaller ones stay striped (a 256 tile would pad).
TILE_SIZE = 256
# Outputs up to this size (uncompressed) are read back whole before they are published; larger ones by
# their first and last blocks, which bounds the check to a fraction of a second on a 10980 px scene.
VERIFY_ALL_BYTES = 64 * 2**20
# GDAL's GeoTIFF driver stores no float16 or bool; these are widened on write.
_WIDEN = {np.dtype("float16"): "float32", np.dtype("bool"): "uint8"}


@dataclass(frozen=True)
class GeoRef:
    """Everything needed to write an output aligned with an input raster.

    Attributes:
        crs: Coordinate reference system, None for a file without one.
        transform: Pixel-to-CRS affine transform of the top-left corner.
        width: Columns.
        height: Rows.
        nodata: The file's nodata value, None if unset.
        time: Acquisition time from the tags (``datetime`` / ``TIFFTAG_DATETIME``), None if absent.
        band_names: Band descriptions, ``''`` where a band has none.
    """

    crs: CRS | None
    transform: affine.Affine
    width: int
    height: int
    nodata: float | None = None
    time: datetime | None = None
    band_names: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """Number of bands of the described raster."""
        return len(self.band_names)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (positive)."""
        return abs(self.transform.a), abs(self.transform.e)

    def window(self, window: Window) -> GeoRef:
        """Return the georeference of a sub-window: same CRS, transform shifted to its corner.

        Raises:
            ShapeError: If the window is not inside the raster.
        """
        col, row, w, h = _window_ints(window)
        if col < 0 or row < 0 or w <= 0 or h <= 0 or col + w > self.width or row + h > self.height:
            raise ShapeError(
                f"window (col {col}, row {row}, {w}x{h}) is not inside the {self.width}x{self.height} raster"
            )
        shifted = self.transform @ affine.Affine.translation(col, row)
        return replace(self, transform=shifted, width=w, height=h)

    def same_grid(self, other: GeoRef) -> str | None:
        """Compare grids; None when CRS, transform and size agree, else a message naming what differs."""
        if self.crs != other.crs:
            return f"CRS differs: {self.crs} vs {other.crs}"
        if (self.width, self.height) != (other.width, other.height):
            return f"size differs: {self.width}x{self.height} vs {other.width}x{other.height}"
        if not self.transform.almost_equals(other.transform):
            return f"transform differs: {tuple(self.transform)[:6]} vs {tuple(other.transform)[:6]}"
        return None


@dataclass(frozen=True)
class Raster:
    """Pixels of a raster file with their georeference.

    Attributes:
        data: Array ``(C, H, W)`` in the file's dtype.
        georef: Georeference of ``data`` (of the window when one was read).
        path: The file it came from.
    """

    data: np.ndarray
    georef: GeoRef
    path: Path

    @property
    def valid(self) -> np.ndarray:
        """``(H, W)`` mask of valid pixels: finite and unequal to the file's nodata value in every band."""
        ok = np.ones(self.data.shape, bool)  # (C, H, W)
        if np.issubdtype(self.data.dtype, np.floating):
            ok &= np.isfinite(self.data)
        nodata = self.georef.nodata
        if nodata is not None and not np.isnan(nodata):
            ok &= self.data != nodata
        return np.asarray(ok.all(axis=0))


def _window_ints(window: Window) -> tuple[int, int, int, int]:
    """Integer (col, row, width, height) of a window; fractional windows are a caller error."""
    values = (window.col_off, window.row_off, window.width, window.height)
    if any(float(v) != int(v) for v in values):
        raise ShapeError(f"window {window} has fractional offsets or size: use whole pixels")
    col, row, w, h = (int(v) for v in values)
    return col, row, w, h


def parse_time(value: str) -> datetime | None:
    """Parse an acquisition-time tag (ISO 8601 with up to nanoseconds, or TIFF ``YYYY:MM:DD HH:MM:SS``).

    Returns:
        The time (timezone-aware when the tag says so), or None if the text is not a time.
    """
    match = _TIME_RE.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        stamp = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
            int((frac or "0")[:6].ljust(6, "0")),
        )  # fmt: skip
    except ValueError:
        return None
    if zone:
        stamp = stamp.replace(tzinfo=_zone(zone))
    return stamp


def _zone(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    digits = text.replace(":", "")
    minutes = int(digits[1:3]) * 60 + int(digits[3:5])
    return timezone(timedelta(minutes=minutes if digits[0] == "+" else -minutes))


def _time_from_tags(tags: Mapping[str, str]) -> datetime | None:
    for key in TIME_TAGS:
        if key in tags and (stamp := parse_time(tags[key])) is not None:
            return stamp
    return None


# GDAL paths that are no local file: virtual file systems (/vsicurl/, /vsizip/, /vsis3/...) and URLs
# (https://, s3://, gs://, file://...). A pathlib.Path would merge their "//", so they are kept verbatim.
_GDAL_PATH_RE = re.compile(r"^(/vsi[a-z0-9_]+/|[A-Za-z][A-Za-z0-9+.-]+:/)")


def is_gdal_path(path: PathLike | str) -> bool:
    """Whether ``path`` names a GDAL virtual path or URL rather than a local file (not checked to exist)."""
    return bool(_GDAL_PATH_RE.match(os.fspath(path)))


class GdalPath(type(Path())):  # type: ignore[misc]
    """A GDAL virtual path or URL carried where a :class:`~pathlib.Path` is expected, kept verbatim.

    ``str()``/``os.fspath()`` give the text as given (``https://host/a.tif``, not ``https:/host/a.tif``) so
    rasterio opens it; ``exists()``/``is_file()`` are left to GDAL (True), ``is_dir()`` is False.
    """

    _text: str

    def __new__(cls, text: str) -> GdalPath:
        """Wrap the GDAL path ``text``."""
        self = super().__new__(cls, text)
        self._text = text
        return self

    def __str__(self) -> str:
        return self._text

    def __fspath__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"GdalPath({self._text!r})"

    def exists(self, *args: object, **kwargs: object) -> bool:
        """Return True: whether it exists is for GDAL to find out when it opens it."""
        return True

    def is_file(self) -> bool:
        """Return True: GDAL opens it as a file."""
        return True

    def is_dir(self) -> bool:
        """Return False: a GDAL path names a raster, not a folder."""
        return False

    def resolve(self, strict: bool = False) -> GdalPath:
        """Return the path itself (a URL has no local absolute form)."""
        return self


def as_path(path: PathLike | str) -> Path:
    """Return ``path`` as a :class:`Path`, or a :class:`GdalPath` when it is a GDAL virtual path or URL."""
    if isinstance(path, Path):
        return path
    text = os.fspath(path)
    return GdalPath(text) if is_gdal_path(text) else Path(text)


def _gdal_error(source: Path, err: Exception) -> InputError:
    return InputError(
        f"GDAL cannot open {str(source)!r} ({str(err).splitlines()[0]}): check the URL, the network and the "
        f"credentials (AWS_*/GOOGLE_APPLICATION_CREDENTIALS or GDAL_HTTP_* settings)"
    )


@contextlib.contextmanager
def _open(path: PathLike) -> Iterator[rasterio.DatasetReader]:
    """Open a raster for reading, turning a missing or unreadable file into an :class:`InputError`.

    GDAL virtual paths and URLs (:func:`is_gdal_path`) go to rasterio unchecked; one GDAL cannot open fails
    with GDAL's message and what to check.
    """
    source = as_path(path)
    remote = isinstance(source, GdalPath)
    if not remote and not source.exists():
        raise InputError(f"file {str(source)!r} does not exist: check the path")
    if not remote and not source.is_file():
        raise InputError(f"{str(source)!r} is not a file: pass a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            # A plain image without georeference is still a raster; its GeoRef simply has crs None.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dataset = rasterio.open(source)
    except rasterio.errors.RasterioIOError as err:
        if remote:
            raise _gdal_error(source, err) from err
        raise InputError(
            f"{str(source)!r} is not a readable raster ({str(err).splitlines()[0]}): pass a GeoTIFF"
        ) from err
    with dataset:
        yield dataset


def open_raster(path: PathLike) -> contextlib.AbstractContextManager[rasterio.DatasetReader]:
    """Open a raster (local file, GDAL virtual path or URL) for reading, as a context manager.

    Raises:
        InputError: A missing or unreadable file, or a URL GDAL cannot open (with what to check).
    """
    return _open(path)


def _georef(dataset: rasterio.DatasetReader) -> GeoRef:
    return GeoRef(
        crs=dataset.crs if dataset.crs else None,
        transform=dataset.transform,
        width=dataset.width,
        height=dataset.height,
        nodata=dataset.nodata,
        time=_time_from_tags(dataset.tags()),
        band_names=tuple(d or "" for d in dataset.descriptions),
    )


def open_georef(path: PathLike) -> GeoRef:
    """Read a raster's georeference and band names without reading pixels (for streaming large scenes).

    Raises:
        InputError: If the file is missing or not a raster.
    """
    with _open(path) as dataset:
        return _georef(dataset)


def _file_band_names(georef: GeoRef, path: PathLike) -> dict[str, int]:
    """Map of upper-cased band description -> 0-based index; usable only when all are set and unique."""
    names = [n.strip().upper() for n in georef.band_names]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(
            f"{str(path)!r} has no band names (its band descriptions are empty or repeated), so bands cannot "
            f"be selected by name: read all bands, in the modality's order"
        )
    return {n: i for i, n in enumerate(names)}


def _canonical(name: str) -> str:
    """Return a band description as a catalog band name (upper case, ``B04``/``B8A`` ids resolved)."""
    key = name.strip().upper()
    short = re.sub(r"^B0*(\d)", r"B\1", key)
    return S2_BAND_IDS.get(short, key)


def named_bands(georef: GeoRef) -> tuple[str, ...] | None:
    """Return the file's bands by description, as catalog names; None when some are empty or repeated."""
    names = tuple(_canonical(n) for n in georef.band_names)
    if not names or not all(names) or len(set(names)) != len(names):
        return None
    return names


@functools.lru_cache(maxsize=64)
def _say_once(message: str) -> None:
    log.warning(message)


def band_positions(
    georef: GeoRef,
    path: PathLike,
    modality: str | ModalitySpec,
    bands: Sequence[str] | None = None,
    file_bands: Sequence[str] | None = None,
) -> list[int]:
    """Positions (0-based) of a modality's bands in a file: by the file's band names when it has them.

    Args:
        georef: The file's georeference (band descriptions and count).
        path: The file, for messages.
        modality: Catalog name or record.
        bands: Bands wanted, in this order (default the modality's, in catalog order).
        file_bands: The bands the file holds when it does not name them (default the modality's bands).

    Returns:
        One file position per wanted band.

    Raises:
        ModalityError: A wanted band is not one of the modality's.
        InputError: The file's band names are not the modality's (both lists in the message).
        ShapeError: An unnamed file's band count differs from ``file_bands``.
    """
    spec = get_modality(modality)
    if not spec.bands or not spec.is_image:
        raise ModalityError(f"{spec.name} is not a raster modality: it cannot be read from a GeoTIFF")
    wanted = [b.upper() for b in (bands if bands is not None else spec.bands)]
    unknown = [b for b in wanted if b not in {x.upper() for x in spec.bands}]
    if unknown:
        raise ModalityError(f"{spec.name} has no band(s) {unknown}; its bands are {list(spec.bands)}")
    names = named_bands(georef) if spec.num_bands > 1 else None  # one band: a name cannot misorder it
    if names is None:
        if bands is not None and file_bands is None:
            _file_band_names(georef, path)  # raises: selecting by name needs names
        holds = [b.upper() for b in (file_bands if file_bands is not None else spec.bands)]
        if georef.count != len(holds):
            raise ShapeError(
                f"{str(path)!r} has {georef.count} band(s) but {spec.name} expects {len(holds)}, in this "
                f"order: {', '.join(holds)}"
            )
        return [holds.index(b) for b in wanted]
    return _by_name(names, wanted, spec, georef, path)


def _by_name(
    names: tuple[str, ...], wanted: Sequence[str], spec: ModalitySpec, georef: GeoRef, path: PathLike
) -> list[int]:
    foreign = [n for n, c in zip(georef.band_names, names, strict=True) if c not in spec.bands]
    missing = [b for b in wanted if b not in names]
    if foreign or missing:
        problem = f"band(s) {foreign} that are not {spec.name} bands" if foreign else f"no band(s) {missing}"
        raise InputError(
            f"{str(path)!r} has {problem}: its bands are {list(georef.band_names)}, {spec.name}'s are "
            f"{list(spec.bands)}; fix the band descriptions, or write the bands the model needs"
        )
    index = [names.index(b) for b in wanted]
    if index != list(range(len(index))):
        _say_once(
            f"{spec.name}: bands read by the names in the files' band descriptions ({', '.join(names)})"
        )
    return index


def _select_by_name(georef: GeoRef, path: PathLike, bands: Sequence[str]) -> list[int]:
    """Positions of named bands in a file without a modality: by its band descriptions only."""
    lookup = _file_band_names(georef, path)
    missing = [b for b in bands if b.upper() not in lookup]
    if missing:
        raise InputError(f"{str(path)!r} has no band(s) {missing}; its bands are {list(georef.band_names)}")
    return [lookup[b.upper()] for b in bands]


def _where(path: PathLike, window: Window | None) -> str:
    if window is None:
        return repr(str(path))
    col, row, w, h = _window_ints(window)
    return f"{str(path)!r} (window col {col}, row {row}, {w}x{h})"


def _read(
    dataset: rasterio.DatasetReader, index: Sequence[int], window: Window | None, path: PathLike
) -> np.ndarray:
    """Read 0-based bands; a file that fails on read (truncated, corrupt) is an InputError naming the band."""
    try:
        out: np.ndarray = dataset.read([i + 1 for i in index], window=window)
        return out
    except rasterio.errors.RasterioError as err:
        failing = index[0]
        for i in index:  # find the first band that fails, to name it
            try:
                dataset.read(i + 1, window=window)
            except rasterio.errors.RasterioError:
                failing = i
                break
        raise InputError(
            f"{_where(path, window)} cannot be read at band {failing + 1} ({str(err).splitlines()[0]}): "
            f"the file is truncated or corrupt; download or write it again"
        ) from None


def _check_size(georef: GeoRef, dataset: rasterio.DatasetReader, count: int, path: PathLike) -> None:
    size = georef.width * georef.height * count * np.dtype(dataset.dtypes[0]).itemsize
    if size > MAX_READ_BYTES:
        raise InputError(
            f"{str(path)!r} is {georef.width}x{georef.height} with {count} band(s) "
            f"({size / 1024**3:.1f} GiB): too large to read whole (limit {MAX_READ_BYTES / 1024**3:.0f} "
            f"GiB); read it window by window (read_window, or the scene commands that tile it)"
        )


def read_raster(
    path: PathLike,
    modality: str | ModalitySpec | None = None,
    *,
    bands: Sequence[str] | None = None,
    file_bands: Sequence[str] | None = None,
    window: Window | None = None,
    allow_nonfinite: bool = False,
) -> Raster:
    """Read a raster tile (or a window of it) with its georeference, checked against a modality.

    Args:
        path: A GeoTIFF (any GDAL raster works).
        modality: Catalog name or record; when given, the modality's bands are read (by the file's band
            names when it has them, else by position: the band count must match) and the reading policy
            of :mod:`terramind.data.policy` applies.
        bands: Band names to read, in this order, matched case-insensitively against the file's band
            descriptions (with a modality, positions of ``file_bands`` serve files without names).
        file_bands: With a modality: the bands a file without band names holds, in order (default all).
        window: Read only this window; the returned georeference is the window's.
        allow_nonfinite: Accept NaN/inf values (otherwise NaN becomes the declared nodata, else an error).

    Returns:
        A :class:`Raster` with ``data`` of shape ``(C, H, W)`` in the file's dtype.

    Raises:
        InputError: Missing, unreadable, truncated or oversized file; unknown band names; values the
            reading policy refuses.
        ShapeError: Band count differs from the modality's (the message lists the expected bands).
        ModalityError: Unknown modality.
    """
    with _open(path) as dataset:
        georef = _georef(dataset)
        if modality is not None:
            index = band_positions(georef, path, modality, bands, file_bands)
        elif bands is not None:
            index = _select_by_name(georef, path, bands)
        else:
            index = list(range(georef.count))
        if window is not None:
            georef = georef.window(window)
        _check_size(georef, dataset, len(index), path)
        data = _read(dataset, index, window, path)
    georef = replace(georef, band_names=tuple(georef.band_names[i] for i in index))
    if modality is not None:
        where = _where(path, window)
        data = check_pixels(
            data, get_modality(modality), georef.nodata, where, allow_nonfinite=allow_nonfinite
        )
    elif not allow_nonfinite:
        data = mask_nonfinite(data, georef.nodata, _where(path, window))
    return Raster(data=data, georef=georef, path=Path(path))


def read_window(
    path: PathLike,
    window: Window,
    *,
    band_indexes: Sequence[int] | None = None,
    modality: str | ModalitySpec | None = None,
) -> np.ndarray:
    """Read one window of a raster, for streaming scenes larger than memory.

    Args:
        path: The raster file.
        window: Pixel window to read (must lie inside the raster).
        band_indexes: 0-based band positions to read, in this order; None reads all bands.
        modality: When given, the window's dtype and values are checked against the reading policy of
            :mod:`terramind.data.policy` (impossible values; NaN and nodata are left to the caller).

    Returns:
        Array ``(C, h, w)`` in the file's dtype (no finiteness check: streaming callers mask themselves).

    Raises:
        InputError: The file cannot be read at this window (truncated, corrupt), or refused values.
        ShapeError: Window or band positions outside the raster.
    """
    with _open(path) as dataset:
        georef = _georef(dataset)
        georef.window(window)  # validates that the window lies inside
        index = list(range(georef.count)) if band_indexes is None else list(band_indexes)
        if any(i < 0 or i >= georef.count for i in index):
            raise ShapeError(f"band_indexes {index} out of range for {georef.count} band(s) (0-based)")
        out = _read(dataset, index, window, path)
    if modality is not None:
        spec = get_modality(modality)
        check_pixels(
            out, spec, georef.nodata, _where(path, window), allow_nonfinite=True, require_valid=False
        )
    return out


def _as_chw(data: np.ndarray | torch.Tensor) -> np.ndarray:
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ShapeError(f"raster data must be (C, H, W) or (H, W), got shape {array.shape}")
    return array


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    """Convert to the output dtype; floats going to integers are rounded, and must fit (no silent wrap)."""
    target = np.dtype(dtype)
    if array.dtype == target or not np.issubdtype(target, np.integer):
        return array.astype(target, copy=False)
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)
    info = np.iinfo(target)
    if array.size and not (info.min <= array.min() and array.max() <= info.max):  # NaN fails too
        raise InputError(
            f"values {array.min()}..{array.max()} do not fit the output dtype {dtype} "
            f"({info.min}..{info.max}): clip them or write a wider dtype"
        )
    return array.astype(target)


def _fits(value: float, dtype: str) -> bool:
    """Whether a nodata value is representable in ``dtype``."""
    kind = np.dtype(dtype)
    if math.isnan(value) or math.isinf(value):
        return bool(np.issubdtype(kind, np.floating))
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def _resolve_nodata(nodata: float | None, georef: GeoRef, dtype: str) -> float | None:
    """Explicit nodata must fit the dtype; the input's nodata is inherited only when it fits."""
    if nodata is not None:
        if not _fits(nodata, dtype):
            raise InputError(f"nodata {nodata} cannot be stored as {dtype}: choose a value it can hold")
        return nodata
    if georef.nodata is not None and _fits(georef.nodata, dtype):
        return georef.nodata
    return None


def _profile(
    georef: GeoRef, count: int, dtype: str, nodata: float | None, compress: str | None, tiled: bool
) -> dict[str, object]:
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": georef.width,
        "height": georef.height,
        "count": count,
        "dtype": dtype,
        "crs": georef.crs,
        "transform": georef.transform,
        "nodata": nodata,
        "BIGTIFF": "IF_SAFER",
    }
    if compress:
        # Predictor 2 (horizontal differencing) suits integers, 3 (floating point) suits floats.
        predictor = 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2
        profile.update(compress=compress, predictor=predictor)
    if tiled and min(georef.width, georef.height) >= TILE_SIZE:
        profile.update(tiled=True, blockxsize=TILE_SIZE, blockysize=TILE_SIZE)
    return profile


def _check_colormap(colormap: Mapping[int, tuple[int, int, int]] | None, count: int, dtype: str) -> None:
    if colormap is not None and (count != 1 or dtype not in ("uint8", "uint16")):
        raise InputError(
            f"a colormap needs a single-band uint8/uint16 class map, got {count} band(s) of {dtype}"
        )


def _describe(
    dataset: rasterio.io.DatasetWriter,
    georef: GeoRef,
    count: int,
    colormap: Mapping[int, tuple[int, int, int]] | None,
    band_names: Sequence[str] | None,
) -> None:
    """Write band names, colormap and acquisition time into an open output."""
    names = tuple(band_names) if band_names is not None else georef.band_names
    if band_names is not None and len(names) != count:
        raise ShapeError(f"{len(names)} band name(s) given for {count} band(s)")
    if len(names) == count:
        for i, name in enumerate(names, start=1):
            if name:
                dataset.set_band_description(i, name)
    if colormap is not None:
        dataset.write_colormap(1, {int(k): tuple(int(c) for c in v) for k, v in colormap.items()})
    if georef.time is not None:
        dataset.update_tags(datetime=georef.time.isoformat())


def write_raster(
    path: PathLike,
    data: np.ndarray | torch.Tensor,
    georef: GeoRef,
    *,
    dtype: str | None = None,
    nodata: float | None = None,
    colormap: Mapping[int, tuple[int, int, int]] | None = None,
    band_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an array as a GeoTIFF on ``georef``'s grid, atomically (temporary file, then rename).

    Args:
        path: Output file; its folder must exist.
        data: ``(C, H, W)`` or ``(H, W)`` array or tensor with H, W equal to the georef's size.
        georef: Grid to write on (usually the input's, or a window's).
        dtype: Output dtype; default the data's (float16 is widened to float32, bool to uint8).
        nodata: Nodata value; default the georef's when the dtype can hold it.
        colormap: Class id -> (r, g, b), for single-band uint8 class maps (e.g. LULC).
        band_names: Band descriptions; default the georef's when the count matches.
        overwrite: Replace an existing file.

    Returns:
        The written path.

    Raises:
        ShapeError: Data size differs from the georef's, or wrong number of band names.
        InputError: Output folder missing, file exists without ``overwrite``, bad colormap or nodata.
    """
    array = _as_chw(data)
    if array.shape[1:] != (georef.height, georef.width):
        raise ShapeError(
            f"data of size {array.shape[2]}x{array.shape[1]} does not match the georeference's "
            f"{georef.width}x{georef.height}"
        )
    out_dtype = dtype or _WIDEN.get(array.dtype, str(array.dtype))
    with RasterWriter(
        path, georef, array.shape[0], out_dtype, nodata=nodata, colormap=colormap,
        band_names=band_names, overwrite=overwrite,
    ) as writer:  # fmt: skip
        writer.write(array, Window(0, 0, georef.width, georef.height))
    return Path(path)


def _sibling_temp(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (named so that a crashed run's is cleaned as stale)."""
    prefix, suffix = temp_name(path)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def _finish_cog(
    assembly: Path,
    target: Path,
    profile: Mapping[str, object],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool:
    """On a clean close, copy the assembled GeoTIFF into ``target`` in GDAL's COG layout; drop the assembly.

    The COG layout: tiled (:data:`TILE_SIZE` blocks), internal overviews (nearest for integer class maps,
    average for continuous values) and the IFDs and overviews ahead of the full-resolution data, so a reader
    fetches any zoom level of any area with a few range requests.
    """
    try:
        if exc_type is None:
            integer = not np.issubdtype(np.dtype(str(profile["dtype"])), np.floating)
            options: dict[str, object] = {
                "BLOCKSIZE": TILE_SIZE, "BIGTIFF": "IF_SAFER", "OVERVIEWS": "AUTO",
                "OVERVIEW_RESAMPLING": "NEAREST" if integer else "AVERAGE",
            }  # fmt: skip
            if profile.get("compress"):
                options.update(COMPRESS=str(profile["compress"]).upper(), PREDICTOR="YES")
            rasterio.shutil.copy(assembly, target, driver="COG", **options)
    finally:
        assembly.unlink(missing_ok=True)
    return False


class RasterWriter:
    """Window-by-window writer of a large GeoTIFF output, made visible atomically on a clean close.

    Use as a context manager; if the block raises, the temporary file is removed and an existing target
    is left untouched::

        with RasterWriter(out, georef, count=1, dtype="uint8") as writer:
            for window in windows:
                writer.write(predict(window), window)

    With ``cog=True`` the file is published in GDAL's Cloud-Optimized GeoTIFF layout (tiled, internal
    overviews, IFDs first): windows are assembled in a temporary GeoTIFF and copied with the COG driver on
    close, still inside the atomic, verified write.
    """

    def __init__(
        self,
        path: PathLike,
        georef: GeoRef,
        count: int,
        dtype: str,
        *,
        nodata: float | None = None,
        colormap: Mapping[int, tuple[int, int, int]] | None = None,
        band_names: Sequence[str] | None = None,
        overwrite: bool = False,
        compress: str | None = "deflate",
        tiled: bool = True,
        cog: bool = False,
    ) -> None:
        self.path = check_output_path(path, overwrite=overwrite)
        self.cog = cog
        self.georef = georef
        self.count = count
        self.dtype = str(np.dtype(dtype))
        _check_colormap(colormap, count, self.dtype)
        self._profile = _profile(
            georef, count, self.dtype, _resolve_nodata(nodata, georef, self.dtype), compress, tiled
        )
        self._colormap = colormap
        self._band_names = band_names
        self._overwrite = overwrite
        self._stack: contextlib.ExitStack | None = None
        self._dataset: rasterio.io.DatasetWriter | None = None

    def __enter__(self) -> RasterWriter:
        size = self.georef.width * self.georef.height * self.count * np.dtype(self.dtype).itemsize
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(
                atomic_path(
                    self.path, overwrite=self._overwrite, verify=self._verify,
                    expected_size=2 * size if self.cog else size,
                )
            )  # fmt: skip
            if self.cog:  # windows are assembled in a plain GeoTIFF, then copied in the COG layout
                assembly = _sibling_temp(self.path)
                stack.push(functools.partial(_finish_cog, assembly, tmp, self._profile))
                tmp = assembly
            self._dataset = stack.enter_context(rasterio.open(tmp, "w", **self._profile))
            _describe(self._dataset, self.georef, self.count, self._colormap, self._band_names)
            self._stack = stack.pop_all()
        return self

    def write(self, data: np.ndarray | torch.Tensor, window: Window) -> None:
        """Write ``(count, h, w)`` (or ``(h, w)`` for one band) values into ``window``.

        Raises:
            ShapeError: If the data does not match the window's size or the band count.
        """
        if self._dataset is None:
            raise RuntimeError("RasterWriter.write called outside its `with` block")
        array = _as_chw(data)
        col, row, w, h = _window_ints(window)
        self.georef.window(window)  # validates that the window lies inside
        if array.shape != (self.count, h, w):
            raise ShapeError(f"data of shape {array.shape} does not fit window {h}x{w} of {self.count} bands")
        self._dataset.write(_cast(array, self.dtype), window=Window(col, row, w, h))

    def _verify(self, tmp: Path) -> None:
        """Re-open the written file: size, bands and type must match and its blocks must read.

        Outputs up to :data:`VERIFY_ALL_BYTES` are read whole; larger ones by their first and last blocks
        (a write that failed at the flush on close leaves the tail of the file missing).
        """
        with rasterio.open(tmp) as dataset:
            found = (dataset.width, dataset.height, dataset.count, dataset.dtypes[0])
            expected = (self.georef.width, self.georef.height, self.count, self.dtype)
            if found != expected:
                raise OutputError(f"it holds {found} (width, height, bands, type), expected {expected}")
            size = self.georef.width * self.georef.height * self.count * np.dtype(self.dtype).itemsize
            if size <= VERIFY_ALL_BYTES:
                dataset.read()
                return
            windows = [w for _, w in dataset.block_windows(1)]
            for window in (windows[0], windows[-1]):
                dataset.read(window=window)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._dataset = self._stack, None, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)
