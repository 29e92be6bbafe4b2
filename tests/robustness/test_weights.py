"""Weights that cannot be right: the CLI refuses them with one line naming the file and the tensor, exit 2.

Each case writes a bad weights file under the watched folder first, so the check that no files changed also
proves that no output was written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terramind.build import build_backbone

TINY = "terramind_v1_tiny"
QKV = "encoder.0.attn.qkv.weight"


def _state() -> dict[str, torch.Tensor]:
    """A tiny S2L2A backbone's state dict (a valid backbone-only checkpoint)."""
    return build_backbone(TINY, ["S2L2A"]).state_dict()


def _nan(path: Path) -> None:
    state = _state()
    state[QKV][0, :12] = float("nan")
    torch.save(state, path)


def _inf_safetensors(path: Path) -> None:
    state = _state()
    state[QKV][1, :5] = float("inf")
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _integers(path: Path) -> None:
    state = _state()
    state[QKV] = state[QKV].round().to(torch.int64)
    torch.save(state, path)


def _truncated(path: Path) -> None:
    torch.save(_state(), path)
    path.write_bytes(path.read_bytes()[:4096])


def _not_safetensors(path: Path) -> None:
    path.write_bytes(b"<html>404 Not Found</html>")


class _Custom:
    """A pickled class: refused by torch.load(weights_only=True)."""


def _objects(path: Path) -> None:
    torch.save({**_state(), "meta": _Custom()}, path)


CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("nan.pt", _nan, (f"tensor '{QKV}' holds 12 NaN/Inf values", "nan.pt", "diverged")),
    ("inf.safetensors", _inf_safetensors, (f"tensor '{QKV}' holds 5 NaN/Inf values", "inf.safetensors")),
    ("int.pt", _integers, (f"tensor '{QKV}' has dtype int64, expected a floating type", "int.pt")),
    ("truncated.pt", _truncated, ("truncated.pt", "truncated, corrupt or not a PyTorch")),
    ("page.safetensors", _not_safetensors, ("page.safetensors", "not a PyTorch/safetensors checkpoint")),
    ("objects.pt", _objects, ("objects.pt", "not plain tensors", "refused for safety")),
]


@pytest.mark.parametrize(("name", "write", "phrases"), CASES, ids=[c[0] for c in CASES])
def test_embed_refuses_bad_weights(
    run_cli,
    tmp_path: Path,
    examples_dir: Path,
    name: str,
    write: Callable[[Path], None],
    phrases: tuple[str, ...],
) -> None:
    weights = tmp_path / name
    write(weights)
    tile = examples_dir / "S2L2A" / "38D_378R_2_3.tif"
    argv = ["embed", "--input", f"S2L2A={tile}", "--output", tmp_path / "out.npy", "--model", TINY]
    outcome = run_cli([*argv, "--weights", weights])
    outcome.expect_failure(*phrases)
    assert "weights_only" not in outcome.err  # never the advice to unpickle an untrusted file


def test_embed_names_the_missing_release_file_of_a_folder(
    run_cli, tmp_path: Path, examples_dir: Path
) -> None:
    tile = examples_dir / "S2L2A" / "38D_378R_2_3.tif"
    argv = ["embed", "--input", f"S2L2A={tile}", "--output", tmp_path / "out.npy", "--model", TINY]
    run_cli([*argv, "--weights", tmp_path]).expect_failure("has no TerraMind_v1_tiny.pt")
