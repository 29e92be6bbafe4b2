"""``terramind export`` refuses what it cannot export with one line, exit 2, before building anything."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("flags", "phrases"),
    [
        (["--what", "decoder-step", "--modality", "LULC", "--format", "torch-export", "-o", "x.pt2"],
         ["LULC has no diffusion decoder"]),
        (["--what", "tokenizer-encoder", "--modality", "coords", "--format", "onnx", "-o", "x.onnx"],
         ["coords has no image tokenizer"]),
        (["--what", "backbone", "--format", "onnx", "-o", "x.pt2"], ["a onnx file should end in .onnx"]),
        (["--what", "encoder", "--format", "onnx", "-o", "x.onnx"], ["argument --what: invalid choice"]),
        (["--what", "backbone", "--format", "onnx", "-o", "x.onnx", "--tile", "40"],
         ["argument --tile: must be a positive multiple of 16"]),
    ],
)  # fmt: skip
def test_export_refuses_bad_requests(run_cli, tmp_path: Path, flags: list[str], phrases: list[str]) -> None:
    argv = ["export", "--model", "terramind_v1_tiny", "--weights", "random"]
    flags = [str(tmp_path / f) if f.startswith("x.") else f for f in flags]
    run_cli([*argv, *flags]).expect_failure(*phrases)


def test_export_refuses_to_replace_a_file_without_overwrite(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "b.onnx"
    out.write_bytes(b"keep")
    argv = ["export", "--weights", "random", "--what", "backbone", "--format", "onnx", "-o", out]
    run_cli(argv).expect_failure("exists", "--overwrite")
    assert out.read_bytes() == b"keep"
