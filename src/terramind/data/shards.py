"""WebDataset shards for training: writing them from GeoTIFF folders and streaming them back.

A shard is a plain tar (WebDataset layout): one sample per tile, key = tile name, members
``<key>.<modality>.npy`` (raw pixels ``(C, H, W)`` in the file's dtype), optionally
``<key>.tok_<modality>.npy`` (pre-computed tokenizer ids, ``uint16 (h, w)``) and ``<key>.json`` (CRS,
transform, centre lon/lat, times).

The reader (:class:`ShardStream`) is an ``IterableDataset`` that yields whole batches, so that its
position is just "batches delivered" and an interrupted run can resume exactly: the stream is a pure
function of (seed, split), and a worker skips the batches the previous run consumed. Each DataLoader
worker of each rank reads its own share of the shards (or, with fewer shards than readers, its share of
the samples), shuffles through a seeded buffer and takes seeded random crops (on the 16 px token grid when
tokens are stored, so that ids and pixels stay aligned).
"""

from __future__ import annotations

import io
import json
import logging
import math
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rasterio.warp import transform as warp_transform
from torch.utils.data import IterableDataset, get_worker_info
from webdataset import TarWriter
from webdataset.tariterators import group_by_keys, tar_file_iterator

from terramind.core.errors import InputError, ModalityError, OutputError
from terramind.core.files import atomic_dir, atomic_path, check_output_dir
from terramind.core.lock import LOCK_NAME, folder_lock
from terramind.data.geotiff import GeoRef, read_raster
from terramind.modalities import PATCH_SIZE, Sensor, get_modality, using_catalog, with_sensors

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tok_"
# Tokenizer patch size: token grids are pixel grids divided by this (tokenizers/vit.py).
TOKEN_PATCH = PATCH_SIZE

BatchTransform = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
"""``(batch, index of the batch in its rank's sequence) -> batch``, run inside the DataLoader worker."""

Tokenize = Callable[[np.ndarray], np.ndarray]
"""Raw pixels ``(C, H, W)`` -> ids ``(H/16, W/16)``; composed by the caller (data never loads models)."""


def find_tiles(
    src: str | Path, exclude: Sequence[str] = (), new_modalities: Sequence[str] = ()
) -> dict[str, dict[str, Path]]:
    """Index a folder of modality sub-folders (``S2L2A/``, ``DEM/``, ...) holding same-named GeoTIFFs.

    Args:
        src: The folder (laid out like ``examples/``).
        exclude: Tile names (file stems) to leave out, e.g. a held-out tile.
        new_modalities: Folder names of sensors not in the catalog, taken as they are.

    Returns:
        Tile name -> canonical modality name -> file path, tiles sorted by name.
    """
    root = Path(src)
    if not root.is_dir():
        raise InputError(f"source folder {str(root)!r} does not exist")
    tiles: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            name = folder.name if folder.name in new_modalities else get_modality(folder.name).name
        except ModalityError as err:
            raise InputError(f"folder {str(folder)!r} is not a modality name ({err})") from err
        for tif in sorted(folder.glob("*.tif")):
            if tif.stem not in exclude:
                tiles.setdefault(tif.stem, {})[name] = tif
    if not tiles:
        raise InputError(f"no GeoTIFFs found under {str(root)!r}/<MODALITY>/*.tif")
    return dict(sorted(tiles.items()))


def _metadata(key: str, georef: GeoRef, times: Mapping[str, str]) -> dict[str, object]:
    t = georef.transform
    cx, cy = t @ (georef.width / 2, georef.height / 2)
    lon, lat = (cx, cy)
    if georef.crs is not None:
        xs, ys = warp_transform(georef.crs, "EPSG:4326", [cx], [cy])
        lon, lat = xs[0], ys[0]
    return {
        "key": key,
        "crs": None if georef.crs is None else georef.crs.to_string(),
        "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "size": [georef.height, georef.width],
        "center_lonlat": [float(lon), float(lat)],
        "time": dict(times),
    }


def _tile_sample(
    key: str, files: Mapping[str, Path], tokenizers: Mapping[str, Tokenize], new: Sequence[str]
) -> dict[str, object]:
    sample: dict[str, object] = {"__key__": key}
    first: GeoRef | None = None
    times: dict[str, str] = {}
    for name, path in files.items():
        raster = read_raster(path, None if name in new else name)
        if first is None:
            first = raster.georef
        elif (diff := first.same_grid(raster.georef)) is not None:
            raise InputError(
                f"tile {key}: {str(path)!r} is not co-registered with the other modalities: {diff}"
            )
        if raster.georef.time is not None:
            times[name] = raster.georef.time.isoformat()
        sample[f"{name.lower()}.npy"] = raster.data
        if name in tokenizers:
            ids = tokenizers[name](raster.data)
            sample[f"{TOKEN_PREFIX}{name.lower()}.npy"] = np.asarray(ids).astype(np.uint16)
    assert first is not None  # every indexed tile has at least one file
    sample["json"] = _metadata(key, first, times)
    return sample


