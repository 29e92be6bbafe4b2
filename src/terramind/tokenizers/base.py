"""What the composition layers need of a tokenizer: two small protocols and a loader type.

:mod:`terramind.generation`, :mod:`terramind.tim` and :mod:`terramind.api` compose the model with tokenizers
through these protocols only, so any object with ``encode``/``decode`` of the right shapes serves (a test
stub, a tokenizer built elsewhere). The concrete tokenizers of this package satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class ImageTokenizerLike(Protocol):
    """An image tokenizer: standardized image <-> token ids."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w) of a standardized image (LULC: class ids)."""
        ...

    def decode(
        self,
        ids: torch.Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        compile: bool = False,
    ) -> torch.Tensor:
        """Standardized image (B, C, H, W) of ids (B, h, w) (LULC: class logits); ``compile``: a hint."""
        ...


class SequenceTokenizerLike(Protocol):
    """A sequence tokenizer (coordinates): ``[lon, lat]`` <-> token ids."""

    def encode(self, lonlat: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) of ``[lon, lat]`` (B, 2)."""
        ...

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """``[lon, lat]`` (B, 2) of ids (B, L)."""
        ...


Tokenizer = ImageTokenizerLike | SequenceTokenizerLike
TokenizerLoader = Callable[[], Tokenizer]
"""Builds (and fills) a tokenizer when it is needed; each call must give the same weights."""
