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
  <date>"``); both are decoded. Values at or below 1e6 ns are treated as "no timestamp", as the loader does.
- A ``crs`` is mentioned by the card but not read by the loader; it is not returned here.
- The ``cloud_mask`` array is not returned.

Sharding follows :mod:`terramind.data.shards`: reader ``rank * workers + worker`` of ``world_size *
workers`` takes every n-th shard id, or every n-th sample when there are fewer shard ids than readers.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import tar_file_iterator

from terramind.core.errors import InputError, ModalityError
from terramind.core.optional import require
from terramind.data.shards import SkipCounter, StreamConfig
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
# Below this many ns since the epoch a ``time`` value means "no timestamp" (DEM stores 0).
NO_TIME_NS = 1e6
_UNIT_NS = {
    "nanoseconds": 1,
    "microseconds": 10**3,
    "milliseconds": 10**6,
    "seconds": 10**9,
    "minutes": 60 * 10**9,
    "hours": 3600 * 10**9,
    "days": 86400 * 10**9,
}
_SHARD = re.compile(r"^(?P<subset>[a-z0-9]+)_shard_(?P<id>\d{6})\.tar$")


@dataclass(frozen=True)
class ZarrSample:
    """One modality of one sample, decoded from its ``.zarr.zip``.

    Attributes:
        bands: ``(C, H, W)`` in the stored dtype.
        time: ISO 8601 UTC timestamp, or None (DEM).
        center_lonlat: ``(lon, lat)`` of the sample centre, or None when not stored.
    """

    bands: np.ndarray
    time: str | None
    center_lonlat: tuple[float, float] | None


