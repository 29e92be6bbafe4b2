"""WebDataset shards for training: writing them from GeoTIFF folders and streaming them back.

A shard is a plain tar (WebDataset layout): one sample per tile, key = tile name, members
``<key>.<modality>.npy`` (raw pixels ``(C, H, W)`` in the file's dtype), optionally
``<key>.tok_<modality>.npy`` (pre-computed tokenizer ids, ``uint16 (h, w)``) and ``<key>.json`` (CRS,
transform, centre lon/lat, times).

The reader side is only a decoder: :class:`ShardSource` turns a tile's members into a typed
:class:`~terramind.data.sample.Sample`; splitting among ranks and workers, shuffling, cropping, batching,
resume and skip accounting belong to the one stream engine, :class:`~terramind.data.stream.SampleStream`.
"""

from __future__ import annotations

import functools
import io
import json
import math
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform as warp_transform
from webdataset import TarWriter
from webdataset.tariterators import group_by_keys, tar_file_iterator

from terramind.core.errors import InputError, ModalityError, OutputError
from terramind.core.files import atomic_dir, atomic_path, check_output_dir
from terramind.core.lock import LOCK_NAME, folder_lock
from terramind.data.geotiff import GeoRef, read_raster
from terramind.data.sample import Sample
from terramind.data.stream import SampleStream, SourceDecodeError, StreamConfig
from terramind.modalities import Sensor, get_modality, using_catalog, with_sensors

TOKEN_PREFIX = "tok_"

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


def _centre_lonlat(georef: GeoRef) -> tuple[float, float]:
    """Centre of a grid in degrees (in the grid's own units when it has no CRS)."""
    cx, cy = georef.transform @ (georef.width / 2, georef.height / 2)
    if georef.crs is None:
        return float(cx), float(cy)
    xs, ys = warp_transform(georef.crs, "EPSG:4326", [cx], [cy])
    return float(xs[0]), float(ys[0])


def read_tile(key: str, files: Mapping[str, Path], new: Sequence[str] = ()) -> Sample:
    """Read one tile's co-registered GeoTIFFs into a :class:`Sample`.

    Args:
        key: Tile name.
        files: Modality -> GeoTIFF.
        new: Modalities not in the catalog (read as they are).

    Raises:
        InputError: A file that cannot be read or is not on the grid of the others.
    """
    pixels: dict[str, np.ndarray] = {}
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
        pixels[name] = raster.data
    if first is None:
        raise InputError(f"tile {key} has no files")
    t = first.transform
    return Sample(
        key,
        pixels,
        crs=None if first.crs is None else first.crs.to_string(),
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        center_lonlat=_centre_lonlat(first),
        time=times,
    )


def _members(sample: Sample, tokenizers: Mapping[str, Tokenize]) -> dict[str, object]:
    """Turn a sample into shard members: ``<m>.npy``, ``tok_<m>.npy`` and the ``json`` record."""
    members: dict[str, object] = {"__key__": sample.key}
    for name, data in sample.pixels.items():
        members[f"{name.lower()}.npy"] = data
        if name in tokenizers:
            ids = np.asarray(tokenizers[name](data)).astype(np.uint16)
            members[f"{TOKEN_PREFIX}{name.lower()}.npy"] = ids
    size = sample.size()
    members["json"] = {
        "key": sample.key,
        "crs": sample.crs,
        "transform": None if sample.transform is None else list(sample.transform),
        "size": None if size is None else list(size),
        "center_lonlat": None if sample.center_lonlat is None else list(sample.center_lonlat),
        "time": dict(sample.time),
    }
    return members


class GeoTiffFolderSource:
    """A folder of modality sub-folders with same-named GeoTIFFs (``examples/``) as a stream source.

    One unit per tile; a tile whose files cannot be read is an unreadable sample.
    """

    def __init__(self, src: str | Path, exclude: Sequence[str] = (), new_modalities: Sequence[str] = ()):
        """Index the folder (errors for a missing or empty folder come here).

        Args:
            src: The folder.
            exclude: Tile names to leave out.
            new_modalities: Folder names of sensors not in the catalog.
        """
        self.tiles = find_tiles(src, exclude, new_modalities)
        self.keys = tuple(self.tiles)
        self.new = tuple(new_modalities)

    def units(self) -> Sequence[str]:
        """Return the tile names."""
        return self.keys

    def file_of(self, unit: int, modality: str) -> str:
        """Return the GeoTIFF of ``modality`` of a tile."""
        return str(self.tiles[self.keys[unit]].get(modality, self.keys[unit]))

    def items(self, unit: int) -> Iterator[tuple[str, Mapping[str, Path]]]:
        """Yield the one tile of a unit."""
        key = self.keys[unit]
        yield key, self.tiles[key]

    def decode(self, key: str, raw: Mapping[str, Path]) -> Sample:
        """Read the tile.

        Raises:
            SourceDecodeError: A file that cannot be read or is off the grid of the others.
        """
        try:
            return read_tile(key, raw, self.new)
        except InputError as err:  # read_raster's answer for an unreadable, truncated or off-grid file
            raise SourceDecodeError(str(err)) from err


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
        samples = [functools.partial(read_tile, key, files, new_modalities) for key, files in tiles]
        return _publish(samples, out_dir, shard_size, tokenizers, prefix, overwrite)


