from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from terramind.cli.main import main
from terramind.evaluate.embeddings import write_embeddings


def _data(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (6, 8))
    labels = np.repeat(np.arange(6), 5)
    emb = centres[labels] + rng.normal(0, 0.05, (30, 8))
    names = [f"tile_{i}" for i in range(30)]
    path = write_embeddings(tmp_path / "e.npy", names, emb.astype(np.float32))
    csv = tmp_path / "labels.csv"
    csv.write_text("name,class\n" + "".join(f"{n},class_{c}\n" for n, c in zip(names, labels, strict=True)))
    return path, csv


def test_fewshot_reports_accuracy_with_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb, labels = _data(tmp_path)
    assert (
        main(
            [
                "fewshot",
                "--embeddings",
                str(emb),
                "--labels",
                str(labels),
                "--episodes",
                "40",
                "--queries",
                "4",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["mean"] > 0.95 and result["n_way"] == 5 and result["episodes"] == 40
    args = [
        "fewshot",
        "--embeddings",
        str(emb),
        "--labels",
        str(labels),
        "--episodes",
        "10",
        "--queries",
        "4",
    ]
    assert main(args) == 0
    assert "5-way 1-shot, 10 episodes: accuracy" in capsys.readouterr().out


def test_fewshot_missing_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb, labels = _data(tmp_path)
    labels.write_text("tile_0,a\n")
    assert main(["fewshot", "--embeddings", str(emb), "--labels", str(labels)]) == 2
    assert "29 embedded tile(s) have no label" in capsys.readouterr().err
