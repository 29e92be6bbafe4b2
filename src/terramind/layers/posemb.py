"""Fixed sin-cos positional embeddings (1-D and 2-D) and their interpolation to other grids."""

from __future__ import annotations

import torch
from einops import rearrange
from torch.nn import functional as F


def _frequencies(n: int, temperature: float) -> torch.Tensor:
    """``1 / temperature ** (k / n)`` for k = 0..n-1 (MoCo-v3 sin-cos frequencies)."""
    return 1.0 / temperature ** (torch.arange(n, dtype=torch.float32) / n)


def sincos_1d(length: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sin-cos embedding ``[sin(n w), cos(n w)]``.

    Args:
        length: Number of positions.
        dim: Embedding width (even).
        temperature: Frequency base.

    Returns:
        (1, length, dim).
    """
    if dim % 2:
        raise ValueError(f"1-D sin-cos embedding needs an even width, got {dim}")
    angles = torch.outer(torch.arange(length, dtype=torch.float32), _frequencies(dim // 2, temperature))
    return torch.cat([angles.sin(), angles.cos()], dim=1)[None]


def sincos_2d(rows: int, cols: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sin-cos embedding of a row-major grid: ``[sin(r w), cos(r w), sin(c w), cos(c w)]``.

    The first half of the channels encodes the row, the second the column (tests/layers/test_layers.py).

    Args:
        rows: Grid height.
        cols: Grid width.
        dim: Embedding width (multiple of 4).
        temperature: Frequency base.

    Returns:
        (1, rows * cols, dim), flat index ``r * cols + c``.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a width divisible by 4, got {dim}")
    omega = _frequencies(dim // 4, temperature)
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    ar = torch.outer(r.reshape(-1).float(), omega)  # (rows*cols, dim/4)
    ac = torch.outer(c.reshape(-1).float(), omega)
    return torch.cat([ar.sin(), ar.cos(), ac.sin(), ac.cos()], dim=1)[None]


def resize_grid(pos: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a grid embedding to another grid size (align_corners=False).

    Args:
        pos: (1, rows * cols, D) embedding on ``grid``.
        grid: Its (rows, cols).
        size: Wanted (rows, cols).

    Returns:
        (1, size[0] * size[1], D); ``pos`` itself when the sizes agree.
    """
    if tuple(size) == tuple(grid):
        return pos
    img = rearrange(pos, "1 (h w) d -> 1 d h w", h=grid[0], w=grid[1])
    img = F.interpolate(img, size=size, mode="bicubic", align_corners=False)
    return rearrange(img, "1 d h w -> 1 (h w) d")
