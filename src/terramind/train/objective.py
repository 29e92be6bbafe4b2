"""The pretraining objective without the data pipeline or Lightning (benchmarks and the GPU proof import it).

A run's modalities resolved to model keys, the masking config, the model builder, the mask drawer (a pure
function of seed, step and rank, so data workers can draw masks off the training loop) and the loss of one
masked batch. :class:`~terramind.train.pretrain.PretrainModule` is the Lightning shell around these.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from terramind.checkpoints.io import load_into, read_state_dict
from terramind.core.errors import CheckpointError, InputError
from terramind.masking import (
    ImageBatchMask,
    MaskingConfig,
    SequenceBatchMask,
    Stream,
    StreamKind,
    collate_masks,
    sample_masks,
)
from terramind.modalities import PATCH_SIZE, Kind, get_modality, standardize
from terramind.modalities.tokens import PAD_ID
from terramind.model import CONFIGS, TerraMind, TerraMindConfig
from terramind.model.terramind import Encoded
from terramind.train.config import ModalityEntry, PretrainConfig
from terramind.train.losses import LossResult, TargetLogits, masked_token_loss

if TYPE_CHECKING:
    from terramind.data.sample import Batch
    from terramind.tokenizers import CoordsTokenizer

# Sequence modalities this trainer tokenizes itself, from each sample's centre lon/lat.
SEQUENCE_SOURCES = frozenset({"coords"})


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


def masked_modeling_loss(
    model: TerraMind, modalities: Sequence[RunModality], masked: MaskedBatch, reduction: str = "mod"
) -> LossResult:
    """Return the pretraining loss: encode a batch's input tokens, decode its target tokens, cross-entropy.

    Args:
        model: The model being trained.
        modalities: The run's modalities (input and target keys).
        masked: Raw pixels and token ids, with the masks of the step.
        reduction: ``mod`` or ``token`` (:func:`~terramind.train.losses.masked_token_loss`).
    """
    data, images = masked.batch, masked.images
    # Every input is embedded every step, with an all-False mask when the budgets gave it nothing: its
    # parameters then get a (zero) gradient on every rank, which sharded training (FSDP) needs.
    inputs, masks = {}, {}
    for m in modalities:
        if m.sequence:
            seq = masked.sequences[m.name]
            if m.input_key is not None:
                inputs[m.input_key], masks[m.input_key] = seq.input_ids, seq.input_valid
            continue
        mask = images[m.name].input_mask.to(masked.batch.center_lonlat.device)
        if m.input_key is None:
            continue
        if m.pixel_input:
            inputs[m.input_key] = standardize_pixels(m, data.pixels[m.name])
        else:
            inputs[m.input_key] = data.tokens[m.name]
        masks[m.input_key] = mask
    encoded = model.encode(inputs, masks)
    # Every target is decoded every step, even one without targets in this batch (a padded query that the
    # loss ignores): the decoder then runs the same calls on every rank, which sharded training (FSDP)
    # needs, and the loss is unchanged (a modality without valid targets adds nothing).
    outputs = {}
    for m in modalities:
        if m.target_key is None:
            continue
        if m.sequence:
            outputs[m.name] = sequence_target(model, encoded, m.target_key, masked.sequences[m.name])
            continue
        ids = data.tokens[m.name]  # (B, h, w)
        positions, valid = _at_least_one(images[m.name])  # (B, n)
        grid = (int(ids.shape[1]), int(ids.shape[2]))
        logits = model.decode_logits(encoded, m.target_key, positions, grid)
        answers = ids.flatten(1).gather(1, positions)  # (B, n)
        outputs[m.name] = TargetLogits(logits, answers, valid)
    if not any(bool(o.valid.any()) for o in outputs.values()):  # e.g. span masking left no coords target
        return LossResult(sum(o.logits.sum() for o in outputs.values()) * 0.0, {}, {}, 0)  # type: ignore[arg-type]
    return masked_token_loss(outputs, reduction)


def sequence_target(model: TerraMind, encoded: Encoded, key: str, seq: SequenceBatchMask) -> TargetLogits:
    """Return teacher-forced logits of a span-masked target: each token predicts the next one."""
    logits = model.decode_sequence_logits(encoded, key, seq.target_ids[:, :-1])  # (B, L-1, V)
    return TargetLogits(logits, seq.target_ids[:, 1:], seq.target_valid[:, 1:])


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
