"""Frozen run configurations for pretraining, loaded from YAML with strict key checking.

A YAML file maps one-to-one onto these dataclasses (nested sections are nested dataclasses); an unknown or
misspelt key is an error naming the valid keys, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import glob
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from terramind.core.errors import InputError
from terramind.modalities import Catalog, ModalitySpec, SensorSpec, pixel_modality, with_sensors

T = TypeVar("T")


@dataclass(frozen=True)
class ModalityEntry:
    """One modality of a pretraining run.

    Attributes:
        name: Catalog name (``S2L2A``) or, for a new sensor, any name with ``channels`` set.
        input: How it enters the encoder: ``"pixel"`` (raw patches), ``"token"`` (stored ids) or ``"none"``.
        target: Whether its stored token ids are prediction targets (catalog token modalities only).
        input_alpha: Dirichlet concentration of its input share.
        target_alpha: Dirichlet concentration of its target share.
        channels: Channels of a new pixel modality (not in the catalog); None for catalog modalities.
        mean: Per-band mean of a new pixel modality (standardisation); catalog modalities use the catalog.
        std: Per-band std of a new pixel modality.
    """

    name: str
    input: str = "pixel"
    target: bool = True
    input_alpha: float = 0.5
    target_alpha: float = 0.5
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.input not in ("pixel", "token", "none"):
            raise InputError(
                f"modality {self.name}: input must be 'pixel', 'token' or 'none', got {self.input!r}"
            )
        if self.channels is not None and (self.target or self.input != "pixel"):
            raise InputError(
                f"new modality {self.name} (channels={self.channels}) can only be a pixel input: set "
                f"input: pixel and target: false (a new target needs its own tokenizer in the catalog)"
            )
        if self.channels is not None and (
            self.mean is None
            or self.std is None
            or len(self.mean) != self.channels
            or len(self.std) != self.channels
        ):
            raise InputError(f"new modality {self.name}: give mean and std with {self.channels} values each")

    def sensor(self) -> ModalitySpec | None:
        """Return the record of a new modality given inline (bands ``B1``..), None for others."""
        if self.channels is None:
            return None
        assert self.mean is not None and self.std is not None  # checked in __post_init__
        bands = [f"B{i + 1}" for i in range(self.channels)]
        return pixel_modality(self.name, bands, self.mean, self.std)


@dataclass(frozen=True)
class ModelSection:
    """Which model to train.

    Attributes:
        size: Released size (``tiny``, ``small``, ``base``, ``large``).
        overrides: Fields of :class:`~terramind.model.TerraMindConfig` to replace (e.g. a smaller ``dim``).
        init_from: Official or earlier weights (``.pt``/``.safetensors``) for continual pretraining.
        activation_checkpointing: Recompute encoder/decoder block activations in the backward pass.
    """

    size: str = "tiny"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class MaskingSection:
    """Token budgets per sample (4M-B, arXiv 2312.06647, used 128 and 128)."""

    num_input_tokens: int = 128
    num_target_tokens: int = 128


@dataclass(frozen=True)
class OptimSection:
    """AdamW with linear warmup and cosine decay.

    Attributes:
        lr: Peak learning rate.
        weight_decay: Decay of weight matrices (norms, biases and embeddings get none).
        betas: AdamW betas.
        warmup_steps: Linear warmup length.
        min_lr_ratio: Final learning rate as a fraction of ``lr``.
        clip_grad: Gradient-norm clipping (0: off).
        ema_decay: Exponential moving average of the weights (None: off).
    """

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    clip_grad: float = 1.0
    ema_decay: float | None = None


SOURCES = ("shards", "terramesh", "geotiff")
"""Where a run reads its samples: ``prepare`` shards, the TerraMesh release layout, or a GeoTIFF folder."""
SUBSETS = ("majortom", "ssl4eos12", "combined")
"""TerraMesh source subsets (``data/terramesh.py``)."""


@dataclass(frozen=True)
class DataSection:
    """Where the samples are and how to read them.

    Attributes:
        source: ``shards`` (``terramind prepare`` output), ``terramesh`` (the release layout under ``root``)
            or ``geotiff`` (a folder of modality folders under ``root``, like ``examples/``).
        shards: Glob of shard files (``shards/*.tar``) or a list of them (``source: shards``).
        root: TerraMesh root (holding ``train/`` and ``val/``) or GeoTIFF folder.
        split: TerraMesh split, ``train`` or ``val``.
        subset: TerraMesh subset: ``majortom``, ``ssl4eos12`` or ``combined``.
        modalities: TerraMesh folders to read; empty: the run's modalities.
        tokenize: Modality -> tokenizer that computes its token ids on the fly, batched on the training
            device (frozen): ``hub``, ``random``, a weights file or a ``train-tokenizer`` output folder;
            needed for each target and token input whose ids the source does not store (all, for TerraMesh).
        batch_size: Samples per step and rank.
        crop: Crop size in pixels (multiple of 16).
        shuffle_buffer: Samples held for shuffling per reader.
        num_workers: DataLoader workers per rank.
        max_skip_fraction: Fail once more samples than this fraction were unusable.
    """

    source: str = "shards"
    shards: str | tuple[str, ...] = "shards/*.tar"
    root: str | None = None
    split: str = "train"
    subset: str = "combined"
    modalities: tuple[str, ...] = ()
    tokenize: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 8
    crop: int = 224
    shuffle_buffer: int = 64
    num_workers: int = 0
    max_skip_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InputError(f"source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.source != "shards" and not self.root:
            raise InputError(f"root is required for source: {self.source}")
        if self.subset not in SUBSETS:
            raise InputError(f"subset must be one of {list(SUBSETS)}, got {self.subset!r}")
        if self.split not in ("train", "val"):
            raise InputError(f"split must be 'train' or 'val', got {self.split!r}")

    def shard_files(self) -> tuple[str, ...]:
        """Return the shard files (``shards`` as a glob or a list), refusing an empty set."""
        shards = tuple(sorted(glob.glob(self.shards))) if isinstance(self.shards, str) else self.shards
        if not shards:
            raise InputError(f"no shards match {self.shards!r}: run `terramind prepare` first")
        return shards


@dataclass(frozen=True)
class TrainerSection:
    """The Lightning engine: devices, strategy, precision, steps, logging and checkpoints.

    Attributes:
        max_steps: Optimizer steps.
        accelerator: ``cpu``, ``gpu``, ``auto``.
        devices: Devices per node (int or ``auto``).
        num_nodes: Nodes (SLURM/torchrun fill in ranks).
        strategy: ``auto``, ``ddp``, ``fsdp``.
        precision: ``32-true``, ``bf16-mixed``, ``16-mixed``.
        out_dir: Run folder (checkpoints, logs).
        logger: ``csv`` or ``tensorboard``.
        log_every: Steps between log lines.
        checkpoint_every: Steps between checkpoints (``last.ckpt`` always updated).
        progress_bar: Rich progress bar with tokens/s.
    """

    max_steps: int = 1000
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    out_dir: str = "runs/pretrain"
    logger: str = "csv"
    log_every: int = 10
    checkpoint_every: int = 100
    progress_bar: bool = True


@dataclass(frozen=True)
class PretrainConfig:
    """A whole pretraining run.

    Attributes:
        modalities: The modalities, their roles and Dirichlet weights.
        model: Model size and initialisation.
        masking: Token budgets.
        optim: Optimiser and schedule.
        data: Shards and reading.
        trainer: Engine settings.
        loss: ``mod`` (mean over modalities of their mean token loss, the official default) or ``token``.
        seed: Seed of weights, masks and data order.
        sensors: New sensors (registered for this run only) that ``modalities`` may name as pixel inputs.
    """

    modalities: tuple[ModalityEntry, ...]
    model: ModelSection = ModelSection()
    masking: MaskingSection = MaskingSection()
    optim: OptimSection = OptimSection()
    data: DataSection = DataSection()
    trainer: TrainerSection = TrainerSection()
    loss: str = "mod"
    seed: int = 0
    sensors: tuple[SensorSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.loss not in ("mod", "token"):
            raise InputError(f"loss must be 'mod' or 'token', got {self.loss!r}")
        if not self.modalities:
            raise InputError("give at least one modality")
        self.catalog()  # a sensor name that collides with a catalog name fails where the config is read

    def catalog(self) -> Catalog:
        """Return the catalog of this run: the current one plus its sensors and inline new modalities.

        Raises:
            ModalityError: A sensor whose statistics do not match its bands, or a name already taken.
        """
        inline = [s for s in (e.sensor() for e in self.modalities) if s is not None]
        return with_sensors([*self.sensors, *inline])


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Turn plain YAML values into the annotated type (dataclasses, tuples), recursively."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(tp)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if inner is None:
            return tuple(_convert(a, v, where) for a, v in zip(args, value, strict=True))
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            structured = typing.get_origin(arg) is tuple or dataclasses.is_dataclass(arg)
            if structured and isinstance(value, list | tuple | Mapping):
                return _convert(arg, value, where)
    return value


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "config") -> T:
    """Build a config dataclass from a mapping, refusing unknown keys.

    Args:
        cls: The dataclass.
        values: Its fields.
        where: Path of this section in the file, for error messages.

    Returns:
        The instance.
    """
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InputError(f"{where}: {err}") from err
    except InputError as err:  # a value __post_init__ refused: say in which file
        if str(err).startswith(where):
            raise
        raise type(err)(f"{where}: {err}") from err


def _read(file: Path) -> dict[str, Any]:
    """One YAML file as a mapping."""
    if not file.is_file():
        raise InputError(f"config file {str(file)!r} does not exist")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{file}: not valid YAML: {err}") from err
    if not isinstance(values, Mapping):
        raise InputError(f"{file}: expected a mapping of sections, got {type(values).__name__}")
    return dict(values)


def _check_keys(cls: Any, values: Mapping[str, Any], where: str) -> None:
    """Refuse unknown keys of one file, section by section (before merging hides which file said them)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(values) - names:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            _check_keys(hints[key], value, f"{where}.{key}")


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` into ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        old = merged.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        merged[key] = deep_merge(old, value) if both else value  # type: ignore[arg-type]
    return merged


def load_yaml(cls: type[T], path: str | Path, *overlays: str | Path) -> T:
    """Read a YAML file, and overlays deep-merged over it in order (later wins), into the dataclass ``cls``.

    Args:
        cls: The config dataclass.
        path: The base file.
        overlays: Files whose values replace the base's (mappings merge, lists and scalars are replaced).

    Raises:
        InputError: A missing or invalid file, or an unknown key (naming the file and the section).
    """
    files = [Path(p) for p in (path, *overlays)]
    merged: dict[str, Any] = {}
    for file in files:
        values = _read(file)
        _check_keys(cls, values, str(file))
        merged = deep_merge(merged, values)
    return from_dict(cls, merged, " + ".join(str(f) for f in files))


def to_dict(config: object) -> dict[str, Any]:
    """Plain-data form of a config: dicts, lists and scalars.

    YAML-ready, and saved in checkpoints to detect a resume with another configuration.
    """
    assert dataclasses.is_dataclass(config) and not isinstance(config, type)
    return plain(dataclasses.asdict(config))


def plain(value: Any) -> Any:
    """Turn tuples into lists, recursively: YAML has no tuples, and checkpoints may hold either."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
