"""Lightning tasks on time series: temporal segmentation (crop types, floods) and bi-temporal change.

They are :class:`terramind.finetune.SegmentationTask` (same loss, metrics, optimiser, neck, decoder and
head) over a :class:`terramind.finetune.temporal.TemporalBackbone`; only the model's input differs: a
:class:`terramind.data.series.Series` (``(B, C, T, H, W)`` with time stamps and masks) instead of one date,
as :class:`terramind.finetune.temporal_data.TemporalDataModule` batches it.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from terramind.core.errors import TerraMindError
from terramind.data.padding import crop_to
from terramind.data.series import Series, as_series
from terramind.finetune.model import DenseModel, input_size
from terramind.finetune.tasks import SegmentationTask, _pad_inputs  # the single-time padding, shared
from terramind.finetune.temporal import TemporalBackbone
from terramind.modalities.tokens import PATCH_SIZE as PATCH


class SeriesDenseModel(nn.Module):
    """A :class:`DenseModel` whose backbone takes a :class:`Series`: neck, decoder and head as they are."""

    def __init__(self, dense: DenseModel) -> None:
        super().__init__()
        self.dense = dense

    @property
    def backbone(self) -> nn.Module:
        """The temporal backbone (what ``freeze_backbone`` freezes)."""
        return self.dense.backbone

    @property
    def out_channels(self) -> int:
        """Classes or values per pixel (what ``finetune scene`` writes), as :class:`DenseModel` declares."""
        return int(self.dense.out_channels)

    def forward(self, series: Series | dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, out_channels, H, W)`` outputs for series of size ``H x W``."""
        series = as_series(series)
        h, w = input_size(series.inputs)
        layers = self.dense.backbone(series)
        features = self.dense.neck(layers, grid=(h // PATCH, w // PATCH))
        return self.dense.head(self.dense.decoder(features), size=(h, w))


class TemporalSegmentationTask(SegmentationTask):
    """Semantic segmentation from a time series (PASTIS-like crop types, ImpactMesh floods).

    Args:
        backbone: A :class:`TemporalBackbone`.
        num_classes: Number of classes.
        **options: Every option of :class:`terramind.finetune.SegmentationTask` (loss, decoder, lr, ...).
    """

    model: SeriesDenseModel  # type: ignore[assignment]

    def __init__(self, backbone: TemporalBackbone, num_classes: int, **options: Any) -> None:
        if not isinstance(backbone, TemporalBackbone):
            raise TerraMindError(
                f"{type(self).__name__} needs a terramind.finetune.temporal.TemporalBackbone, got "
                f"{type(backbone).__name__}: wrap the encoder (in a config: add a temporal: section)"
            )
        super().__init__(backbone, num_classes, **options)
        self.model = SeriesDenseModel(self.model)  # type: ignore[arg-type]

    def predict_inputs(self, inputs: Any) -> torch.Tensor:
        """Raw outputs for a series, padded to the patch multiple and cropped back (as single dates are).

        Every ``(B, C, T, H, W)`` series and static ``(B, C, H, W)`` input is mirror-padded at the bottom and
        right to sides that are multiples of 16 (:mod:`terramind.data.padding`); stamps and masks are kept.
        """
        series = as_series(inputs)
        height, width = next(iter(series.inputs.values())).shape[-2:]
        out = self(Series(_pad_inputs(series.inputs), series.times, series.valid))
        return (
            cast(torch.Tensor, crop_to(out, height, width)) if out.ndim == 4 else out
        )  # slices a tensor too


class ChangeDetectionTask(TemporalSegmentationTask):
    """Bi-temporal change detection: two dates (before, after) -> change classes per pixel.

    The backbone's aggregator must compare the two dates: ``difference`` (later minus earlier) or
    ``concat`` (both dates side by side, ``steps=2``).

    Args:
        backbone: A :class:`TemporalBackbone` with the ``difference`` or ``concat`` aggregator.
        num_classes: Change classes (2: no change / change).
        **options: Options of :class:`terramind.finetune.SegmentationTask`.
    """

    def __init__(self, backbone: TemporalBackbone, num_classes: int = 2, **options: Any) -> None:
        aggregator = getattr(backbone, "aggregator_name", None)
        if aggregator not in ("difference", "concat"):
            raise TerraMindError(
                "change detection compares two dates: use the 'difference' or 'concat' aggregator, "
                f"got {aggregator!r}"
            )
        super().__init__(backbone, num_classes, **options)
