"""Time series of rasters: GeoTIFF stacks (one file per date) and ImpactMesh's zarr-zip layout.

A series sample holds, per modality, ``(C, T, H, W)`` standardised values, the dates' time stamps ``(T,)``
in days since 1970-01-01 (:func:`days`) and a validity mask ``(T,)``; batches of them are a :class:`Series`
(``(B, C, T, H, W)``, ``(B, T)``, ``(B, T)``), what :class:`terramind.finetune.TemporalBackbone` takes.

Sources of one modality's series:

- **GeoTIFF stack**: one file per date, the date in the name (``tile_2021-06-01.tif``, ``tile_20210601.tif``;
  :func:`date_from_name`; :func:`dated_files` lists a folder) or listed in a CSV ``path,date[,modality]``
  (:func:`read_series_csv`; paths relative to the CSV; a header row is optional). Files are read with the
  GeoTIFF reader and standardised as single tiles are (:func:`terramind.data.tiles.prepare_input`). A date
  whose every pixel is nodata counts as missing (``valid`` False), not as a date of zeros.
- **ImpactMesh zarr zip** (``<root>/<MODALITY>/<id>.zarr.zip``, label ``<root>/MASK/<id>.zarr.zip``). The
  dataset card was not available offline, so this layout is ASSUMED, following the zarr-zip convention of
  the same publisher's TerraMesh release (:mod:`terramind.data.terramesh`): a zarr group with an array
  ``bands`` ``(T, C, H, W)`` (``T = 4`` for S1RTC and S2L2A, 1 for DEM; any numeric dtype, kept until
  standardising) and ``time`` ``(T,)`` (``datetime64[ns]``, or integers with a CF ``units`` attribute
  ``"<unit> since <date>"``, default nanoseconds since 1970-01-01; values at or below 1e6 ns mean "no
  date", as in TerraMesh: one decoding for both, :mod:`terramind.data.zarr_time`). The label's ``bands``
  is ``(1, 1, H, W)``, ``(1, H, W)`` or ``(H, W)`` class ids. The grid (:func:`zarr_georef`, also assumed):
  the CRS from a scalar ``spatial_ref`` array's ``crs_wkt`` (or ``spatial_ref``) attribute, as TerraMesh
  and rioxarray write it, or the group's ``crs`` attribute; the transform from ``spatial_ref``'s
  ``GeoTransform`` (GDAL's six numbers), else from 1-D pixel-centre coordinates ``x`` ``(W,)`` and ``y``
  ``(H,)``, regularly spaced. A sample stating neither is read without a grid (predictions are then written
  without one, with a warning); coordinates that are irregular or of the wrong length are refused.

Rules (one-line errors): dates of a series must be strictly increasing; every date of a sample must be on
one grid (CRS, transform, size: reproject first, e.g. with ``gdalwarp -tap``; this reader does not
resample); a series longer than ``max_steps`` is refused; a time axis given to a single-time model is
refused by :func:`require_single_time`.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import affine
import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.errors import CRSError
from torch.utils.data import Dataset, get_worker_info

from terramind.core.errors import InputError, ShapeError
from terramind.core.optional import require
from terramind.data.geotiff import GeoRef, Raster, band_positions, read_raster
from terramind.data.policy import check_pixels
from terramind.data.tiles import ModalityInput, d4, prepare_input, read_label
from terramind.data.zarr_time import zarr_time_ns

EPOCH = date(1970, 1, 1)
ZARR_SUFFIX = ".zarr.zip"
IMPACTMESH_LABEL = "MASK"  # assumed label folder of the ImpactMesh layout (module docstring)
# A date in a file name: 2021-06-01 / 2021_06_01, or 20210601 not inside a longer number.
_DATE_RE = re.compile(r"(?<!\d)(\d{4})[-_]?(\d{2})[-_]?(\d{2})(?!\d)")
RASTER_SUFFIXES = (".tif", ".tiff")


class Series(NamedTuple):
    """A batch with a time axis (a NamedTuple, so Lightning moves it between devices as it is).

    Attributes:
        inputs: Per modality ``(B, C, T, H, W)``, or ``(B, C, H, W)`` for a static modality.
        times: Per time-varying modality ``(B, T)`` days since 1970-01-01 (float).
        valid: Per time-varying modality ``(B, T)`` bool: False for a missing date.
    """

    inputs: dict[str, torch.Tensor]
    times: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]


def as_series(data: Series | Mapping[str, torch.Tensor]) -> Series:
    """Check a :class:`Series`, or make one of plain inputs (dates 0, 1, 2... days, all valid).

    Raises:
        ShapeError: An input is not 4-D or 5-D, or stamps/mask do not match its ``(B, T)``.
    """
    if not isinstance(data, Series):
        timed = {m: x for m, x in data.items() if x.ndim == 5}
        times = {
            m: torch.arange(x.shape[2], device=x.device).float().expand(x.shape[0], -1)
            for m, x in timed.items()
        }
        data = Series(dict(data), times, {m: torch.ones_like(t, dtype=torch.bool) for m, t in times.items()})
    for m, x in data.inputs.items():
        if x.ndim not in (3, 4, 5):  # 3: token ids (B, h, w) of a static token modality
            raise ShapeError(f"{m} is {tuple(x.shape)}: give (B, C, T, H, W) or, static, (B, C, H, W)")
        if x.ndim == 5 and x.shape[2] > 1:
            want = (x.shape[0], x.shape[2])
            for what, table in (("times", data.times), ("valid", data.valid)):
                got = table.get(m)
                if got is None or tuple(got.shape) != want:
                    shape = None if got is None else tuple(got.shape)
                    raise ShapeError(
                        f"{m} has T={want[1]} dates: {what}[{m!r}] must be (B, T) = {want}, got {shape}"
                    )
    return data


def require_single_time(inputs: Mapping[str, torch.Tensor], model: str = "this model") -> None:
    """Refuse inputs with a time axis for a single-time model, naming the modality.

    Raises:
        ShapeError: An input is 5-D ``(B, C, T, H, W)`` with ``T > 1``.
    """
    for m, x in inputs.items():
        if x.ndim == 5 and x.shape[2] > 1:
            raise ShapeError(
                f"{m} has a time axis (B, C, T, H, W) with T={x.shape[2]} but {model} takes one date: wrap "
                "the encoder in terramind.finetune.TemporalBackbone, or give one date (B, C, H, W)"
            )


def days(when: date | datetime) -> float:
    """Days since 1970-01-01 (UTC for a timezone-aware time)."""
    if isinstance(when, datetime):
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        return (when - datetime(1970, 1, 1)) / timedelta(days=1)
    return float((when - EPOCH).days)


def parse_date(text: str) -> date | None:
    """Find a date (``YYYY-MM-DD``, ``YYYY_MM_DD`` or ``YYYYMMDD``) in ``text``; None if there is none."""
    for match in _DATE_RE.finditer(text):
        try:
            return date(*(int(g) for g in match.groups()))
        except ValueError:
            continue  # 8 digits that are no calendar date (an id): look further
    return None


def date_from_name(path: Path) -> date | None:
    """Return the date in a file's name, or None."""
    return parse_date(path.name)


