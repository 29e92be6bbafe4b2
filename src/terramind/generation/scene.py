"""Whole-scene generation from GeoTIFFs: windowed reads, blended tiles, resumable strip files, atomic outputs.

:func:`generate_scene` streams a scene of any size through the tiling engine (:mod:`.tiling`). Each finished
strip of rows is written as a small GeoTIFF into a work folder next to the outputs, together with the blending
state that the next row of tiles needs and a ``progress.json``; within a row, the tiles done so far are saved
about every minute (``checkpoint_seconds``), so an interruption loses at most about a minute of work on a
scene of any width. A rerun resumes from there (randomness is seeded per tile, so the result is the same as
an uninterrupted run). When every row is done, the strips are copied into the final GeoTIFFs, each written
durably and verified before it is renamed into place, and the work folder is removed.

Resume state is keyed by content: ``progress.json`` records a digest of the weights actually loaded
(:func:`generator_digest`), each input file's path, size, modification time and a hash of its first and last
MiB, and every option. A rerun that differs in any of them is refused with :class:`ResumeError` naming what
changed (``--overwrite`` starts afresh), so one output never mixes two models, two inputs or two seeds.
``progress.json`` is the single commit point: it names the carry and partial-row files it belongs to, which
are written (atomically) before it, so a crash between two writes never pairs mismatched state.

One writer per output folder: :func:`generate_scene` holds the folder's lock
(:func:`terramind.core.lock.folder_lock`) for the whole run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from terramind.checkpoints.digest import state_digest
from terramind.core.errors import InputError, ResumeError, ShapeError
from terramind.core.files import atomic_path, check_output_path, verify_zip
from terramind.core.lock import folder_lock
from terramind.data import GeoRef, RasterWriter, open_georef, read_window, write_raster
from terramind.data.geotiff import band_positions
from terramind.generation.generate import Generator
from terramind.generation.options import GenerationOptions
from terramind.generation.tiling import Carry, RowState, TileFn, TileLayout, run_tiles
from terramind.modalities import get_modality, stats

FLOAT_NODATA = -9999.0  # written where an input was nodata; class maps use class 0 ("no data")
WORK_DIR = ".terramind-partial"
PROGRESS = "progress.json"
STATE_VERSION = 2
SAMPLE_BYTES = 2**20  # hashed from the start and the end of each input (GeoTIFF headers and directories)
CHECKPOINT_SECONDS = 60.0  # within a row, tiles done so far are saved about this often


@dataclass(frozen=True)
class SceneOutput:
    """One output GeoTIFF of a scene.

    Attributes:
        modality: Canonical modality name.
        path: Final GeoTIFF path.
        channels: Channels the tile function returns for it (LULC: 10 logits, blended before argmax).
        dtype: Output data type.
        nodata: Value written where inputs were invalid.
        colormap: Colour table of a class map.
        band_names: Band descriptions.
    """

    modality: str
    path: Path
    channels: int
    dtype: str
    nodata: float
    colormap: Mapping[int, tuple[int, int, int]] | None
    band_names: tuple[str, ...]

    @property
    def categorical(self) -> bool:
        """True for class maps (written as uint8 argmax of the blended logits)."""
        return get_modality(self.modality).classes is not None

    @classmethod
    def for_modality(cls, modality: str, path: Path) -> SceneOutput:
        """Build the output record of a modality in the catalog's conventions."""
        spec = get_modality(modality)
        if spec.classes is not None:
            colours = {c.id: _rgb(c.colour) for c in spec.classes}
            return cls(spec.name, path, len(spec.classes), "uint8", 0, colours, spec.bands)
        return cls(spec.name, path, spec.num_bands, "float32", FLOAT_NODATA, None, spec.bands)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


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


