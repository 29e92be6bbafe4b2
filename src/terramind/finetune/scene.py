"""Whole-scene prediction: run a fine-tuned dense model over a GeoTIFF scene of any size, tile by tile.

The model is a tile function for the scene engine (:func:`terramind.scene.run_scene`): tiles overlap and
their outputs are blended (class probabilities for segmentation, values for regression), streamed strip by
strip and published as one GeoTIFF on the scene's grid. From the engine it gets resume (an interrupted run,
repeated, continues; keyed by the model's weights digest, the inputs and the options), a progress bar, the
output folder's writer lock and the durable, verified write. Pixels invalid in any input (nodata, non-finite)
are nodata (:func:`terramind.scene.output_nodata`: class maps 255, values -9999).

**Time series** (:func:`predict_series_scene`): a temporal model (a
:class:`terramind.finetune.temporal.TemporalBackbone` inside) predicts from, per modality, a list of dated
files (:class:`terramind.data.series.SeriesFile`; a static modality is one file or any single scene input).
Every date is read through the same readers onto one grid (the first input's first date, or ``grid``'s):
a date on another grid is warped as a single-time input is (:mod:`terramind.scene.warp`), one note each.
A row strip holds ``(C x T, h, W)`` per modality, NaN where a date's pixel is invalid; the tile function
turns each tile into the model's :class:`terramind.data.series.Series` (stamps in days, a date valid where
the tile holds at least one of its valid pixels, invalid pixels 0 = the band mean, as the datamodule
reads them). Blending, streaming, resume and the write are :func:`predict_scene`'s, shared.

**Precision**: ``"auto"`` (default; bf16 autocast where the hardware multiplies bf16 natively, the choice
printed once), ``"bf16"`` or ``"fp32"`` (exact: the outputs of earlier releases), via
:mod:`terramind.build.precision`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

import numpy as np
import torch
from einops import rearrange
from torch import nn

from terramind.build.precision import autocast, inference_precision
from terramind.checkpoints.digest import state_digest
from terramind.core.errors import InputError, ShapeError
from terramind.data.geotiff import GeoRef
from terramind.data.series import (
    EPOCH,
    Series,
    SeriesFile,
    check_increasing,
    check_steps,
    date_from_name,
    days,
    series_source,
)
from terramind.data.tiles import ModalityInput, prepare_input
from terramind.finetune.temporal import TemporalBackbone
from terramind.scene import (
    DEFAULT_RESAMPLING,
    GeoTiffSink,
    InputValue,
    Progress,
    SceneOutput,
    TileLayout,
    notes,
    output_nodata,
    run_scene,
    scene_source,
    work_dir_for,
)
from terramind.scene.offsets import offset_note, product_offsets
from terramind.scene.sinks import OutputKind
from terramind.scene.sources import grid_input
from terramind.scene.state import CHECKPOINT_SECONDS

CLASS_NODATA = output_nodata("classes")
VALUE_NODATA = output_nodata("values")


class StandardisedSource:
    """Rows of the input scenes, standardised as the datamodule does (a :class:`terramind.scene.Source`).

    The scene is read by :func:`terramind.scene.scene_source` (any input form, other grids warped, S1 in
    linear power converted), as the model's band subset; each strip is then standardised with the model's
    statistics and offsets.
    """

    def __init__(
        self,
        inputs: Mapping[str, InputValue],
        specs: Sequence[ModalityInput],
        *,
        grid: str | None = None,
        resampling: str = DEFAULT_RESAMPLING,
        onto: tuple[str, GeoRef] | None = None,
    ) -> None:
        missing = [m.name for m in specs if m.name not in inputs]
        if missing:
            raise InputError(f"the model needs input(s) {missing}; give them as MODALITY=PATH")
        self.specs = list(specs)
        bands = {m.name: (m.bands, m.file_bands or None) for m in self.specs}
        self.source = scene_source(
            {m.name: inputs[m.name] for m in self.specs}, grid=grid, resampling=resampling, bands=bands,
            onto=onto,
        )  # fmt: skip
        self.georef, self.files = self.source.georef, self.source.files
        self.sources = getattr(self.source, "sources", [self.source])  # for terramind.scene.notes

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every input, standardised, with their combined validity."""
        data, valid = self.source.read_rows(top, height)
        out = {}
        for mod in self.specs:
            raw = np.where(valid[None], data[mod.name], np.nan)  # invalid anywhere: invalid for the model
            out[mod.name], invalid = prepare_input(mod, raw, None)
            valid &= ~invalid
        return out, valid


