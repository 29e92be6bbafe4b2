"""Core: the exception hierarchy and small helpers every other layer may use."""

from terramind.core.errors import (
    BusyError,
    CheckpointError,
    DiskFullError,
    InputError,
    ModalityError,
    OutputError,
    ResumeError,
    ShapeError,
    TerraMindError,
)
from terramind.core.files import atomic_path

__all__ = [
    "BusyError",
    "CheckpointError",
    "DiskFullError",
    "InputError",
    "ModalityError",
    "OutputError",
    "ResumeError",
    "ShapeError",
    "TerraMindError",
    "atomic_path",
]
