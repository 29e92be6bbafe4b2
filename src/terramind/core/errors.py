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


class OutputError(InputError):
    """An output path that cannot be written: a missing or unwritable folder, a file where a folder goes."""


class DiskFullError(TerraMindError, OSError):
    """The disk filled while writing an output; the previous state (or a resumable one) is kept."""


class BusyError(TerraMindError, RuntimeError):
    """Another process holds the output folder's lock (two runs writing the same outputs)."""


class ResumeError(InputError):
    """Resume state that belongs to another run: other weights, inputs or options than this one."""