@dataclass(frozen=True)
class SeriesFile:
    """One date of a GeoTIFF stack."""

    path: Path
    date: date


def check_increasing(files: Sequence[SeriesFile], what: str) -> None:
    """Refuse dates that are not strictly increasing, naming the first offending pair."""
    for a, b in itertools.pairwise(files):
        if b.date <= a.date:
            raise InputError(
                f"{what}: dates are not increasing ({a.path.name} {a.date} then {b.path.name} {b.date}); "
                "list each date once, oldest first"
            )


def dated_files(folder: Path) -> list[SeriesFile]:
    """List the GeoTIFFs of a folder, one per date, oldest first (dates from the names).

    Raises:
        InputError: No files, a file without a date in its name, or two files of one date.
    """
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not paths:
        raise InputError(f"{str(folder)!r} holds no GeoTIFF (.tif) files")
    undated = [p.name for p in paths if date_from_name(p) is None]
    if undated:
        raise InputError(
            f"{str(folder)!r}: no date in the name of {undated[:3]}: name files like tile_2021-06-01.tif "
            "or tile_20210601.tif, or list them in a CSV path,date"
        )
    files = sorted((SeriesFile(p, date_from_name(p) or EPOCH) for p in paths), key=lambda f: f.date)
    check_increasing(files, str(folder))
    return files