def with_product_offsets(
    inputs: Mapping[str, InputValue], specs: Sequence[ModalityInput], say: Callable[[str], None] | None = None
) -> list[ModalityInput]:
    """Apply the DN offset each input's product metadata implies where the model's config sets none.

    A config's own non-zero offset wins (as ``--offset`` does on the other commands); the choice is said
    either way (:mod:`terramind.scene.offsets`).
    """
    found = product_offsets({m.name: inputs[m.name] for m in specs if m.name in inputs})
    out = []
    for mod in specs:
        if mod.name in found:
            given = mod.offset if mod.offset != 0.0 else None
            if say is not None:
                say(offset_note(mod.name, found[mod.name], given).replace("--offset", "the config's offset"))
            mod = mod if given is not None else replace(mod, offset=found[mod.name].offset)
        out.append(mod)
    return out


def predict_scene(
    model: nn.Module,
    inputs: Mapping[str, InputValue],
    specs: Sequence[ModalityInput],
    output: Path,
    *,
    out_channels: int,
    kind: OutputKind = "classes",
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    overwrite: bool = False,
    progress: Progress | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    precision: str = "auto",
    say: Callable[[str], None] | None = None,
) -> Path:
    """Predict a whole scene with a dense model and write the GeoTIFF.

    Args:
        model: Maps ``{modality: (B, C, T, T)}`` standardised tiles to ``(B, out_channels, T, T)``.
        inputs: Scene per modality, in any form :func:`terramind.scene.scene_source` reads.
        specs: How each modality is read and standardised (as in training).
        output: GeoTIFF to write.
        out_channels: Classes (``kind="classes"``) or output values per pixel.
        kind: ``classes``: softmax probabilities are blended, the argmax is written (uint8, nodata 255);
            ``values``: values are blended and written as float32 (nodata -9999).
        tile: Tile side (a multiple of 16).
        overlap: Pixels shared by neighbouring tiles.
        batch: Tiles per forward pass.
        overwrite: Replace an existing output (and the state of an interrupted run that differs).
        progress: Progress display factory (e.g. :func:`terramind.scene.tqdm_progress`).
        checkpoint_seconds: Within a row of tiles, save the tiles done at most this often (for resuming).
        grid: The input whose grid the output is on (default: the first input's; others are warped).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).
        precision: ``auto`` (bf16 where the hardware multiplies it natively, else fp32; said once),
            ``bf16`` or ``fp32`` (exact).
        say: Receives one line per decision made for the user (warps, S1 converted to dB, the DN offset).

    Returns:
        The written path.

    Raises:
        ResumeError: An interrupted run with other weights, inputs or options left its state (rerun it as
            it was, or pass ``overwrite``).
    """
    specs = with_product_offsets(inputs, specs, say)
    source = StandardisedSource(inputs, specs, grid=grid, resampling=resampling)
    settings = {"kind": kind, "out_channels": out_channels, "inputs": [repr(m) for m in specs], "grid": grid,
                "resampling": resampling}  # fmt: skip
    fill = {m.name: np.zeros(len(m.bands), np.float32) for m in specs}  # already standardised: 0 = mean

    def to_input(tiles: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in tiles.items()}

    run = _DenseRun(
        out_channels, kind, tile, overlap, batch, overwrite, progress, checkpoint_seconds, precision
    )
    return _predict(model, source, output, to_input, fill, settings, run, say)


class _DenseRun(NamedTuple):
    """How a dense scene prediction runs (the options :func:`predict_scene` and the series variant share)."""

    out_channels: int
    kind: OutputKind
    tile: int
    overlap: int
    batch: int
    overwrite: bool
    progress: Progress | None
    checkpoint_seconds: float
    precision: str


