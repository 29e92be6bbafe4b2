"""``terramind batch``: bad manifests and options are refused in one line, exit 2, before any scene starts.

Every case leaves the watched folder as it was (no output folder, no results table) and starts no Ray.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from terramind.batch import runner

pytest.importorskip("ray")

JOB = ["--to", "LULC", "--model", "tiny", "--weights", "random"]


@pytest.fixture
def scene(tmp_path: Path, examples_dir: Path) -> Path:
    path = tmp_path / "a.tif"
    path.symlink_to(examples_dir / "S2L2A" / "38D_378R_2_3.tif")
    return path


def _batch(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["batch", "generate", "--manifest", str(manifest), "-o", str(out), *JOB, *extra]


def test_unknown_modality_column(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,S2L2X\na,{scene}\n")
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure("column 'S2L2X'", "unknown modality", "S2L2A")


def test_missing_source(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,S2L2A\na,{scene}\nb,{tmp_path / 'gone.tif'}\n")
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure("m.csv row 3", "gone.tif", "does not exist")


def test_duplicated_output_names(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"S2L2A\n{scene}\n{scene}\n")  # both default to the stem 'a'
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure(
        "'a'", "row 2 and m.csv row 3", "unique 'name'"
    )


def test_zero_workers(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"S2L2A\n{scene}\n")
    run_cli(_batch(manifest, tmp_path / "out", "--workers", "0")).expect_failure(
        "--workers", "positive integer"
    )


def test_an_address_that_does_not_answer(
    run_cli, tmp_path: Path, scene: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "CONNECT_SECONDS", 1.0)  # a closed port: the answer cannot come later
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"S2L2A\n{scene}\n")
    outcome = run_cli(_batch(manifest, tmp_path / "out", "--address", "ray://127.0.0.1:1"))
    outcome.expect_failure("ray://127.0.0.1:1", "does not answer")


def test_an_address_that_is_not_a_ray_address(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"S2L2A\n{scene}\n")
    outcome = run_cli(_batch(manifest, tmp_path / "out", "--address", "http://host:8265"))
    outcome.expect_failure("--address", "ray://HOST:PORT")


def test_a_manifest_of_another_kind(run_cli, tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("S2L2A\n")
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure("m.txt", ".csv or .parquet")


def test_a_row_without_sources(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,S2L2A,S1RTC\na,{scene},\nb,,\n")
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure("m.csv row 3", "no source")


def test_a_modality_the_job_cannot_take(run_cli, tmp_path: Path, scene: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,LULC\na,{scene}\n")
    run_cli(_batch(manifest, tmp_path / "out")).expect_failure("LULC")