def read_series_csv(path: Path, default_modality: str | None = None) -> dict[str, list[SeriesFile]]:
    """Read a CSV of ``path,date[,modality]`` rows (paths relative to the CSV), in file order per modality.

    Args:
        path: The CSV.
        default_modality: Modality of rows without a third column.

    Returns:
        Per modality, its files in the listed order (checked to be increasing in date).

    Raises:
        InputError: Unreadable dates, a missing modality, dates not increasing.
    """
    path = Path(path)
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
    except OSError as err:
        raise InputError(f"cannot read series list {str(path)!r}: {err.strerror}") from None
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]  # header
    out: dict[str, list[SeriesFile]] = {}
    for i, row in enumerate(rows, 1):
        when = parse_date(row[1]) if len(row) > 1 else None
        modality = row[2].strip() if len(row) > 2 and row[2].strip() else default_modality
        if when is None or modality is None:
            raise InputError(
                f"{str(path)!r} row {i} {row}: each row is path,date[,modality] with a date like 2021-06-01"
                + ("" if modality else " and a modality (third column)")
            )
        out.setdefault(modality, []).append(SeriesFile(path.parent / row[0].strip(), when))
    for modality, files in out.items():
        check_increasing(files, f"{path} ({modality})")
    return out


@dataclass(frozen=True)
class SeriesArrays:
    """One modality's series of one sample.

    Attributes:
        x: ``(C, T, H, W)`` float32 standardised (class ids for a categorical modality).
        times: ``(T,)`` float64 days since 1970-01-01 (0 where unknown, e.g. DEM).
        valid: ``(T,)`` bool: False for a date without any valid pixel.
        invalid: ``(H, W)`` pixels without a valid value at any valid date.
        georef: The grid (None for a zarr sample that states none).
        source: Where it was read from (for messages and outputs).
    """

    x: np.ndarray
    times: np.ndarray
    valid: np.ndarray
    invalid: np.ndarray
    georef: GeoRef | None
    source: str


def check_steps(count: int, max_steps: int | None, what: str) -> None:
    """Refuse a series of more than ``max_steps`` dates (``what`` names it), saying what to do."""
    if max_steps is not None and count > max_steps:
        raise ShapeError(f"{what} has {count} dates, more than max_steps={max_steps}: drop dates or raise it")


def read_geotiff_series(
    files: Sequence[SeriesFile], mod: ModalityInput, max_steps: int | None = None
) -> SeriesArrays:
    """Read and standardise a GeoTIFF stack of one modality.

    Raises:
        InputError: Dates not increasing, files on different grids, unreadable files.
        ShapeError: More than ``max_steps`` dates.
    """
    what = f"{mod.name} series {str(files[0].path.parent)!r}" if files else mod.name
    if not files:
        raise InputError(f"{what}: no files")
    check_steps(len(files), max_steps, what)
    check_increasing(files, what)
    steps, invalid, first = [], [], None
    for f in files:
        raster = _read_date(f.path, mod)
        if first is None:
            first = raster
        elif (problem := first.georef.same_grid(raster.georef)) is not None:
            raise InputError(
                f"{what}: {f.path.name} is not on the grid of {first.path.name} ({problem}); every date of "
                "a series must share CRS, transform and size: reproject first (gdalwarp -tap -tr ...)"
            )
        try:
            x, bad = prepare_input(mod, raster.data, raster.georef.nodata)
        except InputError as err:
            raise InputError(f"{str(f.path)!r}: {err}") from None
        steps.append(x)
        invalid.append(bad)
    return _arrays(np.stack(steps, axis=1), np.array([days(f.date) for f in files]), np.stack(invalid),
                   first.georef if first else None, str(files[0].path))  # fmt: skip


def _read_date(path: Path, mod: ModalityInput) -> Raster:
    """Read one date of a stack: the modality's bands under the reading policy.

    Unlike a single tile, a date without a valid pixel (a cloud-masked acquisition) is allowed: it becomes a
    missing date.
    """
    raster = read_raster(path, allow_nonfinite=True)  # all bands; the policy is applied below
    data = raster.data[band_positions(raster.georef, path, mod.record, mod.bands, mod.file_bands or None)]
    data = check_pixels(
        data, mod.record, raster.georef.nodata, str(path), allow_nonfinite=True, require_valid=False
    )
    return Raster(data, raster.georef, raster.path)


