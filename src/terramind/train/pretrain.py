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
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.utils.checkpoint
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from terramind.build import build_coords_tokenizer
from terramind.checkpoints.io import load_into, read_state_dict
from terramind.core.errors import CheckpointError, InputError
from terramind.data.sample import Batch
from terramind.data.shards import GeoTiffFolderSource, ShardSource
from terramind.data.stream import SampleStream, Source, StreamConfig
from terramind.data.terramesh import TerraMeshSource
from terramind.masking import (
    ImageBatchMask,
    MaskingConfig,
    SequenceBatchMask,
    Stream,
    StreamKind,
    collate_masks,
    sample_masks,
)
from terramind.modalities import PATCH_SIZE, Kind, get_modality, standardize, using_catalog
from terramind.modalities.tokens import PAD_ID
from terramind.model import CONFIGS, TerraMind, TerraMindConfig
from terramind.model.terramind import Encoded
from terramind.tokenizers import CoordsTokenizer
from terramind.train.config import ModalityEntry, PretrainConfig
from terramind.train.engine import check_identity, fit, record_identity, to_device
from terramind.train.engine import resume_path as resume_path  # the CLI resolves --resume through this module
from terramind.train.losses import LossResult, TargetLogits, masked_token_loss
from terramind.train.optim import lightning_optimizers
from terramind.train.tokenizer import load_frozen_tokenizer, tokenize_batch

log = logging.getLogger(__name__)

# Sequence modalities this trainer tokenizes itself, from each sample's centre lon/lat.
SEQUENCE_SOURCES = frozenset({"coords"})

# Saved in every checkpoint: a resume must use the same model, modalities, masking and data order.
_IDENTITY = ("modalities", "sensors", "model", "masking", "seed", "loss")


@dataclass(frozen=True)
class RunModality:
    """A modality of the run resolved to model keys and standardisation.

    Attributes:
        name: Name (catalog name or the new modality's name).
        input_key: Encoder key (``untok_sen2l2a@224``, ``tok_lulc@224`` or the new name); None if no input.
        target_key: Decoder key (``tok_sen2l2a@224``); None if not a target.
        pixel_input: Whether the input is raw pixels (else stored token ids).
        mean: Standardisation mean per band (pixel inputs).
        std: Standardisation std per band (pixel inputs).
        sequence: A token sequence (coordinates), tokenized from the samples' centres and span-masked.
    """

    name: str
    input_key: str | None
    target_key: str | None
    pixel_input: bool
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    sequence: bool = False


def resolve(entry: ModalityEntry) -> RunModality:
    """Map a configured modality onto the model's keys (new sensors become freshly initialised pixel inputs).

    Names resolve through the current catalog: call within ``using_catalog(config.catalog())``.
    """
    spec = get_modality(entry.name)
    if spec.is_new_sensor:
        if entry.target or entry.input != "pixel":
            raise InputError(
                f"new sensor {spec.name} can only be a pixel input: set input: pixel and target: false "
                f"(a target needs its own tokenizer)"
            )
        return RunModality(spec.name, spec.name, None, True, spec.mean, spec.std)
    input_key = {"pixel": spec.pixel_key, "token": spec.token_key, "none": None}[entry.input]
    if entry.input != "none" and input_key is None:
        raise InputError(
            f"{spec.name} has no {entry.input} input in TerraMind; use input: none or another kind"
        )
    sequence = spec.input_kind is Kind.SEQUENCE
    if sequence and spec.name not in SEQUENCE_SOURCES:
        raise InputError(f"{spec.name}: this trainer pretrains the sequences {sorted(SEQUENCE_SOURCES)} only")
    if entry.target and (spec.token_key is None or not spec.generable or not (spec.is_image or sequence)):
        raise InputError(f"{spec.name} cannot be a target: it has no tokenizer (set target: false)")
    return RunModality(
        spec.name,
        input_key,
        spec.token_key if entry.target else None,
        entry.input == "pixel",
        spec.mean,
        spec.std,
        sequence,
    )


def masking_config(config: PretrainConfig) -> MaskingConfig:
    """One masking stream per modality; its positions are the token grid of the crop (in catalog scope)."""
    grid = config.data.crop // PATCH_SIZE
    specs = [get_modality(e.name) for e in config.modalities]
    streams = tuple(
        Stream(
            spec.name,
            spec.max_length or 1 if spec.input_kind is Kind.SEQUENCE else grid * grid,
            e.input_alpha if e.input != "none" else 0.0,
            e.target_alpha if e.target else 0.0,
            StreamKind.SEQUENCE if spec.input_kind is Kind.SEQUENCE else StreamKind.IMAGE,
        )
        for e, spec in zip(config.modalities, specs, strict=True)
    )
    return MaskingConfig(streams, config.masking.num_input_tokens, config.masking.num_target_tokens)


