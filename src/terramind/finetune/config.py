"""A fine-tuning run as one frozen config, read with the same strict YAML reader as pretraining.

One dialect for the three trainers (:mod:`terramind.train.config`): ``-c base.yaml -c overlay.yaml`` merge
key by key, ``--set SECTION.KEY=VALUE`` comes last, an unknown key names the file, the section and the valid
keys. A run has::

    seed: 0
    task: {kind: segmentation, num_classes: 2, loss: dice, ...}      # the task's constructor arguments
    backbone: {name: terramind_v1_base, weights: hub, modalities: [S1GRD], ...}
    temporal: {aggregator: mean, ...}     # optional: a time-series backbone around the encoder
    data: {kind: geotiff, data_root: /data, ...}                     # the datamodule's arguments
    trainer: {max_epochs: 100, monitor: val/mIoU, monitor_mode: max, ...}   # the engine's TrainerSection
    predict: {output_dir: runs/x/predictions}                         # where ``finetune predict`` writes
    sensors: [...]                        # new sensors, given to the backbone and the datamodule

``kind`` picks the class from a table (:data:`TASKS`, :data:`DATA`); the other keys of ``task``,
``backbone``, ``temporal`` and ``data`` are that constructor's keyword arguments, checked against its
signature, so the constructors are the schema's one home. Arguments the runner fills itself (the backbone
of a task, the encoder of a temporal backbone, the datamodule's ``modalities`` from the backbone's, and
``sensors``) are not keys of those sections. No class paths appear in user files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from terramind.core.errors import InputError
from terramind.finetune.backbone import Backbone
from terramind.finetune.datamodule import GeoTiffDataModule
from terramind.finetune.tasks import ClassificationTask, RegressionTask, SegmentationTask
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import ChangeDetectionTask, TemporalSegmentationTask
from terramind.modalities import SensorSpec, with_sensors
from terramind.train.config import TrainerSection, check_arguments

TASKS: dict[str, type] = {
    "segmentation": SegmentationTask,
    "regression": RegressionTask,
    "classification": ClassificationTask,
    "temporal_segmentation": TemporalSegmentationTask,
    "change_detection": ChangeDetectionTask,
}
"""``task.kind`` -> task class."""
DATA: dict[str, type] = {"geotiff": GeoTiffDataModule, "temporal": TemporalDataModule}
"""``data.kind`` -> datamodule class."""
TEMPORAL_TASKS = frozenset({"temporal_segmentation", "change_detection"})
"""Task kinds whose backbone is a :class:`TemporalBackbone` (a ``temporal:`` section)."""

# Arguments the runner supplies, per section: not keys of the user's file.
FILLED: dict[str, tuple[str, ...]] = {
    "task": ("backbone",),
    "backbone": ("sensors",),
    "temporal": ("encoder",),
    "data": ("modalities", "sensors"),
}
# The section's constructor, given the merged config (None: the kind is unknown, reported elsewhere).
TARGETS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "task": lambda c: TASKS.get(c.get("task", {}).get("kind")),
    "backbone": lambda c: Backbone,
    "temporal": lambda c: TemporalBackbone,
    "data": lambda c: DATA.get(c.get("data", {}).get("kind")),
}
KINDS: dict[str, dict[str, type]] = {"task": TASKS, "data": DATA}


@dataclass(frozen=True)
class FinetuneTrainerSection(TrainerSection):
    """:class:`~terramind.train.config.TrainerSection` with fine-tuning's defaults.

    The same keys as pretraining's; only defaults differ: epochs rather than steps bound the run
    (``max_steps: -1``), each epoch is validated, and ``last.ckpt`` is written per epoch without numbered
    step checkpoints (``checkpoint_every: 0``; set ``monitor`` to keep the best one too).
    """

    max_steps: int = -1
    out_dir: str = "runs/finetune"
    checkpoint_every: int = 0
    validate: bool = True


@dataclass(frozen=True)
class PredictSection:
    """Where ``finetune predict`` writes (:class:`terramind.finetune.GeoTiffPredictionWriter`).

    Attributes:
        output_dir: Folder of ``<input stem>_pred.tif`` files and ``predictions.csv``; None:
            ``<trainer.out_dir>/predictions``.
        overwrite: Replace existing outputs.
    """

    output_dir: str | None = None
    overwrite: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    """A whole fine-tuning run (see the module docstring for the layout).

    Attributes:
        task: ``kind`` (a :data:`TASKS` name) and the task's keyword arguments.
        backbone: :class:`~terramind.finetune.Backbone`'s keyword arguments.
        data: ``kind`` (a :data:`DATA` name) and the datamodule's keyword arguments.
        temporal: :class:`~terramind.finetune.temporal.TemporalBackbone`'s keyword arguments, wrapping the
            backbone (time-series tasks); None: a single-date backbone.
        trainer: Engine settings.
        predict: Output of ``finetune predict``.
        seed: Seed of weights, data order and augmentations (``seed_everything``).
        sensors: New sensors ``backbone.modalities`` may name, given to the backbone and the datamodule.
    """

    task: Mapping[str, Any]
    backbone: Mapping[str, Any]
    data: Mapping[str, Any]
    temporal: Mapping[str, Any] | None = None
    trainer: FinetuneTrainerSection = FinetuneTrainerSection()
    predict: PredictSection = PredictSection()
    seed: int = 0
    sensors: tuple[SensorSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        for section in TARGETS:
            if not isinstance(getattr(self, section), Mapping | None):
                raise InputError(
                    f"{section}: expected a mapping of arguments, got {getattr(self, section)!r}"
                )
        for section, table in KINDS.items():
            kind = getattr(self, section).get("kind")
            if kind not in table:
                raise InputError(f"{section}.kind must be one of {sorted(table)}, got {kind!r}")
        temporal = self.task["kind"] in TEMPORAL_TASKS
        if temporal != (self.temporal is not None):
            need = "needs" if temporal else "takes no"
            raise InputError(
                f"task kind {self.task['kind']} {need} a temporal: section (the time-series backbone)"
            )
        merged = {"task": self.task, "data": self.data}
        for section in ("task", "backbone", "temporal", "data"):
            values = getattr(self, section)
            if values is not None:
                check_arguments(
                    TARGETS[section](merged), values, section, filled=FILLED[section], extra=_extra(section)
                )
        with_sensors(list(self.sensors))  # a sensor named like a catalog modality fails where it is read

    @classmethod
    def check_layer(cls, values: Mapping[str, Any], merged: Mapping[str, Any], where: str) -> None:
        """Refuse keys of one file that are no argument of the constructor its merged ``kind`` names."""
        for section, target in TARGETS.items():
            found, kind_of = values.get(section), target(merged)
            if isinstance(found, Mapping) and kind_of is not None:
                check_arguments(
                    kind_of,
                    found,
                    f"{where}.{section}",
                    filled=FILLED[section],
                    extra=_extra(section),
                    complete=False,
                )

    def kwargs(self, section: str) -> dict[str, Any]:
        """Return a section's keyword arguments (without ``kind``); empty for an absent section."""
        values = getattr(self, section)
        return arguments(values, section) if values is not None else {}


def _extra(section: str) -> tuple[str, ...]:
    """Keys of a section besides its constructor's arguments: ``kind`` where a table picks the class."""
    return ("kind",) if section in KINDS else ()


def arguments(values: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Return a section's keyword arguments: its values without ``kind`` where a table picks the class."""
    return {k: v for k, v in values.items() if not (k == "kind" and section in KINDS)}
