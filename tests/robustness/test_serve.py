"""``terramind serve`` refuses bad start-up options in one line, before anything loads or is created."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def test_modalities_that_cannot_be_served(run_cli, tmp_path: Path) -> None:
    work = tmp_path / "work"
    run_cli(["serve", "--outputs", "LULC", "--inputs", "LULC", "--work-dir", work]).expect_failure(
        "LULC is both an input and an output"
    )
    run_cli(["serve", "--outputs", "S2RGB", "--work-dir", work]).expect_failure("S2RGB cannot be generated")
    run_cli(["serve", "--outputs", "LULX", "--work-dir", work]).expect_failure("LULX")


def test_bad_paths_and_numbers(run_cli, tmp_path: Path) -> None:
    run_cli(["serve", "--token-file", tmp_path / "none.txt"]).expect_failure("--token-file", "does not exist")
    run_cli(["serve", "--data-root", tmp_path / "nowhere"]).expect_failure("--data-root", "does not exist")
    (tmp_path / "file").write_text("x")
    run_cli(["serve", "--work-dir", tmp_path / "file"]).expect_failure("file")
    run_cli(["serve", "--port", "0"]).expect_failure("--port", "positive integer")
    run_cli(["serve", "--queue-size", "-1"]).expect_failure("--queue-size")


def test_empty_token_file(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    empty = tmp_path / "token.txt"
    empty.write_text("\n")
    monkeypatch.chdir(tmp_path)
    run_cli(["serve", "--token-file", empty, "--weights", "random"]).expect_failure("is empty")


def test_without_the_serve_extra(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as in a base install
    monkeypatch.chdir(tmp_path)
    run_cli(["serve", "--weights", "random"]).expect_failure("'fastapi' is not installed", "terramind[serve]")
