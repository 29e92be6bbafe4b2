"""Pre-norm transformer blocks: the encoder block and the decoder block with cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from terramind.layers.attention import Attention
from terramind.layers.mlp import Mlp
from terramind.layers.norm import LayerNorm


class Block(nn.Module):
    """Encoder block: ``x + attn(norm1 x)``, then ``x + mlp(norm2 x)``.

    Args:
        dim: Model width.
        num_heads: Attention heads.
        mlp_hidden: Hidden width of the MLP.
        mlp: ``"gelu"`` or ``"swiglu"``.
        qkv_bias: Bias on q/k/v projections.
        proj_bias: Bias on the attention output projection.
        mlp_bias: Bias on the MLP layers.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden: int,
        mlp: str = "gelu",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        mlp_bias: bool = True,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias)
        self.norm2 = LayerNorm(dim, norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, mlp, mlp_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block on ``x`` (B, N, D); ``mask`` is an SDPA boolean mask (True = may attend)."""
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to a context, MLP; each pre-normed and residual.

    Args mirror :class:`Block`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden: int,
        mlp: str = "gelu",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        mlp_bias: bool = True,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim, norm_eps)
        self.self_attn = Attention(dim, num_heads, qkv_bias, proj_bias)
        self.query_norm = LayerNorm(dim, norm_eps)
        self.context_norm = LayerNorm(dim, norm_eps)
        self.cross_attn = Attention(dim, num_heads, qkv_bias, proj_bias, cross=True)
        self.norm2 = LayerNorm(dim, norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, mlp, mlp_bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        cross_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the block.

        Args:
            x: Decoder queries (B, N, D).
            context: Encoder context (B, M, D).
            self_mask: SDPA boolean mask over (N, N) (True = may attend), e.g. causal for sequences.
            cross_mask: SDPA boolean mask over (N, M), e.g. encoder padding.

        Returns:
            (B, N, D).
        """
        x = x + self.self_attn(self.norm1(x), mask=self_mask)
        x = x + self.cross_attn(self.query_norm(x), self.context_norm(context), mask=cross_mask)
        return x + self.mlp(self.norm2(x))
