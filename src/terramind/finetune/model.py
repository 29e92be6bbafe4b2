"""Task networks: backbone -> neck -> decoder -> head (dense tasks) and backbone -> pooled head.

A backbone here is any module that maps ``{modality: tensor}`` to a list of ``(B, N, D)`` tensors, one per
encoder block, and says its widths in ``out_channels`` (one entry per block), as
:class:`terramind.finetune.backbone.TerraMindBackbone` does. Keeping to that small surface lets the same
task code run on a TiM backbone, a frozen backbone or a test stand-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from terramind.core.errors import ShapeError
from terramind.finetune.decoders import build_decoder
from terramind.finetune.heads import PixelHead, PooledHead
from terramind.finetune.necks import DEFAULT_SCALES, PyramidNeck, default_layer_indices
from terramind.modalities.tokens import PATCH_SIZE as PATCH  # a 224 px input gives a 14x14 token grid


def backbone_widths(backbone: nn.Module) -> list[int]:
    """Return the per-block token widths a backbone declares in ``out_channels``."""
    widths = getattr(backbone, "out_channels", None)
    if not widths:
        raise TypeError(f"{type(backbone).__name__} must declare out_channels (one width per encoder block)")
    return list(widths)


def input_size(inputs: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """Height and width shared by the image inputs; they must be multiples of the patch size."""
    sizes = {tuple(x.shape[-2:]) for x in inputs.values() if x.ndim >= 3}
    if len(sizes) != 1:
        raise ShapeError(f"image inputs must share one size, got {sorted(sizes)}")
    h, w = sizes.pop()
    if h % PATCH or w % PATCH:
        raise ShapeError(f"input size {h}x{w} is not a multiple of {PATCH}: crop or pad the tiles")
    return int(h), int(w)


class DenseModel(nn.Module):
    """Per-pixel model: segmentation logits or regression values at the input resolution.

    Args:
        backbone: Module returning one ``(B, N, D)`` tensor per block; declares ``out_channels``.
        out_channels: Classes (segmentation) or target channels (regression).
        layer_indices: Blocks fed to the neck; None picks four evenly spaced blocks ending at the last.
        decoder: ``unet``, ``upernet`` or ``fcn``.
        decoder_kwargs: Extra arguments of the decoder (e.g. ``channels``).
        scales: Pyramid resampling factor per selected layer; None: (4, 2, 1, 1/2) for four layers,
            otherwise every map stays at the patch grid.
        head_dropout: Dropout before the output convolution.
    """

    def __init__(
        self,
        backbone: nn.Module,
        out_channels: int,
        *,
        layer_indices: Sequence[int] | None = None,
        decoder: str = "unet",
        decoder_kwargs: Mapping[str, Any] | None = None,
        scales: Sequence[float] | None = None,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        widths = backbone_widths(backbone)
        indices = list(layer_indices) if layer_indices is not None else default_layer_indices(len(widths))
        if not indices or not all(-len(widths) <= i < len(widths) for i in indices):
            raise ShapeError(
                f"layer_indices {indices} do not fit a backbone of {len(widths)} blocks: give indices "
                f"0..{len(widths) - 1}"
            )
        if scales is None and len(indices) == len(DEFAULT_SCALES):
            scales = DEFAULT_SCALES
        self.backbone = backbone
        self.out_channels = out_channels
        self.neck = PyramidNeck(widths[indices[0]], indices, scales)
        self.decoder = build_decoder(decoder, self.neck.out_channels, **dict(decoder_kwargs or {}))
        self.head = PixelHead(self.decoder.out_channels, out_channels, head_dropout)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, out_channels, H, W)`` outputs for inputs of size ``H x W``."""
        h, w = input_size(inputs)
        layers = self.backbone(dict(inputs))
        features = self.neck(layers, grid=(h // PATCH, w // PATCH))
        return self.head(self.decoder(features), size=(h, w))


class PooledModel(nn.Module):
    """Per-image model: mean-pooled last-block tokens -> linear logits (multi-class or multi-label)."""

    def __init__(self, backbone: nn.Module, num_outputs: int, head_dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = PooledHead(backbone_widths(backbone)[-1], num_outputs, head_dropout)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, num_outputs)`` logits."""
        return self.head(self.backbone(dict(inputs))[-1])
