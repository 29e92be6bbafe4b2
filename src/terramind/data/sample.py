"""The one sample type of the training data: what every source decodes into and every trainer consumes.

A :class:`Sample` is one location: raw pixels and/or token ids per modality, where it is (CRS, transform,
centre lon/lat), when (a timestamp per modality), and optionally a label. A :class:`Batch` stacks samples
of one crop size into tensors. Masks are not part of either: a trainer attaches them in its own typed
record (``train.pretrain.MaskedBatch``), because masking and data are independent layers.

Modality keys are catalog names (``S2L2A``) or the names of new sensors; token ids are ``(h, w)`` grids for
image modalities (``h = H / 16``), never ``tok_<m>`` keys in a dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from terramind.core.errors import ShapeError
from terramind.modalities import PATCH_SIZE


@dataclass(frozen=True)
class Sample:
    """One training location, decoded by a source.

    Attributes:
        key: Identifier of the location in its source (tile name, TerraMesh sample key).
        pixels: Modality -> raw pixels ``(C, H, W)`` in the stored dtype (standardisation is the consumer's).
        tokens: Modality -> stored token ids ``(h, w)`` on the 16 px token grid of ``pixels``.
        crs: CRS of the pixels (``EPSG:32633``), None when the source does not store it.
        transform: Affine transform ``(a, b, c, d, e, f)`` of the pixel grid, None when not stored.
        center_lonlat: ``(lon, lat)`` of the centre in degrees, None when not stored.
        time: Modality -> ISO 8601 timestamp (modalities without a timestamp are absent).
        label: Target of a supervised task (class map ``(H, W)`` or class id), None for pretraining.
    """

    key: str
    pixels: Mapping[str, np.ndarray] = field(default_factory=dict)
    tokens: Mapping[str, np.ndarray] = field(default_factory=dict)
    crs: str | None = None
    transform: tuple[float, ...] | None = None
    center_lonlat: tuple[float, float] | None = None
    time: Mapping[str, str] = field(default_factory=dict)
    label: np.ndarray | None = None

    def size(self) -> tuple[int, int] | None:
        """Pixel height and width (from the pixels, else from the token grids), None when it holds neither."""
        for array in self.pixels.values():
            return int(array.shape[-2]), int(array.shape[-1])
        for ids in self.tokens.values():
            return int(ids.shape[0]) * PATCH_SIZE, int(ids.shape[1]) * PATCH_SIZE
        return None


@dataclass
class Batch:
    """Samples of one size stacked into tensors (mutable, so Lightning can move it between devices).

    Attributes:
        keys: The samples' keys, in batch order.
        pixels: Modality -> ``(B, C, H, W)`` float32 raw pixels.
        tokens: Modality -> ``(B, h, w)`` int64 stored token ids.
        center_lonlat: ``(B, 2)`` float32 lon/lat in degrees; NaN where a sample has none.
        time: Per sample, modality -> ISO timestamp.
        label: ``(B, ...)`` stacked labels, None when the samples have none.
        skips: The reader's skip record when the batch was made (count, first keys, reasons), so that a
            trainer can store it in its checkpoint even when the reader runs in a DataLoader worker.
    """

    keys: tuple[str, ...]
    pixels: dict[str, torch.Tensor]
    tokens: dict[str, torch.Tensor]
    center_lonlat: torch.Tensor
    time: tuple[Mapping[str, str], ...] = ()
    label: torch.Tensor | None = None
    skips: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        """Return the number of samples."""
        return len(self.keys)

    def to(self, device: torch.device | str) -> Batch:
        """Return the same batch with its tensors on ``device``."""
        return Batch(
            self.keys,
            {k: v.to(device) for k, v in self.pixels.items()},
            {k: v.to(device) for k, v in self.tokens.items()},
            self.center_lonlat.to(device),
            self.time,
            None if self.label is None else self.label.to(device),
            self.skips,
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples that hold the same modalities at the same size.

    Raises:
        ShapeError: The samples differ in modalities or sizes (crop them first).
    """
    first = samples[0]
    for s in samples[1:]:
        if set(s.pixels) != set(first.pixels) or set(s.tokens) != set(first.tokens):
            raise ShapeError(f"samples {first.key} and {s.key} hold different modalities; cannot batch them")
    try:
        pixels = {
            m: torch.from_numpy(np.stack([s.pixels[m] for s in samples]).astype(np.float32))
            for m in first.pixels
        }
        tokens = {
            m: torch.from_numpy(np.stack([s.tokens[m] for s in samples]).astype(np.int64))
            for m in first.tokens
        }
    except ValueError as err:
        raise ShapeError(
            f"samples {first.key}..{samples[-1].key} differ in size: {err}; crop them first"
        ) from err
    nan = (math.nan, math.nan)
    centres = torch.tensor([s.center_lonlat or nan for s in samples], dtype=torch.float32)  # (B, 2)
    labels = [s.label for s in samples]
    label = None if any(x is None for x in labels) else torch.from_numpy(np.stack(labels))  # type: ignore[arg-type]
    return Batch(
        tuple(s.key for s in samples), pixels, tokens, centres, tuple(s.time for s in samples), label
    )
