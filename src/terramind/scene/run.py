"""``run_scene``: one tile function over a whole scene, resumable, in bounded memory, under the folder lock.

Every whole-scene job (generation, fine-tuned prediction, zero-shot water mapping) is a tile function
``(tiles by input, global tile indices) -> outputs by name`` handed to :func:`run_scene` with its sources
(:mod:`.sources`) and sinks (:mod:`.sinks`). The engine (:mod:`.engine`) streams the scene strip by strip;
each finished strip goes to the sinks, which keep it in a work folder beside the outputs together with the
resume state (:mod:`.state`); when every row is done the sinks publish their outputs (each written durably,
verified, renamed into place) and the work folder is removed. Repeating an interrupted call resumes it, and
the result equals an uninterrupted run's.

One writer per output folder: :func:`run_scene` holds the folder's lock
(:func:`terramind.core.lock.folder_lock`) for the whole run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from terramind.core.errors import InputError
from terramind.core.files import check_output_path, output_folder
from terramind.core.lock import folder_lock
from terramind.scene.engine import TileFn, TileLayout, run_tiles
from terramind.scene.sinks import OutputKind, Sink
from terramind.scene.sources import Source, combined
from terramind.scene.state import CHECKPOINT_SECONDS, StateStore, run_key, throttled

WORK_DIR = ".terramind-partial"  # generation's work folder inside its output folder
Progress = Callable[[int, int], Callable[[int], None]]
"""``(total tiles, tiles already done) -> update(tiles just done)``."""


@dataclass(frozen=True)
class DenseTask:
    """A fine-tuned dense model loaded for whole scenes (what ``finetune scene`` and ``batch predict`` run).

    Attributes:
        model: Maps ``{modality: (B, C, T, T)}`` standardised tiles to ``(B, out_channels, T, T)``.
        specs: How each modality is read and standardised (the datamodule's ``inputs``).
        out_channels: Classes or values per pixel.
        kind: ``classes`` (segmentation) or ``values`` (regression).
    """

    model: Any
    specs: Sequence[Any]
    out_channels: int
    kind: OutputKind


def tqdm_progress(desc: str) -> Progress:
    """Make a progress factory showing a tqdm bar (tiles, rate, ETA) that starts at a resumed run's tiles."""

    def start(total: int, done: int) -> Callable[[int], None]:
        bar = tqdm(total=total, initial=done, unit="tile", desc=desc, dynamic_ncols=True)

        def update(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return update

    return start


def work_dir_for(output: Path, job: str) -> Path:
    """Return the work folder of a job writing the single file ``output`` (a hidden sibling)."""
    return output.parent / f".terramind-{job}-{output.stem}"


def run_scene(
    tile_fn: TileFn,
    sources: Source | Sequence[Source],
    sinks: Sequence[Sink],
    layout: TileLayout,
    work_dir: Path,
    *,
    fill: Mapping[str, np.ndarray],
    batch: int = 4,
    settings: Mapping[str, object] | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    lock_dir: Path | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
) -> list[Path]:
    """Run ``tile_fn`` over every tile of a scene and publish the sinks' outputs, resumably.

    Args:
        tile_fn: Tile function; returns, per output it makes, ``(B, channels, T, T)`` (class maps: logits or
            probabilities, blended before the argmax).
        sources: The inputs (one source, or several on one grid).
        sinks: Where the outputs go.
        layout: The tiles (on the sources' grid).
        work_dir: Folder for strips and resume state (created; removed after success).
        fill: Per input, values put into invalid pixels before ``tile_fn`` sees them.
        batch: Tiles per call of ``tile_fn``.
        settings: Everything else that determines the result (model, seed, steps...), for the resume check.
        weights: Digest of the weights behind ``tile_fn``, for the resume check.
        overwrite: Replace existing outputs and a stale work folder.
        progress: Progress display factory (e.g. :func:`tqdm_progress`).
        lock_dir: Folder whose writer lock is held during the run (default: the work folder's parent).
        checkpoint_seconds: Within a row, save the tiles done at most this often (0: after every batch).

    Returns:
        The written output paths, sink by sink.

    Raises:
        InputError: A layout not on the sources' grid.
        OutputError: An output that exists without ``overwrite``, or a folder that cannot be written.
        BusyError: Another run is writing into the same folder.
        ResumeError: The work folder holds an interrupted run with other weights, inputs or options.
        DiskFullError: The disk filled up (the run can be resumed once space is freed).
    """
    source = combined(sources)
    grid = source.georef
    if (layout.height, layout.width) != (grid.height, grid.width):
        raise InputError(
            f"tile layout {layout.width}x{layout.height} is not the scene's {grid.width}x{grid.height}"
        )
    for path in (p for sink in sinks for p in sink.paths):
        check_output_path(path, overwrite=overwrite)
    channels = _channels(sinks)
    names = [p.stem for sink in sinks for p in sink.paths]
    options = {"tile": layout.tile, "overlap": layout.overlap, **(settings or {})}
    key = run_key(source.files, names, options, weights)
    lock_folder = lock_dir or work_dir.parent
    lock_folder.mkdir(parents=True, exist_ok=True)
    # a run refused before it saved anything (a bad first window, Ctrl-C) leaves no empty work folder
    with folder_lock(lock_folder, clean=[work_dir]), output_folder(work_dir):
        state = StateStore(work_dir, key)
        start = state.load(overwrite, batch)
        for sink in sinks:
            sink.start(work_dir, grid)
        update = progress(layout.num_tiles, start.tiles_done(layout)) if progress else None
        fanout = _Fanout(sinks)
        run_tiles(
            layout, source, tile_fn, fanout, channels=channels, fill=fill, batch=batch,
            start_row=start.row, carry=start.carry, partial=start.partial, progress=update,
            on_row=lambda row, carry: state.save_row(row + 1, carry),
            on_tiles=throttled(state.save_partial, checkpoint_seconds),
        )  # fmt: skip
        if start.row == 0 and start.partial is None and not fanout.any_valid:
            # every pixel of every input is nodata: refuse rather than publish an all-nodata map
            shutil.rmtree(work_dir)  # nothing to resume: the inputs themselves are empty
            files = ", ".join(str(f) for f in source.files.values())
            raise InputError(f"no valid pixels in {files}: every pixel is nodata or NaN")
        rows = [
            (r, layout.strip_start(r), layout.strip_end(r) - layout.strip_start(r))
            for r in range(len(layout.rows))
        ]
        written = [path for sink in sinks for path in sink.publish(rows, overwrite)]
        shutil.rmtree(work_dir)
    return written


def _channels(sinks: Sequence[Sink]) -> dict[str, int]:
    """Channels of every tile-function output the sinks read (two sinks reading one output must agree)."""
    out: dict[str, int] = {}
    for sink in sinks:
        for name, count in sink.channels.items():
            if out.setdefault(name, count) != count:
                raise InputError(f"sinks read tile output {name!r} with {out[name]} and {count} channels")
    return out


class _Fanout:
    """Hands each finished strip to every sink."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = sinks
        self.any_valid = False  # whether a strip of this run held a valid input pixel

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        self.any_valid = self.any_valid or bool(valid.any())
        for sink in self.sinks:
            sink.write_strip(row, top, data, valid)
