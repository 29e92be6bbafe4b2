"""Core: the exception hierarchy and small helpers every other layer may use."""

from terramind.core.errors import (
    CheckpointError,
    InputError,
    ModalityError,
    ShapeError,
    TerraMindError,
)
from terramind.core.files import atomic_path

__all__ = [
    "CheckpointError",
    "InputError",
    "ModalityError",
    "ShapeError",
    "TerraMindError",
    "atomic_path",
]
