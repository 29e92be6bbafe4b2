"""``terramind finetune scene --series MOD=PATH ...``: a whole scene predicted from a time series.

Called by ``finetune scene`` when ``--series`` is given (:func:`run_series_scene`; the task is loaded there by
:func:`terramind.cli.finetune.load_dense_task`). Each ``--series`` is read as ``embed-series`` and the
temporal datamodule read a sample's series (a folder of GeoTIFFs dated in their names, a CSV
``path,date[,modality]``, or one GeoTIFF for a static modality); ``--input MOD=...`` adds single-date
(static) inputs in any scene form. The output is on the grid of the first ``--series``' first date (or of
``--grid MOD``'s first date); dates on other grids are warped onto it, one note each.

A private module: command discovery skips names starting with ``_``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.scene.run import DenseTask


def series_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Per modality, its dated files (``--series``) or its one scene input (``--input``), series first.

    Raises:
        InputError: No ``--series``, a modality given by both options, a zarr zip, an undated folder/CSV.
    """
    from terramind.finetune.scene import scene_series

    series = dict(getattr(args, "series", None) or {})
    single = dict(getattr(args, "input", None) or {})
    if not series:
        raise InputError("give the time series as --series MOD=PATH (a folder of dated GeoTIFFs or a CSV)")
    both = sorted(set(series) & set(single))
    if both:
        raise InputError(f"{', '.join(both)} given by both --series and --input: give each modality once")
    return {**scene_series(series), **single}


def run_series_scene(args: argparse.Namespace, task: DenseTask) -> Path:
    """Predict the scene of ``args`` from its time series with a loaded fine-tuned task; write the GeoTIFF.

    Reads ``args.series`` and optional ``args.input``, ``args.grid``, ``args.resampling``, ``args.output``,
    ``args.tile``, ``args.overlap``, ``args.batch_size``, ``args.device``, ``args.overwrite``, and where the
    parser has them ``args.precision`` (default ``auto``), ``args.max_steps`` (default: the model's) and
    ``args.stac`` (refused: a STAC item of a series is not written yet).

    Args:
        args: The parsed ``finetune scene`` options.
        task: The loaded task (:func:`terramind.cli.finetune.load_dense_task`); a single-time task is
            refused when a modality has more than one date.

    Returns:
        The written GeoTIFF.

    Raises:
        InputError: Bad series (dates not increasing, undated files, a zarr zip, no overlap with the grid).
        ShapeError: More dates than the maximum, or a series given to a single-time model.
    """
    from terramind.finetune.scene import predict_series_scene
    from terramind.scene import tqdm_progress

    if getattr(args, "stac", False):
        raise InputError("--stac is not available with --series yet: run without it")
    inputs = series_inputs(args)
    grid = getattr(args, "grid", None)  # refused by scene.sources.grid_input when it names no input
    task.model.to(args.device)
    return predict_series_scene(
        task.model,
        inputs,
        task.specs,
        args.output,
        out_channels=task.out_channels,
        kind=task.kind,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch_size,
        overwrite=args.overwrite,
        progress=tqdm_progress("predict"),
        grid=grid,
        resampling=args.resampling,
        max_steps=getattr(args, "max_steps", None),
        precision=getattr(args, "precision", "auto"),
        say=_args.say_once(),
    )
