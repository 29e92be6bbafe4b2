"""Task heads: per-pixel outputs (segmentation logits, regression values) and per-image class logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PixelHead(nn.Module):
    """Dropout, a 1x1 convolution to ``out_channels`` and bilinear upsampling to the input size.

    Serves segmentation (``out_channels`` = classes, logits) and pixel regression (channels = targets).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Map ``(B, C, h, w)`` features to ``(B, out_channels, *size)``."""
        out = self.proj(self.dropout(x))
        return F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)


class PooledHead(nn.Module):
    """Mean-pool the tokens of the last block, layer norm, dropout, linear: per-image logits."""

    def __init__(self, dim: int, num_outputs: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, num_outputs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map ``(B, N, D)`` tokens to ``(B, num_outputs)`` logits."""
        return self.proj(self.dropout(self.norm(tokens.mean(dim=1))))
