"""One writer per output folder: the flock-based lock, its holder record and stale-temporary cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from terramind.core import BusyError
from terramind.core.files import TMP_MARK
from terramind.core.lock import LOCK_NAME, folder_lock, read_holder

SRC = str(Path(__file__).resolve().parents[2] / "src")
HOLDER = """
import sys
from terramind.core.lock import folder_lock
with folder_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A child process holding the lock of ``tmp_path`` until its stdin closes."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, holder):
    with pytest.raises(BusyError) as err, folder_lock(tmp_path):
        pass
    message = str(err.value)
    assert f"PID {holder.pid}" in message and f"kill {holder.pid}" in message and "-c" in message
    record = read_holder(tmp_path / LOCK_NAME)
    assert record is not None and record.pid == holder.pid
    assert holder.stdin is not None
    holder.stdin.close()  # the holder finishes: its lock file goes with it
    assert holder.wait(timeout=30) == 0
    assert not (tmp_path / LOCK_NAME).exists()
    with folder_lock(tmp_path) as lock:
        assert read_holder(lock).pid == os.getpid()  # type: ignore[union-attr]


def test_a_killed_holder_releases_the_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed run, but no longer locked
    with folder_lock(tmp_path):
        assert read_holder(tmp_path / LOCK_NAME).pid == os.getpid()  # type: ignore[union-attr]
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_nests_within_a_process_and_cleans_stale_temporaries(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = work / f".strip.tif.{int(dead.stdout)}.abc{TMP_MARK}.tif"
    stale.write_text("half")
    with folder_lock(tmp_path, clean=[work]):
        assert not stale.exists()
        stale.write_text("half")
        with folder_lock(tmp_path, clean=[work]):  # a command locks early, the library again
            assert not stale.exists()
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()
