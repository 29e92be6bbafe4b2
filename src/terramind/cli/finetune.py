"""``terramind finetune fit|validate|test|predict -c config.yaml``: Lightning's CLI over our tasks.

Everything after ``finetune`` goes to :class:`lightning.pytorch.cli.LightningCLI`, so its whole surface
works (``--print_config``, ``--trainer.max_epochs=5``, ``--ckpt_path``, several ``-c`` files). The model is
any task class (``terramind.finetune.SegmentationTask``, ...) and the data any LightningDataModule, both
named by ``class_path`` in the config; see ``configs/finetune/``.

``terramind finetune scene -c config.yaml --ckpt_path best.ckpt --input S2L2A=scene.tif -o out.tif``
predicts a whole scene of any size with a fine-tuned dense model (overlapping tiles, blended); inputs on
other grids are warped onto the first input's (or ``--grid MOD``'s), ``--stac`` also writes a STAC item.
:func:`load_dense_task` is the one place a fine-tuned task is built from its config and checkpoint (also
for ``terramind batch predict``).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from terramind.cli import _args
from terramind.core.errors import TerraMindError
from terramind.core.files import check_output_path
from terramind.core.optional import require
from terramind.scene.run import DenseTask
from terramind.scene.sinks import OutputKind


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand; its arguments are passed through to LightningCLI."""
    parser = sub.add_parser(
        "finetune",
        help="fine-tune, validate, test or predict with a task config (LightningCLI); predict a whole scene",
        description="Run LightningCLI: terramind finetune {fit,validate,test,predict} -c config.yaml [...]; "
        "or predict a whole scene: terramind finetune scene --help",
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="LightningCLI's help")
    parser.add_argument("lightning_args", nargs=argparse.REMAINDER, help="arguments for LightningCLI")
    parser.set_defaults(func=run, usage_text=parser.format_help())


def cli(args: list[str], **kwargs: Any) -> Any:
    """Build and run the LightningCLI on ``args`` (``["fit", "-c", "config.yaml", ...]``).

    Args:
        args: Subcommand and options, as on the command line.
        kwargs: Extra :class:`LightningCLI` arguments (tests pass ``run=False`` etc.).

    Returns:
        The LightningCLI instance.
    """
    require("lightning", "train")
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from terramind.checkpoints.io import check_checkpoint
    from terramind.checkpoints.lightning_io import with_atomic_checkpoints

    class AtomicCheckpointsCLI(LightningCLI):
        """LightningCLI whose trainer writes checkpoints atomically (never a truncated ``.ckpt``)."""

        def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
            plugins = kwargs.get("plugins", self._get(self.config_init, "trainer", default={}).get("plugins"))
            return super().instantiate_trainer(**{**kwargs, "plugins": with_atomic_checkpoints(plugins)})

        def _parse_ckpt_path(self) -> None:
            """Refuse a ``--ckpt_path`` cut short in one line, before Lightning reads its hyperparameters."""
            subcommand = self.config.get("subcommand")
            ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt and Path(ckpt).exists():  # not "last"/"best", which Lightning resolves itself
                check_checkpoint(ckpt)
            super()._parse_ckpt_path()

    with warnings.catch_warnings():
        # we pass the arguments explicitly on purpose (they are what follows `terramind finetune`)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return AtomicCheckpointsCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            **kwargs,
        )


def _config_error(err: ValueError) -> TerraMindError | None:
    """Recover our own message from jsonargparse's wrapper around an error raised while building a class.

    jsonargparse tries each type of ``Optional[LightningModule]`` and reports all failures in one
    ValueError; the lines that are not about ``NoneType`` are what our constructors said.
    """
    text = str(err)
    if "Does not validate against any of the Union subtypes" not in text:
        return None
    reasons = [
        line.strip()[2:]
        for line in text.splitlines()
        if line.strip().startswith("- ") and "NoneType" not in line
    ]
    return TerraMindError("invalid config: " + "; ".join(reasons)) if reasons else None


