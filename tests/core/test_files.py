import errno
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from terramind.core import DiskFullError, InputError, OutputError, atomic_path
from terramind.core import files as core_files
from terramind.core.files import (
    TMP_MARK,
    atomic_dir,
    check_output_dir,
    check_output_path,
    remove_stale_temporaries,
    verify_zip,
)


def test_atomic_path_success(tmp_path):
    target = tmp_path / "a.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("crash")
    assert target.read_text() == "old"


def test_missing_folder_and_no_overwrite(tmp_path):
    with pytest.raises(InputError, match="does not exist"), atomic_path(tmp_path / "nope" / "a.txt"):
        pass
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(InputError, match="--overwrite"), atomic_path(tmp_path / "b.txt", overwrite=False):
        pass


def test_atomic_output_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "p.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------------- writes that cannot lie
Usage = namedtuple("Usage", "total used free")


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_MARK in p.name]


def test_output_path_checks_name_each_problem(tmp_path, monkeypatch):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a folder: give a file path") as err:
        check_output_path(tmp_path / "dir")
    assert "--overwrite" not in str(err.value)  # overwriting cannot turn a folder into a file
    with pytest.raises(OutputError, match="does not exist: create it first"):
        check_output_path(tmp_path / "missing" / "a.tif")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "a.tif")
    with pytest.raises(OutputError, match="exists: pass --overwrite"):
        check_output_path(tmp_path / "file", overwrite=False)
    monkeypatch.setattr(core_files.os, "access", lambda path, mode: False)  # tests run as root: fake it
    with pytest.raises(OutputError, match="not writable"):
        check_output_path(tmp_path / "new.tif")
    with pytest.raises(OutputError, match="not writable"):
        check_output_dir(tmp_path / "out")


def test_output_folder_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file: give a folder path"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "sub")
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing


def _half_then_enospc(path: Path) -> None:
    path.write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_enospc_is_disk_full_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.npz"
    target.write_bytes(b"old")
    with pytest.raises(DiskFullError, match="disk full while writing") as err, atomic_path(target) as tmp:
        _half_then_enospc(tmp)
    assert "MB needed" in str(err.value) and "MB free" in str(err.value)
    assert target.read_bytes() == b"old" and _temps(tmp_path) == []


def test_a_vague_write_error_on_an_almost_full_disk_is_disk_full(tmp_path, monkeypatch):
    target = tmp_path / "a.ckpt"
    vague = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    with pytest.raises(RuntimeError, match="file write failed"), atomic_path(target):
        raise vague  # plenty of space: not a full disk, the error passes through unchanged
    monkeypatch.setattr(core_files.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 300_000, 300_000))
    with pytest.raises(DiskFullError, match=r"0\.3 MB free"), atomic_path(target, expected_size=5_000_000):
        raise vague
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_output_errors(tmp_path):
    with pytest.raises(OutputError, match="could not write"), atomic_path(tmp_path / "a.bin"):
        raise OSError(errno.EIO, "Input/output error")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_verify_is_not_published(tmp_path):
    target = tmp_path / "a.npz"
    target.write_bytes(b"old")
    with (
        pytest.raises(OutputError, match="does not read back correctly"),
        atomic_path(target, verify=verify_zip) as tmp,
    ):
        tmp.write_bytes(b"PK\x03\x04 truncated")  # a zip that lost its end
    assert target.read_bytes() == b"old" and _temps(tmp_path) == []


def test_verify_zip_accepts_a_whole_npz(tmp_path):
    with atomic_path(tmp_path / "a.npz", verify=verify_zip) as tmp, open(tmp, "wb") as f:
        np.savez(f, x=np.arange(3))
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]


def test_atomic_dir_replaces_a_set_whole_or_not_at_all(tmp_path):
    out = tmp_path / "set"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with pytest.raises(OutputError, match="--overwrite"), atomic_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_dir(out, replace=True) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"] and (out / "a").read_text() == "1"
    with atomic_dir(out, replace=True) as tmp:
        (tmp / "a").write_text("2")
    assert [p.name for p in out.iterdir()] == ["a"] and (out / "a").read_text() == "2"  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_only_temporaries_of_dead_writers_are_stale(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".out.tif.{pid}.abc123{TMP_MARK}.tif"
    live = tmp_path / f".out.tif.{os.getpid()}.def456{TMP_MARK}.tif"
    other = tmp_path / ".out.tif.99.tmp.tif"  # not our pattern: never touched
    for p in (stale, live, other):
        p.write_text("x")
    (tmp_path / f".set.{pid}.xyz{TMP_MARK}").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, f".set.{pid}.xyz{TMP_MARK}"])
    assert live.exists() and other.exists() and not stale.exists()
