"""Public verbs for tokenizers: ``create_tokenizer`` (images) and ``create_coords_tokenizer``."""

from __future__ import annotations

from terramind.build import Weights, build_coords_tokenizer, build_image_tokenizer
from terramind.tokenizers import CoordsTokenizer, ImageTokenizer


def create_tokenizer(modality: str, *, weights: Weights = None, decode_only: bool = False) -> ImageTokenizer:
    """Create the TerraMind v1 image tokenizer of one modality.

    Image tokenizers (S2L2A, S1GRD, S1RTC, DEM, NDVI, LULC) map standardized ``(B, C, H, W)`` images to
    token ids ``(B, H/16, W/16)`` with ``encode`` and back with ``decode``. Only the requested tokenizer is
    built and loaded. The coordinate tokenizer is :func:`create_coords_tokenizer`.

    Args:
        modality: Modality name or alias (``"S2L2A"``, ``"s1rtc"``, ``"tok_dem@224"``).
        weights: ``None``/``"random"`` for random initialisation (seeded from the modality: the same every
            time), ``"hub"`` for the official release file, a local file, or a folder holding the release
            file.
        decode_only: Build the tokenizer without its encoder (86 M parameters less; ``encode`` raises).

    Returns:
        The tokenizer (``nn.Module``) in eval mode.

    Raises:
        ModalityError: Unknown modality, one without a tokenizer, or coords.
        CheckpointError: Unreadable weights, a checkpoint of another tokenizer, or offline without a cache.
    """
    return build_image_tokenizer(modality, weights, decode_only=decode_only)


def create_coords_tokenizer(weights: Weights = "hub") -> CoordsTokenizer:
    """Create the coordinate tokenizer: ``(B, 2)`` ``[lon, lat]`` degrees to token ids ``(B, L)``.

    Its "weights" are a vocabulary (the release's ``config.json``), not trained weights: there is no random
    version.

    Args:
        weights: ``"hub"`` (default), the ``config.json`` file, or a folder holding it.

    Raises:
        CheckpointError: Random weights (None, ``"random"``), an unreadable file, or offline without a cache.
    """
    return build_coords_tokenizer(weights)