def _arrays(
    x: np.ndarray, times: np.ndarray, invalid: np.ndarray, georef: GeoRef | None, source: str
) -> SeriesArrays:
    """Bundle a series; a date with no valid pixel is a missing date."""
    valid = np.asarray(~invalid.reshape(invalid.shape[0], -1).all(axis=1))  # (T,)
    never = np.asarray(invalid[valid].all(axis=0)) if valid.any() else np.ones(invalid.shape[1:], bool)
    return SeriesArrays(x.astype(np.float32), times.astype(np.float64), valid, never, georef, source)


def _zarr_group(path: Path) -> Any:
    zarr = require("zarr", "terramesh")
    try:
        store = zarr.storage.ZipStore(str(path), mode="r")
        return zarr.open_group(store, mode="r")
    except FileNotFoundError:
        raise InputError(f"{str(path)!r} does not exist") from None
    except Exception as err:  # zarr raises many kinds (BadZipFile, JSON, metadata errors) for a bad file
        raise InputError(f"{str(path)!r} is not a readable zarr zip ({type(err).__name__}: {err})") from None


def zarr_days(array: Any) -> np.ndarray:
    """Days since 1970-01-01 of a zarr ``time`` array (0 for "no date"; :mod:`terramind.data.zarr_time`)."""
    ns = zarr_time_ns(array)
    return np.where(np.isnan(ns), 0.0, ns / 86400e9)


def read_zarr_series(path: Path, mod: ModalityInput, max_steps: int | None = None) -> SeriesArrays:
    """Read and standardise one modality's series from an ImpactMesh-layout zarr zip (``bands``, ``time``).

    Raises:
        InputError: Not a zarr zip, no ``bands``, dates not increasing, band count not the modality's.
        ShapeError: More than ``max_steps`` dates.
    """
    group = _zarr_group(path)
    names = set(group.array_keys())
    if "bands" not in names:
        raise InputError(f"{str(path)!r} has no 'bands' array (arrays: {sorted(names)})")
    data = np.asarray(group["bands"][...])
    if data.ndim == 3:
        data = data[None]  # (C, H, W): one date
    if data.ndim != 4:
        raise ShapeError(f"{str(path)!r}: 'bands' is {data.shape}, expected (T, C, H, W)")
    what = f"{mod.name} series {str(path)!r}"
    check_steps(data.shape[0], max_steps, what)
    if data.shape[1] != mod.file_band_count:
        raise ShapeError(f"{what} has {data.shape[1]} bands, {mod.name} files hold {mod.file_band_count}")
    times = zarr_days(group["time"]) if "time" in names else np.zeros(data.shape[0])
    if times.size != data.shape[0]:
        raise ShapeError(f"{what}: 'time' has {times.size} values for {data.shape[0]} dates")
    dated = times[times > 0]
    if (np.diff(dated) <= 0).any():
        raise InputError(f"{what}: dates are not increasing ({times.tolist()} days since 1970-01-01)")
    steps = [prepare_input(mod, step[list(mod.index)], None) for step in data]
    x = np.stack([s for s, _ in steps], axis=1)
    georef = zarr_georef(group, data.shape[-2], data.shape[-1], str(path))
    return _arrays(x, times, np.stack([bad for _, bad in steps]), georef, str(path))


def zarr_georef(group: Any, height: int, width: int, what: str) -> GeoRef | None:
    """Return the grid a zarr sample states (module docstring: assumed encodings), or None without one.

    A grid needs both a CRS and a transform; a sample stating only one of them has none.

    Raises:
        InputError: An unreadable CRS, or ``x``/``y`` coordinates of the wrong length or not regularly
            spaced (a wrong grid would be worse than none).
    """
    arrays = set(group.array_keys())
    ref = dict(group["spatial_ref"].attrs) if "spatial_ref" in arrays else {}
    text = ref.get("crs_wkt") or ref.get("spatial_ref") or dict(group.attrs).get("crs")
    if not text:
        return None
    try:
        crs = CRS.from_user_input(text)
    except CRSError as err:
        raise InputError(f"{what!r}: its CRS {str(text)[:60]!r} cannot be read ({err})") from None
    if geo := ref.get("GeoTransform"):
        c, a, b, f, d, e = (float(v) for v in str(geo).split())  # GDAL's order: c a b f d e
        transform = affine.Affine(a, b, c, d, e, f)
    elif {"x", "y"} <= arrays:
        transform = _transform_from_centres(group["x"][...], group["y"][...], height, width, what)
    else:
        return None
    return GeoRef(crs, transform, width, height)


