"""terramind: an open, tested implementation of TerraMind (arXiv 2504.11171).

The public verbs live in :mod:`terramind.api` and are re-exported here. They are imported on first use, so
that ``import terramind`` and the CLI stay quick (the tokenizers pull in diffusers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from terramind.core.errors import CheckpointError, InputError, ModalityError, ShapeError, TerraMindError
from terramind.modalities import destandardize, get_modality, modality_names, standardize

if TYPE_CHECKING:
    from terramind.api import (
        create_backbone,
        create_coords_tokenizer,
        create_generator,
        create_model,
        create_tokenizer,
        generate_scene,
    )

__version__ = "0.1.0"

_LAZY = (
    "create_backbone",
    "create_coords_tokenizer",
    "create_generator",
    "create_model",
    "create_tokenizer",
    "generate_scene",
)

__all__ = [
    "CheckpointError",
    "InputError",
    "ModalityError",
    "ShapeError",
    "TerraMindError",
    "__version__",
    "create_backbone",
    "create_coords_tokenizer",
    "create_generator",
    "create_model",
    "create_tokenizer",
    "destandardize",
    "generate_scene",
    "get_modality",
    "modality_names",
    "standardize",
]


def __getattr__(name: str) -> Any:
    """Import the public verbs of :mod:`terramind.api` on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module("terramind.api"), name)
    raise AttributeError(f"module 'terramind' has no attribute {name!r}")
