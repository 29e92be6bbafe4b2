import pytest

from terramind.core import InputError, atomic_path


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
    import os

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "p.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == 0o644
