"""Per-modality input and output embeddings, with the official attribute names (test_model_parity.py).

Each encoder embedding maps its input to ``(x, emb)``: the content tokens ``x`` (B, N, D) and their position
plus modality embedding ``emb`` (B, N, D). They are kept apart because the decoder context adds ``emb`` again.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from terramind.core.errors import ShapeError
from terramind.layers import resize_grid, sincos_1d, sincos_2d

# The official sequence embeddings build 512 sin-cos rows and keep all of them (a slicing bug),
# so the checkpoints hold (1, 512, D) position buffers even for 4-token coordinates.
SEQUENCE_POSITIONS = 512


def _mod_emb(dim: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))


class PixelEmbedding(nn.Module):
    """Linear 16x16 patch embedding of a raw image modality (keys ``untok_*``).

    Patches are flattened channel-fastest, ``(ph, pw, c)``, into a bias-free Linear (test_model_parity.py).

    Args:
        channels: Input channels.
        dim: Token width.
        patch_size: Patch side in pixels.
        grid: Token grid the stored positions are built for, (14, 14).
        bands: Band names of the channels, for error messages and band selection (empty: unnamed).
    """

    pos_emb: torch.Tensor

    def __init__(
        self,
        channels: int,
        dim: int,
        patch_size: int = 16,
        grid: tuple[int, int] = (14, 14),
        bands: tuple[str, ...] = (),
    ):
        super().__init__()
        self.channels = channels
        self.bands = bands
        self.patch_size = patch_size
        self.grid = grid
        self.proj = nn.Linear(channels * patch_size**2, dim, bias=False)
        self.register_buffer("pos_emb", sincos_2d(*grid, dim))
        self.mod_emb = _mod_emb(dim)

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the learned modality embedding, which gets no weight decay (``terramind.layers.decay``)."""
        return ("mod_emb",)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a standardized image (B, C, H, W); H, W multiples of the patch size (checked by the caller).

        Returns:
            ``x`` (B, H/16 * W/16, D) and ``emb`` (1, N, D).
        """
        p = self.patch_size
        patches = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)
        size = (x.shape[-2] // p, x.shape[-1] // p)
        return self.proj(patches), resize_grid(self.pos_emb, self.grid, size) + self.mod_emb


class TokenEmbedding(nn.Module):
    """Embedding of discrete image tokens (keys ``tok_*``), optionally with the tied output layer.

    As a decoder embedding (``logits=True``) it also owns ``to_logits``, whose weight *is*
    ``token_emb.weight`` (weight tying; tests/model/test_terramind.py).

    Args:
        vocab_size: Codebook size.
        dim: Token width.
        grid: Token grid of the stored positions.
        logits: Add the tied ``to_logits`` projection.
    """

    pos_emb: torch.Tensor

    def __init__(self, vocab_size: int, dim: int, grid: tuple[int, int] = (14, 14), logits: bool = False):
        super().__init__()
        self.grid = grid
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.register_buffer("pos_emb", sincos_2d(*grid, dim))
        self.mod_emb = _mod_emb(dim)
        if logits:
            self.to_logits = nn.Linear(dim, vocab_size, bias=False)
            self.to_logits.weight = self.token_emb.weight

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the learned modality embedding, which gets no weight decay (``terramind.layers.decay``)."""
        return ("mod_emb",)

    def positions(self, size: tuple[int, int]) -> torch.Tensor:
        """Position plus modality embedding of a token grid ``size``, (1, h*w, D)."""
        return resize_grid(self.pos_emb, self.grid, size) + self.mod_emb

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed token ids (B, h, w), or (B, N) with N a perfect square.

        Returns:
            ``x`` (B, N, D) and ``emb`` (1, N, D).
        """
        return self.token_emb(ids.flatten(1)), self.positions(token_grid(ids))


class SequenceEmbedding(nn.Module):
    """Embedding of a token sequence (``coords``, ``caption``) with 1-D sin-cos positions.

    Args:
        vocab_size: Vocabulary size (id 0 is padding).
        dim: Token width.
        logits: Add the tied ``to_logits`` projection (decoder side).
    """

    pos_emb: torch.Tensor

    def __init__(self, vocab_size: int, dim: int, logits: bool = False):
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.register_buffer("pos_emb", sincos_1d(SEQUENCE_POSITIONS, dim))
        self.mod_emb = _mod_emb(dim)
        if logits:
            self.to_logits = nn.Linear(dim, vocab_size, bias=False)
            self.to_logits.weight = self.token_emb.weight

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the learned modality embedding, which gets no weight decay (``terramind.layers.decay``)."""
        return ("mod_emb",)

    def forward(
        self, ids: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed ids (B, L).

        Args:
            ids: Token ids (B, L).
            keep: (B, L) bool, True = token is an input. Positions count only kept tokens, as the official
                model does; dropped tokens get no position.

        Returns:
            ``x`` (B, L, D) and ``emb`` (B or 1, L, D).
        """
        length = ids.shape[1]
        if length > SEQUENCE_POSITIONS:
            raise ShapeError(f"sequence of {length} tokens is longer than {SEQUENCE_POSITIONS} positions")
        if keep is None:
            return self.token_emb(ids), self.pos_emb[:, :length] + self.mod_emb
        index = (keep.long().cumsum(1) - 1).clamp(min=0)  # (B, L) position among kept tokens
        pos = self.pos_emb[0, index] * keep[..., None]  # (B, L, D), zero where dropped
        return self.token_emb(ids), pos + self.mod_emb


def token_grid(ids: torch.Tensor) -> tuple[int, int]:
    """Grid (h, w) of image token ids given as (B, h, w) or (B, N) with N a perfect square.

    Raises:
        ShapeError: For other shapes.
    """
    if ids.dim() == 3:
        return (ids.shape[1], ids.shape[2])
    side = round(ids.shape[1] ** 0.5) if ids.dim() == 2 else -1
    if ids.dim() != 2 or side * side != ids.shape[1]:
        raise ShapeError(
            f"image token ids must be (B, h, w) or (B, N) with N a square number, got {tuple(ids.shape)}"
        )
    return (side, side)
