"""``terramind finetune fit|validate|test|predict -c config.yaml``: fine-tune a task; ``scene``: whole scenes.

The config is the one dialect of every trainer (:mod:`terramind.finetune.config`, read like ``pretrain``'s):
several ``-c`` files merge in order, ``--set SECTION.KEY=VALUE`` comes last, ``--print-config`` shows the
merged result. ``fit`` resumes with ``--resume last`` or a path; ``validate``, ``test`` and ``predict`` load
``--ckpt_path``. A checkpoint written by another config is refused in one line before any step.

``terramind finetune scene -c config.yaml --ckpt_path best.ckpt --input S2L2A=scene.tif -o out.tif``
predicts a whole scene of any size with a fine-tuned dense model (overlapping tiles, blended); inputs on
other grids are warped onto the first input's (or ``--grid MOD``'s), ``--stac`` also writes a STAC item.
:func:`load_dense_task` is the one place a fine-tuned dense task is built from its config and checkpoint
(also for ``terramind batch predict``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from terramind.cli import _args
from terramind.core.errors import TerraMindError
from terramind.core.files import check_output_path
from terramind.core.optional import require
from terramind.scene.run import DenseTask
from terramind.scene.sinks import OutputKind

SCENE_DESCRIPTION = "Predict a whole scene with a fine-tuned dense model (overlapping tiles, blended)."
COMMANDS = {
    "validate": "validate a checkpoint on the validation split",
    "test": "test a checkpoint on the test split",
    "predict": "predict the predict split with a checkpoint (GeoTIFFs into predict.output_dir)",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` with its commands ``fit``, ``validate``, ``test``, ``predict`` and ``scene``."""
    parser = sub.add_parser(
        "finetune",
        help="fine-tune, validate, test or predict with a task config; predict a whole scene",
        description="Fine-tune TerraMind on a task (see configs/finetune/): terramind finetune "
        "{fit,validate,test,predict} -c config.yaml [...]; or predict a whole scene: finetune scene.",
    )
    commands = parser.add_subparsers(dest="finetune_command", metavar="COMMAND", required=True)
    fit = commands.add_parser(
        "fit",
        help="train the task (needs terramind[train])",
        description="Fine-tune a task config; checkpoints go to <trainer.out_dir>/checkpoints.",
    )
    _args.add_training_configs(fit)
    fit.set_defaults(func=run)
    for name, text in COMMANDS.items():
        p = commands.add_parser(name, help=f"{text} (needs terramind[train])", description=f"{text}.")
        _args.add_task_checkpoint(p)
        _args.add_config_overrides(p)
        p.set_defaults(func=run)
    scene_command = commands.add_parser("scene", help=SCENE_DESCRIPTION, description=SCENE_DESCRIPTION)
    add_scene_options(scene_command)
    scene_command.set_defaults(func=run_scene)


def run(args: argparse.Namespace) -> int:
    """Load the config and run ``fit``, ``validate``, ``test`` or ``predict`` (or print the config)."""
    config = _args.load_training_configs(args, "terramind.finetune.config", "FinetuneConfig")
    if _args.print_config(args, config):
        return 0
    from terramind.finetune.run import run as run_task

    run_task(config, args.finetune_command, ckpt_path=getattr(args, "ckpt_path", None), resume=args.resume
             if args.finetune_command == "fit" else None)  # fmt: skip
    return 0


def add_scene_options(p: argparse.ArgumentParser) -> None:
    """Add the options of ``terramind finetune scene``."""
    _args.add_task_checkpoint(p)
    _args.add_scene_inputs(p, required=False)
    _args.add_series(p, required=False)
    _args.add_max_dates(p)
    _args.add_grid(p)
    _args.add_resampling(p)
    _args.add_output(p, "GeoTIFF to write")
    _args.add_tiling(p)
    _args.add_batch_size(p)
    _args.add_device(p)
    _args.add_overwrite(p)
    _args.add_stac(p)
    _args.add_precision(p)
    _args.add_check(p, _check_scene_inputs)