def write_sample_shards(
    samples: Sequence[Sample],
    out: str | Path,
    *,
    shard_size: int = 1000,
    tokenizers: Mapping[str, Tokenize] | None = None,
    prefix: str = "shard",
    overwrite: bool = False,
) -> list[Path]:
    """Write decoded samples (from any source: TerraMesh, a stream) as shards, published as one whole set.

    Args:
        samples: The samples, in shard order.
        out: Output folder (see :func:`write_shards` for how it is published).
        shard_size: Samples per shard.
        tokenizers: Modality name -> function computing its token ids, stored as ``tok_<modality>``.
        prefix: Shard file name prefix.
        overwrite: Replace an existing non-empty ``out`` that holds only shards.

    Returns:
        The shard paths written.
    """
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = check_output_dir(out)
    _check_replaceable(out_dir, overwrite)
    readers = [functools.partial(lambda s: s, s) for s in samples]
    return _publish(readers, out_dir, shard_size, dict(tokenizers or {}), prefix, overwrite)


def _publish(
    samples: Sequence[Callable[[], Sample]],
    out_dir: Path,
    shard_size: int,
    tokenizers: Mapping[str, Tokenize],
    prefix: str,
    overwrite: bool,
) -> list[Path]:
    """Write shards of samples (each read when its shard is written) into a temporary folder, then publish."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}-{i:06d}.tar" for i in range(math.ceil(len(samples) / shard_size))]
    with (
        folder_lock(out_dir.parent, lock_file=out_dir.parent / f".{out_dir.name}{LOCK_NAME}"),
        atomic_dir(out_dir, replace=True) as tmp,
    ):
        _check_replaceable(out_dir, overwrite)  # again, now that no other run can change it
        for i, name in enumerate(names):
            with atomic_path(tmp / name, verify=_verify_tar) as part, TarWriter(str(part)) as sink:
                for read in samples[i * shard_size : (i + 1) * shard_size]:
                    sink.write(_members(read(), tokenizers))
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


def _member_name(stored: str, names: Mapping[str, str]) -> str:
    """Modality name of a stored member (``s2l2a`` -> ``S2L2A``); new sensors by the names given."""
    if stored in names:
        return names[stored]
    try:
        return get_modality(stored).name
    except ModalityError:
        return stored.upper()


def _decode_npy(key: str, name: str, value: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(value), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # numpy's answers to a corrupt .npy member
        raise SourceDecodeError(f"member {name}.npy of {key} is not a readable array ({err})") from err


def _georeference(key: str, value: bytes | None) -> dict[str, Any]:
    """Sample fields from the ``.json`` member (CRS, transform, centre, times); {} when absent."""
    if value is None:
        return {}
    try:
        meta = json.loads(value)
    except ValueError as err:
        raise SourceDecodeError(f"member {key}.json is not JSON ({err})") from err
    centre = meta.get("center_lonlat")
    return {
        "crs": meta.get("crs"),
        "transform": None if meta.get("transform") is None else tuple(meta["transform"]),
        "center_lonlat": None if centre is None else (float(centre[0]), float(centre[1])),
        "time": dict(meta.get("time") or {}),
    }


class ShardSource:
    """Our ``prepare`` shards as a stream source: one unit per shard, one item per tile."""

    def __init__(self, shards: Sequence[str | Path], names: Sequence[str] = ()):
        """Remember the shards.

        Args:
            shards: Shard paths (the stream orders them per epoch).
            names: Names of new sensors as the run spells them (members are stored lower-cased).

        Raises:
            InputError: No shards.
        """
        if not shards:
            raise InputError("no shards given: run `terramind prepare` first and point shards at its output")
        self.shards = tuple(str(s) for s in shards)
        self.names = {n.lower(): n for n in names}

    def units(self) -> Sequence[str]:
        """Return the shard paths."""
        return self.shards

    def file_of(self, unit: int, modality: str) -> str:
        """Return the shard (all modalities of a tile share it)."""
        return self.shards[unit]

    def items(self, unit: int) -> Iterator[tuple[str, dict[str, bytes]]]:
        """``(key, {member suffix: bytes})`` of one shard, in file order."""
        path = self.shards[unit]
        with open(path, "rb") as stream:
            members = ({**m, "__url__": path} for m in tar_file_iterator(stream))
            for raw in group_by_keys(members):
                yield str(raw["__key__"]), {k: v for k, v in raw.items() if not k.startswith("__")}

    def decode(self, key: str, raw: Mapping[str, bytes]) -> Sample:
        """Decode one tile's members into a :class:`Sample`.

        Raises:
            SourceDecodeError: A member that is not a readable array or JSON.
        """
        pixels, tokens = {}, {}
        for member, value in raw.items():
            if not member.endswith(".npy"):
                continue
            stored = member[: -len(".npy")]
            array = _decode_npy(key, stored, value)
            if stored.startswith(TOKEN_PREFIX):
                tokens[_member_name(stored[len(TOKEN_PREFIX) :], self.names)] = array
            else:
                pixels[_member_name(stored, self.names)] = array
        return Sample(key, pixels, tokens, **_georeference(key, raw.get("json")))


def read_samples(path: str | Path, names: Sequence[str] = ()) -> Iterator[Sample]:
    """Decode one shard's samples in file order (tests, ``prepare`` checks, baselines)."""
    source = ShardSource([path], names)
    for key, raw in source.items(0):
        yield source.decode(key, raw)


def shard_stream(
    shards: Sequence[str | Path], config: StreamConfig, *, names: Sequence[str] = (), **options: Any
) -> SampleStream[Any]:
    """Stream ``prepare`` shards (``options``: rank, world_size, skip_batches, transform)."""
    return SampleStream(ShardSource(shards, names), config, **options)
