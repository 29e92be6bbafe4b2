"""A tiny stand-in backbone with the TerraMind backbone surface: dict of (B,C,H,W) -> list of (B,N,D)."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from torch import nn


class StandInBackbone(nn.Module):
    def __init__(self, channels: dict[str, int], dim: int = 32, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.ModuleDict({m: nn.Linear(c * 256, dim) for m, c in channels.items()})
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True) for _ in range(depth)
        )
        self.out_channels = [dim] * depth

    def forward(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        # (B, C, H, W) -> (B, N, 256 C) -> (B, N, D), averaged over modalities ("mean" merge)
        tokens = [
            self.embed[m](rearrange(x.float(), "b c (h p) (w q) -> b (h w) (p q c)", p=16, q=16))
            for m, x in inputs.items()
        ]
        x = torch.stack(tokens).mean(0)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


@pytest.fixture
def standin() -> StandInBackbone:
    torch.manual_seed(0)
    return StandInBackbone({"S2L2A": 12, "S1RTC": 2})


@pytest.fixture
def small_standin() -> StandInBackbone:
    """S2L2A only, width 16, four blocks."""
    torch.manual_seed(0)
    return StandInBackbone({"S2L2A": 12}, dim=16, depth=4)
