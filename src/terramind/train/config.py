"""Frozen run configurations, loaded from YAML with strict key checking: the one config dialect.

Pretraining, tokenizer training and fine-tuning read their YAML here. A file maps one-to-one onto frozen
dataclasses (nested sections are nested dataclasses; a section whose keys are a constructor's arguments,
like fine-tuning's ``task:``, is checked against that constructor's signature); an unknown or misspelt key
is an error naming the file, the section and the valid keys, never silently ignored. Several files merge
in order (``-c base.yaml -c more.yaml``, then ``--set SECTION.KEY=VALUE``): mappings key by key, anything
else replaced. All three share :class:`TrainerSection`, run by :mod:`terramind.train.engine`.
"""

from __future__ import annotations

import dataclasses
import glob
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
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
class EarlyStoppingSection:
    """Stop when a logged metric has not improved for ``patience`` validations.

    Attributes:
        monitor: The metric (``val/loss``, ``val/mIoU``).
        patience: Validations without improvement before stopping.
        mode: ``min`` (lower is better) or ``max``.
        min_delta: Smallest change that counts as an improvement.
    """

    monitor: str = "val/loss"
    patience: int = 20
    mode: str = "min"
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        _one_of("mode", self.mode, MONITOR_MODES)


LOGGERS = ("csv", "tensorboard", "none")
MONITOR_MODES = ("min", "max")
LR_MONITOR = ("step", "epoch")