def _predict(
    model: nn.Module,
    source: Any,
    output: Path,
    to_input: Callable[[Mapping[str, np.ndarray], torch.device], Any],
    fill: Mapping[str, np.ndarray],
    settings: Mapping[str, object],
    run: _DenseRun,
    say: Callable[[str], None] | None,
) -> Path:
    """Run ``model`` over the tiles of ``source`` (``to_input`` makes its input of a batch of tiles)."""
    for line in notes(source):
        if say is not None:
            say(line)
    layout = TileLayout(source.georef.height, source.georef.width, run.tile, run.overlap)
    device = next(model.parameters()).device
    choice = inference_precision(run.precision, device)  # "auto" resolved and said once
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        with autocast(choice.precision, device):
            out = model(to_input(tiles, device))
        out = out.float().softmax(dim=1) if run.kind == "classes" else out.float()
        return {"out": out.cpu().numpy()}

    classes = run.kind == "classes"
    sink = GeoTiffSink([
        SceneOutput(output.stem, output, "out", run.out_channels, classes, "uint8" if classes else "float32",
                    output_nodata(run.kind))
    ])  # fmt: skip
    settings = {**settings, "precision": choice.precision}
    try:
        run_scene(
            fn, source, [sink], layout, work_dir_for(output, "predict"), fill=fill, batch=run.batch,
            settings=settings, weights=state_digest({"model": model}), overwrite=run.overwrite,
            progress=run.progress, checkpoint_seconds=run.checkpoint_seconds,
        )  # fmt: skip
    finally:
        model.train(was_training)
    return output


SeriesInputs = Mapping[str, "Sequence[SeriesFile] | InputValue"]
"""Per modality, its dated files (oldest first), or one scene input in any form (static, e.g. DEM)."""


def takes_series(model: nn.Module) -> bool:
    """Whether a fine-tuned model takes time series (its backbone is a :class:`TemporalBackbone`)."""
    return isinstance(getattr(model, "backbone", None), TemporalBackbone)


def scene_series(paths: Mapping[str, InputValue]) -> dict[str, list[SeriesFile] | InputValue]:
    """Read where each modality's series is, as ``embed-series`` and the temporal datamodule do.

    Args:
        paths: Per modality, a folder of GeoTIFFs dated in their names, a CSV ``path,date[,modality]`` or
            one GeoTIFF (a static modality; band-file lists and other single inputs are kept as they are).

    Raises:
        InputError: A zarr zip (no grid the scene engine reads), or a folder/CSV that lists no dated file.
    """
    out: dict[str, list[SeriesFile] | InputValue] = {}
    for name, value in paths.items():
        if not isinstance(value, (str, Path)):
            out[name] = value  # band files, xarray: one undated input
            continue
        found = series_source(Path(value), name)
        if isinstance(found, Path):
            raise InputError(
                f"{name} series {str(value)!r} is a zarr zip: a scene is read from rasters on a grid; give "
                "the dates as GeoTIFFs (a folder of dated files or a CSV path,date)"
            )
        out[name] = list(found)
    return out


