"""LayerNorm whose bias can be a fixed zero buffer (TerraMind's norms learn no bias)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension.

    With ``bias=False`` the bias is a zero *buffer*, not a parameter: the official checkpoints still store
    ``<name>.bias`` (all zeros), so keeping the buffer keeps the key set identical.

    Args:
        dim: Size of the normalised (last) dimension.
        eps: Added to the variance; TerraMind uses 1e-6.
        bias: Learn a bias (True) or keep a zero buffer (False).
    """

    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        if bias:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (..., dim)."""
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