def _decode_time(array: Any) -> str | None:
    """Turn a zarr ``time`` array into an ISO string (None for "no timestamp")."""
    values = np.asarray(array[...]).reshape(-1)
    if values.size == 0:
        return None
    value = values[0]
    if np.issubdtype(values.dtype, np.datetime64):
        ns = int(value.astype("datetime64[ns]").astype(np.int64))
    else:
        units = str(array.attrs.get("units", "nanoseconds since 1970-01-01"))
        unit, _, origin = units.partition(" since ")
        if unit not in _UNIT_NS:
            return None
        try:
            base = datetime.fromisoformat(origin.strip().replace(" ", "T")).replace(tzinfo=timezone.utc)
        except ValueError:
            return None  # an origin we cannot read: report "no timestamp" rather than a wrong one
        epoch_ns = int((base - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) * 1000
        ns = int(value) * _UNIT_NS[unit] + epoch_ns
    if ns <= NO_TIME_NS:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


def decode_zarr_zip(data: bytes) -> ZarrSample:
    """Decode one TerraMesh ``.zarr.zip`` member.

    Args:
        data: The zip file's bytes.

    Returns:
        Its bands, time and centre.

    Raises:
        InputError: Not a zip, or no ``bands`` array.
    """
    zarr = require("zarr", "terramesh")
    from zarr.core.buffer import Buffer, cpu
    from zarr.storage import MemoryStore

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files: dict[str, Buffer] = {
                n: cpu.Buffer.from_bytes(archive.read(n)) for n in archive.namelist() if not n.endswith("/")
            }
    except zipfile.BadZipFile as err:
        raise InputError(f"not a zarr zip ({err})") from err
    group = zarr.open_group(MemoryStore(files), mode="r")
    names = set(group.array_keys())
    if "bands" not in names:
        raise InputError(f"zarr zip has no 'bands' array (arrays: {sorted(names)})")
    bands = np.asarray(group["bands"][...])
    if bands.ndim == 4 and bands.shape[0] == 1:
        bands = bands[0]  # (1, C, H, W) -> (C, H, W): one time step per sample
    centre = None
    if {"center_lon", "center_lat"} <= names:
        lon = np.asarray(group["center_lon"][...]).reshape(-1)[0]
        lat = np.asarray(group["center_lat"][...]).reshape(-1)[0]
        centre = (float(lon), float(lat))
    time = _decode_time(group["time"]) if "time" in names else None
    return ZarrSample(bands=bands, time=time, center_lonlat=centre)


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


class TerraMesh(IterableDataset[dict[str, Any]]):
    """One pass over TerraMesh samples ``{modality: (C, crop, crop), "__key__", "time", "center_lonlat"}``.

    Modalities of a sample share one random crop window; crops, shard order and the shuffle buffer are
    seeded, so a pass is a pure function of (seed, epoch, rank, world size, workers). Samples lacking a
    requested modality or with a wrong shape are skipped and counted in :attr:`counter`; past
    ``max_skip_fraction`` an :class:`InputError` stops the pass. Values are raw (standardise downstream).
    """

    def __init__(
        self,
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
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_skip_fraction: float = 0.1,
        min_samples_for_check: int = 20,
    ):
        """Locate the shards (errors for missing folders/files come here, not mid-iteration).

        Args:
            root: Dataset root holding ``train/`` and ``val/``.
            split: ``"train"`` or ``"val"``.
            modalities: Modality names (catalog names or aliases such as ``"sen2l2a"``).
            subset: ``"majortom"``, ``"ssl4eos12"`` or ``"combined"``; only subsets holding every requested
                modality are read (S1RTC: majortom only, S1GRD: ssl4eos12 only).
            shards: Shard ids or file names to read; None: all found.
            seed: Seed of shard order, shuffle buffer and crops.
            shuffle: Shuffle shards and samples; None: only for ``"train"``.
            shuffle_buffer: Samples held for shuffling.
            crop: Side of the random square crop (multiple of 16); None: full samples.
            epoch: Pass number, mixed into the seed (call :meth:`set_epoch` between passes).
            rank: This process's rank.
            world_size: Number of ranks.
            max_skip_fraction: Fail once more than this fraction of the samples seen was skipped.
            min_samples_for_check: Samples to see before the skip fraction is enforced.
        """
        folders = [_folder_name(m) for m in modalities]
        if not folders:
            raise InputError("give at least one modality")
        self.shards = find_shards(root, split, folders, subset, shards)
        # StreamConfig carries the shared checks (crop multiple of 16) and the skip threshold.
        self.config = StreamConfig(
            shards=tuple(str(s[folders[0]]) for s in self.shards),
            modalities=tuple(folders),
            batch_size=1,
            crop=crop or 16,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            max_skip_fraction=max_skip_fraction,
            min_samples_for_check=min_samples_for_check,
        )
        self.crop = crop
        self.shuffle = split == "train" if shuffle is None else shuffle
        self.epoch, self.rank, self.world_size = epoch, rank, world_size
        self.counter = SkipCounter()

    def set_epoch(self, epoch: int) -> None:
        """Select the pass (changes shard order, shuffling and crops)."""
        self.epoch = epoch

    def _split(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def _raw(self, split: int, splits: int) -> Iterator[tuple[str, dict[str, bytes | None]]]:
        """Yield this reader's share of the ``(key, modality bytes)`` pairs."""
        order = np.arange(len(self.shards))
        if self.shuffle:
            order = np.random.default_rng((self.config.seed, self.epoch)).permutation(len(self.shards))
        by_shard = len(self.shards) >= splits
        picked = order[split::splits] if by_shard else order
        index = 0
        for i in picked:
            for pair in merge_by_key(self.shards[int(i)]):
                if by_shard or index % splits == split:
                    yield pair
                index += 1

    def _problem(self, key: str, parts: dict[str, ZarrSample | None]) -> str | None:
        """Why a sample cannot be used, or None."""
        size: tuple[int, ...] | None = None
        for name, part in parts.items():
            if part is None:
                return f"{key}: missing modality {name}"
            bands, shape = get_modality(name).num_bands, part.bands.shape
            if part.bands.ndim != 3 or shape[0] != bands or min(shape[1:]) < (self.crop or 1):
                return f"{key}: {name} has shape {shape}, expected ({bands}, >={self.crop}, >={self.crop})"
            if size is not None and shape[1:] != size:
                return f"{key}: {name} size {shape[1:]} differs from {size}"
            size = shape[1:]
        return None

    def _sample(self, key: str, parts: dict[str, ZarrSample], rng: np.random.Generator) -> dict[str, Any]:
        """Crop every modality with one window and attach the metadata."""
        first = next(iter(parts.values()))
        height, width = first.bands.shape[1:]
        side_h, side_w = (height, width) if self.crop is None else (self.crop, self.crop)
        top = int(rng.integers(0, height - side_h + 1))
        left = int(rng.integers(0, width - side_w + 1))
        out: dict[str, Any] = {
            get_modality(m).name: np.ascontiguousarray(p.bands[:, top : top + side_h, left : left + side_w])
            for m, p in parts.items()
        }
        out["__key__"] = key
        out["time"] = {get_modality(m).name: p.time for m, p in parts.items() if p.time is not None}
        centre = next((p.center_lonlat for p in parts.values() if p.center_lonlat is not None), None)
        out["center_lonlat"] = np.array(centre if centre is not None else (np.nan, np.nan))
        return out

    def _decoded(self, key: str, raw: dict[str, bytes | None]) -> dict[str, ZarrSample | None] | str:
        """Decode every modality of a sample, or return why it cannot be read."""
        try:
            return {m: None if b is None else decode_zarr_zip(b) for m, b in raw.items()}
        except (InputError, ValueError, KeyError, OSError) as err:
            # A corrupt member is one bad sample, counted like the others, not the end of the pass.
            return f"{key}: unreadable zarr zip ({err})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield this reader's samples once (a fresh pass per call)."""
        split, splits = self._split()
        rng = np.random.default_rng((self.config.seed, self.epoch, split, splits))
        buffer: list[dict[str, Any]] = []
        size = self.config.shuffle_buffer if self.shuffle else 1
        for key, raw in self._raw(split, splits):
            self.counter.seen += 1
            parts = self._decoded(key, raw)
            reason = parts if isinstance(parts, str) else self._problem(key, parts)
            if reason is not None:
                self.counter.skip(reason, self.config)
                continue
            assert not isinstance(parts, str)
            buffer.append(self._sample(key, {m: p for m, p in parts.items() if p is not None}, rng))
            if len(buffer) >= size:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))