class RasterSource:
    """Rows of one or several co-registered input GeoTIFFs, with their validity.

    A pixel is valid when it is finite and differs from its file's nodata value in every band of every input.
    """

    def __init__(self, inputs: Mapping[str, Path]) -> None:
        self.inputs = {get_modality(k).name: Path(v) for k, v in inputs.items()}
        self.georef = check_scene_inputs(self.inputs)
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


class StripStore:
    """Finished strips as GeoTIFFs in a work folder, then copied into the final outputs."""

    def __init__(self, work: Path, outputs: Sequence[SceneOutput], georef: GeoRef) -> None:
        self.work = work
        self.outputs = list(outputs)
        self.georef = georef

    def strip_path(self, modality: str, row: int) -> Path:
        """Where the strip of tile row ``row`` of one output lives."""
        return self.work / f"{modality}_{row:05d}.tif"

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Convert blended values to the output type and write them as strip GeoTIFFs."""
        georef = self.georef.window(Window(0, top, self.georef.width, valid.shape[0]))
        for out in self.outputs:
            values = data[out.modality]
            covered = valid & np.isfinite(values).all(axis=0)
            if out.categorical:
                array = np.where(covered, np.nan_to_num(values).argmax(axis=0), out.nodata)[None]
            else:
                array = np.where(covered[None], values, out.nodata)
            write_raster(
                self.strip_path(out.modality, row), array.astype(out.dtype), georef,
                dtype=out.dtype, nodata=out.nodata, overwrite=True,
            )  # fmt: skip

    def finalize(self, rows: Sequence[tuple[int, int, int]], overwrite: bool) -> list[Path]:
        """Copy all strips ``(row, top, height)`` into each final GeoTIFF (atomic per file)."""
        written = []
        for out in self.outputs:
            with RasterWriter(
                out.path, self.georef, out.channels if not out.categorical else 1, out.dtype,
                nodata=out.nodata, colormap=out.colormap, band_names=out.band_names, overwrite=overwrite,
            ) as writer:  # fmt: skip
                for row, top, height in rows:
                    window = Window(0, 0, self.georef.width, height)
                    strip = read_window(self.strip_path(out.modality, row), window)
                    writer.write(strip, Window(0, top, self.georef.width, height))
            written.append(out.path)
        return written


# ----------------------------------------------------------------------------------------- run key
def generator_digest(generator: Generator) -> str:
    """Digest of the weights a generator actually uses: its model and every tokenizer's state dict.

    Tokenizers loaded on demand are loaded for this (one at a time; the last one stays held for the run).
    A duck-typed generator without a ``model`` (a test double) is digested by its type.
    """
    modules: dict[str, Any] = {"model": getattr(generator, "model", generator)}
    resident, loaders = getattr(generator, "tokenizers", {}), getattr(generator, "loaders", {})
    for name in sorted({*resident, *loaders}):
        modules[f"tokenizer.{name}"] = generator._tokenizer(name)  # same package: the on-demand loader
    return state_digest(modules)


def _file_record(path: Path) -> dict[str, object]:
    """Identify an input file's content cheaply: path, size, mtime and a hash of both ends."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        if stat.st_size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES))
            digest.update(f.read())
    resolved = str(path.resolve())
    return {
        "path": resolved,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sample": digest.hexdigest(),
    }


def run_key(
    inputs: Mapping[str, Path],
    outputs: Sequence[SceneOutput],
    options: Mapping[str, object],
    weights: str | None = None,
) -> dict[str, Any]:
    """Everything that determines a scene's result, as JSON: weights digest, input files, options."""
    opts = {"outputs": [o.modality for o in outputs], **options}
    return {
        "weights": weights,
        "inputs": {k: _file_record(Path(p)) for k, p in sorted(inputs.items())},
        "options": json.loads(json.dumps(opts, sort_keys=True, default=str)),
    }


_FIELDS = {"path": "path", "size": "size", "mtime_ns": "modification time", "sample": "content"}


