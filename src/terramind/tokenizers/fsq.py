"""Finite scalar quantisation in TerraMind's own arithmetic (tests/parity/test_tokenizer_parity.py).

Not the tanh-bounded FSQ of Mentzer et al.: each latent dimension ``i`` is squashed with a sigmoid and rounded
to one of ``L_i`` levels, ``n_i = round(sigmoid(z_i) * (L_i - 1))``, and the code is ``n_i / (L_i - 1)`` in
[0, 1]. The token id is ``sum_i n_i * basis_i`` with ``basis = cumprod([1, L_0, L_1, ...])``: the FIRST
dimension is the least significant digit. The quantiser holds no tensors (the official checkpoints hold
none either): its five-entry tables are made where they are used, so a tokenizer built on the meta device
and filled from a file is complete.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from terramind.core.errors import InputError


class FSQ(nn.Module):
    """Sigmoid-bounded finite scalar quantiser with straight-through rounding.

    Args:
        levels: Number of levels per latent dimension, e.g. ``(8, 8, 8, 6, 5)`` (codebook 15360).
    """

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        if not levels or any(int(v) < 2 for v in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {tuple(levels)}")
        self.levels: tuple[int, ...] = tuple(int(v) for v in levels)
        basis = [1]
        for level in self.levels[:-1]:
            basis.append(basis[-1] * level)
        self.basis: tuple[int, ...] = tuple(basis)
        self.codebook_size = basis[-1] * self.levels[-1]

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Levels and basis as long tensors ``(D,)`` on ``device``."""
        return (
            torch.tensor(self.levels, dtype=torch.long, device=device),
            torch.tensor(self.basis, dtype=torch.long, device=device),
        )

    @property
    def dim(self) -> int:
        """Number of latent dimensions (5 for every TerraMind tokenizer)."""
        return len(self.levels)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Quantise latents.

        Args:
            z: Latents ``(B, D, h, w)``.

        Returns:
            Codes ``(B, D, h, w)`` in [0, 1] (straight-through gradient to ``z``) and ids ``(B, h, w)``.
        """
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise InputError(f"FSQ expects latents (B, {self.dim}, h, w), got {tuple(z.shape)}")
        levels, basis = self._tables(z.device)
        span = (levels - 1).to(z.dtype).view(1, -1, 1, 1)
        scaled = torch.sigmoid(z) * span
        number = scaled + (scaled.round() - scaled).detach()  # straight-through round
        codes = number / span
        ids = (number.detach().round().long() * basis.view(1, -1, 1, 1)).sum(dim=1)
        return codes, ids

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """Look up the codes of token ids.

        Args:
            ids: Token ids ``(B, h, w)`` in ``[0, codebook_size)``.

        Returns:
            Codes ``(B, D, h, w)`` in [0, 1] (float32).
        """
        self.check_ids(ids)
        levels, basis = self._tables(ids.device)
        digits = (ids.long().unsqueeze(-1) // basis) % levels  # (B, h, w, D)
        codes = digits.float() / (levels - 1).float()
        return rearrange(codes, "b h w d -> b d h w")

    def check_ids(self, ids: Tensor) -> None:
        """Raise :class:`InputError` unless ``ids`` is an integer ``(B, h, w)`` tensor inside the codebook."""
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise InputError(f"token ids must be an integer tensor, got dtype {ids.dtype}")
        if ids.ndim != 3:
            raise InputError(f"token ids must have shape (B, h, w), got {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise InputError(
                f"token ids must lie in [0, {self.codebook_size}) for FSQ levels {self.levels}, found "
                f"[{int(ids.min())}, {int(ids.max())}]: were they made by another tokenizer?"
            )

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Quantise latents; see :meth:`quantize`."""
        return self.quantize(z)
