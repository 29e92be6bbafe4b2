"""One sample's masks over all modalities, and their collation into batch tensors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from terramind.core.errors import InputError
from terramind.masking.budget import Budgets, MaskingConfig, StreamKind, draw_budgets
from terramind.masking.image import ImageMask, image_mask
from terramind.masking.sequence import SpanMask, span_mask
from terramind.modalities.tokens import PAD_ID


@dataclass(frozen=True)
class TokenMasks:
    """Masks of one sample.

    Attributes:
        budgets: The drawn budgets (stream order of the config).
        images: Input/target positions per image stream.
        sequences: Span-masked ids per sequence stream.
    """

    budgets: Budgets
    images: Mapping[str, ImageMask]
    sequences: Mapping[str, SpanMask]

    @property
    def num_inputs(self) -> int:
        """Encoder tokens used by this sample."""
        return sum(len(m.input_positions) for m in self.images.values()) + sum(
            len(s.input_ids) for s in self.sequences.values()
        )

    @property
    def num_targets(self) -> int:
        """Decoder target tokens of this sample."""
        return sum(len(m.target_positions) for m in self.images.values()) + sum(
            len(s.target_ids) for s in self.sequences.values()
        )


def sample_masks(
    config: MaskingConfig,
    rng: np.random.Generator,
    *,
    present: Sequence[str] | None = None,
    sequences: Mapping[str, np.ndarray] | None = None,
) -> TokenMasks:
    """Draw budgets and positions for one sample.

    Args:
        config: The masking scheme.
        rng: Source of randomness (e.g. ``np.random.default_rng((seed, sample_index))``).
        present: Streams this sample has (default: all); missing ones get no inputs or targets.
        sequences: Token ids of each present sequence stream.

    Returns:
        The sample's masks.
    """
    sequences = sequences or {}
    names = [s.name for s in config.streams]
    present_set = set(names if present is None else present)
    if unknown := present_set - set(names):
        raise InputError(f"unknown streams {sorted(unknown)}; the masking config has {names}")
    for stream in config.streams:
        if stream.kind is StreamKind.SEQUENCE and stream.name in present_set and stream.name not in sequences:
            raise InputError(f"sequence stream {stream.name!r} is present but its ids were not given")
    available = [s.num_tokens if s.name in present_set else 0 for s in config.streams]
    budgets = draw_budgets(config, rng, available)
    images: dict[str, ImageMask] = {}
    spans: dict[str, SpanMask] = {}
    for stream, n_in, n_tgt, n_avail in zip(
        config.streams, budgets.inputs, budgets.targets, available, strict=True
    ):
        if n_avail == 0:
            continue
        if stream.kind is StreamKind.SEQUENCE:
            spans[stream.name] = span_mask(np.asarray(sequences[stream.name]), n_in, n_tgt, rng)
        else:
            images[stream.name] = image_mask(stream.num_tokens, n_in, n_tgt, rng)
    return TokenMasks(budgets, MappingProxyType(images), MappingProxyType(spans))


@dataclass(frozen=True)
class ImageBatchMask:
    """Batched masks of one image stream.

    Attributes:
        input_mask: ``(B, N)`` bool, True = encoder input.
        target_positions: ``(B, T)`` long, padded to the largest target count in the batch.
        target_valid: ``(B, T)`` bool, False on padding (ignored by the loss).
    """

    input_mask: torch.Tensor
    target_positions: torch.Tensor
    target_valid: torch.Tensor


@dataclass(frozen=True)
class SequenceBatchMask:
    """Batched span-masked sequences: ids padded with ``[PAD]`` and validity masks, ``(B, L)`` each."""

    input_ids: torch.Tensor
    input_valid: torch.Tensor
    target_ids: torch.Tensor
    target_valid: torch.Tensor


def _pad(rows: Sequence[Sequence[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        valid[i, : len(row)] = True
    return ids, valid


def collate_masks(
    masks: Sequence[TokenMasks], config: MaskingConfig
) -> tuple[dict[str, ImageBatchMask], dict[str, SequenceBatchMask]]:
    """Stack per-sample masks into batch tensors (streams missing in a sample: no inputs, no targets).

    Args:
        masks: One entry per sample.
        config: The scheme that drew them.

    Returns:
        Image stream masks and sequence stream masks, keyed by stream name.
    """
    images: dict[str, ImageBatchMask] = {}
    sequences: dict[str, SequenceBatchMask] = {}
    for stream in config.streams:
        if stream.kind is StreamKind.SEQUENCE:
            spans = [m.sequences.get(stream.name, SpanMask((), ())) for m in masks]
            in_ids, in_valid = _pad([s.input_ids for s in spans], stream.num_tokens)
            tgt_ids, tgt_valid = _pad([s.target_ids for s in spans], stream.num_tokens + 1)
            sequences[stream.name] = SequenceBatchMask(in_ids, in_valid, tgt_ids, tgt_valid)
            continue
        empty = np.zeros(0, dtype=np.int64)
        per = [m.images.get(stream.name) for m in masks]
        input_mask = torch.zeros((len(masks), stream.num_tokens), dtype=torch.bool)
        for i, m in enumerate(per):
            if m is not None:
                input_mask[i, torch.from_numpy(np.array(m.input_positions))] = True
        targets = [empty if m is None else m.target_positions for m in per]
        positions, valid = _pad([t.tolist() for t in targets], max(len(t) for t in targets))
        images[stream.name] = ImageBatchMask(input_mask, positions, valid)
    return images, sequences
