"""``terramind generate`` builds one GenerationOptions from its flags and decides explicitly whether the
decoders stay resident (more than one tile batch) -- checked without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import terramind.cli.generate as cli_generate
from terramind.api import generation as api_generation
from terramind.cli.main import main
from terramind.generation import GenerationOptions


class _Idle:
    def __init__(self) -> None:
        self.kept = False

    def to(self, device: object) -> _Idle:
        return self

    def keep_loaded(self) -> _Idle:
        self.kept = True
        return self


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what the CLI hands the tile function; skip the model and the tiling."""
    calls: list[dict[str, Any]] = []

    def tile_fn(generator: object, outputs: object, options: object, **kwargs: object) -> None:
        calls.append({"options": options, **kwargs})

    monkeypatch.setattr(api_generation, "create_generator", lambda *a, **k: _Idle())
    monkeypatch.setattr(cli_generate, "generator_tile_fn", tile_fn)
    monkeypatch.setattr(
        cli_generate, "generate_scene", lambda fn, inputs, outputs, **k: [o.path for o in outputs]
    )
    return calls


@pytest.mark.parametrize(
    "tiling,keep",
    [
        (["--tile", "224", "--batch", "1"], False),  # 224 px scene: one tile, one batch
        (["--tile", "224", "--batch", "4"], False),
        (["--tile", "128", "--overlap", "32", "--batch", "4"], True),  # 2 x 2 tiles: batches never span rows
        (["--tile", "128", "--overlap", "32", "--batch", "1"], True),
    ],
)
def test_decoders_stay_resident_only_for_several_batches(
    recorded: list[dict[str, Any]], tmp_path: Path, examples_dir: Path, tiling: list[str], keep: bool
) -> None:
    s2 = examples_dir / "S2L2A" / "38D_378R_2_3.tif"
    argv = [
        "generate",
        "--input",
        f"S2L2A={s2}",
        "--to",
        "DEM",
        "--out",
        str(tmp_path),
        "--weights",
        "random",
    ]
    assert main([*argv, *tiling]) == 0
    assert recorded[0]["keep_decoders"] is keep


def test_flags_become_one_options_record(
    recorded: list[dict[str, Any]], tmp_path: Path, examples_dir: Path
) -> None:
    s2 = examples_dir / "S2L2A" / "38D_378R_2_3.tif"
    argv = [
        "generate",
        "--input",
        f"S2L2A={s2}",
        "--to",
        "DEM",
        "--out",
        str(tmp_path),
        "--weights",
        "random",
    ]
    flags = [
        "--strategy",
        "maskgit",
        "--steps",
        "4",
        "--temperature",
        "0.5",
        "--top-k",
        "7",
        "--top-p",
        "0.9",
    ]
    assert main([*argv, *flags, "--no-chain", "--bf16", "--diffusion-steps", "3", "--seed", "11"]) == 0
    expected = GenerationOptions(
        strategy="maskgit", steps=4, temperature=0.5, top_k=7, top_p=0.9, chain=False, diffusion_steps=3,
        precision="bf16",
    )  # fmt: skip
    assert recorded[0]["options"] == expected and recorded[0]["seed"] == 11
