"""Atomic file output: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from terramind.core.errors import InputError


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Validate an output path before any work is done.

    Args:
        path: Where the output will be written.
        overwrite: Whether an existing file may be replaced.

    Returns:
        The path as a :class:`Path`.

    Raises:
        InputError: If the folder does not exist, or the file exists and ``overwrite`` is False.
    """
    out = Path(path)
    if not out.parent.is_dir():
        raise InputError(f"output folder {str(out.parent)!r} does not exist: create it first (mkdir -p)")
    if out.exists() and not overwrite:
        raise InputError(f"output file {str(out)!r} exists: pass --overwrite to replace it")
    return out


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` only on success.

    A crash or exception inside the block removes the temporary file, so the target is either the
    complete new file or untouched.

    Args:
        path: Final location of the file.
        overwrite: Whether an existing file may be replaced.

    Yields:
        A temporary path (same folder, same suffix) to write to.
    """
    out = check_output_path(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
