"""Public verb for tokenizers: ``create_tokenizer``."""

from __future__ import annotations

from terramind.checkpoints.tokenizers import (
    Weights,
    load_coords_tokenizer,
    load_image_tokenizer,
    tokenizer_record,
)
from terramind.tokenizers import CoordsTokenizer, ImageTokenizer


def create_tokenizer(
    modality: str, *, weights: Weights = None, decode_only: bool = False
) -> ImageTokenizer | CoordsTokenizer:
    """Create the TerraMind v1 tokenizer of one modality.

    Image tokenizers (S2L2A, S1GRD, S1RTC, DEM, NDVI, LULC) map standardized ``(B, C, H, W)`` images to token
    ids ``(B, H/16, W/16)`` with ``encode`` and back with ``decode``; the coordinate tokenizer maps ``(B, 2)``
    ``[lon, lat]`` to ids. Only the requested tokenizer is built and loaded.

    Args:
        modality: Modality name or alias (``"S2L2A"``, ``"s1rtc"``, ``"tok_dem@224"``, ``"coords"``).
        weights: ``None`` for random initialisation (not for coords), ``"hub"`` for the official release
            file, or a local path.
        decode_only: Build an image tokenizer without its encoder (86 M parameters less; ``encode`` raises).

    Returns:
        The tokenizer (image tokenizers are ``nn.Module`` in eval mode).

    Raises:
        ModalityError: Unknown modality or one without a tokenizer.
        CheckpointError: Unreadable weights, a checkpoint of another tokenizer, or offline without a cache.
    """
    record = tokenizer_record(modality)
    if record.config is None:
        return load_coords_tokenizer(weights)
    return load_image_tokenizer(record.modality, weights, decode_only=decode_only)
