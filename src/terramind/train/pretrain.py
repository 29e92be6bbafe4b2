"""Masked token pretraining of TerraMind on PyTorch Lightning (arXiv 2504.11171; 4M, arXiv 2312.06647).

Per step and sample, :mod:`terramind.masking` draws Dirichlet budgets and disjoint positions; the encoder
sees the input positions (raw pixel patches for ``pixel`` modalities, stored token ids for ``token`` ones)
and the decoder predicts the stored tokenizer ids at the target positions. Everything random is a pure
function of (seed, step, rank), and the data stream is a pure function of (seed, batches consumed), so a
run killed after a checkpoint and resumed from it produces exactly the losses of an uninterrupted run.

Scale-out is Lightning's: ``trainer.strategy: ddp`` or ``fsdp`` with ``devices``/``num_nodes``, launched by
``torchrun`` or SLURM (``srun``), which set the ranks that the data stream splits its shards by.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.utils.checkpoint
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from terramind.build import build_coords_tokenizer
from terramind.core.errors import InputError
from terramind.data.sample import Batch
from terramind.data.stream import SampleStream, StreamConfig
from terramind.modalities import get_modality, using_catalog
from terramind.train.config import PretrainConfig
from terramind.train.engine import check_identity, data_source, fit, record_identity, to_device
from terramind.train.engine import resume_path as resume_path  # the CLI resolves --resume through this module
from terramind.train.losses import LossResult
from terramind.train.objective import (
    SEQUENCE_SOURCES,
    MaskDrawer,
    MaskedBatch,
    RunModality,
    build_model,
    masked_modeling_loss,
    masking_config,
    resolve,
)
from terramind.train.optim import lightning_optimizers
from terramind.train.tokenizer import load_frozen_tokenizer, tokenize_batch

log = logging.getLogger(__name__)

# Saved in every checkpoint: a resume must use the same model, modalities, masking and data order.
_IDENTITY = ("modalities", "sensors", "model", "masking", "seed", "loss")


def stream_config(config: PretrainConfig, modalities: Sequence[RunModality]) -> StreamConfig:
    """Say what the stream must deliver.

    Pixels of pixel inputs and of the modalities tokenized on the fly (``data.tokenize``); stored ids of the
    other token inputs and targets.

    Raises:
        InputError: A TerraMesh or GeoTIFF source (which store no ids) without a tokenizer for some target.
    """
    data = config.data
    tokenize = {get_modality(m).name for m in data.tokenize}
    modalities = [m for m in modalities if not m.sequence]  # sequences come from the samples' centres
    pixels = [m.name for m in modalities if m.pixel_input and m.input_key is not None]
    pixels += [m.name for m in modalities if m.name in tokenize and m.name not in pixels]
    tokens = tuple(
        m.name
        for m in modalities
        if ((m.input_key and not m.pixel_input) or m.target_key) and m.name not in tokenize
    )
    if tokens and data.source != "shards":
        raise InputError(
            f"data.source {data.source} stores no token ids: add data.tokenize entries for "
            f"{', '.join(tokens)} "
            f"(hub, random, a weights file or a train-tokenizer folder)"
        )
    return StreamConfig(
        modalities=tuple(pixels),
        token_modalities=tokens,
        batch_size=data.batch_size,
        crop=data.crop,
        shuffle_buffer=data.shuffle_buffer,
        seed=config.seed,
        max_skip_fraction=data.max_skip_fraction,
        channels={m.name: len(m.mean) for m in modalities if m.input_key == m.name},
    )


class PretrainModule(L.LightningModule):
    """Masked token prediction: the model, the masking, the loss, the optimiser and the data position."""

    def __init__(self, config: PretrainConfig):
        """Build model and masking from a run config."""
        super().__init__()
        self.config = config
        with using_catalog(config.catalog()):  # its sensors resolve here; later steps need no scope
            self.modalities = [resolve(e) for e in config.modalities]
            self.masking = masking_config(config)
        self.model = build_model(config, self.modalities)
        tokenize = {get_modality(m).name: w for m, w in config.data.tokenize.items()}
        sequences = {m.name for m in self.modalities if m.sequence}
        self.tokenizers = nn.ModuleDict(
            {m: load_frozen_tokenizer(m, w) for m, w in tokenize.items() if m not in SEQUENCE_SOURCES}
        )
        self.coords_tokenizer = (
            build_coords_tokenizer(tokenize.get("coords", "hub")) if "coords" in sequences else None
        )
        self.ema: AveragedModel | None = None
        if config.optim.ema_decay is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.optim.ema_decay))
            self.ema.requires_grad_(False)
        self.resume_batches = 0
        self.skips: dict[int, dict[str, object]] = {}  # rank -> its reader's skip summary (checkpointed)
        self._step_start = 0.0

    def masked(self, batch: Batch | MaskedBatch, step: int, rank: int) -> MaskedBatch:
        """Return the batch with the masks the data workers attached (:class:`MaskDrawer`), else draw them."""
        if isinstance(batch, MaskedBatch):
            return batch
        return self.drawer(rank)(batch, step)

    def drawer(self, rank: int) -> MaskDrawer:
        """Return the mask drawer of a rank."""
        return MaskDrawer(self.masking, self.config.seed, rank, self.coords_tokenizer)

    def compute_loss(self, batch: Batch | MaskedBatch, step: int, rank: int = 0) -> LossResult:
        """Mask a batch (unless the data workers did), encode its inputs, decode its targets, return the loss.

        Args:
            batch: Raw pixels and stored token ids from the stream, with or without its masks.
            step: Global step (selects the masks when the batch has none).
            rank: Process rank (selects the masks when the batch has none).
        """
        masked = self.masked(batch, step, rank)
        return masked_modeling_loss(self.model, self.modalities, masked, self.config.loss)

    def training_step(self, batch: MaskedBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss, with per-modality losses, accuracies and tokens/s logged."""
        result = self.compute_loss(batch, self.global_step, self.global_rank)
        batch_size = len(batch.batch)
        self.skips[self.global_rank] = batch.batch.skips
        tokens = batch_size * (self.masking.num_input_tokens + self.masking.num_target_tokens)
        elapsed = max(time.perf_counter() - self._step_start, 1e-9)
        self.log("loss", result.loss, prog_bar=True, batch_size=batch_size)
        self.log("tok_s", tokens / elapsed, prog_bar=True, batch_size=batch_size)
        self.log("samples_s", batch_size / elapsed, batch_size=batch_size)
        for name, value in result.per_modality.items():
            self.log(f"loss/{name}", value, batch_size=batch_size)
            self.log(f"acc/{name}", result.accuracy[name], batch_size=batch_size)
        return result.loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Start the step timer (tokens/s)."""
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA weights after the optimiser step."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def configure_optimizers(self) -> Any:
        """AdamW (no decay on norms, biases, embeddings) with per-step warmup + cosine."""
        return lightning_optimizers(self.model, self.config.optim, self.config.trainer.max_steps)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a :class:`MaskedBatch` (our own type, which Lightning does not know) to the device."""
        return to_device(batch, device)

    def on_train_epoch_end(self) -> None:
        """Log the skip summary of the data readers."""
        for rank, summary in self.skips.items():
            log.info("rank %d data: %s", rank, summary)

    def stream(self, rank: int = 0, world_size: int = 1) -> SampleStream[MaskedBatch]:
        """Build this rank's data stream, advanced past the batches a resumed run already consumed."""
        config = stream_config(self.config, self.modalities)
        return SampleStream(
            data_source(
                self.config.data,
                needed=config.modalities,
                names=[m.name for m in self.modalities],
                new=[m.name for m in self.modalities if m.input_key == m.name],
            ),
            config,
            rank=rank,
            world_size=world_size,
            skip_batches=self.resume_batches,
            transform=self.drawer(rank),
        )

    def train_dataloader(self) -> DataLoader[MaskedBatch]:
        """Stream this rank's share of the data."""
        stream = self.stream(self.global_rank, self.trainer.world_size)
        return DataLoader(stream, batch_size=None, num_workers=self.config.data.num_workers)

    def on_after_batch_transfer(self, batch: MaskedBatch, dataloader_idx: int) -> MaskedBatch:
        """Tokenize the ``data.tokenize`` modalities of a batch on the training device (frozen tokenizers)."""
        for name, tokenizer in self.tokenizers.items():
            batch.batch.tokens[name] = tokenize_batch(tokenizer, batch.batch.pixels[name])  # type: ignore[arg-type]
        return batch

    def train(self, mode: bool = True) -> PretrainModule:
        """Set training mode; the on-the-fly tokenizers stay frozen in eval mode."""
        super().train(mode)
        self.tokenizers.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the run identity and the data position."""
        record_identity(checkpoint, self.config, _IDENTITY)
        checkpoint["terramind_batches_consumed"] = self.global_step
        checkpoint["terramind_skipped_samples"] = dict(self.skips)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another configuration; restore the data position."""
        check_identity(checkpoint, self.config, _IDENTITY, "pretraining")
        self.resume_batches = int(checkpoint["terramind_batches_consumed"])


def pretrain(
    config: PretrainConfig, *, resume: str | None = None, callbacks: Sequence[Callback] = ()
) -> PretrainModule:
    """Run (or resume) a pretraining run.

    Args:
        config: The run.
        resume: A checkpoint to continue from, or ``"last"`` for ``<out_dir>/checkpoints/last.ckpt``.
        callbacks: Extra Lightning callbacks.

    Returns:
        The trained module (``.model`` is the TerraMind; ``.ema`` its EMA if enabled).
    """
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = PretrainModule(config)
    module.stream().check_first()  # a missing folder or a wrong layout fails here, before any step
    fit(module, config.trainer, clip_grad=config.optim.clip_grad, callbacks=callbacks, resume=resume)
    return module


def ema_or_model(module: PretrainModule) -> nn.Module:
    """Return the weights to evaluate or export: the EMA copy when enabled, else the trained model."""
    return copy.deepcopy(module.ema.module) if module.ema is not None else module.model