def key_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Name what differs between the key of an interrupted run and this run's (empty when they match)."""
    changes = []
    if saved.get("weights") != current["weights"]:
        changes.append(
            "the weights (the model or tokenizer weights loaded differ from the interrupted run's)"
        )
    old_inputs, new_inputs = saved.get("inputs", {}), current["inputs"]
    for name in sorted({*old_inputs, *new_inputs}):
        old, new = old_inputs.get(name), new_inputs.get(name)
        if old is None or new is None:
            changes.append(f"input {name} ({'added' if old is None else 'removed'})")
        elif old != new:
            what = ", ".join(label for k, label in _FIELDS.items() if old.get(k) != new.get(k))
            changes.append(f"input {name} {new['path']!r} ({what} changed)")
    old_opts, new_opts = saved.get("options", {}), current["options"]
    for name in sorted({*old_opts, *new_opts}):
        if old_opts.get(name) != new_opts.get(name):
            changes.append(f"option {name} ({old_opts.get(name)!r} -> {new_opts.get(name)!r})")
    return changes


# ----------------------------------------------------------------------------------------- resume state
@dataclass
class ResumePoint:
    """Where a run continues: the first unfinished tile row, the carry into it, the part of it done."""

    row: int = 0
    carry: Carry | None = None
    partial: RowState | None = None

    def tiles_done(self, layout: TileLayout) -> int:
        """Tiles already finished before this point."""
        return self.row * len(layout.cols) + (self.partial.next_col if self.partial else 0)