def iter_terramesh(
    root: str | Path,
    split: str = "train",
    modalities: Sequence[str] = ("S2L2A",),
    *,
    subset: Subset = "combined",
    shards: Sequence[int | str] | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    crop: int | None = 224,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Iterate once over TerraMesh samples (see :class:`TerraMesh` for every option).

    Args:
        root: Dataset root holding ``train/`` and ``val/``.
        split: ``"train"`` or ``"val"``.
        modalities: Modality names (catalog names or aliases).
        subset: ``"majortom"``, ``"ssl4eos12"`` or ``"combined"``.
        shards: Shard ids or file names; None: all found.
        seed: Seed of shard order, shuffling and crops.
        shuffle: Shuffle shards and samples; None: only for ``"train"``.
        crop: Random crop side (224 for TerraMind's ``@224`` inputs); None: the full 264 px.
        **options: Further :class:`TerraMesh` arguments (rank, world_size, epoch, ...).

    Returns:
        Samples ``{modality: (C, crop, crop) array, "__key__": str, "time": {modality: ISO str},
        "center_lonlat": (2,) array}``.
    """
    dataset = TerraMesh(
        root,
        split,
        modalities,
        subset=subset,
        shards=shards,
        seed=seed,
        shuffle=shuffle,
        crop=crop,
        **options,
    )
    return iter(dataset)