def write_shards(
    src: str | Path,
    out: str | Path,
    *,
    shard_size: int = 1000,
    tokenizers: Mapping[str, Tokenize] | None = None,
    exclude: Sequence[str] = (),
    new_modalities: Sequence[str] = (),
    prefix: str = "shard",
    overwrite: bool = False,
    sensors: Sequence[Sensor] | None = None,
) -> list[Path]:
    """Turn co-registered GeoTIFF folders into WebDataset shards, published as one whole set.

    The shards are written into a temporary folder beside ``out`` (each one verified) and the folder is
    renamed to ``out`` only when the set is complete, so a crash never leaves a partial set that looks
    whole, and a rerun replaces the previous set instead of merging with it (a tile excluded now is gone).
    The set is written under the writer lock of ``out`` (a lock file beside it).

    Args:
        src: Folder of modality sub-folders with same-named tiles.
        out: Output folder (created, with its parents, once every check passed).
        shard_size: Samples per shard.
        tokenizers: Modality name -> function computing its token ids, stored as ``tok_<modality>``.
        exclude: Tile names to leave out.
        new_modalities: Folder names of sensors not in the catalog (stored as they are).
        prefix: Shard file name prefix (``shard-000000.tar``, ...).
        overwrite: Replace an existing non-empty ``out`` that holds only shards (``.tar`` files).
        sensors: New sensors (``pixel_modality`` records or ``{name, bands, mean, std}``): their folders are
            read and checked with their band count, like catalog modalities.

    Returns:
        The shard paths written.

    Raises:
        OutputError: ``out`` is a file, holds files without ``overwrite``, or holds files that are not shards.
        BusyError: Another run is writing the same shard folder.
    """
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    with using_catalog(with_sensors(sensors)):  # registered sensors resolve while indexing and reading
        tokenizers = {get_modality(k).name: v for k, v in (tokenizers or {}).items()}
        out_dir = check_output_dir(out)
        _check_replaceable(out_dir, overwrite)
        tiles = list(find_tiles(src, exclude, new_modalities).items())
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        names = [f"{prefix}-{i:06d}.tar" for i in range(math.ceil(len(tiles) / shard_size))]
        with (
            folder_lock(out_dir.parent, lock_file=out_dir.parent / f".{out_dir.name}{LOCK_NAME}"),
            atomic_dir(out_dir, replace=True) as tmp,
        ):
            _check_replaceable(out_dir, overwrite)  # again, now that no other run can change it
            for i, name in enumerate(names):
                with atomic_path(tmp / name, verify=_verify_tar) as part, TarWriter(str(part)) as sink:
                    for key, files in tiles[i * shard_size : (i + 1) * shard_size]:
                        sink.write(_tile_sample(key, files, tokenizers, new_modalities))
        return [out_dir / name for name in names]


def _check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty shard folder without ``overwrite``, and never replace files that are not shards."""
    existing = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if existing and not overwrite:
        raise OutputError(
            f"output folder {str(out_dir)!r} already holds {len(existing)} file(s) ({', '.join(existing[:3])}"
            f"{', ...' if len(existing) > 3 else ''}): pass --overwrite to replace the shard set"
        )
    foreign = [n for n in existing if not n.endswith(".tar")]
    if foreign:
        raise OutputError(
            f"output folder {str(out_dir)!r} holds files that are not shards ({', '.join(foreign[:3])}): "
            f"write the shards into a new or empty folder"
        )


def _verify_tar(path: Path) -> None:
    """Read every member header of a written shard (a truncated tar fails)."""
    with tarfile.open(path) as archive:
        archive.getmembers()


def read_samples(path: str | Path) -> Iterator[dict[str, object]]:
    """Decode one shard's samples: ``{"__key__", "<modality>": array, "tok_<modality>": array, "json"}``."""
    with open(path, "rb") as stream:
        members = ({**m, "__url__": str(path)} for m in tar_file_iterator(stream))
        for raw in group_by_keys(members):
            sample: dict[str, object] = {"__key__": raw["__key__"]}
            for name, value in raw.items():
                if name.endswith(".npy"):
                    sample[name[: -len(".npy")]] = np.load(io.BytesIO(value), allow_pickle=False)
                elif name == "json":
                    sample["json"] = json.loads(value)
            yield sample


