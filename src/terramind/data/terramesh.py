"""Reader for the TerraMesh release (``ibm-esa-geospatial/TerraMesh``): train on TerraMesh itself.

Layout, as documented by the dataset card and its loader ``terramesh.py`` (checked for facts only):

- ``<root>/<split>/<MODALITY>/<subset>_shard_<id:06d>.tar`` with ``split`` in ``train``/``val``, modality
  folders ``S2L1C S2L2A S2RGB S1GRD S1RTC DEM NDVI LULC`` and subsets ``majortom`` (train ids 1-793, val
  1-8) and ``ssl4eos12`` (train 794-889, val 9). S1GRD exists only for ssl4eos12 shards, S1RTC only for
  majortom shards (the loader leaves each out of the other subset's URLs).
- Each tar member is one sample of one modality, ``<sample key>.zarr.zip`` (e.g.
  ``ssl4eos12_val_0080385.zarr.zip``); the modalities of a sample share the shard file name and the sample
  key (the loader walks the per-modality tars in lockstep and fails on diverging keys; here samples are
  matched by key, so a missing sample is skipped instead of misaligning the rest).
- The zip holds a zarr v2 group with consolidated metadata: array ``bands`` (leading time axis of length 1,
  dropped by the loader), ``center_lon``/``center_lat`` (same for all modalities), ``time`` (integer
  ``datetime64[ns]`` values; DEM stores 0, i.e. no timestamp) and, in optical modalities, ``cloud_mask``.

Assumptions (not confirmed from the card or the loader; checked defensively):

- ``bands`` is ``(time, band, y, x)``; a 3-D ``(band, y, x)`` array is accepted too. Dtypes are kept as
  stored (not confirmed per modality); no nodata/fill value is documented (the paper says NaNs were filled),
  so none is masked here.
- ``time`` may also be a real ``datetime64`` array or carry a CF ``units`` attribute (``"<unit> since
  <date>"``); both are decoded (:mod:`terramind.data.zarr_time`, shared with the ImpactMesh series reader).
  Values at or below 1e6 ns are treated as "no timestamp", as the loader does.
- A CRS is mentioned by the card but not read by the loader, so its encoding is assumed: rioxarray's CF
  convention, a scalar ``spatial_ref`` array whose ``crs_wkt`` (or ``spatial_ref``) attribute holds the
  WKT and whose ``GeoTransform`` attribute holds GDAL's six numbers. Both are returned when present.
- The ``cloud_mask`` array is not returned.

Dtypes as written by :func:`write_terramesh` (``RELEASE_DTYPES``) are assumed, following the example tiles
(which the TerraMind repository took from TerraMesh): S2L1C/S2L2A int16, S2RGB/LULC uint8, S1GRD/S1RTC/NDVI
float32, DEM int16. The reader keeps whatever dtype is stored.

This module only decodes (:class:`TerraMeshSource`); splitting, shuffling, cropping, batching, resume and
skip accounting are the stream engine's (:class:`~terramind.data.stream.SampleStream`). A sample lacking a
requested modality, or whose member is not a readable zarr zip (:class:`SourceDecodeError`), is skipped and
counted there; any other error propagates.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from webdataset.tariterators import tar_file_iterator

from terramind.core.errors import InputError, ModalityError
from terramind.core.files import atomic_path
from terramind.core.optional import require
from terramind.data.sample import Sample
from terramind.data.stream import SampleStream, SourceDecodeError, StreamConfig
from terramind.data.zarr_time import zarr_time_ns
from terramind.modalities import get_modality

Subset = Literal["majortom", "ssl4eos12", "combined"]

SAMPLE_EXT = ".zarr.zip"
# Release folder names; get_modality maps each onto our catalog name.
FOLDERS = ("S2L1C", "S2L2A", "S2RGB", "S1GRD", "S1RTC", "DEM", "NDVI", "LULC")
# Modalities that exist only in one source subset (dataset card: one S1 version per sample).
ONLY_IN = {"S1GRD": "ssl4eos12", "S1RTC": "majortom"}
SUBSETS: dict[str, tuple[str, ...]] = {
    "majortom": ("majortom",),
    "ssl4eos12": ("ssl4eos12",),
    "combined": ("majortom", "ssl4eos12"),
}
_SHARD = re.compile(r"^(?P<subset>[a-z0-9]+)_shard_(?P<id>\d{6})\.tar$")


@dataclass(frozen=True)
class ZarrSample:
    """One modality of one sample, decoded from its ``.zarr.zip``.

    Attributes:
        bands: ``(C, H, W)`` in the stored dtype.
        time: ISO 8601 UTC timestamp, or None (DEM).
        center_lonlat: ``(lon, lat)`` of the sample centre, or None when not stored.
        crs: CRS (``EPSG:32633``), None when not stored (assumed encoding, see the module docstring).
        transform: Affine ``(a, b, c, d, e, f)`` of the pixel grid, None when not stored.
    """

    bands: np.ndarray
    time: str | None
    center_lonlat: tuple[float, float] | None
    crs: str | None = None
    transform: tuple[float, ...] | None = None


def _decode_time(array: Any) -> str | None:
    """Turn a zarr ``time`` array into an ISO string (None for "no timestamp" and for units not understood).

    The decoding is :func:`terramind.data.zarr_time.zarr_time_ns`; an origin or unit it cannot read is
    reported as "no timestamp" rather than a wrong one.
    """
    try:
        ns = zarr_time_ns(array)
    except InputError:
        return None
    if ns.size == 0 or np.isnan(ns[0]):
        return None
    return datetime.fromtimestamp(float(ns[0]) / 1e9, tz=timezone.utc).isoformat()


def _georeference(group: Any) -> tuple[str | None, tuple[float, ...] | None]:
    """CRS and transform from a ``spatial_ref`` array (assumed rioxarray/CF encoding), else (None, None)."""
    if "spatial_ref" not in set(group.array_keys()):
        return None, None
    attrs = group["spatial_ref"].attrs
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    crs = None
    if wkt:
        try:
            crs = CRS.from_user_input(wkt).to_string()
        except CRSError as err:
            raise SourceDecodeError(f"spatial_ref holds no readable CRS ({err})") from err
    transform = None
    if gt := attrs.get("GeoTransform"):
        c, a, b, f, d, e = (float(v) for v in str(gt).split())  # GDAL order: c a b f d e
        transform = (a, b, c, d, e, f)
    return crs, transform


def _open_group(data: bytes) -> Any:
    """Open the zarr group of a ``.zarr.zip`` held in memory."""
    zarr = require("zarr", "terramesh")
    from zarr.core.buffer import Buffer, cpu
    from zarr.storage import MemoryStore

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files: dict[str, Buffer] = {
                n: cpu.Buffer.from_bytes(archive.read(n)) for n in archive.namelist() if not n.endswith("/")
            }
    except (zipfile.BadZipFile, EOFError) as err:
        raise SourceDecodeError(f"not a zarr zip ({err})") from err
    try:
        return zarr.open_group(MemoryStore(files), mode="r")
    except (FileNotFoundError, ValueError) as err:  # zarr: no group metadata / unreadable metadata
        raise SourceDecodeError(f"zip holds no zarr group ({err})") from err


def decode_zarr_zip(data: bytes) -> ZarrSample:
    """Decode one TerraMesh ``.zarr.zip`` member.

    Args:
        data: The zip file's bytes.

    Returns:
        Its bands, time, centre and (when stored) georeference.

    Raises:
        SourceDecodeError: Not a zip, no zarr group, or no ``bands`` array.
    """
    group = _open_group(data)
    names = set(group.array_keys())
    if "bands" not in names:
        raise SourceDecodeError(f"zarr zip has no 'bands' array (arrays: {sorted(names)})")
    bands = np.asarray(group["bands"][...])
    if bands.ndim == 4 and bands.shape[0] == 1:
        bands = bands[0]  # (1, C, H, W) -> (C, H, W): one time step per sample
    centre = None
    if {"center_lon", "center_lat"} <= names:
        lon = np.asarray(group["center_lon"][...]).reshape(-1)[0]
        lat = np.asarray(group["center_lat"][...]).reshape(-1)[0]
        centre = (float(lon), float(lat))
    time = _decode_time(group["time"]) if "time" in names else None
    crs, transform = _georeference(group)
    return ZarrSample(bands=bands, time=time, center_lonlat=centre, crs=crs, transform=transform)


def _folder_name(modality: str) -> str:
    """Release folder of a catalog modality (``sen2l2a`` or ``S2L2A`` -> ``S2L2A``)."""
    try:
        name = get_modality(modality).name
    except ModalityError as err:
        raise InputError(f"unknown modality {modality!r}; TerraMesh has {', '.join(FOLDERS)}") from err
    if name not in FOLDERS:
        raise InputError(f"{name} is not part of TerraMesh; it has {', '.join(FOLDERS)}")
    return name


def _shard_names(folder: Path, subsets: Sequence[str], shards: Sequence[int | str] | None) -> list[str]:
    """Shard file names to read: the given ids/names, else every shard of the subsets in ``folder``."""
    if shards is None:
        found = (m for p in folder.glob("*_shard_*.tar") if (m := _SHARD.match(p.name)))
        return sorted(m.string for m in found if m["subset"] in subsets)
    names = []
    for shard in shards:
        if isinstance(shard, int):
            matches = [p.name for s in subsets if (p := folder / f"{s}_shard_{shard:06d}.tar").is_file()]
            if not matches:
                raise InputError(f"no shard with id {shard} of {'/'.join(subsets)} in {str(folder)!r}")
            names.extend(matches)
        else:
            names.append(shard if shard.endswith(".tar") else f"{shard}.tar")
    return names


def find_shards(
    root: str | Path,
    split: str,
    modalities: Sequence[str],
    subset: Subset,
    shards: Sequence[int | str] | None,
) -> list[dict[str, Path]]:
    """Locate the per-modality tar files of each shard.

    Args:
        root: Dataset root holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"``.
        modalities: Release folder names.
        subset: Source subset(s) to read.
        shards: Shard ids (ints) or file names; None: all shards found in the first modality's folder.

    Returns:
        One mapping per shard: modality -> tar path, in shard name order.

    Raises:
        InputError: Unknown split/subset, a missing folder or shard file, or a modality not in the subset.
    """
    if split not in ("train", "val"):
        raise InputError(f"split must be 'train' or 'val', got {split!r}")
    if subset not in SUBSETS:
        raise InputError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
    subsets = tuple(s for s in SUBSETS[subset] if all(ONLY_IN.get(m, s) == s for m in modalities))
    if not subsets:
        only = {m: ONLY_IN[m] for m in modalities if m in ONLY_IN}
        raise InputError(f"no {subset!r} shards hold all of {list(modalities)} (only in: {only})")
    folders = {m: Path(root) / split / m for m in modalities}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise InputError(f"TerraMesh folder {str(folder)!r} for {name} does not exist; download it first")
    names = _shard_names(folders[modalities[0]], subsets, shards)
    if not names:
        raise InputError(f"no {'/'.join(subsets)}_shard_*.tar files in {str(folders[modalities[0]])!r}")
    missing = [str(f / n) for n in names for f in folders.values() if not (f / n).is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} shard files missing, e.g. {missing[:3]}; download them or pass shards="
        )
    return [{m: folders[m] / n for m in modalities} for n in names]


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(sample key, zarr zip bytes)`` of one modality tar, in file order."""
    with open(path, "rb") as stream:
        for member in tar_file_iterator(stream):
            name = Path(member["fname"]).name
            if name.endswith(SAMPLE_EXT):
                yield name[: -len(SAMPLE_EXT)], member["data"]