def _transform_from_centres(
    x: np.ndarray, y: np.ndarray, height: int, width: int, what: str
) -> affine.Affine:
    """Return the transform of a grid given by its pixel-centre coordinates (a column per x, a row per y)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if (x.size, y.size) != (width, height) or min(width, height) < 2:
        raise InputError(
            f"{what!r}: coordinates x ({x.size}) and y ({y.size}) do not give the {width}x{height} grid of "
            "its bands (at least 2 each)"
        )
    dx, dy = np.diff(x), np.diff(y)
    # regular to 1e-6 pixel: float64 coordinates of a grid (rioxarray, xarray) are exact up to rounding
    if not (
        dx[0] != 0
        and dy[0] != 0
        and np.allclose(dx, dx[0], rtol=0, atol=abs(dx[0]) * 1e-6)
        and np.allclose(dy, dy[0], rtol=0, atol=abs(dy[0]) * 1e-6)
    ):
        raise InputError(
            f"{what!r}: its x/y coordinates are not regularly spaced: not a grid it can be written on"
        )
    return affine.Affine(dx[0], 0.0, x[0] - dx[0] / 2, 0.0, dy[0], y[0] - dy[0] / 2)


def read_zarr_label(path: Path) -> np.ndarray:
    """Read the ``(H, W)`` class ids of an ImpactMesh-layout label zip (array ``bands``)."""
    group = _zarr_group(path)
    if "bands" not in set(group.array_keys()):
        raise InputError(f"label {str(path)!r} has no 'bands' array")
    data = np.asarray(group["bands"][...])
    data = data.reshape(data.shape[-2:]) if data.size == np.prod(data.shape[-2:]) else data
    if data.ndim != 2:
        raise ShapeError(f"label {str(path)!r} is {data.shape}: one band of one date expected")
    return data


Source = Sequence[SeriesFile] | Path  # a GeoTIFF stack or a zarr zip


def read_series(source: Source, mod: ModalityInput, max_steps: int | None = None) -> SeriesArrays:
    """Read one modality's series from a GeoTIFF stack or a zarr zip."""
    if isinstance(source, Path):
        return read_zarr_series(source, mod, max_steps)
    return read_geotiff_series(source, mod, max_steps)


@dataclass(frozen=True)
class SeriesSample:
    """Where one sample's series (per modality) and label live."""

    name: str
    sources: Mapping[str, Source]
    label: Path | None = None


