"""Multi-head self- and cross-attention on top of ``F.scaled_dot_product_attention``.

One class covers both: self-attention uses a fused ``qkv`` projection, cross-attention separate ``q`` and
``kv`` projections (k first, then v), as in the official checkpoints. Masks are boolean with True meaning
"may attend" (SDPA's convention); ``None`` lets SDPA pick its fastest kernel.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention.

    Args:
        dim: Model width.
        num_heads: Number of heads (head width ``dim // num_heads``).
        qkv_bias: Bias on the q/k/v projections.
        proj_bias: Bias on the output projection.
        cross: Cross-attention (queries from ``x``, keys and values from ``context``).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, proj_bias: bool = True, cross: bool = False
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: Queries (B, N, D); also keys and values for self-attention.
            context: Keys and values (B, M, D) for cross-attention.
            mask: Boolean, broadcastable to (B, heads, N, M); True = may attend.

        Returns:
            (B, N, D).
        """
        h = self.num_heads
        if self.cross:
            if context is None:
                raise ValueError("cross-attention needs a context")
            q = rearrange(self.q(x), "b n (h d) -> b h n d", h=h)
            k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=h)
        else:
            q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=h)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale defaults to head_dim ** -0.5
        return self.proj(rearrange(y, "b h n d -> b n (h d)"))
