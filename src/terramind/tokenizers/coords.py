"""Coordinate tokenizer: ``[lon, lat]`` <-> WordPiece ids (tests/tokenizers/test_coords.py).

A location is snapped to the 0.25 degree grid and written ``"lat=12.25 lon=-3.50 [EOS]"``; the official
vocabulary holds each ``lat=..``/``lon=..`` string as one entry, so a location is three ids. Decoding reads
the first two ids back as text. The vocabulary is a Hugging Face ``tokenizers`` JSON file (``config.json`` of
``ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords``).
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from terramind.core.errors import CheckpointError, InputError
from terramind.modalities.tokens import PAD_ID

if TYPE_CHECKING:  # imported when a vocabulary is read: generating images needs no Hugging Face tokenizers
    from tokenizers import Tokenizer

GRID = 0.25  # degrees between neighbouring coordinate tokens
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[SOS]", "[EOS]", "[S_0]", "[S_1]", "[S_2]")  # ids 0..6 in the release
_PAIR = re.compile(r"^\s*lat=(-?\d+(?:\.\d+)?)\s+lon=(-?\d+(?:\.\d+)?)\s*$")


def snap(lonlat: Tensor) -> Tensor:
    """Snap ``(B, 2)`` degrees to the 0.25 degree grid (``round(x * 4) / 4``, as the release)."""
    return (lonlat * (1 / GRID)).round() * GRID


def coords_text(lon: float, lat: float) -> str:
    """Return the string a snapped location is tokenized from."""
    return f"lat={lat:.2f} lon={lon:.2f} [EOS]"


class CoordsTokenizer:
    """Tokenize tile centres ``[lon, lat]`` with a WordPiece vocabulary.

    Args:
        tokenizer: A loaded ``tokenizers.Tokenizer``.
    """

    modality = "coords"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CoordsTokenizer:
        """Load the vocabulary JSON (``config.json`` of the release)."""
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_file(os.fspath(path)))
        except Exception as err:  # tokenizers raises a bare Exception for missing or malformed files
            raise CheckpointError(
                f"cannot read coordinate vocabulary {os.fspath(path)!r} ({err}): pass the tokenizers JSON "
                f"file (config.json of ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords)"
            ) from err

    @property
    def codebook_size(self) -> int:
        """Vocabulary size."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, lonlat: Tensor) -> Tensor:
        """Token ids ``(B, L)`` (long) of locations ``(B, 2)`` given as ``[lon, lat]`` degrees.

        Rows of different lengths (only with a vocabulary lacking some location) are right-padded with [PAD].
        """
        if lonlat.ndim != 2 or lonlat.shape[1] != 2:
            raise InputError(f"coordinates must have shape (B, 2) as [lon, lat], got {tuple(lonlat.shape)}")
        values = snap(lonlat.detach().double().cpu())
        if not bool(torch.isfinite(values).all()):
            raise InputError("coordinates contain NaN or infinite values")
        lon, lat = values[:, 0], values[:, 1]
        if bool((lon.abs() > 180).any()) or bool((lat.abs() > 90).any()):
            raise InputError("coordinates must be [lon, lat] with lon in [-180, 180] and lat in [-90, 90]")
        texts = [coords_text(float(a), float(b)) for a, b in zip(lon.tolist(), lat.tolist(), strict=True)]
        rows = [enc.ids for enc in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        width = max(len(r) for r in rows) if rows else 0
        padded = [r + [PAD_ID] * (width - len(r)) for r in rows]
        return torch.tensor(padded, dtype=torch.long).reshape(-1, width)

    def decode(self, ids: Tensor) -> Tensor:
        """Locations ``(B, 2)`` ``[lon, lat]`` of ids ``(B, L)``; NaN where the first two ids are no pair."""
        if ids.ndim != 2 or ids.is_floating_point():
            raise InputError(
                f"coordinate ids must be an integer (B, L) tensor, got {tuple(ids.shape)} {ids.dtype}"
            )
        out = torch.full((ids.shape[0], 2), math.nan, dtype=torch.float32)
        for i, row in enumerate(ids[:, :2].tolist()):
            match = _PAIR.match(self.tokenizer.decode(row, skip_special_tokens=False))
            if match:
                out[i, 0], out[i, 1] = float(match.group(2)), float(match.group(1))
        return out
