"""Necks: from the backbone's per-block token lists to a pyramid of feature maps for a dense decoder.

The backbone returns one ``(B, N, D)`` tensor per encoder block (model/backbone.py). A dense decoder wants
``(B, C, h, w)`` maps at several resolutions, so the neck (1) picks layers, (2) folds tokens back into the
patch grid and (3) learns up- and downsampling to a pyramid. The default scales (4, 2, 1, 1/2) of a 14x14
grid give 56, 28, 14 and 7 px maps, as the reference's ``LearnedInterpolateToPyramidal`` does for ViTs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from terramind.core.errors import ShapeError, TerraMindError

DEFAULT_SCALES = (4.0, 2.0, 1.0, 0.5)


def default_layer_indices(depth: int, count: int = 4) -> list[int]:
    """Evenly spaced block indices ending at the last: depth 12 -> [2, 5, 8, 11], 24 -> [5, 11, 17, 23]."""
    step = depth // count
    return [step * (i + 1) - 1 for i in range(count)]


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Fold patch tokens into a feature map.

    Args:
        tokens: ``(B, N, D)`` tokens in row-major patch order.
        grid: ``(h, w)`` of the patch grid; None assumes a square grid.

    Returns:
        ``(B, D, h, w)`` feature map.
    """
    n = tokens.shape[1]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ShapeError(f"cannot fold {n} tokens into a square grid: pass grid=(h, w)")
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise ShapeError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    # (B, h*w, D) -> (B, D, h, w)
    return rearrange(tokens, "b (h w) d -> b d h w", h=grid[0], w=grid[1])


def _resampler(dim: int, scale: float) -> tuple[nn.Module, int]:
    """Build the learned resampling stage of one pyramid level; returns it and its output channels.

    Each x2 upsampling is a stride-2 transposed convolution that halves the channels (BN + GELU between
    stages); scale 1 is the identity and scale 1/2 a 2x2 max pool.
    """
    if scale < 1:
        factor = round(1 / scale)
        return nn.MaxPool2d(factor, factor), dim
    steps = round(math.log2(scale))
    if 2**steps != scale:
        raise TerraMindError(f"pyramid scales must be powers of two, got {scale}")
    layers: list[nn.Module] = []
    channels = dim
    for i in range(steps):
        layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
        channels //= 2
        if i < steps - 1:
            layers += [nn.BatchNorm2d(channels), nn.GELU()]
    return (nn.Sequential(*layers) if layers else nn.Identity()), channels


class PyramidNeck(nn.Module):
    """Select layers, fold tokens into maps and resample them to a pyramid.

    Args:
        dim: Token width of the backbone (per selected layer).
        layer_indices: Which block outputs to use (negative indices count from the end).
        scales: Resampling factor per selected layer (powers of two); None keeps every map at the patch grid.
    """

    def __init__(self, dim: int, layer_indices: Sequence[int], scales: Sequence[float] | None = None) -> None:
        super().__init__()
        self.layer_indices = list(layer_indices)
        scales = list(scales) if scales is not None else [1.0] * len(self.layer_indices)
        if len(scales) != len(self.layer_indices):
            raise TerraMindError(
                f"{len(scales)} scales for {len(self.layer_indices)} layers: give one per layer"
            )
        stages = [_resampler(dim, s) for s in scales]
        self.stages = nn.ModuleList(stage for stage, _ in stages)
        self.out_channels = [c for _, c in stages]

    def forward(
        self, layers: Sequence[torch.Tensor], grid: tuple[int, int] | None = None
    ) -> list[torch.Tensor]:
        """Turn the backbone's layer list into feature maps, finest first.

        Args:
            layers: One ``(B, N, D)`` tensor per encoder block.
            grid: Patch grid ``(h, w)``; None assumes square.

        Returns:
            One ``(B, C_i, h_i, w_i)`` map per selected layer.
        """
        if max(self.layer_indices) >= len(layers) or min(self.layer_indices) < -len(layers):
            raise ShapeError(
                f"layer indices {self.layer_indices} do not fit a backbone with {len(layers)} blocks"
            )
        return [
            stage(tokens_to_map(layers[i], grid))
            for i, stage in zip(self.layer_indices, self.stages, strict=True)
        ]
