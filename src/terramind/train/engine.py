"""The trainer engine of pretraining, tokenizer training and fine-tuning.

What the three trainers share lives here, once: the Lightning trainer builder (devices, strategy, precision,
logging, validation, best/last checkpoints written atomically by
:class:`~terramind.checkpoints.lightning_io.AtomicCheckpointIO`, early stopping), resume from ``last`` or a
path, the run identity a resume must match, the data source of a run's ``data`` section, the SDPA backends
allowed while training, moving our typed batches to the device, and :func:`fit`. Parameter groups (the one
weight-decay policy of :mod:`terramind.layers.decay`) and the warmup + cosine schedule are
:mod:`terramind.train.optim`'s. Fine-tuning (``terramind.finetune``, one layer above) runs on this engine
through :mod:`terramind.finetune.run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from torch.nn.attention import SDPBackend, sdpa_kernel

from terramind.checkpoints.lightning_io import AtomicCheckpointIO
from terramind.core.errors import CheckpointError
from terramind.data.shards import GeoTiffFolderSource, ShardSource
from terramind.data.stream import Source
from terramind.data.terramesh import TerraMeshSource
from terramind.train.config import DataSection, TrainerSection, plain, to_dict

# With Dirichlet budgets a modality can get no inputs or no targets in a step, and then its embeddings take no
# gradient, which plain DDP treats as an error: our DDP names turn on unused-parameter detection.
_UNUSED_PARAMETERS = {
    "ddp": "ddp_find_unused_parameters_true",
    "ddp_spawn": "ddp_spawn_find_unused_parameters_true",
    "ddp_fork": "ddp_fork_find_unused_parameters_true",
}


def strategy(name: str) -> str:
    """Map the DDP strategies to their unused-parameter-detecting variants (``_UNUSED_PARAMETERS``)."""
    return _UNUSED_PARAMETERS.get(name, name)


def build_trainer(
    t: TrainerSection, clip_grad: float, callbacks: Sequence[Callback] = (), *, sampler: bool = False
) -> L.Trainer:
    """Build the Lightning trainer of a run: devices, strategy, precision, logging and checkpoints.

    Args:
        t: Engine settings.
        clip_grad: Gradient-norm clipping (0: off).
        callbacks: Extra callbacks.
        sampler: Let Lightning shard map-style datasets over ranks (fine-tuning's datamodules); our
            streams (pretraining, tokenizer training) split the data by rank themselves.
    """
    out = Path(t.out_dir)
    progress = [RichProgressBar()] if t.progress_bar else []
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy(t.strategy),
        precision=t.precision,  # type: ignore[arg-type]
        gradient_clip_val=clip_grad or None,
        logger=_logger(t),
        callbacks=[*callbacks, _checkpoints(t), *_watchers(t), *progress],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=t.log_every,
        enable_model_summary=False,
        enable_progress_bar=t.progress_bar,
        limit_val_batches=None if t.validate else 0,
        use_distributed_sampler=sampler,
        default_root_dir=out,
    )


def _logger(t: TrainerSection) -> Logger | bool:
    """Return the run's logger under ``<out_dir>/logs`` (``logger: none``: no logs)."""
    loggers = {"tensorboard": TensorBoardLogger, "csv": CSVLogger}
    return loggers[t.logger](Path(t.out_dir), name="logs") if t.logger in loggers else False


def _checkpoints(t: TrainerSection) -> ModelCheckpoint:
    """``last.ckpt`` always; with ``monitor`` the best one, else one every ``checkpoint_every`` steps."""
    common: dict[str, Any] = {
        "dirpath": Path(t.out_dir) / "checkpoints",
        "auto_insert_metric_name": False,
        "save_last": True,
    }
    if t.monitor is not None:
        return ModelCheckpoint(
            **common, monitor=t.monitor, mode=t.monitor_mode, filename="best-{epoch:03d}", save_top_k=1
        )
    return ModelCheckpoint(
        **common,
        filename="step{step:08d}",
        every_n_train_steps=t.checkpoint_every,
        save_top_k=-1 if t.checkpoint_every else 0,
    )


def _watchers(t: TrainerSection) -> list[Callback]:
    """Early stopping and the learning-rate monitor, where the section asks for them."""
    found: list[Callback] = []
    if (stop := t.early_stopping) is not None:
        found.append(EarlyStopping(monitor=stop.monitor, patience=stop.patience, mode=stop.mode,
                                   min_delta=stop.min_delta))  # fmt: skip
    if t.lr_monitor is not None:
        found.append(LearningRateMonitor(logging_interval=t.lr_monitor))  # type: ignore[arg-type]
    return found


# SDPA backends allowed while training: all but cuDNN. Masked pretraining changes the packed sequence lengths
# every step; the cuDNN attention backend (chosen for bf16 on Hopper) then builds a new execution plan per
# call, about 6 ms of host time each, which made a tiny-model bf16 step 5x slower than fp32 on an H200
# (benchmarks/bench_train.py --cudnn-attention). Flash / memory-efficient attention have no per-shape cost.
TRAINING_ATTENTION = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


def training_attention() -> AbstractContextManager[None]:
    """Context in which SDPA uses only the ``TRAINING_ATTENTION`` backends; the caller's setting returns."""
    return sdpa_kernel(list(TRAINING_ATTENTION))


def resume_path(trainer: TrainerSection, resume: str | None) -> Path | None:
    """Resolve ``resume`` (a path, ``"last"`` or None) to an existing checkpoint file."""
    if resume is None:
        return None
    ckpt = Path(trainer.out_dir) / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not ckpt.is_file():
        raise CheckpointError(f"no checkpoint to resume from at {str(ckpt)!r}")
    return ckpt


def data_source(
    data: DataSection, *, needed: Sequence[str], names: Sequence[str] = (), new: Sequence[str] = ()
) -> Source:
    """Build the source of a run's samples (``data.source``); folders and shard files are checked here.

    Args:
        data: The run's data section.
        needed: The pixel modalities the stream needs (the TerraMesh folders read unless ``data.modalities``).
        names: The run's modality names (shard members are stored lower-cased).
        new: Modalities not in the catalog (new sensors).
    """
    if data.source == "terramesh":
        assert data.root is not None  # DataSection requires it
        folders = data.modalities or tuple(needed)
        return TerraMeshSource(data.root, data.split, folders, subset=data.subset)  # type: ignore[arg-type]
    if data.source == "geotiff":
        assert data.root is not None
        return GeoTiffFolderSource(data.root, new_modalities=new)
    return ShardSource(data.shard_files(), names)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch that knows how (``Batch``, ``MaskedBatch``: a ``to`` method) to ``device``."""
    move = getattr(batch, "to", None)
    return move(device) if callable(move) else batch


def fit(
    module: L.LightningModule,
    trainer: TrainerSection,
    *,
    clip_grad: float,
    callbacks: Sequence[Callback] = (),
    resume: str | None = None,
    datamodule: L.LightningDataModule | None = None,
) -> L.Trainer:
    """Fit ``module`` with the run's trainer, from scratch or resumed, under the training attention backends.

    Args:
        module: The task.
        trainer: Engine settings.
        clip_grad: Gradient-norm clipping (0: off).
        callbacks: Extra callbacks.
        resume: A checkpoint path, ``"last"`` or None.
        datamodule: Fine-tuning's data (map-style, sharded over ranks by Lightning); None: the module
            streams its own data.

    Returns:
        The trainer, after fitting.
    """
    engine = build_trainer(trainer, clip_grad, callbacks, sampler=datamodule is not None)
    with training_attention():
        engine.fit(module, datamodule=datamodule, ckpt_path=resume_path(trainer, resume))
    return engine


def record_identity(checkpoint: dict[str, Any], config: object, keys: Sequence[str]) -> None:
    """Store the parts of a run config that a resume must share (``checkpoint["terramind"]``)."""
    full = to_dict(config)
    checkpoint["terramind"] = {k: full[k] for k in keys}


def check_identity(checkpoint: dict[str, Any], config: object, keys: Sequence[str], what: str) -> None:
    """Refuse to resume from a checkpoint written by another configuration (one line naming the fields).

    Args:
        checkpoint: The loaded checkpoint.
        config: This run's config.
        keys: The fields that must match.
        what: The kind of run (``pretraining``), for the message.

    Raises:
        CheckpointError: Not a checkpoint of this kind of run, or one whose fields differ.
    """
    saved = checkpoint.get("terramind")
    if saved is None:
        raise CheckpointError(f"not a terramind {what} checkpoint (no 'terramind' record)")
    full = to_dict(config)
    if differs := [k for k in keys if plain(saved.get(k, [])) != full[k]]:
        raise CheckpointError(
            f"checkpoint was written by another configuration (differs in: {', '.join(differs)}); "
            f"resume with the run's original config or start a new out_dir"
        )
