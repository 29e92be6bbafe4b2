"""Writes that cannot lie: output checks, durable atomic files and folders, disk-full detection.

Every output is written to a temporary sibling, flushed to disk (``fsync``), checked by an optional
``verify`` callback (re-opened, readable, the expected shape) and only then renamed over the target, after
which the folder entry is made durable too. An error at any step (including one reported when a file is
closed) leaves the previous file untouched and no temporary behind. A full disk (``ENOSPC``/``EDQUOT``, or a
write error while almost nothing is free: libraries such as GDAL and torch report it in their own words)
becomes :class:`DiskFullError` naming the file and the space needed and free; any other write error becomes
:class:`OutputError`.

Temporary names carry the writer's PID (``.<name>.<pid>.<random>.terramind-tmp<suffix>``), so the next run
that takes a folder's lock (:mod:`terramind.core.lock`) can remove exactly the temporaries of dead runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from terramind.core.errors import DiskFullError, OutputError, TerraMindError

TMP_MARK = ".terramind-tmp"
_TMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+" + re.escape(TMP_MARK))
# Below this many free bytes a failed write is taken for a full disk: GDAL and torch report ENOSPC as
# "write failed" without the errno, and no output of ours is smaller than a few MB of headroom.
DISK_FULL_MARGIN = 16 * 2**20
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")

Verify = Callable[[Path], None]
"""Checks a freshly written temporary file (raise on anything wrong); runs before the rename."""


def _first_existing(path: Path) -> Path:
    """Return the nearest ancestor of ``path`` (or itself) that exists."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_dir(folder: str | os.PathLike[str]) -> Path:
    """Validate a folder that outputs will go into (it may not exist yet; nothing is created here).

    Raises:
        OutputError: The path is a file, lies under a file, or its (nearest existing) folder is not writable.
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} is a file: give a folder path (or remove the file)")
    base = _first_existing(out)
    if not base.is_dir():
        raise OutputError(
            f"output folder {str(out)!r} cannot be created: {str(base)!r} is a file, not a folder"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(
            f"output folder {str(base)!r} is not writable: choose another folder or fix its permissions"
        )
    return out


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Validate an output file path before any work is done.

    Args:
        path: Where the output will be written.
        overwrite: Whether an existing file may be replaced.

    Returns:
        The path as a :class:`Path`.

    Raises:
        OutputError: A path that is a folder, a folder that is missing, is a file or is not writable, or
            an existing file without ``overwrite``.
    """
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"output {str(out)!r} is a folder: give a file path (e.g. {str(out / out.name)!r})")
    parent = out.parent
    if not parent.exists():
        base = _first_existing(parent)
        if not base.is_dir():
            raise OutputError(f"output folder {str(parent)!r} cannot exist: {str(base)!r} is a file")
        raise OutputError(f"output folder {str(parent)!r} does not exist: create it first (mkdir -p)")
    if not parent.is_dir():
        raise OutputError(f"output folder {str(parent)!r} is a file, not a folder: choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"output folder {str(parent)!r} is not writable: choose another folder or fix its permissions"
        )
    if out.exists() and not overwrite:
        raise OutputError(f"output file {str(out)!r} exists: pass --overwrite to replace it")
    return out


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data and entry to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether an error raised while writing into ``folder`` means the disk (or quota) is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(seen).lower() for text in _DISK_FULL_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(exc, Exception) and free_bytes(folder) < DISK_FULL_MARGIN


def free_bytes(folder: Path) -> int:
    """Bytes free to this user in ``folder``'s file system (0 if it cannot be asked)."""
    try:
        return shutil.disk_usage(_first_existing(folder)).free
    except OSError:
        return 0