class StateStore:
    """The resume state of a scene in its work folder (``progress.json`` plus the files it names).

    Within a row, each save stores the columns that became final since the previous save once (``parts``)
    and rewrites only the short unfinished tail, so checkpointing a 100000 px wide row costs about one copy
    of its blending sums in all, not one per save.
    """

    def __init__(self, work: Path, key: Mapping[str, Any]) -> None:
        self.work = work
        self.key = dict(key)
        self._carry: str | None = None
        self._parts: list[str] = []  # final column ranges of the row in progress, left to right
        self._final = 0  # columns stored in ``_parts``

    def _write_npz(self, name: str, arrays: Mapping[str, np.ndarray]) -> str:
        with atomic_path(self.work / name, verify=verify_zip) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
        return name

    def _commit(self, row: int, partial: dict[str, Any] | None) -> None:
        state = {"version": STATE_VERSION, "key": self.key, "next_row": row, "carry": self._carry,
                 "partial": partial}  # fmt: skip
        with atomic_path(self.work / PROGRESS) as tmp:
            tmp.write_text(json.dumps(state, indent=1))
        keep = {self._carry, *(partial["parts"] if partial else []), partial["tail"] if partial else None}
        for old in self.work.glob("*.npz"):
            if old.name not in keep:
                old.unlink()

    def save_row(self, next_row: int, carry: Carry | None) -> None:
        """Record that every tile row before ``next_row`` is done, with the carry into ``next_row``."""
        name = None
        if carry is not None:
            arrays = {f"sum_{k}": v for k, v in carry.sums.items()}
            arrays.update(top=np.asarray(carry.top), weights=carry.weights, valid=carry.valid)
            name = self._write_npz(f"carry-{next_row:05d}.npz", arrays)
        self._carry, self._parts, self._final = name, [], 0
        self._commit(next_row, None)

    def _columns(self, state: RowState, start: int, stop: int) -> dict[str, np.ndarray]:
        arrays = {f"sum_{k}": v[:, :, start:stop] for k, v in state.sums.items()}
        arrays["weights"] = state.weights[:, start:stop]
        return arrays

    def save_partial(self, state: RowState) -> None:
        """Record the tiles done so far in tile row ``state.row``."""
        if state.final > self._final:
            part = f"row-{state.row:05d}-cols-{self._final:06d}-{state.final:06d}.npz"
            self._parts.append(self._write_npz(part, self._columns(state, self._final, state.final)))
            self._final = state.final
        tail = self._columns(state, self._final, state.weights.shape[1])
        tail.update(batch=np.asarray(state.batch), next_col=np.asarray(state.next_col))
        name = self._write_npz(f"row-{state.row:05d}-tail-{state.next_col:05d}.npz", tail)
        self._commit(state.row, {"parts": list(self._parts), "tail": name})

    def load(self, overwrite: bool, batch: int) -> ResumePoint:
        """Find where a previous run of this job stopped; another job's state is refused (or dropped).

        Raises:
            ResumeError: The work folder holds an interrupted run with other weights, inputs or options.
        """
        progress = self.work / PROGRESS
        if not progress.exists():
            return ResumePoint()
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            state = {}
        changes = self._changes(state)
        if changes:
            if not overwrite:
                raise ResumeError(
                    f"{str(self.work)!r} holds an interrupted run that differs from this one in "
                    f"{'; '.join(changes)}: rerun it as it was to resume, or pass --overwrite to start afresh"
                )
            shutil.rmtree(self.work)
            self.work.mkdir()
            return ResumePoint()
        self._carry = state.get("carry")
        point = ResumePoint(int(state["next_row"]), self._load_carry())
        if state.get("partial"):
            point.partial = self._load_partial(point.row, state["partial"], batch)
        return point

    def _changes(self, state: Mapping[str, Any]) -> list[str]:
        if state.get("version") != STATE_VERSION or "key" not in state:
            return ["its format (it was written by another version of terramind, or is damaged)"]
        return key_changes(state["key"], self.key)

    def _load_carry(self) -> Carry | None:
        if self._carry is None:
            return None
        with np.load(self.work / self._carry) as z:
            sums = {k[4:]: z[k] for k in z.files if k.startswith("sum_")}
            return Carry(int(z["top"]), sums, z["weights"], z["valid"])

    def _load_partial(self, row: int, partial: Mapping[str, Any], batch: int) -> RowState | None:
        """Rebuild the row in progress from its parts and tail (None: other batches, redo the row)."""
        pieces = []
        for name in [*partial["parts"], partial["tail"]]:
            with np.load(self.work / name) as z:
                pieces.append({k: z[k] for k in z.files})
        tail = pieces[-1]
        if int(tail["batch"]) != batch:  # batches keep their boundaries: redo this row's tiles
            return None
        self._parts = list(partial["parts"])
        self._final = sum(p["weights"].shape[1] for p in pieces[:-1])
        sums = {k[4:]: np.concatenate([p[k] for p in pieces], axis=2) for k in tail if k.startswith("sum_")}
        weights = np.concatenate([p["weights"] for p in pieces], axis=1)
        return RowState(row, int(tail["next_col"]), batch, sums, weights, self._final)


def _throttled(save: Callable[[RowState], None], seconds: float) -> Callable[[RowState], None]:
    """Call ``save`` at most once per ``seconds`` (0: after every batch of tiles)."""
    last = time.monotonic()

    def maybe(state: RowState) -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            save(state)
            last = time.monotonic()

    return maybe