@dataclass
class SeriesDataset(Dataset[dict[str, Any]]):
    """Samples with a time axis: ``{"inputs", "times", "valid", "label", "path", "name", "grid"}`` per sample.

    ``path`` is the first modality's first file, ``name`` the sample's name (what predictions are named
    after) and ``grid`` its grid as :func:`grid_record` (None: the sample states none).

    Args:
        samples: Where each sample's files are.
        inputs: How to read each modality.
        max_steps: Refuse series with more dates.
        ignore_index: Label value of pixels with no valid input at any date, or the label's ``nodata``.
        augment: One random D4 transform per sample, the same for every date, modality and the label.
        seed: Seed of the transforms: each data-loading worker draws from its own generator, seeded from
            ``seed`` and the worker id (the global random state is untouched).
        num_classes: Refuse label values outside ``0..num_classes-1`` (``ignore_index`` aside); None: none.
    """

    samples: Sequence[SeriesSample]
    inputs: Sequence[ModalityInput]
    max_steps: int | None = None
    ignore_index: int = -1
    augment: bool = False
    seed: int = 0
    num_classes: int | None = None
    _generators: dict[int, torch.Generator] = field(default_factory=dict, init=False, repr=False)

    def _generator(self) -> torch.Generator:
        """Return the calling worker's generator (created on first use)."""
        info = get_worker_info()
        worker = info.id if info is not None else -1
        if worker not in self._generators:
            state = np.random.SeedSequence([self.seed, worker + 1]).generate_state(1)[0]
            self._generators[worker] = torch.Generator().manual_seed(int(state))
        return self._generators[worker]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        read = {m.name: read_series(sample.sources[m.name], m, self.max_steps) for m in self.inputs}
        _check_one_grid(sample.name, read)
        invalid = np.asarray(np.stack([a.invalid for a in read.values()]).any(axis=0))
        arrays = [torch.from_numpy(a.x) for a in read.values()]
        label = self._label(sample, invalid)
        if label is not None:
            arrays.append(label)
        if self.augment:
            k, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=self._generator()))
            arrays = [a.contiguous() for a in d4(arrays, k, flip % 2 == 1)]  # (H, W) last: same for all dates
        out: dict[str, Any] = {
            "inputs": dict(zip(read, arrays, strict=False)),
            "times": {m: torch.from_numpy(a.times) for m, a in read.items()},
            "valid": {m: torch.from_numpy(a.valid) for m, a in read.items()},
            "path": next(iter(read.values())).source,
            "name": sample.name,
            "grid": grid_record(next((a.georef for a in read.values() if a.georef is not None), None)),
        }
        if label is not None:
            out["label"] = arrays[-1]
        return out

    def _label(self, sample: SeriesSample, invalid: np.ndarray) -> torch.Tensor | None:
        if sample.label is None:
            return None
        if sample.label.name.endswith(ZARR_SUFFIX):
            ids = read_zarr_label(sample.label).astype(np.float64)
        else:
            raster = read_label(sample.label)
            ids = raster.data[0].astype(np.float64)
            if raster.georef.nodata is not None:
                ids[ids == raster.georef.nodata] = self.ignore_index
        if ids.shape != invalid.shape:
            raise InputError(
                f"label {str(sample.label)!r} is {ids.shape}, its inputs {invalid.shape}: one grid"
            )
        ids = np.where(invalid | ~np.isfinite(ids), self.ignore_index, ids)
        out = ids[ids != self.ignore_index]
        if self.num_classes is not None and out.size and (out.min() < 0 or out.max() >= self.num_classes):
            raise InputError(
                f"label {str(sample.label)!r} holds classes outside 0..{self.num_classes - 1} "
                f"(found {out.min():g}..{out.max():g}); fix num_classes or ignore_index"
            )
        return torch.from_numpy(ids.astype(np.int64))


def _check_one_grid(name: str, read: Mapping[str, SeriesArrays]) -> None:
    """Refuse modalities of one sample on different grids (size; CRS and transform where known)."""
    sizes = {m: tuple(a.x.shape[-2:]) for m, a in read.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"sample {name!r}: modalities have different sizes {sizes}; reproject first")
    located = [(m, a) for m, a in read.items() if a.georef is not None]
    for m, a in located[1:]:
        first, ref = located[0]
        problem = ref.georef.same_grid(a.georef) if ref.georef and a.georef else None
        if problem:
            raise InputError(
                f"sample {name!r}: {m} is not on the grid of {first} ({problem}); reproject first"
            )


