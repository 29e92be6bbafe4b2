"""Model-agnostic tiling of scenes of any size: overlapping tiles, smooth blending, row-strip streaming.

The engine knows nothing of models or files. It asks a :class:`TileSource` for the pixels of one row of tiles,
calls a tile function on batches of tiles, blends the results with a separable raised-cosine window and hands
finished strips of rows to a :class:`StripSink`. Only one strip of rows is ever in memory (the tile height
times the scene width), so a 10980 x 10980 Sentinel-2 scene streams through bounded memory.

Blending: each output pixel is the weighted mean of the tiles covering it, with weights that fall smoothly to
(almost) zero towards tile borders; tiles never see the scene outside their window, so the seams the official
notebook shows for independent tiles are feathered. Categorical outputs should return logits, blended here and
turned into classes by the sink. Pixels invalid in any input (nodata or NaN) are invalid in every output.

Resuming: after each row of tiles the engine hands the blending state for the next row (:class:`Carry`) to
``on_row``, and after each batch of tiles the partial sums of the row in progress (:class:`RowState`) to
``on_tiles``, so a caller can checkpoint within a row (a 100000 px wide scene has 500 tiles per row). A run
restarted with ``start_row``/``carry``/``partial`` computes only the remaining tiles; tiles are seeded by
their global index and batches keep their boundaries (``partial.next_col`` is a multiple of ``batch``), so
the result equals an uninterrupted run's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from terramind.core.errors import InputError
from terramind.data.padding import reflect_pad

TileFn = Callable[[Mapping[str, np.ndarray], Sequence[int]], Mapping[str, np.ndarray]]
"""``(inputs by name (B, C, T, T) float32, global tile indices) -> outputs by name (B, C', T, T)``."""


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of a scene lie.

    Tiles are ``tile`` px squares advancing by ``tile - overlap``; the last tile of a row or column is
    shifted back to end at the scene border (so no tile reaches outside, except in a scene smaller than one
    tile, which is padded).

    Attributes:
        height: Scene rows.
        width: Scene columns.
        tile: Tile side in pixels.
        overlap: Pixels shared by neighbouring tiles.
    """

    height: int
    width: int
    tile: int = 224
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise InputError(f"scene must have at least one pixel, got {self.width}x{self.height}")
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise InputError(f"overlap must lie in [0, tile), got tile {self.tile}, overlap {self.overlap}")

    @property
    def rows(self) -> list[int]:
        """Top pixel row of each row of tiles."""
        return _starts(self.height, self.tile, self.tile - self.overlap)

    @property
    def cols(self) -> list[int]:
        """Left pixel column of each column of tiles."""
        return _starts(self.width, self.tile, self.tile - self.overlap)

    @property
    def num_tiles(self) -> int:
        """Number of tiles in the scene."""
        return len(self.rows) * len(self.cols)

    def num_batches(self, batch: int) -> int:
        """Count the calls of the tile function for the whole scene (batches never span two tile rows)."""
        if batch < 1:
            raise InputError(f"tiles per batch must be >= 1, got {batch}")
        return len(self.rows) * -(-len(self.cols) // batch)

    def strip_end(self, row: int) -> int:
        """First scene row that a later row of tiles still covers, after tile row ``row`` is done."""
        rows = self.rows
        return rows[row + 1] if row + 1 < len(rows) else self.height

    def strip_start(self, row: int) -> int:
        """First scene row finished by tile row ``row`` (rows above were finished earlier)."""
        return 0 if row == 0 else self.strip_end(row - 1)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(count)})


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) float64 weights: 1 inside, a raised-cosine ramp over ``overlap`` px at every edge.

    The ramp never reaches 0 (it is sampled at pixel centres), so a pixel covered by one tile only keeps
    its value exactly after normalisation.
    """
    ramp = np.ones(tile)
    if overlap > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return np.outer(ramp, ramp)


class TileSource(Protocol):
    """Pixels of a scene, one band-stack per input (the engine's view of a :class:`~.sources.Source`)."""

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Return inputs (C, height, W) float32 of rows ``[top, top + height)`` and a (height, W) valid mask.

        Invalid pixels may hold any value; the engine replaces them with ``fill`` values before tiling.
        """
        ...


class StripSink(Protocol):
    """Receives finished strips of rows."""

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Store blended outputs ``(C', h, W)`` of scene rows ``[top, top + h)`` (tile row ``row``)."""
        ...


@dataclass
class Carry:
    """Blending state handed from one row of tiles to the next (saved for resuming).

    Attributes:
        top: First scene row held.
        sums: Per output, weighted sums ``(C', h, W)``.
        weights: Summed weights ``(h, W)``.
        valid: Validity ``(h, W)`` of the held rows.
    """

    top: int
    sums: dict[str, np.ndarray]
    weights: np.ndarray
    valid: np.ndarray


@dataclass
class RowState:
    """A row of tiles in progress: the tiles blended so far (saved for resuming within a row).

    Attributes:
        row: Tile row.
        next_col: First tile column not yet blended (a multiple of ``batch``).
        batch: Tiles per call of the tile function when the state was taken.
        sums: Per output, weighted sums ``(C', T, x)`` of the columns ``[0, x)`` the blended tiles reach.
        weights: Summed weights ``(T, x)``.
        final: Columns before this one are not touched by the row's remaining tiles (a checkpoint may
            store them once and later only what follows).
    """

    row: int
    next_col: int
    batch: int
    sums: dict[str, np.ndarray]
    weights: np.ndarray
    final: int = 0


def run_tiles(
    layout: TileLayout,
    source: TileSource,
    fn: TileFn,
    sink: StripSink,
    *,
    channels: Mapping[str, int],
    fill: Mapping[str, np.ndarray],
    batch: int = 4,
    start_row: int = 0,
    carry: Carry | None = None,
    on_row: Callable[[int, Carry | None], None] | None = None,
    progress: Callable[[int], None] | None = None,
    partial: RowState | None = None,
    on_tiles: Callable[[RowState], None] | None = None,
) -> None:
    """Run ``fn`` over every tile and stream blended strips into ``sink``.

    Args:
        layout: The tiles.
        source: Input pixels.
        fn: The tile function (a generator, or a fake in tests).
        sink: Where finished strips go.
        channels: Channels of each output of ``fn``.
        fill: Per input, the value (C,) put into invalid pixels before ``fn`` sees them.
        batch: Tiles per call of ``fn``.
        start_row: First tile row to run (resuming).
        carry: Blending state left by tile row ``start_row - 1`` (resuming).
        on_row: Called after each tile row with its index and the carry for the next one (checkpointing).
        progress: Called with the number of tiles just finished.
        partial: The part of tile row ``start_row`` done before an interruption (resuming within a row).
        on_tiles: Called after each batch of tiles with the state of the row in progress (checkpointing);
            its arrays are views, valid only during the call.
    """
    if partial and (partial.row, partial.batch, partial.next_col % batch) != (start_row, batch, 0):
        raise InputError(
            f"partial row state (row {partial.row}, column {partial.next_col}, batch {partial.batch}) "
            f"does not continue tile row {start_row} with batch {batch}"
        )
    window = blend_window(layout.tile, layout.overlap)
    for r in range(start_row, len(layout.rows)):
        top = layout.rows[r]
        inputs, valid = _read_padded(source, layout, top, fill)
        sums, weights, strip_valid = _blend_row(
            layout, r, inputs, valid, fn, channels, window, batch, progress,
            partial if partial is not None and partial.row == r else None, on_tiles,
        )  # fmt: skip
        carry = _merge(carry, top, sums, weights, strip_valid)
        end = layout.strip_end(r)
        done, carry = _split(carry, end)
        sink.write_strip(r, done.top, _normalise(done), done.valid)
        if on_row is not None:
            on_row(r, carry)


def _read_padded(
    source: TileSource, layout: TileLayout, top: int, fill: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read one row of tiles' pixels, fill invalid pixels, pad a scene smaller than a tile."""
    height = min(layout.tile, layout.height - top)
    data, valid = source.read_rows(top, height)
    pad = ((0, layout.tile - height), (0, max(0, layout.tile - layout.width)))
    out = {}
    for name, x in data.items():
        x = np.where(valid[None], x, np.asarray(fill[name], np.float32).reshape(-1, 1, 1)).astype(np.float32)
        out[name] = reflect_pad(x, pad[0][1], pad[1][1])
    return out, np.pad(valid, pad, mode="constant", constant_values=False)


def _blend_row(
    layout: TileLayout,
    row: int,
    inputs: Mapping[str, np.ndarray],
    valid: np.ndarray,
    fn: TileFn,
    channels: Mapping[str, int],
    window: np.ndarray,
    batch: int,
    progress: Callable[[int], None] | None,
    resume: RowState | None = None,
    on_tiles: Callable[[RowState], None] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Weighted sums (C', T, W) and weights (T, W) of one row of tiles, cropped to the scene width."""
    t, width = layout.tile, max(layout.width, layout.tile)
    sums = {name: np.zeros((c, t, width)) for name, c in channels.items()}
    weights = np.zeros((t, width))
    cols = layout.cols
    first = 0
    if resume is not None:
        first, x = resume.next_col, resume.weights.shape[1]
        weights[:, :x] = resume.weights
        for name, acc in sums.items():
            acc[:, :, :x] = resume.sums[name]
    for chunk in _chunks(range(first, len(cols)), batch):
        todo = [c for c in chunk if valid[:, cols[c] : cols[c] + t].any()]  # all-nodata tiles are skipped
        if todo:
            tiles = {n: np.stack([x[:, :, cols[c] : cols[c] + t] for c in todo]) for n, x in inputs.items()}
            outs = fn(tiles, [row * len(cols) + c for c in todo])
            for name, acc in sums.items():
                y = _checked(outs, name, acc.shape[0], len(todo), t)
                for i, c in enumerate(todo):
                    acc[:, :, cols[c] : cols[c] + t] += y[i] * window
            for c in todo:
                weights[:, cols[c] : cols[c] + t] += window
        if progress is not None:
            progress(len(chunk))
        if on_tiles is not None and chunk[-1] + 1 < len(cols):
            x = cols[chunk[-1]] + t  # columns the blended tiles reach
            state = {n: s[:, :, :x] for n, s in sums.items()}
            final = cols[chunk[-1] + 1]  # the next tile's left edge: later tiles start there or further right
            on_tiles(RowState(row, chunk[-1] + 1, batch, state, weights[:, :x], final))
    height = min(t, layout.height - layout.rows[row])
    crop = (slice(0, height), slice(0, layout.width))
    return {n: s[:, crop[0], crop[1]] for n, s in sums.items()}, weights[crop], valid[crop]


def _checked(outs: Mapping[str, np.ndarray], name: str, channels: int, count: int, tile: int) -> np.ndarray:
    """Return the tile function's output ``name`` as float64 (B, C', T, T), checking its shape."""
    if name not in outs:
        raise InputError(f"tile function returned {sorted(outs)}, missing {name!r}")
    y = np.asarray(outs[name], dtype=np.float64)
    if y.shape != (count, channels, tile, tile):
        raise InputError(
            f"tile output {name!r} has shape {y.shape}, expected {(count, channels, tile, tile)}"
        )
    return y


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _merge(
    carry: Carry | None, top: int, sums: dict[str, np.ndarray], weights: np.ndarray, valid: np.ndarray
) -> Carry:
    """Add a row of tiles starting at scene row ``top`` to the carried rows (which also start at ``top``)."""
    if carry is None:
        return Carry(top, sums, weights, valid)
    if carry.top != top:
        raise AssertionError(f"carry starts at row {carry.top}, the tile row at {top}")  # engine invariant
    held = carry.weights.shape[0]
    for name, s in sums.items():
        s[:, :held] += carry.sums[name]
    weights[:held] += carry.weights
    return Carry(top, sums, weights, valid)


def _split(carry: Carry, end: int) -> tuple[Carry, Carry | None]:
    """Split the state into finished rows ``[top, end)`` and the rest."""
    k = end - carry.top
    done = Carry(carry.top, {n: s[:, :k] for n, s in carry.sums.items()}, carry.weights[:k], carry.valid[:k])
    if k >= carry.weights.shape[0]:
        return done, None
    rest = Carry(end, {n: s[:, k:] for n, s in carry.sums.items()}, carry.weights[k:], carry.valid[k:])
    return done, rest


def _normalise(done: Carry) -> dict[str, np.ndarray]:
    """Weighted means (C', h, W) float32; pixels no tile covered (all-nodata tiles) become NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {n: (s / done.weights).astype(np.float32) for n, s in done.sums.items()}
