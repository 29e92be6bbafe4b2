from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terramind.cli.main import main
from terramind.evaluate.embeddings import read_embeddings

NAMES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]


def test_embed_example_folders(tmp_path: Path, examples_dir: Path) -> None:
    for mod in ("S2L2A", "S1RTC"):  # two real tiles per modality keep the test quick
        (tmp_path / mod).mkdir()
        for name in NAMES[:2]:
            (tmp_path / mod / f"{name}.tif").symlink_to(examples_dir / mod / f"{name}.tif")
    out = tmp_path / "emb.npy"
    args = ["embed", "--input", f"S2L2A={tmp_path / 'S2L2A'}", "--input", f"s1rtc={tmp_path / 'S1RTC'}"]
    assert main([*args, "--output", str(out), "--model", "terramind_v1_tiny", "--weights", "random"]) == 0
    names, emb = read_embeddings(out)
    assert names == NAMES[:2] and emb.shape == (2, 192)
    assert not np.allclose(emb[0], emb[1])  # tiles differ


def test_embed_one_tile_per_token(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "tokens.npy"
    tile = examples_dir / "S2L2A" / f"{NAMES[0]}.tif"
    code = main(
        [
            "embed",
            "--input",
            f"S2L2A={tile}",
            "--output",
            str(out),
            "--model",
            "terramind_v1_tiny",
            "--weights",
            "random",
            "--pooling",
            "tokens",
        ]
    )
    assert code == 0
    names, emb = read_embeddings(out)
    assert names == [NAMES[0]] and emb.shape == (1, 196, 192)


def test_embed_errors(tmp_path: Path, examples_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "S1RTC"
    partial.mkdir()
    (partial / f"{NAMES[0]}.tif").symlink_to(examples_dir / "S1RTC" / f"{NAMES[0]}.tif")
    args = ["embed", "--input", f"S2L2A={examples_dir / 'S2L2A'}", "--input", f"S1RTC={partial}"]
    assert main([*args, "--output", str(tmp_path / "e.npy"), "--weights", "random"]) == 2
    assert "S1RTC lacks 4 id(s)" in capsys.readouterr().err
    assert main(["embed", "--input", "S9=x", "--output", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err
    assert "unknown modality 'S9'" in err and "Did you mean" not in err  # no name is close to S9


def test_embed_s2l1c_the_papers_few_shot_input(tmp_path: Path, examples_dir: Path) -> None:
    out = tmp_path / "emb.npy"
    tile = examples_dir / "S2L1C" / f"{NAMES[1]}.tif"  # 13 bands, as Sen1Floods11 and the paper's few-shot
    args = ["embed", "--input", f"S2L1C={tile}", "--output", str(out), "--model", "terramind_v1_tiny"]
    assert main([*args, "--weights", "random"]) == 0
    names, emb = read_embeddings(out)
    assert names == [NAMES[1]] and emb.shape == (1, 192) and np.isfinite(emb).all()