def model_config(config: PretrainConfig) -> TerraMindConfig:
    """Return the model size with the configured overrides applied."""
    size = config.model.size
    base = CONFIGS.get(size) or CONFIGS.get(f"terramind_v1_{size}")
    if base is None:
        raise InputError(
            f"unknown model size {size!r}; choose tiny, small, base, large or one of {sorted(CONFIGS)}"
        )
    try:
        return dataclasses.replace(base, **dict(config.model.overrides))
    except TypeError as err:
        raise InputError(f"model.overrides: {err}") from err


def _checkpoint_blocks(blocks: nn.ModuleList) -> None:
    """Recompute each block's activations in the backward pass (memory for compute); keys are unchanged."""
    for block in blocks:
        block.forward = functools.partial(
            torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False
        )


def build_model(config: PretrainConfig, modalities: Sequence[RunModality]) -> TerraMind:
    """Build the model of a run, optionally from earlier weights (continual pretraining)."""
    extra = {m.input_key: len(m.mean) for m in modalities if m.pixel_input and m.input_key == m.name}
    model = TerraMind(
        model_config(config),
        encoder_keys=[
            m.input_key for m in modalities if m.input_key is not None and m.input_key not in extra
        ],
        decoder_keys=[m.target_key for m in modalities if m.target_key is not None],
        extra_pixel={k: v for k, v in extra.items() if k is not None},
    )
    if config.model.init_from:
        report = load_into(
            model,
            read_state_dict(config.model.init_from),
            allow_missing=True,
            allow_unused=True,
            what="init_from",
        )
        new = tuple(f"encoder_embeddings.{k}." for k in extra)
        if missing := [k for k in report.missing if not k.startswith(new)]:
            raise CheckpointError(
                f"init_from lacks weights the run needs (not new modalities): {missing[:8]}"
            )
    if config.model.activation_checkpointing:
        _checkpoint_blocks(model.encoder)
        _checkpoint_blocks(model.decoder)
    return model


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


def build_source(config: PretrainConfig, modalities: Sequence[RunModality], needed: Sequence[str]) -> Source:
    """Build the source of a run's samples (``data.source``); folders and shard files are checked here.

    Args:
        config: The run.
        modalities: Its resolved modalities.
        needed: The pixel modalities the stream needs (TerraMesh folders to read by default).
    """
    data = config.data
    new = [m.name for m in modalities if m.input_key == m.name]
    if data.source == "terramesh":
        assert data.root is not None  # DataSection requires it
        folders = data.modalities or tuple(needed)
        return TerraMeshSource(data.root, data.split, folders, subset=data.subset)  # type: ignore[arg-type]
    if data.source == "geotiff":
        assert data.root is not None
        return GeoTiffFolderSource(data.root, new_modalities=new)
    return ShardSource(data.shard_files(), [m.name for m in modalities])


@dataclass
class MaskedBatch:
    """A batch with the masks of the step that consumes it.

    Attributes:
        batch: The data.
        images: Per image stream, its input mask and target positions.
        sequences: Per sequence stream (coords), its span-masked input and target ids.
    """

    batch: Batch
    images: dict[str, ImageBatchMask]
    sequences: dict[str, SequenceBatchMask] = dataclasses.field(default_factory=dict)

    def to(self, device: torch.device | str) -> MaskedBatch:
        """Return the same batch and masks with their tensors on ``device``."""
        images = {
            k: ImageBatchMask(*(t.to(device) for t in dataclasses.astuple(m))) for k, m in self.images.items()
        }
        sequences = {
            k: SequenceBatchMask(*(t.to(device) for t in dataclasses.astuple(m)))
            for k, m in self.sequences.items()
        }
        return MaskedBatch(self.batch.to(device), images, sequences)