def generate_scene(
    fn: TileFn,
    inputs: Mapping[str, Path],
    outputs: Sequence[SceneOutput],
    *,
    work_dir: Path,
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    fill: Mapping[str, np.ndarray],
    settings: Mapping[str, object] | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
    lock_dir: Path | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> list[Path]:
    """Generate whole-scene outputs tile by tile, resumably.

    Args:
        fn: Tile function returning, per output modality, ``(B, channels, T, T)`` (LULC: logits).
        inputs: Input GeoTIFF per modality (same grid).
        outputs: The GeoTIFFs to write.
        work_dir: Folder for strips and progress (created; removed after success).
        tile: Tile side in pixels.
        overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per call of ``fn``.
        fill: Per input, values put into invalid pixels.
        settings: Everything else that determines the result (model, seed, steps...), for the resume check.
        weights: Digest of the weights behind ``fn`` (:func:`generator_digest`), for the resume check.
        overwrite: Replace existing outputs and a stale work folder.
        progress: Factory ``(total tiles, tiles already done) -> update(n)`` for a progress display.
        lock_dir: Folder whose writer lock is held during the run (default: the work folder's parent).
        checkpoint_seconds: Within a row, save the tiles done at most this often (0: after every batch).

    Returns:
        The written output paths.

    Raises:
        OutputError: An output that exists without ``overwrite``, or a folder that cannot be written.
        BusyError: Another run is writing into the same folder.
        ResumeError: The work folder holds an interrupted run with other weights, inputs or options.
        DiskFullError: The disk filled up (the run can be resumed once space is freed).
    """
    for out in outputs:
        check_output_path(out.path, overwrite=overwrite)
    source = RasterSource(inputs)
    georef = source.georef
    layout = TileLayout(georef.height, georef.width, tile, overlap)
    key = run_key(inputs, outputs, {"tile": tile, "overlap": overlap, **(settings or {})}, weights)
    lock_folder = lock_dir or work_dir.parent
    lock_folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(lock_folder, clean=[work_dir]):
        work_dir.mkdir(parents=True, exist_ok=True)
        state = StateStore(work_dir, key)
        start = state.load(overwrite, batch)
        store = StripStore(work_dir, outputs, georef)
        update = progress(layout.num_tiles, start.tiles_done(layout)) if progress else None
        run_tiles(
            layout, source, fn, store, channels={o.modality: o.channels for o in outputs}, fill=fill,
            batch=batch, start_row=start.row, carry=start.carry, partial=start.partial, progress=update,
            on_row=lambda row, carry: state.save_row(row + 1, carry),
            on_tiles=_throttled(state.save_partial, checkpoint_seconds),
        )  # fmt: skip
        rows = [
            (r, layout.strip_start(r), layout.strip_end(r) - layout.strip_start(r))
            for r in range(len(layout.rows))
        ]
        written = store.finalize(rows, overwrite)
        shutil.rmtree(work_dir)
    return written


def generator_tile_fn(
    generator: Generator,
    outputs: Sequence[SceneOutput],
    options: GenerationOptions | None = None,
    *,
    seed: int = 0,
    offset: Mapping[str, float] | None = None,
    keep_decoders: bool = False,
) -> TileFn:
    """Wrap a :class:`Generator` as a tile function (categorical outputs as logits, for blending).

    The caller decides whether the on-demand decoders stay resident: with ``keep_decoders=True`` the
    generator's :meth:`~Generator.keep_loaded` is called before the first tile batch, so the decoders are
    read once for the whole scene instead of once per batch. Pass it when the scene has more than one tile
    batch; a scene of one batch (a single tile) is cheaper without it, as it keeps the one-decoder-at-a-time
    peak memory.

    Args:
        generator: The generator (inputs in physical units, as read from the files).
        outputs: The scene outputs, in the generator's output order.
        options: Decoding options (default: :class:`GenerationOptions` defaults).
        seed: Seed of all sampling; tiles are seeded by their index, so results do not depend on batching.
        offset: Per modality, a value added to the mean (S2 products with the +1000 DN offset).
        keep_decoders: Make the decoders resident before the first batch (see above).
    """
    opts = options or GenerationOptions()
    loaded = not keep_decoders

    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        nonlocal loaded
        if not loaded:
            generator.keep_loaded()
            loaded = True
        batch = {name: torch.from_numpy(np.ascontiguousarray(x)) for name, x in tiles.items()}
        result = generator.generate(
            batch, options=opts, seed=seed, offset=offset, sample_indices=indices, return_logits=True
        )
        picked = {
            o.modality: result[f"{o.modality}_logits" if o.categorical else o.modality] for o in outputs
        }
        return {name: t.float().cpu().numpy() for name, t in picked.items()}

    return fn