def _one_of(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class TrainerSection:
    """The Lightning engine of every trainer (pretraining, tokenizer training, fine-tuning).

    Attributes:
        max_steps: Optimizer steps (-1: no step limit, ``max_epochs`` decides).
        max_epochs: Passes over the data (None: Lightning's default, 1000 when ``max_steps`` is -1).
        accelerator: ``cpu``, ``gpu``, ``auto``.
        devices: Devices per node (int or ``auto``).
        num_nodes: Nodes (SLURM/torchrun fill in ranks).
        strategy: ``auto``, ``ddp``, ``fsdp``.
        precision: ``32-true``, ``bf16-mixed``, ``16-mixed``.
        out_dir: Run folder (checkpoints, logs).
        logger: ``csv``, ``tensorboard`` or ``none``.
        log_every: Steps between log lines.
        checkpoint_every: Steps between ``step{N}.ckpt`` checkpoints (0: none; ``last.ckpt`` is always
            written, at these steps or else at the end of each epoch). Not with ``monitor``.
        progress_bar: Rich progress bar with tokens/s.
        validate: Run the validation loop after each epoch (fine-tuning; pretraining streams have none).
        monitor: Keep the best checkpoint (``best-{epoch:03d}.ckpt``) by this logged metric, checked after
            each validation, besides ``last.ckpt``; None: no best checkpoint.
        monitor_mode: ``min`` or ``max``: which value of ``monitor`` is best.
        early_stopping: Stop when a metric stops improving; None: never.
        lr_monitor: Log the learning rate every ``step`` or ``epoch``; None: not logged.
    """

    max_steps: int = 1000
    max_epochs: int | None = None
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
    validate: bool = False
    monitor: str | None = None
    monitor_mode: str = "min"
    early_stopping: EarlyStoppingSection | None = None
    lr_monitor: str | None = None

    def __post_init__(self) -> None:
        _one_of("logger", self.logger, LOGGERS)
        _one_of("monitor_mode", self.monitor_mode, MONITOR_MODES)
        _one_of("lr_monitor", self.lr_monitor, (None, *LR_MONITOR))
        if self.monitor is not None and self.checkpoint_every:
            raise InputError(
                f"monitor ({self.monitor}) keeps the best checkpoint after each validation; "
                f"set checkpoint_every: 0 with it (it is {self.checkpoint_every})"
            )
        if (self.monitor or self.early_stopping) and not self.validate:
            raise InputError("monitor and early_stopping watch validation metrics: set validate: true")
        if self.max_steps < 0 and self.max_steps != -1:
            raise InputError(f"max_steps must be -1 (no limit) or >= 0, got {self.max_steps}")


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
    if unknown := set(values) - names:
        raise unknown_keys(where, unknown, names, values)
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InputError(f"{where}: {err}") from err
    except InputError as err:  # a value __post_init__ refused: say in which file
        if str(err).startswith(where):
            raise
        raise type(err)(f"{where}: {err}") from err


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader that also reads ``1e-3`` as a number (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text as config files are read (``1e-3`` is a float, as a user means it)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: plain data only


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line for a YAML error: what is wrong and where (line, column), without the echoed source."""
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if problem is None:
        return " ".join(str(err).split())
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def _read(file: Path) -> dict[str, Any]:
    """One YAML file as a mapping."""
    if not file.is_file():
        raise InputError(f"config file {str(file)!r} does not exist")
    try:
        values = parse_yaml(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{file}: not valid YAML: {yaml_problem(err)}") from err
    if not isinstance(values, Mapping):
        raise InputError(f"{file}: expected a mapping of sections, got {type(values).__name__}")
    return dict(values)


def _check_keys(cls: Any, values: Mapping[str, Any], where: str) -> None:
    """Refuse unknown keys of one file, section by section (before merging hides which file said them)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(values) - names:
        raise unknown_keys(where, unknown, names, values)
    for key, value in values.items():
        section = _section_class(hints[key])
        if section is not None and isinstance(value, Mapping):
            _check_keys(section, value, f"{where}.{key}")


def _section_class(tp: Any) -> Any:
    """Return the dataclass of a section's annotation (``Section`` or ``Section | None``), or None."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return next((t for t in options if dataclasses.is_dataclass(t)), None)


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` into ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        old = merged.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        merged[key] = deep_merge(old, value) if both else value  # type: ignore[arg-type]
    return merged


def load_yaml(
    cls: type[T], path: str | Path, *overlays: str | Path, sets: Mapping[str, Any] | None = None
) -> T:
    """Read a YAML file, and overlays deep-merged over it in order (later wins), into the dataclass ``cls``.

    Each file is checked on its own first, so an unknown key names the file that says it. A class may add
    checks that need the merged config (``check_layer(values, merged, where)``, e.g. keyword arguments of the
    class a merged ``kind`` names).

    Args:
        cls: The config dataclass.
        path: The base file.
        overlays: Files whose values replace the base's (mappings merge, lists and scalars are replaced).
        sets: Values applied after the files, as one more overlay (the CLI's ``--set SECTION.KEY=VALUE``).

    Raises:
        InputError: A missing or invalid file, or an unknown key (naming the file and the section).
    """
    layers = [(str(f), _read(Path(f))) for f in (path, *overlays)]
    if sets:
        layers.append(("--set", dict(sets)))
    merged: dict[str, Any] = {}
    for _, values in layers:
        merged = deep_merge(merged, values)
    check_layer = getattr(cls, "check_layer", None)
    for where, values in layers:
        _check_keys(cls, values, where)
        if check_layer is not None:
            check_layer(values, merged, where)
    return from_dict(cls, merged, " + ".join(where for where, _ in layers))


# Keys of Lightning's CLI configs (``class_path``/``init_args``), which we no longer read: named in the error.
_OLD_KEYS = frozenset({"class_path", "init_args", "dict_kwargs", "seed_everything"})
OLD_FORM = "this is the old LightningCLI form (class_path/init_args): see the README's fine-tuning section"


def unknown_keys(where: str, unknown: set[str], valid: set[str], values: Mapping[str, Any]) -> InputError:
    """Build the error for unknown keys of a section: the keys, the valid ones, a pointer for the old form."""
    text = f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(valid)}"
    old = any(
        k in _OLD_KEYS or (isinstance(values[k], Mapping) and bool(_OLD_KEYS & set(values[k])))
        for k in unknown
    )
    return InputError(f"{text}; {OLD_FORM}" if old else text)


def keyword_arguments(target: Callable[..., Any]) -> tuple[set[str], set[str]]:
    """Return the keyword arguments a class takes and those it requires.

    A constructor's ``**options`` are followed to the base classes' ``__init__`` it forwards them to, so a
    subclass that adds one argument still offers all of its base's.

    Returns:
        ``(valid, required)`` argument names.
    """
    inits = (
        [vars(k)["__init__"] for k in target.__mro__ if "__init__" in vars(k)]
        if isinstance(target, type)
        else [target]
    )
    valid: set[str] = set()
    required: set[str] = set()
    for init in inits:
        forwards = False
        for name, p in inspect.signature(init).parameters.items():
            forwards |= p.kind is p.VAR_KEYWORD
            if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in valid:
                continue
            valid.add(name)
            if p.default is p.empty:
                required.add(name)
        if not forwards:
            break
    return valid, required


def check_arguments(
    target: Callable[..., Any],
    values: Mapping[str, Any],
    where: str,
    *,
    filled: Collection[str] = (),
    extra: Collection[str] = (),
    complete: bool = True,
) -> None:
    """Refuse keys that are not keyword arguments of ``target`` (and, if ``complete``, missing required ones).

    A config section whose keys are a constructor's arguments is checked against that constructor's
    signature, so the schema has one home and nothing is silently ignored.

    Args:
        target: The class (or function) the section's values are passed to.
        values: The section.
        where: File and section, for messages.
        filled: Arguments the caller supplies itself (not valid keys).
        extra: Keys of the section that are not arguments (``kind``, which picks ``target``).
        complete: The section is the merged one: also refuse missing required arguments.
    """
    valid, required = keyword_arguments(target)
    valid, required = (valid - set(filled)) | set(extra), required - set(filled)
    if unknown := set(values) - valid:
        raise unknown_keys(where, unknown, valid, values)
    if complete and (missing := required - set(values)):
        raise InputError(f"{where}: missing key(s) {sorted(missing)} ({getattr(target, '__name__', target)})")


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