@dataclass(frozen=True)
class StreamConfig:
    """What to read from the shards and how.

    Attributes:
        shards: Shard paths (the order is shuffled per epoch with the seed).
        modalities: Raw modalities every sample must have (canonical names).
        token_modalities: Modalities whose stored ``tok_`` grids every sample must have.
        batch_size: Samples per yielded batch (per rank).
        crop: Side of the random square crop in pixels (multiple of 16).
        shuffle_buffer: Samples held for shuffling (1: no shuffling).
        seed: Seed of shard order, buffer and crops.
        max_skip_fraction: Fail once more than this fraction of the samples seen so far was skipped
            (checked after ``min_samples_for_check`` samples).
        min_samples_for_check: Samples to see before the skip fraction is enforced.
        channels: Channel counts of modalities not in the catalog (new sensors).
    """

    shards: tuple[str, ...]
    modalities: tuple[str, ...]
    token_modalities: tuple[str, ...] = ()
    batch_size: int = 8
    crop: int = 224
    shuffle_buffer: int = 64
    seed: int = 0
    max_skip_fraction: float = 0.1
    min_samples_for_check: int = 20
    channels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.shards:
            raise InputError("no shards given: run `terramind prepare` first and point shards at its output")
        if self.crop % TOKEN_PATCH or self.batch_size < 1 or self.shuffle_buffer < 1:
            raise InputError(f"crop must be a multiple of {TOKEN_PATCH}; batch_size and shuffle_buffer >= 1")


@dataclass
class SkipCounter:
    """Samples seen and skipped by one reader, with the reason of each skip."""

    seen: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, config: StreamConfig) -> None:
        """Count a skipped sample; raise when the threshold is crossed."""
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        log.warning("skipping sample: %s (%d of %d skipped)", reason, self.skipped, self.seen)
        if self.seen >= config.min_samples_for_check and self.skipped > config.max_skip_fraction * self.seen:
            raise InputError(
                f"{self.skipped} of {self.seen} samples skipped (more than {config.max_skip_fraction:.0%}): "
                f"{self.reasons}; check the shards (missing modalities or wrong shapes)"
            )