def collate_series(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch series samples; shorter series are padded with missing dates (``valid`` False).

    Returns:
        ``{"inputs": Series, "label": (B, H, W), "path": [str], "name": [str], "grid": [dict | None]}``.
    """
    names = list(samples[0]["inputs"])
    inputs, times, valid = {}, {}, {}
    for m in names:
        steps = max(s["inputs"][m].shape[1] for s in samples)
        inputs[m] = torch.stack([_pad(s["inputs"][m], steps, 1) for s in samples])  # (B, C, T, H, W)
        times[m] = torch.stack([_pad(s["times"][m], steps, 0) for s in samples])  # float64 days
        valid[m] = torch.stack([_pad(s["valid"][m], steps, 0) for s in samples])
    batch: dict[str, Any] = {"inputs": Series(inputs, times, valid), "path": [s["path"] for s in samples]}
    for key in ("name", "grid"):
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    if "label" in samples[0]:
        batch["label"] = torch.stack([s["label"] for s in samples])
    return batch


def grid_record(georef: GeoRef | None) -> dict[str, Any] | None:
    """Return a sample's grid as plain values, or None.

    Batches pass through Lightning's device transfer, which refuses frozen dataclasses such as
    :class:`GeoRef`; :func:`grid_from_record` turns the record back.
    """
    if georef is None:
        return None
    crs = georef.crs.to_wkt() if georef.crs is not None else None
    return {"crs": crs, "transform": list(georef.transform)[:6], "width": georef.width,
            "height": georef.height, "nodata": georef.nodata}  # fmt: skip


def grid_from_record(record: Mapping[str, Any] | None) -> GeoRef | None:
    """Return the :class:`GeoRef` of a :func:`grid_record` (None for None)."""
    if record is None:
        return None
    crs = CRS.from_user_input(record["crs"]) if record["crs"] else None
    transform = affine.Affine(*(float(v) for v in record["transform"]))
    return GeoRef(crs, transform, int(record["width"]), int(record["height"]), record["nodata"])


def _pad(x: torch.Tensor, steps: int, dim: int) -> torch.Tensor:
    """Zero-pad ``x`` to ``steps`` along ``dim`` (padded dates are missing: their ``valid`` is False)."""
    missing = steps - x.shape[dim]
    if not missing:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def series_source(path: Path, modality: str | None = None) -> Source:
    """Read where one modality's series is.

    Args:
        path: A folder of dated GeoTIFFs, a CSV ``path,date[,modality]``, a zarr zip, or one GeoTIFF (one
            date, e.g. a static DEM; without a date in its name it is day 0).
        modality: The modality, for the rows of a CSV without a third column (and to pick its rows).

    Raises:
        InputError: A folder or CSV that lists no dated file, or a CSV without rows of ``modality``.
    """
    if path.is_dir():
        return dated_files(path)
    if path.name.endswith(ZARR_SUFFIX):
        return path
    if path.suffix.lower() == ".csv":
        listed = read_series_csv(path, default_modality=modality)
        if modality not in listed:
            raise InputError(f"{str(path)!r} lists no {modality} files (it lists {sorted(listed)})")
        return listed[modality]
    return [SeriesFile(path, date_from_name(path) or EPOCH)]


def date_of(day: float) -> date:
    """Return the calendar date of a time stamp in days since 1970-01-01."""
    return EPOCH + timedelta(days=int(np.floor(day)))


def _sample_name(entry: Path) -> str:
    name = entry.name
    for suffix in (ZARR_SUFFIX, *RASTER_SUFFIXES, ".csv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_samples(
    root: Path, modalities: Sequence[str], label_folder: str | None = "label"
) -> list[SeriesSample]:
    """Pair the series of every modality folder (and labels) by sample name.

    Layout: ``root/<MODALITY>/<name>/`` (a folder of dated GeoTIFFs), ``root/<MODALITY>/<name>.csv``
    (``path,date`` rows), ``root/<MODALITY>/<name>.tif`` (a static modality, e.g. DEM) or
    ``root/<MODALITY>/<name>.zarr.zip`` (ImpactMesh), with
    ``root/<label_folder>/<name>.tif`` or ``.zarr.zip``. A ``root/series/<name>.csv`` (``path,date,modality``)
    replaces the folders of the modalities it lists.

    Raises:
        InputError: A missing folder, or samples present in one modality folder but not another.
    """
    root = Path(root)
    entries: dict[str, dict[str, Path]] = {}
    for folder in [*modalities, *([label_folder] if label_folder else [])]:
        path = root / folder
        if not path.is_dir():
            raise InputError(
                f"{str(path)!r} is not a folder: give one folder per modality ({', '.join(modalities)})"
            )
        entries[folder] = {_sample_name(p): p for p in path.iterdir() if not p.name.startswith(".")}
    names = set(entries[modalities[0]])
    for folder, found in entries.items():
        if set(found) != names:
            diff = sorted(names.symmetric_difference(found))
            raise InputError(f"samples {diff[:5]} are not in every folder ({modalities[0]} vs {folder})")
    samples = []
    for name in sorted(names):
        listed_csv = root / "series" / f"{name}.csv"
        listed = read_series_csv(listed_csv) if listed_csv.is_file() else {}
        sources = {m: listed[m] if m in listed else series_source(entries[m][name], m) for m in modalities}
        label = entries[label_folder][name] if label_folder else None
        samples.append(SeriesSample(name, sources, label))
    return samples
