"""Feed-forward layers: a plain GELU MLP (tiny/small) and a bias-free SwiGLU (base/large), model/config.py."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Mlp(nn.Module):
    """Two- or three-matrix feed-forward layer.

    ``gelu``: ``fc2(GELU(fc1 x))`` with exact (erf) GELU. ``swiglu``: ``fc2(SiLU(fc1 x) * fc3 x)`` (Shazeer
    2020). The names fc1/fc2/fc3 are the official checkpoint's.

    Args:
        dim: Input and output width.
        hidden: Hidden width (already the final number: 768 for tiny, 2048 for base SwiGLU, ...).
        kind: ``"gelu"`` or ``"swiglu"``.
        bias: Whether the linear layers have biases.
    """

    def __init__(self, dim: int, hidden: int, kind: str = "gelu", bias: bool = True):
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"unknown MLP kind {kind!r}: use 'gelu' or 'swiglu'")
        self.kind = kind
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias) if kind == "swiglu" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward layer to ``x`` (..., dim)."""
        if self.fc3 is None:
            return self.fc2(F.gelu(self.fc1(x)))
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))