def _check_sample(sample: Mapping[str, object], config: StreamConfig) -> str | None:
    """Return why a sample cannot be used, or None."""
    size: tuple[int, ...] | None = None
    for name in config.modalities:
        array = sample.get(name.lower())
        if not isinstance(array, np.ndarray):
            return f"{sample['__key__']}: missing modality {name}"
        bands = config.channels[name] if name in config.channels else get_modality(name).num_bands
        if array.ndim != 3 or array.shape[0] != bands or min(array.shape[1:]) < config.crop:
            expected = f"({bands}, >={config.crop}, >={config.crop})"
            return f"{sample['__key__']}: {name} has shape {array.shape}, expected {expected}"
        if size is not None and array.shape[1:] != size:
            return f"{sample['__key__']}: {name} size {array.shape[1:]} differs from {size}"
        size = array.shape[1:]
    for name in config.token_modalities:
        ids = sample.get(f"{TOKEN_PREFIX}{name.lower()}")
        if not isinstance(ids, np.ndarray):
            return f"{sample['__key__']}: missing tokens of {name}"
        if size is not None and ids.shape != (size[0] // TOKEN_PATCH, size[1] // TOKEN_PATCH):
            return f"{sample['__key__']}: tokens of {name} have shape {ids.shape}, pixels {size}"
    return None


def _sample_size(sample: Mapping[str, object], config: StreamConfig) -> tuple[int, int]:
    """Pixel height and width of a checked sample (from its pixels, else from its token grids)."""
    for name in config.modalities:
        array = sample[name.lower()]
        assert isinstance(array, np.ndarray)  # checked by _check_sample
        return int(array.shape[1]), int(array.shape[2])
    ids = sample[f"{TOKEN_PREFIX}{config.token_modalities[0].lower()}"]
    assert isinstance(ids, np.ndarray)
    return int(ids.shape[0]) * TOKEN_PATCH, int(ids.shape[1]) * TOKEN_PATCH


def _crop(
    sample: Mapping[str, object], config: StreamConfig, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """Random square crop of every modality; on the 16 px token grid when tokens are read."""
    height, width = _sample_size(sample, config)
    step = TOKEN_PATCH if config.token_modalities else 1
    top = int(rng.integers(0, (height - config.crop) // step + 1)) * step
    left = int(rng.integers(0, (width - config.crop) // step + 1)) * step
    size, grid = config.crop, config.crop // TOKEN_PATCH
    out: dict[str, torch.Tensor] = {}
    for name in config.modalities:
        array = np.asarray(sample[name.lower()])[:, top : top + size, left : left + size]
        out[name] = torch.from_numpy(array.astype(np.float32))
    for name in config.token_modalities:
        ids = np.asarray(sample[f"{TOKEN_PREFIX}{name.lower()}"])
        ids = ids[
            top // TOKEN_PATCH : top // TOKEN_PATCH + grid, left // TOKEN_PATCH : left // TOKEN_PATCH + grid
        ]
        out[f"{TOKEN_PREFIX}{name}"] = torch.from_numpy(ids.astype(np.int64))
    return out


class ShardStream(IterableDataset[dict[str, torch.Tensor]]):
    """Endless seeded stream of batches ``{modality: (B, C, crop, crop) float32, "tok_<m>": (B, h, w) long}``.

    Use with ``DataLoader(stream, batch_size=None, num_workers=W)``. Batches arrive round-robin from the
    workers, so the global batch order is a pure function of the seed, the world size and ``W``.
    Raw values are returned; standardisation belongs to the consumer.
    """

    def __init__(
        self,
        config: StreamConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        skip_batches: int = 0,
        transform: BatchTransform | None = None,
    ):
        """Create the stream.

        Args:
            config: What to read.
            rank: This process's rank.
            world_size: Number of ranks.
            skip_batches: Batches this rank already consumed (to resume exactly after an interruption).
            transform: Applied in the worker to each batch with its index in this rank's batch sequence
                (e.g. drawing the step's masks off the training loop); None: batches as read.
        """
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.skip_batches = skip_batches
        self.transform = transform
        self.counter = SkipCounter()

    def _role(self) -> tuple[int, int]:
        """(role, workers): which worker's share this worker reads.

        The DataLoader hands out batches round-robin starting at worker 0. After ``skip_batches`` batches
        the next one belongs to worker ``skip_batches % workers`` of the original run, so on resume worker
        ``i`` takes the role of worker ``(i + skip_batches) % workers``: the batch order continues exactly.
        """
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return (worker + self.skip_batches) % workers, workers

    def _split(self) -> tuple[int, int]:
        role, workers = self._role()
        return self.rank * workers + role, self.world_size * workers

    def _worker_skip(self) -> int:
        role, workers = self._role()
        # Batch j of this rank came from the worker with role j % workers.
        return len(range(role, self.skip_batches, workers))

    def _epoch_samples(self, epoch: int, split: int, splits: int) -> Iterator[Mapping[str, object]]:
        order = np.random.default_rng((self.config.seed, epoch)).permutation(len(self.config.shards))
        shards = [self.config.shards[i] for i in order]
        by_shard = len(shards) >= splits
        index = 0
        for shard in shards[split::splits] if by_shard else shards:
            for sample in read_samples(shard):
                if by_shard or index % splits == split:
                    yield sample
                index += 1

    def _samples(self, split: int, splits: int) -> Iterator[dict[str, torch.Tensor]]:
        """Endless usable crops of this reader's share, epoch after epoch, through the shuffle buffer."""
        rng = np.random.default_rng((self.config.seed, split, splits))
        buffer: list[dict[str, torch.Tensor]] = []
        for epoch in range(2**62):
            delivered = 0
            for sample in self._epoch_samples(epoch, split, splits):
                self.counter.seen += 1
                if (reason := _check_sample(sample, self.config)) is not None:
                    self.counter.skip(reason, self.config)
                    continue
                delivered += 1
                buffer.append(_crop(sample, self.config, rng))
                if len(buffer) >= self.config.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            if delivered == 0:
                raise InputError(
                    f"reader {split} of {splits} found no usable sample in {len(self.config.shards)} shards: "
                    f"{self.counter.reasons or 'too few samples for the number of ranks x workers'}"
                )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches forever (the consumer decides how many steps to take)."""
        split, splits = self._split()
        role, workers = self._role()
        to_skip = self._worker_skip()
        for made, batch in enumerate(self._batched(self._samples(split, splits))):
            if to_skip > 0:
                to_skip -= 1
                continue
            # This worker's batch number ``made`` is batch ``role + made * workers`` of the rank.
            yield batch if self.transform is None else self.transform(batch, role + made * workers)

    def _batched(self, samples: Iterator[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
        """Stack consecutive samples into batches of ``batch_size``."""
        batch: list[dict[str, torch.Tensor]] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.config.batch_size:
                yield {k: torch.stack([s[k] for s in batch]) for k in batch[0]}
                batch = []
