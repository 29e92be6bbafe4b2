"""The fine-tuning runner: ``fit``, ``validate``, ``test`` and ``predict`` of a :class:`FinetuneConfig`.

A thin layer over the trainer engine that pretraining and tokenizer training use
(:mod:`terramind.train.engine`): the same trainer builder, atomic checkpoints, ``--resume last`` and run
identity. :func:`build` makes the task and datamodule from the config's tables; every checkpoint records
the sections that define the model (:data:`IDENTITY`), and resuming, validating, testing or predicting
from a checkpoint another config wrote fails in one line before any step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from terramind.checkpoints.io import (
    READ_ERRORS,
    RESUME_ADVICE,
    check_checkpoint,
    read_training_checkpoint,
    unreadable,
)
from terramind.core.errors import CheckpointError, InputError
from terramind.finetune.backbone import Backbone
from terramind.finetune.config import DATA, TASKS, FinetuneConfig
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.writer import GeoTiffPredictionWriter
from terramind.train.config import load_yaml
from terramind.train.engine import build_trainer, check_identity, fit, record_identity, resume_path

COMMANDS = ("fit", "validate", "test", "predict")
IDENTITY = ("task", "backbone", "temporal", "sensors")
"""Sections a checkpoint must share with the config that loads it: they define the model's weights."""


def build(config: FinetuneConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    """Build the task (with its backbone) and the datamodule of a config.

    Returns:
        ``(task, datamodule)``; the datamodule reads the backbone's input modalities.
    """
    sensors = list(config.sensors) or None
    encoder = Backbone(**config.kwargs("backbone"), sensors=sensors)
    backbone: torch.nn.Module = encoder
    if config.temporal is not None:
        backbone = TemporalBackbone(encoder, **config.kwargs("temporal"))
    task = TASKS[config.task["kind"]](backbone, **config.kwargs("task"))
    data = DATA[config.data["kind"]](modalities=encoder.modalities, sensors=sensors, **config.kwargs("data"))
    return task, data


class RunIdentity(Callback):
    """Record the run identity (:data:`IDENTITY`) in every checkpoint the trainer writes."""

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Store the identity sections of the config."""
        record_identity(checkpoint, self.config, IDENTITY)


def check_run_checkpoint(path: str | Path, config: FinetuneConfig) -> None:
    """Refuse, in one line and before any model is built, a checkpoint cut short or written by another config.

    Raises:
        CheckpointError: Unreadable, not a fine-tuning checkpoint, or its identity sections differ.
    """
    p = check_checkpoint(path)
    try:  # memory-mapped: the identity record is read without loading the weights
        checkpoint = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except READ_ERRORS as err:
        raise unreadable(p, err, what="checkpoint", advice=RESUME_ADVICE) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {str(p)!r} is not a training checkpoint")
    check_identity(checkpoint, config, IDENTITY, "fine-tuning")


def run(
    config: FinetuneConfig, command: str, *, ckpt_path: str | Path | None = None, resume: str | None = None
) -> L.Trainer:
    """Run one fine-tuning command.

    Args:
        config: The run.
        command: ``fit``, ``validate``, ``test`` or ``predict``.
        ckpt_path: The weights of ``validate``/``test``/``predict`` (a ``fit`` checkpoint).
        resume: ``fit`` only: a checkpoint path or ``"last"`` (``<out_dir>/checkpoints/last.ckpt``).

    Returns:
        The trainer, after the command.
    """
    if command not in COMMANDS:
        raise InputError(f"command must be one of {list(COMMANDS)}, got {command!r}")
    checkpoint = resume_path(config.trainer, resume) if command == "fit" else ckpt_path
    if checkpoint is not None:
        check_run_checkpoint(checkpoint, config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    task, data = build(config)
    callbacks: list[Callback] = [RunIdentity(config)]
    if command == "fit":
        return fit(task, config.trainer, clip_grad=0.0, callbacks=callbacks, resume=resume, datamodule=data)
    if command == "predict":
        out = config.predict.output_dir or str(Path(config.trainer.out_dir) / "predictions")
        callbacks.append(GeoTiffPredictionWriter(out, overwrite=config.predict.overwrite))
    trainer = build_trainer(config.trainer, 0.0, callbacks, sampler=True)
    getattr(trainer, command)(task, datamodule=data, ckpt_path=checkpoint)
    return trainer


@dataclass(frozen=True)
class LoadedTask:
    """A fine-tuned task built from its config and loaded with a checkpoint's weights.

    Attributes:
        task: The task (its ``model`` maps inputs to outputs).
        data: The datamodule (its ``inputs`` say how each modality is read and standardised).
        config: The merged config.
    """

    task: L.LightningModule
    data: L.LightningDataModule
    config: FinetuneConfig


def load_task(files: Sequence[str | Path], ckpt_path: str | Path) -> LoadedTask:
    """Build a task from its config file(s) and load the weights of a ``fit`` checkpoint.

    The checkpoint is read first, so a cut-short one fails before the model is built.

    Args:
        files: The config file(s), base first (as given to ``-c``).
        ckpt_path: A checkpoint written by ``finetune fit``.

    Raises:
        CheckpointError: The checkpoint is missing, cut short, or does not fit the config's task.
    """
    state = read_training_checkpoint(ckpt_path)
    config = load_yaml(FinetuneConfig, *files)
    task, data = build(config)
    try:
        task.load_state_dict(state)
    except RuntimeError as err:  # missing, unexpected or mis-shaped weights
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {str(ckpt_path)!r} does not fit the config's task: {first}"
        ) from err
    return LoadedTask(task, data, config)
