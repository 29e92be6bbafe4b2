"""One writer per output folder: an OS file lock that names its holder.

:func:`folder_lock` takes an exclusive ``fcntl.flock`` on a lock file (``<folder>/.terramind.lock`` by
default). The operating system releases it when the holder exits or is killed, so a lock never outlives its
run; the file records the holder's PID, command and start time, and a second run stops at once with a
:class:`BusyError` naming them. The lock file is removed when the lock is released (the holder checks, after
locking, that the file it locked is still the one at the path, so removing it is safe). Taking the lock
also removes the temporaries of dead runs (:func:`terramind.core.files.remove_stale_temporaries`) in the
folders it guards. Within one process the lock nests: a command may take it early (before loading weights,
so a second run fails at once) and the library function it calls takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from terramind.core.errors import BusyError
from terramind.core.files import remove_stale_temporaries

LOCK_NAME = ".terramind.lock"
_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth (flock would refuse a re-lock)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock.

    Attributes:
        pid: Process id.
        command: The command line it runs.
        started: When it took the lock (UTC, ISO 8601).
    """

    pid: int
    command: str
    started: str


def read_holder(lock: Path) -> Holder | None:
    """Return the holder recorded in a lock file (None when unreadable or not yet written)."""
    try:
        record = json.loads(lock.read_text())
        return Holder(int(record["pid"]), str(record["command"]), str(record["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _busy(folder: Path, lock: Path) -> BusyError:
    holder = read_holder(lock)
    if holder is None:
        who, how = "another process", f"remove {str(lock)!r} only if no terramind run is active"
    else:
        who = f"PID {holder.pid} ({holder.command}, since {holder.started})"
        how = f"stop it (kill {holder.pid})"
    return BusyError(
        f"{str(folder)!r} is being written by another run: {who}; wait for it to finish or {how}, then rerun"
    )


def _open_locked(folder: Path, lock: Path) -> int:
    """Open and lock ``lock`` without waiting; the descriptor of a lock file that is still in place."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, lock) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our lock: take the new one


def _record(fd: int) -> None:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "python"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps({"pid": os.getpid(), "command": command, "started": started}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike[str], *, lock_file: str | os.PathLike[str] | None = None,
    clean: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:  # fmt: skip
    """Hold the exclusive writer lock of ``folder`` for the block.

    Args:
        folder: The output folder (must exist).
        lock_file: Where the lock lives, default ``<folder>/.terramind.lock``.
        clean: Further folders (e.g. a work folder) whose stale temporaries are removed once locked.

    Yields:
        The lock file's path.

    Raises:
        BusyError: Another process holds the lock (the message names its PID and command).
    """
    base = Path(folder)
    lock = Path(lock_file) if lock_file is not None else base / LOCK_NAME
    key = str(lock.absolute())
    if key in _HELD:  # this process holds it already (a command locks early, the library again): nest
        _HELD[key] += 1
        try:
            for place in map(Path, clean):
                remove_stale_temporaries(place)
            yield lock
        finally:
            _HELD[key] -= 1
        return
    fd = _open_locked(base, lock)
    _HELD[key] = 1
    try:
        _record(fd)
        for place in (base, *map(Path, clean)):
            remove_stale_temporaries(place)
        yield lock
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