def disk_full_error(target: Path, needed: int) -> DiskFullError:
    """Build the :class:`DiskFullError` for writing ``target``, needing about ``needed`` bytes."""
    free = free_bytes(target.parent)
    return DiskFullError(
        f"disk full while writing {str(target)!r}: {_mb(max(needed, 1))} needed, {_mb(free)} free; "
        f"free some space (or choose another folder) and rerun: nothing was replaced"
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def write_failure(exc: Exception, target: Path, written: int, expected: int | None) -> Exception:
    """Classify an error raised while writing ``target``.

    A full disk becomes :class:`DiskFullError`, another OS-level write error :class:`OutputError`; anything
    else (a bug or an error of the code producing the data) is returned unchanged.

    Args:
        exc: The error.
        target: The file being written.
        written: Bytes already written to its temporary.
        expected: Expected final size in bytes, when the writer knows it.
    """
    if is_disk_full(exc, target.parent):
        return disk_full_error(target, max(expected or 0, written, _size(target)))
    if not isinstance(exc, OSError):
        return exc
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return OutputError(f"could not write {str(target)!r} ({reason}): check the disk and rerun")


def _finish(tmp: Path, out: Path, verify: Verify | None) -> None:
    """Flush, verify and publish a written temporary file."""
    fsync_path(tmp)
    if verify is not None:
        try:
            verify(tmp)
        except Exception as err:
            if is_disk_full(err, out.parent):  # GDAL may report a failed flush only as an unreadable file
                raise disk_full_error(out, max(_size(tmp), _size(out))) from err
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise OutputError(
                f"{str(out)!r} was written but does not read back correctly ({reason}): "
                f"nothing was replaced; check the disk and rerun"
            ) from err
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    os.replace(tmp, out)
    fsync_path(out.parent)


def temp_name(out: Path) -> tuple[str, str]:
    """``(prefix, suffix)`` of a temporary sibling of ``out`` (see :func:`stale_temporaries`)."""
    return f".{out.name}.{os.getpid()}.", f"{TMP_MARK}{out.suffix}"


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    verify: Verify | None = None,
    expected_size: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; publish it onto ``path`` only when it is sound.

    After the block the temporary is fsynced, checked with ``verify``, renamed over ``path`` and the folder
    fsynced. An exception anywhere removes the temporary and leaves an existing target untouched.

    Args:
        path: Final location of the file.
        overwrite: Whether an existing file may be replaced.
        verify: Reads the temporary back and raises if it is not what was written.
        expected_size: Approximate final size in bytes, for the disk-full message.

    Yields:
        A temporary path (same folder, same suffix) to write to.

    Raises:
        DiskFullError: The disk filled up while writing.
        OutputError: A bad output path, another write error, or a file that does not verify.
    """
    out = check_output_path(path, overwrite=overwrite)
    prefix, suffix = temp_name(out)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        _finish(tmp, out, verify)
    except TerraMindError:
        raise
    except Exception as err:
        failure = write_failure(err, out, _size(tmp) if tmp is not None else 0, expected_size)
        if failure is err:
            raise
        raise failure from err
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create an output folder (and missing parents) for a block; undo that if the block fails early.

    When the block raises (a bad weights file, Ctrl-C before the first tile), the folders this call
    created are removed again if they are still empty, so a failed run leaves no empty folder behind; a
    folder holding anything (resume state, a user's file) is kept.

    Args:
        path: The output folder.

    Yields:
        The folder, as a :class:`~pathlib.Path`.
    """
    folder = Path(path)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for made in created:
            try:
                made.rmdir()
            except OSError:  # not empty (or gone): keep it and every parent
                break
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; publish it whole as ``path`` when the block succeeds.

    An existing folder at ``path`` is replaced (not merged) only with ``replace``; it is moved aside, the new
    one renamed in, and the old one deleted. A failure removes the temporary folder and keeps the old one.

    Raises:
        OutputError: ``path`` is a file, or exists and ``replace`` is False.
    """
    out = Path(path)
    if out.exists() and not (replace and out.is_dir()):
        kind = "folder" if out.is_dir() else "file"
        raise OutputError(f"output {kind} {str(out)!r} exists: pass --overwrite to replace it")
    prefix, suffix = temp_name(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=out.parent))
    except OSError as err:
        raise write_failure(err, out, 0, None) from err
    try:
        yield tmp
        _publish_dir(tmp, out)
    except TerraMindError:
        raise
    except Exception as err:
        failure = write_failure(err, out, 0, None)
        if failure is err:
            raise
        raise failure from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _publish_dir(tmp: Path, out: Path) -> None:
    """Rename a finished temporary folder onto ``out`` (moving an old one aside first)."""
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    old = None
    if out.exists():
        prefix, suffix = temp_name(out)
        old = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=out.parent))
        os.replace(out, old)  # onto the empty folder just made: an atomic rename
    os.replace(tmp, out)
    fsync_path(out.parent)
    if old is not None:
        shutil.rmtree(old)


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporaries in ``folder`` left by writers that are no longer running (by the PID in their name)."""
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _TMP_RE.match(entry.name)
        if match and not _alive(int(match["pid"])):
            found.append(entry)
    return sorted(found)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``folder``; returns what was removed."""
    removed = stale_temporaries(folder)
    for entry in removed:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def verify_zip(path: Path) -> None:
    """Verify a zip-based file (``.npz``, torch checkpoints): its central directory, at the end, is whole."""
    with zipfile.ZipFile(path) as archive:
        if not archive.namelist():
            raise OutputError(f"{str(path)!r} is an empty archive")
