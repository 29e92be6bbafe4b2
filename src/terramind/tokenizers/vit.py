"""The ViT encoder of all six image tokenizers and the ViT decoder of the LULC tokenizer.

Both are plain pre-LN ViTs (``nn.LayerNorm(eps=1e-6)`` with bias, GELU MLP) built for 256 px inputs: the
fixed 2-D sin-cos position table is a 16x16 grid stored as a frozen Parameter (it is in the official
checkpoints) and resized bicubically to the actual token grid, so 224 px gives 14x14 tokens. A ``post_mlp``
residual MLP with Tanh follows the blocks (computed in fp32 in the encoder). Module names follow the official
state dicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a tokenizer ViT.

    Attributes:
        dim: Token width.
        depth: Number of transformer blocks.
        heads: Attention heads.
        mlp_ratio: Hidden width of every MLP as a multiple of ``dim``.
        patch_size: Pixels per token side.
        grid: Side of the stored position table in tokens (16 = built for 256 px).
    """

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    grid: int = 16

    @property
    def hidden(self) -> int:
        """Hidden width of the MLPs."""
        return int(self.mlp_ratio * self.dim)


def sincos_table(grid: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """2-D sin-cos position table ``(1, dim, grid, grid)`` (MoCo v3 layout).

    Channels ``[0, dim/2)`` encode the row index as ``[sin, cos]``, channels ``[dim/2, dim)`` the column.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    pos = torch.arange(grid, dtype=torch.float32)
    angle = torch.outer(pos, omega)  # (grid, quarter)
    rows = torch.cat([angle.sin(), angle.cos()], dim=1)[:, None, :].expand(grid, grid, 2 * quarter)
    cols = torch.cat([angle.sin(), angle.cos()], dim=1)[None, :, :].expand(grid, grid, 2 * quarter)
    table = torch.cat([rows, cols], dim=-1)  # (row, col, dim)
    return rearrange(table, "h w d -> 1 d h w").contiguous()


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (SDPA)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the token axis of ``x`` ``(B, N, D)``."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Two-layer MLP ``fc1 -> act -> fc2``."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP to the last axis."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, cfg.hidden)

    def forward(self, x: Tensor) -> Tensor:
        """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ViTTrunk(nn.Module):
    """Position table, blocks and Tanh post-MLP: the part encoder and decoder share."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_emb = nn.Parameter(sincos_table(cfg.grid, cfg.dim), requires_grad=False)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.depth)])
        self.norm_mlp = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.post_mlp = Mlp(cfg.dim, cfg.hidden, act=nn.Tanh)

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the sin-cos position table (frozen; were it trained, it would get no weight decay)."""
        return ("pos_emb",)

    def positions(self, h: int, w: int) -> Tensor:
        """Position table resized to an ``h x w`` token grid, as ``(1, h*w, D)``."""
        table = F.interpolate(self.pos_emb, size=(h, w), mode="bicubic", align_corners=False)
        return rearrange(table, "1 d h w -> 1 (h w) d")

    def run(self, tokens: Tensor, h: int, w: int, *, fp32_post: bool) -> Tensor:
        """Add positions, run the blocks and the post-MLP on ``tokens`` ``(B, h*w, D)``."""
        x = self.blocks(tokens + self.positions(h, w))
        if fp32_post:
            # The release computes the post-MLP outside autocast, in fp32 (test_tokenizer_parity.py).
            with torch.autocast(x.device.type, enabled=False):
                x = x.float()
                return x + self.post_mlp(self.norm_mlp(x))
        return x + self.post_mlp(self.norm_mlp(x))


class ViTEncoder(_ViTTrunk):
    """Image ``(B, C, H, W)`` -> feature map ``(B, D, H/16, W/16)``."""

    def __init__(self, in_channels: int, cfg: ViTConfig) -> None:
        super().__init__(cfg)
        self.proj = nn.Conv2d(in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """Encode an image whose sides are multiples of the patch size."""
        feats = self.proj(x)
        h, w = feats.shape[-2:]
        out = self.run(rearrange(feats, "b d h w -> b (h w) d"), h, w, fp32_post=True)
        return rearrange(out, "b (h w) d -> b d h w", h=h, w=w)


class ViTDecoder(_ViTTrunk):
    """Feature map ``(B, D, h, w)`` -> image ``(B, C, 16h, 16w)`` (channel-major unpatchify)."""

    def __init__(self, out_channels: int, cfg: ViTConfig) -> None:
        super().__init__(cfg)
        self.out_channels = out_channels
        self.out_proj = nn.Linear(cfg.dim, out_channels * cfg.patch_size**2)

    def forward(self, x: Tensor) -> Tensor:
        """Decode a feature map to pixels."""
        h, w = x.shape[-2:]
        out = self.out_proj(self.run(rearrange(x, "b d h w -> b (h w) d"), h, w, fp32_post=False))
        p = self.cfg.patch_size
        # b (h w) (c p q) -> b c (h p) (w q): channel-major patches, as the release
        return rearrange(out, "b (h w) (c p q) -> b c (h p) (w q)", h=h, w=w, p=p, q=p)
