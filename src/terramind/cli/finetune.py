"""``terramind finetune fit|validate|test|predict -c config.yaml``: Lightning's CLI over our tasks.

Everything after ``finetune`` goes to :class:`lightning.pytorch.cli.LightningCLI`, so its whole surface
works (``--print_config``, ``--trainer.max_epochs=5``, ``--ckpt_path``, several ``-c`` files). The model is
any task class (``terramind.finetune.SegmentationTask``, ...) and the data any LightningDataModule, both
named by ``class_path`` in the config; see ``configs/finetune/``.
"""

from __future__ import annotations

import argparse
from typing import Any

from terramind.core.errors import TerraMindError
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand; its arguments are passed through to LightningCLI."""
    parser = sub.add_parser(
        "finetune",
        help="fine-tune, validate, test or predict with a task config (LightningCLI)",
        description="Run LightningCLI: terramind finetune {fit,validate,test,predict} -c config.yaml [...]",
        add_help=False,
    )
    parser.add_argument("lightning_args", nargs=argparse.REMAINDER, help="arguments for LightningCLI")
    parser.set_defaults(func=run)


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

    return LightningCLI(
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


def run(args: argparse.Namespace) -> int:
    """Run LightningCLI with the forwarded arguments; config errors become one-line messages."""
    try:
        cli(list(args.lightning_args) or ["--help"])
    except ValueError as err:
        wrapped = _config_error(err)
        if wrapped is None:
            raise
        raise wrapped from err
    return 0