def merge_by_key(files: dict[str, Path]) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """Walk one shard's modality tars together and pair their members by sample key.

    The first modality drives the order; the others are read ahead only until the key turns up, so aligned
    tars (the release) cost no extra memory. A key missing from a modality comes back as None.

    Args:
        files: Modality -> tar path of one shard id.

    Yields:
        ``(key, {modality: bytes or None})``.
    """
    lead, *others = files
    streams = {m: _members(files[m]) for m in others}
    pending: dict[str, dict[str, bytes]] = {m: {} for m in others}
    exhausted: set[str] = set()
    for key, data in _members(files[lead]):
        found: dict[str, bytes | None] = {lead: data}
        for m in others:
            while key not in pending[m] and m not in exhausted:
                nxt = next(streams[m], None)
                if nxt is None:
                    exhausted.add(m)
                else:
                    pending[m][nxt[0]] = nxt[1]
            found[m] = pending[m].pop(key, None)
        yield key, found


class TerraMeshSource:
    """TerraMesh shards as a stream source: one unit per shard id, items paired across modality tars."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] = ("S2L2A",),
        *,
        subset: Subset = "combined",
        shards: Sequence[int | str] | None = None,
    ):
        """Locate the shards (errors for missing folders/files come here, not mid-iteration).

        Args:
            root: Dataset root holding ``train/`` and ``val/``.
            split: ``"train"`` or ``"val"``.
            modalities: Modality names (catalog names or aliases such as ``"sen2l2a"``).
            subset: ``"majortom"``, ``"ssl4eos12"`` or ``"combined"``; only subsets holding every requested
                modality are read (S1RTC: majortom only, S1GRD: ssl4eos12 only).
            shards: Shard ids or file names to read; None: all found.

        Raises:
            InputError: An unknown modality, split or subset, a missing folder or shard file.
        """
        self.modalities = tuple(_folder_name(m) for m in modalities)
        if not self.modalities:
            raise InputError("give at least one TerraMesh modality")
        self.shards = find_shards(root, split, self.modalities, subset, shards)

    def units(self) -> Sequence[str]:
        """Return the shard paths of the first modality (one per shard id)."""
        return [str(s[self.modalities[0]]) for s in self.shards]

    def file_of(self, unit: int, modality: str) -> str:
        """Return the tar of ``modality`` of shard ``unit``."""
        files = self.shards[unit]
        return str(files.get(modality, files[self.modalities[0]]))

    def items(self, unit: int) -> Iterator[tuple[str, dict[str, bytes | None]]]:
        """Pair the members of one shard id: ``(key, {modality: zarr zip bytes or None})``."""
        return merge_by_key(self.shards[unit])

    def decode(self, key: str, raw: Mapping[str, bytes | None]) -> Sample:
        """Decode the modalities of one sample (a modality missing from its tar is left out).

        Raises:
            SourceDecodeError: A member that is not a readable zarr zip.
        """
        parts: dict[str, ZarrSample] = {}
        for name, data in raw.items():
            if data is None:
                continue
            try:
                parts[name] = decode_zarr_zip(data)
            except SourceDecodeError as err:
                raise SourceDecodeError(f"unreadable zarr zip of {name} ({err})") from err
        first = next(iter(parts.values()), None)
        return Sample(
            key,
            pixels={m: p.bands for m, p in parts.items()},
            crs=next((p.crs for p in parts.values() if p.crs is not None), None),
            transform=None if first is None else first.transform,
            center_lonlat=next(
                (p.center_lonlat for p in parts.values() if p.center_lonlat is not None), None
            ),
            time={m: p.time for m, p in parts.items() if p.time is not None},
        )


def terramesh_stream(
    root: str | Path,
    split: str = "train",
    modalities: Sequence[str] = ("S2L2A",),
    *,
    subset: Subset = "combined",
    shards: Sequence[int | str] | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    shuffle_buffer: int = 256,
    crop: int | None = 224,
    batch_size: int | None = None,
    epochs: int | None = 1,
    max_skip_fraction: float = 0.1,
    min_samples_for_check: int = 20,
    **options: Any,
) -> SampleStream[Any]:
    """Stream TerraMesh shards through a :class:`SampleStream`.

    Args:
        root: Dataset root holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"``.
        modalities: Modality names (catalog names or aliases).
        subset: ``"majortom"``, ``"ssl4eos12"`` or ``"combined"``.
        shards: Shard ids or file names; None: all found.
        seed: Seed of shard order, shuffling and crops.
        shuffle: Shuffle shards and samples; None: only for ``"train"``.
        shuffle_buffer: Samples held for shuffling per reader.
        crop: Random crop side (224 for TerraMind's ``@224`` inputs); None: the full 264 px.
        batch_size: Samples per batch; None: single :class:`Sample` objects.
        epochs: Passes (None: endless).
        max_skip_fraction: Fail once more than this fraction of the samples seen was skipped.
        min_samples_for_check: Samples to see before the skip fraction is enforced.
        **options: :class:`SampleStream` arguments (rank, world_size, skip_batches, transform).
    """
    source = TerraMeshSource(root, split, modalities, subset=subset, shards=shards)
    config = StreamConfig(
        modalities=source.modalities,
        batch_size=batch_size,
        crop=crop,
        shuffle=split == "train" if shuffle is None else shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        epochs=epochs,
        max_skip_fraction=max_skip_fraction,
        min_samples_for_check=min_samples_for_check,
    )
    return SampleStream(source, config, **options)


def iter_terramesh(
    root: str | Path, split: str = "train", modalities: Sequence[str] = ("S2L2A",), **options: Any
) -> Iterator[Sample]:
    """Iterate once over TerraMesh samples (see :func:`terramesh_stream` for every option)."""
    return iter(terramesh_stream(root, split, modalities, **options))


RELEASE_DTYPES: dict[str, str] = {
    "S2L1C": "int16",
    "S2L2A": "int16",
    "S2RGB": "uint8",
    "S1GRD": "float32",
    "S1RTC": "float32",
    "DEM": "int16",
    "NDVI": "float32",
    "LULC": "uint8",
}
"""Dtype of each release modality's ``bands`` (assumed; see the module docstring)."""


def _time_ns(iso: str | None) -> int:
    """Nanoseconds since the epoch of an ISO timestamp; 0 (the release's "no timestamp") for None."""
    if iso is None:
        return 0
    moment = datetime.fromisoformat(iso)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return int((moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) * 1000


def encode_zarr_zip(sample: Sample, modality: str) -> bytes:
    """Write one modality of a sample as a release member: a zarr v2 group, consolidated, zipped.

    Arrays: ``bands`` ``(1, C, H, W)`` in ``RELEASE_DTYPES``, ``time`` int64 ns, ``center_lon``/``center_lat``
    and, when the sample has a CRS, a scalar ``spatial_ref`` with ``crs_wkt`` and ``GeoTransform`` (assumed).
    """
    zarr = require("zarr", "terramesh")
    with tempfile.TemporaryDirectory() as tmp:
        store = zarr.storage.LocalStore(Path(tmp) / "sample.zarr")
        group = zarr.open_group(store, mode="w", zarr_format=2)
        group.create_array("bands", data=sample.pixels[modality][np.newaxis].astype(RELEASE_DTYPES[modality]))
        group.create_array("time", data=np.array([_time_ns(sample.time.get(modality))], dtype=np.int64))
        lon, lat = sample.center_lonlat or (np.nan, np.nan)
        group.create_array("center_lon", data=np.array([lon], dtype=np.float64))
        group.create_array("center_lat", data=np.array([lat], dtype=np.float64))
        if sample.crs is not None:
            ref = group.create_array("spatial_ref", data=np.zeros((), dtype=np.int32))
            ref.attrs["crs_wkt"] = CRS.from_user_input(sample.crs).to_wkt()
            if sample.transform is not None:
                a, b, c, d, e, f = sample.transform[:6]
                ref.attrs["GeoTransform"] = " ".join(str(v) for v in (c, a, b, f, d, e))
        zarr.consolidate_metadata(store, zarr_format=2)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for path in sorted(p for p in (Path(tmp) / "sample.zarr").rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(Path(tmp) / "sample.zarr").as_posix())
    return out.getvalue()


def write_terramesh(
    samples: Iterable[Sample],
    root: str | Path,
    *,
    split: str = "train",
    subset: str = "majortom",
    shard: int = 1,
) -> list[Path]:
    """Write samples as one shard id in the release layout (tests, small experiments, the CPU proof).

    Args:
        samples: Samples with the same modalities (release folder names).
        root: Dataset root; ``<root>/<split>/<MODALITY>/<subset>_shard_<shard:06d>.tar`` are written.
        split: ``train`` or ``val``.
        subset: ``majortom`` or ``ssl4eos12`` (sample keys are ``<subset>_<split>_<index:07d>``).
        shard: Shard id.

    Returns:
        The tar files, one per modality.
    """
    members: dict[str, list[tuple[str, bytes]]] = {}
    for index, sample in enumerate(samples):
        key = f"{subset}_{split}_{index:07d}"
        for modality in sample.pixels:
            members.setdefault(_folder_name(modality), []).append((key, encode_zarr_zip(sample, modality)))
    written = []
    for modality, items in members.items():
        path = Path(root) / split / modality / f"{subset}_shard_{shard:06d}.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
            for key, data in items:
                info = tarfile.TarInfo(f"{key}{SAMPLE_EXT}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        written.append(path)
    return written
