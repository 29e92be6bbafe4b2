"""Exceptions raised at the library's boundary.

Every error a user can cause derives from :class:`TerraMindError` and carries a message that says what is
wrong and what to do. The CLI turns these into one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations


class TerraMindError(Exception):
    """Base class of every error caused by user input, files, names or weights."""


class ModalityError(TerraMindError, ValueError):
    """An unknown modality name, or a modality used where it is not supported."""


class InputError(TerraMindError, ValueError):
    """Bad user data: a missing or unreadable file, wrong bands, non-finite values, a bad path."""


class ShapeError(InputError):
    """A tensor or raster whose shape does not fit (channel count, size not a multiple of 16, ...)."""


class CheckpointError(TerraMindError, RuntimeError):
    """Weights that cannot be found, read or loaded (missing/unused keys, wrong size, corrupt file)."""
