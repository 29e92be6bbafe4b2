"""Dense decoders over a feature pyramid: UNet, UPerNet and a light FCN.

Every decoder takes the neck's maps (finest first), returns one ``(B, out_channels, h, w)`` map at the
finest resolution, and exposes ``out_channels``. Pick one by name with :func:`build_decoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from terramind.core.errors import TerraMindError


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """Convolution (no bias: BN follows), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Decoder(nn.Module):
    """Base of the decoders: a finest-first list of maps in, one map with ``out_channels`` out."""

    out_channels: int


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class UNetDecoder(Decoder):
    """UNet-style decoder: start at the coarsest map, upsample, concatenate the next finer map, convolve.

    Args:
        in_channels: Channels of the pyramid maps, finest first.
        channels: Output channels of each stage, coarsest stage first (one per map); the last is the output.
    """

    def __init__(self, in_channels: Sequence[int], channels: Sequence[int] = (256, 128, 64, 32)) -> None:
        super().__init__()
        if len(channels) != len(in_channels):
            raise TerraMindError(
                f"UNet needs one channel count per pyramid map ({len(in_channels)}), got {channels}"
            )
        skips = list(reversed(in_channels))  # coarsest first
        self.first = conv_bn_relu(skips[0], channels[0])
        self.stages = nn.ModuleList(
            nn.Sequential(
                conv_bn_relu(channels[i - 1] + skips[i], channels[i]), conv_bn_relu(channels[i], channels[i])
            )
            for i in range(1, len(channels))
        )
        self.out_channels = channels[-1]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode a finest-first pyramid into one map at the finest resolution."""
        skips = list(reversed(features))
        x = self.first(skips[0])
        for stage, skip in zip(self.stages, skips[1:], strict=True):
            x = stage(torch.cat([_resize(x, skip), skip], dim=1))
        return x


class UPerNetDecoder(Decoder):
    """UPerNet (Xiao et al. 2018): pyramid pooling on the coarsest map plus an FPN over all maps, fused.

    Args:
        in_channels: Channels of the pyramid maps, finest first.
        channels: Width of the FPN and of the output.
        pool_scales: Output sizes of the pyramid pooling module.
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int = 256, pool_scales: Sequence[int] = (1, 2, 3, 6)
    ) -> None:
        super().__init__()
        self.pools = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels[-1], channels, 1))
            for s in pool_scales
        )
        self.ppm_out = conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels)
        self.out_channels = channels

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode a finest-first pyramid into one map at the finest resolution."""
        top = features[-1]
        ppm = [top] + [_resize(pool(top), top) for pool in self.pools]
        levels = [lat(f) for lat, f in zip(self.lateral, features[:-1], strict=True)] + [
            self.ppm_out(torch.cat(ppm, 1))
        ]
        for i in range(len(levels) - 1, 0, -1):  # top-down pathway
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1])
        outs = [conv(lv) for conv, lv in zip(self.fpn, levels[:-1], strict=True)] + [levels[-1]]
        return self.fuse(torch.cat([_resize(o, outs[0]) for o in outs], dim=1))


class FCNDecoder(Decoder):
    """A light decoder: a few 3x3 convolutions on the finest map (``num_convs=0``: a linear probe).

    Args:
        in_channels: Channels of the pyramid maps, finest first (only the finest is used).
        channels: Width of the convolutions.
        num_convs: Number of conv-BN-ReLU layers.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 128, num_convs: int = 1) -> None:
        super().__init__()
        layers = [conv_bn_relu(in_channels[0] if i == 0 else channels, channels) for i in range(num_convs)]
        self.body = nn.Sequential(*layers)
        self.out_channels = channels if num_convs else in_channels[0]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode the finest map of the pyramid."""
        return self.body(features[0])


DECODERS: dict[str, Callable[..., Decoder]] = {
    "unet": UNetDecoder,
    "upernet": UPerNetDecoder,
    "fcn": FCNDecoder,
}


def build_decoder(name: str, in_channels: Sequence[int], **kwargs: object) -> Decoder:
    """Build a decoder by name (``unet``, ``upernet``, ``fcn``) for a pyramid with ``in_channels``."""
    if name not in DECODERS:
        raise TerraMindError(f"unknown decoder {name!r}: choose one of {sorted(DECODERS)}")
    return DECODERS[name](list(in_channels), **kwargs)
