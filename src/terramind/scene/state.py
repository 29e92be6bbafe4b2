"""Resume state of a whole-scene run: a key of everything that determines the result, and the saved state.

Each finished strip of rows is kept by the sinks in the work folder; this module keeps the blending state that
the next row of tiles needs and a ``progress.json``. Within a row, the tiles done so far are saved about every
minute (``CHECKPOINT_SECONDS``), so an interruption loses at most about a minute of work on a scene of any
width. A rerun resumes from there (randomness is seeded per tile, so the result is the same as an
uninterrupted run).

Resume state is keyed by content: ``progress.json`` records a digest of the weights actually loaded (the
caller's, e.g. :func:`terramind.generation.scene.generator_digest`), each input file's path, size,
modification time and a hash of its first and last MiB, the outputs and every option. A rerun that differs in
any of them is refused with :class:`ResumeError` naming what changed (``--overwrite`` starts afresh), so one
output never mixes two models, two inputs or two seeds. ``progress.json`` is the single commit point: it names
the carry and partial-row files it belongs to, which are written (atomically) before it, so a crash between
two writes never pairs mismatched state.
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

from terramind.core.errors import ResumeError
from terramind.core.files import atomic_path, verify_zip
from terramind.data.geotiff import as_path, is_gdal_path
from terramind.scene.engine import Carry, RowState, TileLayout

PROGRESS = "progress.json"
STATE_VERSION = 2
SAMPLE_BYTES = 2**20  # hashed from the start and the end of each input (GeoTIFF headers and directories)
CHECKPOINT_SECONDS = 60.0  # within a row, tiles done so far are saved about this often


def _file_record(path: Path) -> dict[str, object]:
    """Identify an input file's content cheaply: path, size, mtime and a hash of both ends.

    A GDAL virtual path or URL (not a local file) is identified by its text.
    """
    if is_gdal_path(path):
        return {"path": str(path)}
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
    outputs: Sequence[str],
    options: Mapping[str, object],
    weights: str | None = None,
) -> dict[str, Any]:
    """Everything that determines a scene's result, as JSON: weights digest, inputs, output names, options."""
    opts = {"outputs": list(outputs), **options}
    return {
        "weights": weights,
        "inputs": {k: _file_record(as_path(p)) for k, p in sorted(inputs.items())},
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


def throttled(save: Callable[[RowState], None], seconds: float) -> Callable[[RowState], None]:
    """Call ``save`` at most once per ``seconds`` (0: after every batch of tiles)."""
    last = time.monotonic()

    def maybe(state: RowState) -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            save(state)
            last = time.monotonic()

    return maybe