class MaskDrawer:
    """Draws a batch's masks from (seed, step, rank) alone, so the data workers can draw them off the loop.

    As a stream transform it turns batch ``i`` of a rank (consumed at step ``i``) into a :class:`MaskedBatch`.
    """

    def __init__(self, masking: MaskingConfig, seed: int, rank: int, coords: CoordsTokenizer | None = None):
        """Remember the scheme, the run seed, the rank and the coordinate vocabulary (for a coords stream)."""
        self.masking, self.seed, self.rank, self.coords = masking, seed, rank, coords
        self.sequence_streams = [s.name for s in masking.streams if s.kind is StreamKind.SEQUENCE]
        if self.sequence_streams and coords is None:
            raise InputError("a coords stream needs the coordinate vocabulary (data.tokenize: {coords: hub})")

    def draw(
        self, batch_size: int, step: int, centres: torch.Tensor | None = None
    ) -> tuple[dict[str, ImageBatchMask], dict[str, SequenceBatchMask]]:
        """Masks of the batch of ``step``: a pure function of (seed, step, rank) and the samples' centres.

        Args:
            batch_size: Samples in the batch.
            step: The step that consumes it.
            centres: ``(B, 2)`` lon/lat of the samples (NaN: no coordinates), for a coords stream.
        """
        rng = np.random.default_rng([self.seed, step, self.rank])
        masks = []
        for i in range(batch_size):
            present, sequences = [s.name for s in self.masking.streams], {}
            if self.sequence_streams:
                ids = self._coords_ids(None if centres is None else centres[i])
                if ids is None:
                    present = [p for p in present if p not in self.sequence_streams]
                else:
                    sequences = {name: ids for name in self.sequence_streams}
            masks.append(sample_masks(self.masking, rng, present=present, sequences=sequences))
        return collate_masks(masks, self.masking)

    def _coords_ids(self, centre: torch.Tensor | None) -> np.ndarray | None:
        """Coordinate token ids of one centre without padding; None for a sample without a centre."""
        if centre is None or not bool(torch.isfinite(centre).all()):
            return None
        assert self.coords is not None  # checked in __init__
        ids = self.coords.encode(centre[None].double())[0].numpy()
        return ids[ids != PAD_ID]

    def __call__(self, batch: Batch, index: int) -> MaskedBatch:
        """Attach the masks of the batch consumed at step ``index``."""
        return MaskedBatch(batch, *self.draw(len(batch), index, batch.center_lonlat))


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
        """Mask a batch, encode its inputs, decode its targets and return the loss.

        Args:
            batch: Raw pixels and stored token ids from the stream, with or without its masks.
            step: Global step (selects the masks when the batch has none).
            rank: Process rank (selects the masks when the batch has none).
        """
        masked = self.masked(batch, step, rank)
        data, images = masked.batch, masked.images
        # Every input is embedded every step, with an all-False mask when the budgets gave it nothing: its
        # parameters then get a (zero) gradient on every rank, which sharded training (FSDP) needs.
        inputs, masks = {}, {}
        for m in self.modalities:
            if m.sequence:
                seq = masked.sequences[m.name]
                if m.input_key is not None:
                    inputs[m.input_key], masks[m.input_key] = seq.input_ids, seq.input_valid
                continue
            mask = images[m.name].input_mask.to(self.device)
            if m.input_key is None:
                continue
            if m.pixel_input:
                inputs[m.input_key] = standardize_pixels(m, data.pixels[m.name])
            else:
                inputs[m.input_key] = data.tokens[m.name]
            masks[m.input_key] = mask
        encoded = self.model.encode(inputs, masks)
        # Every target is decoded every step, even one without targets in this batch (a padded query that the
        # loss ignores): the decoder then runs the same calls on every rank, which sharded training (FSDP)
        # needs, and the loss is unchanged (a modality without valid targets adds nothing).
        outputs = {}
        for m in self.modalities:
            if m.target_key is None:
                continue
            if m.sequence:
                outputs[m.name] = self.sequence_target(encoded, m.target_key, masked.sequences[m.name])
                continue
            ids = data.tokens[m.name]  # (B, h, w)
            positions, valid = _at_least_one(images[m.name])  # (B, n)
            grid = (int(ids.shape[1]), int(ids.shape[2]))
            logits = self.model.decode_logits(encoded, m.target_key, positions, grid)
            answers = ids.flatten(1).gather(1, positions)  # (B, n)
            outputs[m.name] = TargetLogits(logits, answers, valid)
        if not any(bool(o.valid.any()) for o in outputs.values()):  # e.g. span masking left no coords target
            return LossResult(sum(o.logits.sum() for o in outputs.values()) * 0.0, {}, {}, 0)  # type: ignore[arg-type]
        return masked_token_loss(outputs, self.config.loss)

    def sequence_target(self, encoded: Encoded, key: str, seq: SequenceBatchMask) -> TargetLogits:
        """Return teacher-forced logits of a span-masked target: each token predicts the next one."""
        logits = self.model.decode_sequence_logits(encoded, key, seq.target_ids[:, :-1])  # (B, L-1, V)
        return TargetLogits(logits, seq.target_ids[:, 1:], seq.target_valid[:, 1:])

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
            build_source(self.config, self.modalities, config.modalities),
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


def _at_least_one(mask: ImageBatchMask) -> tuple[torch.Tensor, torch.Tensor]:
    """Return target positions and validity ``(B, n)``, ``n >= 1`` (no targets: one padded query)."""
    if mask.target_positions.shape[1] > 0:
        return mask.target_positions, mask.target_valid
    batch = mask.target_positions.shape[0]
    zeros = mask.target_positions.new_zeros((batch, 1))
    return zeros, mask.target_valid.new_zeros((batch, 1))


def standardize_pixels(modality: RunModality, x: torch.Tensor) -> torch.Tensor:
    """Standardise raw pixels ``(B, C, H, W)`` with the modality's statistics."""
    if modality.input_key == modality.name:  # a new modality: its own statistics from the config
        mean = torch.tensor(modality.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(modality.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std
    return standardize(modality.name, x)


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