class SeriesSource:
    """Rows of a time series of scenes on one grid (a :class:`terramind.scene.Source`).

    Per modality, ``(C x T, h, W)`` standardised rows (``(c t)`` channel order), NaN where a date's pixel is
    invalid; a pixel is valid where every modality has at least one valid date.

    Args:
        series: Per modality, dated files (oldest first) or one undated input (static).
        specs: How each modality is read and standardised (the datamodule's ``inputs``).
        grid: The modality whose first date's grid the scene is read on (default: the first input's).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).
        max_steps: Refuse a modality with more dates.
        say: Receives each DN-offset decision (one per date whose product metadata says something).

    Raises:
        InputError: A missing modality, dates not increasing, an unknown ``grid``, a date that does not
            overlap the grid.
        ShapeError: More dates than ``max_steps``.
    """

    def __init__(
        self,
        series: SeriesInputs,
        specs: Sequence[ModalityInput],
        *,
        grid: str | None = None,
        resampling: str = DEFAULT_RESAMPLING,
        max_steps: int | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        missing = [m.name for m in specs if m.name not in series]
        if missing:
            raise InputError(f"the model needs input(s) {missing}; give them as MODALITY=PATH")
        self.specs = list(specs)
        dated = {m.name: _dated(m.name, series[m.name], max_steps) for m in self.specs}
        target = grid_input(list(series), grid)
        reference = StandardisedSource({target: dated[target][0].value}, [_spec(self.specs, target)])
        name = f"{target} {_label(dated[target][0])}".strip()
        self.georef = reference.georef
        self.dates: dict[str, list[StandardisedSource]] = {}
        self.files: dict[str, Any] = {}
        self.notes: list[str] = []
        for mod in self.specs:
            self.dates[mod.name] = []
            for f in dated[mod.name]:
                try:
                    spec = with_product_offsets({mod.name: f.value}, [mod], say)[
                        0
                    ]  # per date: baselines change
                    src = StandardisedSource(
                        {mod.name: f.value}, [spec], resampling=resampling, onto=(name, self.georef)
                    )
                except (InputError, ShapeError) as err:  # say which date
                    raise type(err)(f"{mod.name} {_label(f) or '(static)'}: {err}") from None
                self.dates[mod.name].append(src)
                self.files.update({f"{k}@{_label(f) or 'static'}": p for k, p in src.files.items()})
                self.notes += [f"{mod.name} {_label(f)}: {line}" for line in notes(src)]
        self.times = {m: np.array([days(f.date) for f in files]) for m, files in dated.items()}

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows ``[top, top + height)``: per modality ``(C x T, h, W)``, and the pixels valid at some date."""
        valid = np.ones((height, self.georef.width), dtype=bool)
        data = {}
        for mod in self.specs:
            steps, seen = [], np.zeros_like(valid)
            for src in self.dates[mod.name]:
                x, ok = src.read_rows(top, height)
                steps.append(np.where(ok[None], x[mod.name], np.nan))  # (C, h, W), NaN: invalid that date
                seen |= ok
            data[mod.name] = rearrange(np.stack(steps, axis=1), "c t h w -> (c t) h w")
            valid &= seen
        return data, valid

    def to_series(self, tiles: Mapping[str, np.ndarray], device: torch.device) -> Series:
        """Make the model's input of a batch of tiles: ``(B, C, T, H, W)``, stamps and date masks ``(B, T)``.

        A date is valid in a tile where the tile holds at least one of its valid pixels (as the datamodule
        counts a date of a sample); invalid pixels become 0, the standardised band mean.
        """
        inputs, times, valid = {}, {}, {}
        for name, x in tiles.items():
            stamps = self.times[name]
            x = rearrange(x, "b (c t) h w -> b c t h w", t=stamps.size)
            ok = np.isfinite(x).all(axis=1).any(axis=(-2, -1))  # (B, T)
            inputs[name] = torch.from_numpy(np.nan_to_num(x, nan=0.0)).to(device)
            times[name] = torch.from_numpy(np.tile(stamps, (x.shape[0], 1))).to(device)
            valid[name] = torch.from_numpy(ok).to(device)
        return Series(inputs, times, valid)


class _Date(NamedTuple):
    """One date of a modality: the input read for it and its date (``EPOCH``: undated, static)."""

    value: InputValue
    date: date


def _dated(name: str, value: Sequence[SeriesFile] | InputValue, max_steps: int | None) -> list[_Date]:
    """One modality's dates, checked (increasing, at most ``max_steps``); an undated input is one date."""
    if _is_dated(value):
        files = list(value)
        check_steps(len(files), max_steps, f"{name} series")
        check_increasing(files, f"{name} series")
        return [_Date(f.path, f.date) for f in files]
    when = date_from_name(Path(value)) if isinstance(value, (str, Path)) else None
    return [_Date(value, when or EPOCH)]


def _spec(specs: Sequence[ModalityInput], name: str) -> ModalityInput:
    return next(m for m in specs if m.name == name)


def _label(f: _Date) -> str:
    """Write a date as in notes and resume keys ('' for an undated, static input)."""
    return "" if f.date == EPOCH else f.date.isoformat()


def check_series_model(model: nn.Module, series: SeriesInputs) -> None:
    """Refuse a time series for a single-time model, naming the modality and its number of dates.

    Raises:
        ShapeError: A modality has more than one date and the model has no temporal backbone.
    """
    if takes_series(model):
        return
    for name, value in series.items():
        if _is_dated(value) and len(value) > 1:
            raise ShapeError(
                f"{name} has a time axis ({len(value)} dates) but this model takes one date: give one "
                "date per modality (--input MOD=PATH), or fine-tune a temporal task (TemporalBackbone)"
            )


def predict_series_scene(
    model: nn.Module,
    series: SeriesInputs,
    specs: Sequence[ModalityInput],
    output: Path,
    *,
    out_channels: int,
    kind: OutputKind = "classes",
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    overwrite: bool = False,
    progress: Progress | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    max_steps: int | None = None,
    precision: str = "auto",
    say: Callable[[str], None] | None = None,
) -> Path:
    """Predict a whole scene from a time series with a temporal dense model and write the GeoTIFF.

    Args:
        model: A fine-tuned temporal model (``TemporalSegmentationTask.model``): :class:`Series` of tiles
            ``(B, C, T, tile, tile)`` to ``(B, out_channels, tile, tile)``.
        series: Per modality its dated files (:class:`terramind.data.series.SeriesFile`, oldest first;
            :func:`scene_series` reads folders and CSVs), or one undated input (a static modality).
        specs: How each modality is read and standardised (the datamodule's ``inputs``).
        output: GeoTIFF to write, on the grid of the first input's first date (or ``grid``'s).
        out_channels: Classes or values per pixel.
        kind: ``classes`` or ``values`` (as :func:`predict_scene`).
        tile: Tile side (a multiple of 16).
        overlap: Pixels shared by neighbouring tiles.
        batch: Tiles per forward pass.
        overwrite: Replace an existing output (and the state of an interrupted run that differs).
        progress: Progress display factory.
        checkpoint_seconds: Within a row of tiles, save the tiles done at most this often (for resuming).
        grid: The modality whose first date's grid the output is on (default: the first input's).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).
        max_steps: Refuse series with more dates (default: the temporal backbone's ``max_steps``).
        precision: ``auto``, ``bf16`` or ``fp32`` (as :func:`predict_scene`).
        say: Receives one line per decision made for the user (warped dates, DN offsets).

    Returns:
        The written path.

    Raises:
        ShapeError: A series given to a single-time model, or more dates than ``max_steps``.
        InputError: Dates not increasing, a missing modality, a date that does not overlap the grid.
        ResumeError: As :func:`predict_scene`.
    """
    check_series_model(model, series)
    if not takes_series(model):  # one date each: the single-time path
        single = {m: (v[0].path if _is_dated(v) else v) for m, v in series.items()}
        return predict_scene(
            model, single, specs, output, out_channels=out_channels, kind=kind, tile=tile, overlap=overlap,
            batch=batch, overwrite=overwrite, progress=progress, checkpoint_seconds=checkpoint_seconds,
            grid=grid, resampling=resampling, precision=precision, say=say,
        )  # fmt: skip
    if max_steps is None:
        max_steps = getattr(getattr(model, "backbone", None), "max_steps", None)
    source = SeriesSource(series, specs, grid=grid, resampling=resampling, max_steps=max_steps, say=say)
    times = {m: t.tolist() for m, t in source.times.items()}
    settings = {"kind": kind, "out_channels": out_channels, "inputs": [repr(m) for m in specs], "grid": grid,
                "resampling": resampling, "times": times}  # fmt: skip
    # NaN: the tile function tells a date's invalid pixels from valid ones (then puts the mean, 0, there)
    fill = {m.name: np.full(len(m.bands) * source.times[m.name].size, np.nan, np.float32) for m in specs}
    run = _DenseRun(
        out_channels, kind, tile, overlap, batch, overwrite, progress, checkpoint_seconds, precision
    )
    return _predict(model, source, output, source.to_series, fill, settings, run, say)


def _is_dated(value: object) -> TypeGuard[Sequence[SeriesFile]]:
    """Whether an input is a list of dated files (else one undated input)."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(f, SeriesFile) for f in value)
    )