def scene_parser() -> argparse.ArgumentParser:
    """Build the parser of ``terramind finetune scene`` (the rest of ``finetune`` is LightningCLI's)."""
    p = _args.Parser(
        prog="terramind finetune scene",
        description="Predict a whole scene with a fine-tuned dense model (overlapping tiles, blended).",
    )
    _args.add_task_checkpoint(p)
    _args.add_scene_inputs(p)
    _args.add_grid(p)
    _args.add_resampling(p)
    _args.add_output(p, "GeoTIFF to write")
    _args.add_tiling(p)
    _args.add_batch_size(p)
    _args.add_device(p)
    _args.add_overwrite(p)
    _args.add_stac(p)
    return p


def load_dense_task(config: Sequence[str | Path], ckpt_path: str | Path, *, command: str) -> DenseTask:
    """Build a fine-tuned dense task from its config file(s) and load the weights of a ``fit`` checkpoint.

    The checkpoint is read first, so a cut-short one fails before the model is built.

    Args:
        config: The task's config file(s), as given to ``-c`` (later files override earlier ones).
        ckpt_path: A checkpoint written by ``finetune fit``.
        command: The command, for the message when the config is not a dense task.

    Returns:
        The model, the datamodule's input specs, the output channels and the output kind.

    Raises:
        CheckpointError: The checkpoint is missing, cut short or not a training checkpoint.
        TerraMindError: The config is not a SegmentationTask/RegressionTask with a GeoTiffDataModule.
    """
    require("lightning", "train")
    from terramind.checkpoints.io import read_training_checkpoint
    from terramind.finetune.datamodule import GeoTiffDataModule
    from terramind.finetune.tasks import RegressionTask, SegmentationTask

    state = read_training_checkpoint(ckpt_path)
    built = cli([arg for c in config for arg in ("-c", str(c))], run=False)
    task, data = built.model, built.datamodule
    if not isinstance(task, (SegmentationTask, RegressionTask)) or not isinstance(data, GeoTiffDataModule):
        raise TerraMindError(f"{command} needs a SegmentationTask or RegressionTask with a GeoTiffDataModule")
    task.load_state_dict(state)
    kind: OutputKind = "classes" if isinstance(task, SegmentationTask) else "values"
    return DenseTask(task.model, data.inputs, task.model.out_channels, kind)


def _say_once(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say`` that passes each distinct line on once."""
    said: set[str] = set()

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            say(line)

    return once


def scene(argv: list[str]) -> Path:
    """``finetune scene``: build the task from its config, load a checkpoint, predict a whole scene.

    Returns:
        The written GeoTIFF.
    """
    args = scene_parser().parse_args(argv)
    _args.run_checks(args)
    from terramind.finetune.scene import predict_scene
    from terramind.scene import scan_scene, tqdm_progress
    from terramind.scene.stac_item import item_path

    say = _say_once(_args.note)  # scan_scene and predict_scene see the same warps: say each once
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
        say=say,
    )
    if args.stac:
        settings = {"config": [str(c) for c in args.config], "ckpt_path": str(args.ckpt_path),
                    "kind": task.kind, "resampling": args.resampling}  # fmt: skip
        _args.write_stac(args, item_path(args.output, folder=False), [path], georef, settings)
    return path


def run(args: argparse.Namespace) -> int:
    """Run LightningCLI with the forwarded arguments; config errors become one-line messages."""
    if args.lightning_args[:1] == ["scene"]:
        print(f"wrote {scene(list(args.lightning_args[1:]))}")
        return 0
    if args.help or not args.lightning_args:
        try:
            require("lightning.pytorch.cli", "train")
        except TerraMindError as err:  # a base install: our help, and how to get LightningCLI's
            print(f"{args.usage_text}\nLightningCLI's options need the train extra: {err}")
            return 0
    try:
        cli(list(args.lightning_args) if args.lightning_args and not args.help else ["--help"])
    except ValueError as err:
        wrapped = _config_error(err)
        if wrapped is None:
            raise
        raise wrapped from err
    return 0
