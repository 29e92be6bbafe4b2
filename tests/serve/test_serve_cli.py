"""``terramind serve`` wires its options into the app: token sources, the non-loopback warning, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from terramind.cli.main import main


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Replace uvicorn.run (which would serve forever) by a recorder of its app and address."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.delenv("TERRAMIND_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    return calls


def test_open_server_on_all_interfaces_warns(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--weights", "random", "--host", "0.0.0.0", "--port", "8123", "--max-tiles", "7"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0 without a token" in err and "TERRAMIND_TOKEN" in err
    (call,) = started
    assert (call["host"], call["port"]) == ("0.0.0.0", 8123)
    cfg = call["app"].state.cfg
    assert cfg.token is None and cfg.max_tiles == 7 and cfg.work_dir == Path("terramind-serve")


def test_token_from_file_or_environment_silences_the_warning(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("token.txt").write_text("from-file\n")
    assert main(["serve", "--weights", "random", "--host", "0.0.0.0", "--token-file", "token.txt"]) == 0
    monkeypatch.setenv("TERRAMIND_TOKEN", "from-env")
    assert main(["serve", "--weights", "random", "--host", "0.0.0.0"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert [c["app"].state.cfg.token for c in started] == ["from-file", "from-env"]


def test_loopback_without_token_does_not_warn(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--weights", "random"]) == 0
    assert "warning" not in capsys.readouterr().err and started[0]["host"] == "127.0.0.1"