def _check_scene_inputs(args: argparse.Namespace) -> None:
    if not args.input and not args.series:
        raise TerraMindError("give the scene as --input MOD=PATH, or a time series as --series MOD=PATH")


def scene_parser() -> argparse.ArgumentParser:
    """Build a stand-alone parser of ``terramind finetune scene`` (what ``finetune scene`` parses)."""
    p = _args.Parser(prog="terramind finetune scene", description=SCENE_DESCRIPTION)
    add_scene_options(p)
    return p


def load_dense_task(config: Sequence[str | Path], ckpt_path: str | Path, *, command: str) -> DenseTask:
    """Build a fine-tuned dense task from its config file(s) and load the weights of a ``fit`` checkpoint.

    The checkpoint is read first, so a cut-short one fails before the model is built. Time-series tasks
    (``temporal_segmentation``, ``change_detection``) load too: their model takes a series; the task and
    datamodule themselves come from :func:`terramind.finetune.run.load_task`.

    Args:
        config: The task's config file(s), as given to ``-c`` (later files override earlier ones).
        ckpt_path: A checkpoint written by ``finetune fit``.
        command: The command, for the message when the config is not a dense task.

    Returns:
        The model, the datamodule's input specs, the output channels and the output kind.

    Raises:
        CheckpointError: The checkpoint is missing, cut short or not a training checkpoint.
        TerraMindError: The config's task is not dense (classification).
    """
    require("lightning", "train")
    from terramind.finetune.run import load_task
    from terramind.finetune.tasks import RegressionTask, SegmentationTask

    loaded = load_task(config, ckpt_path)
    task = loaded.task
    if not isinstance(task, SegmentationTask | RegressionTask):
        raise TerraMindError(
            f"{command} needs a dense task (task kind segmentation, regression, temporal_segmentation or "
            f"change_detection), got {loaded.config.task['kind']}"
        )
    dense = getattr(task.model, "dense", task.model)  # a time-series model wraps the single-date one
    kind: OutputKind = "classes" if isinstance(task, SegmentationTask) else "values"
    return DenseTask(task.model, loaded.data.inputs, dense.out_channels, kind)  # type: ignore[attr-defined]


def scene(args: argparse.Namespace) -> Path:
    """``finetune scene``: build the task from its config, load a checkpoint, predict a whole scene.

    Returns:
        The written GeoTIFF.
    """
    from terramind.finetune.scene import predict_scene
    from terramind.scene import scan_scene, tqdm_progress
    from terramind.scene.stac_item import item_path

    if args.series:
        from terramind.cli._series_scene import run_series_scene

        return run_series_scene(args, load_dense_task(args.config, args.ckpt_path, command="finetune scene"))
    say = _args.say_once()  # scan_scene and predict_scene see the same warps: say each once
    # every window read and checked before the model is built
    georef = scan_scene(args.input, grid=args.grid, resampling=args.resampling, say=say)
    if args.stac:
        check_output_path(item_path(args.output, folder=False), overwrite=args.overwrite)
    task = load_dense_task(args.config, args.ckpt_path, command="finetune scene")
    task.model.to(args.device)
    path = predict_scene(
        task.model,
        args.input,
        task.specs,
        args.output,
        out_channels=task.out_channels,
        kind=task.kind,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch_size,
        overwrite=args.overwrite,
        progress=tqdm_progress("predict"),
        grid=args.grid,
        resampling=args.resampling,
        precision=args.precision,
        say=say,
    )
    if args.stac:
        settings = {"config": [str(c) for c in args.config], "ckpt_path": str(args.ckpt_path),
                    "kind": task.kind, "resampling": args.resampling}  # fmt: skip
        _args.write_stac(args, item_path(args.output, folder=False), [path], georef, settings)
    return path


def run_scene(args: argparse.Namespace) -> int:
    """Run ``finetune scene`` and name the written file."""
    print(f"wrote {scene(args)}")
    return 0
