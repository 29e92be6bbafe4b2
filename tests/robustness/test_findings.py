"""Findings of issue 18 that no other robustness module covers (see README.md here for the full map).

Each case runs a command as a user would, through the ``run_cli`` harness: the exit code, no traceback, a
message naming the problem and the exact set of files before and after.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from terramind.build import build_model
from terramind.core.files import TMP_MARK

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TILE = "38D_378R_2_3.tif"
S2 = EXAMPLES / "S2L2A" / TILE
DEM = EXAMPLES / "DEM" / TILE
TINY = "terramind_v1_tiny"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_MARK in p.name]


# --- a directory where an input file is expected: "is a folder", never "does not exist" ------------------


@pytest.mark.parametrize(
    "argv",
    [
        lambda d, t: ["inspect", d, "-m", "DEM"],
        lambda d, t: ["reconstruct", d, "-m", "DEM", "-o", t / "r.tif"],
        lambda d, t: ["generate", "--input", f"S2L2A={d}", "--to", "DEM", "-o", t / "new"],
        lambda d, t: ["pretrain", "-c", d],
        lambda d, t: ["train-tokenizer", "-c", d],
    ],
    ids=["inspect", "reconstruct", "generate", "pretrain", "train-tokenizer"],
)
def test_a_folder_given_as_input_file_is_called_a_folder(run_cli, tmp_path, argv) -> None:
    folder = tmp_path / "tile.tif"
    folder.mkdir()
    outcome = run_cli(argv(folder, tmp_path))
    outcome.expect_failure("tile.tif", "folder")
    assert "does not exist" not in outcome.err


# --- output paths under a file, into a missing folder ------------------------------------------------------


@pytest.mark.parametrize(
    "argv,phrases",
    [
        (lambda f, t: ["reconstruct", DEM, "-m", "DEM", "-o", f / "r.tif"], ["afile", "is a file, not a folder"]),
        (lambda f, t: ["inspect", DEM, "-m", "DEM", "--png", t / "missing" / "q.png"], ["missing", "does not exist"]),
        (lambda f, t: ["embed", "--input", f"S2L2A={S2}", "-o", f / "e.npy"], ["afile", "is a file, not a folder"]),
        (lambda f, t: ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", f / "w.tif"], ["afile", "not a folder"]),
        (lambda f, t: ["tokenize", DEM, "-m", "DEM", "-o", t / "missing" / "t.npz"], ["missing", "does not exist"]),
    ],
    ids=["reconstruct-under-file", "inspect-png-missing", "embed-under-file", "water-under-file", "tok-missing"],
)  # fmt: skip
def test_output_paths_are_checked_before_any_work(run_cli, tmp_path, argv, phrases) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    run_cli(argv(afile, tmp_path)).expect_failure(*phrases)


# --- a truncated checkpoint on resume: one line naming it, exit 2 -------------------------------------------


def _truncated_checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0, "global_step": 1}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short, a run killed mid-save
    return path


PRETRAIN_YAML = """\
modalities: [{{name: S2L2A, input: pixel}}, {{name: DEM, input: pixel}}]
model: {{size: tiny, overrides: {{dim: 32, encoder_depth: 1, decoder_depth: 1, num_heads: 2, mlp_hidden: 64}}}}
masking: {{num_input_tokens: 8, num_target_tokens: 8}}
data: {{shards: "{shards}", batch_size: 2, crop: 64, shuffle_buffer: 2}}
trainer: {{max_steps: 1, accelerator: cpu, devices: 1, out_dir: "{out}", progress_bar: false, checkpoint_every: 1}}
"""


def test_pretrain_resume_from_a_truncated_last_ckpt(run_cli, tmp_path) -> None:
    pytest.importorskip("lightning")
    config = tmp_path / "pre.yaml"
    config.write_text(PRETRAIN_YAML.format(shards=tmp_path / "none" / "*.tar", out=tmp_path / "run"))
    _truncated_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    run_cli(["pretrain", "-c", config, "--resume", "last"]).expect_failure(
        "cannot read checkpoint", "last.ckpt", "truncated, corrupt", "resume from an earlier checkpoint"
    )


def test_finetune_fit_from_a_truncated_ckpt_path(run_cli, tmp_path) -> None:
    pytest.importorskip("lightning")
    ft = _load("ft_cli", ROOT / "tests" / "cli" / "test_finetune.py")
    config = ft._config(tmp_path, EXAMPLES)
    cut = _truncated_checkpoint(tmp_path / "best.ckpt")
    run = tmp_path / "run"
    outcome = run_cli(["finetune", "fit", "-c", config, "--ckpt_path", cut], watch=cut.parent)
    assert outcome.code == 2 and "Traceback" not in outcome.err, outcome.err
    assert "cannot read checkpoint" in outcome.err and "best.ckpt" in outcome.err
    assert not list(run.rglob("*.ckpt"))  # nothing trained, nothing saved
