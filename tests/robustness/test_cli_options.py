"""Bad options on every command: exit 2, one line naming the problem, no traceback, no file touched.

Every case fails while parsing or in the checks that run before a command starts, so no weights load;
the harness (``conftest.py``) checks the exit code, the message and that the watched folder is unchanged.
Generating commands write into ``tmp/new`` (missing): a folder created too early would show up.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2 = EXAMPLES / "S2L2A" / "38D_378R_2_3.tif"
DEM = EXAMPLES / "DEM" / "38D_378R_2_3.tif"


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """A folder, a regular file, embeddings + labels, and a garbage .npy (all exist before the run)."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("a regular file")
    names = [f"t{i}" for i in range(6)]
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    (tmp_path / "e.names.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "labels.csv").write_text("".join(f"{n},c{i % 2}\n" for i, n in enumerate(names)))
    (tmp_path / "bad.npy").write_bytes(b"\x00garbage, not numpy")
    (tmp_path / "bad.names.txt").write_text("t0\n")
    return {k: tmp_path / k for k in ("adir", "afile", "e.npy", "labels.csv", "bad.npy")} | {"tmp": tmp_path}


def gen(t: Path, *extra: object) -> list[object]:
    return ["generate", "--input", f"S2L2A={S2}", "--to", "DEM", "-o", t / "new", *extra]


def embed(t: Path, *extra: object) -> list[object]:
    return ["embed", "--input", f"S2L2A={S2}", "-o", t / "e2.npy", "--model", "tiny", *extra]


def water(t: Path, *extra: object) -> list[object]:
    return ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", t / "w.tif", *extra]


def tok(t: Path, *extra: object) -> list[object]:
    return ["tokenize", DEM, "-m", "DEM", "-o", t / "t.npz", *extra]


def rec(t: Path, *extra: object) -> list[object]:
    return ["reconstruct", DEM, "-m", "DEM", "-o", t / "r.tif", *extra]


def few(p: dict[str, Path], *extra: object) -> list[object]:
    return ["fewshot", "--embeddings", p["e.npy"], "--labels", p["labels.csv"], *extra]


BAD_NUMBERS = [
    (lambda p: gen(p["tmp"], "--batch-size", "0"), ["--batch-size", "positive integer"]),
    (lambda p: embed(p["tmp"], "--batch-size", "0"), ["--batch-size", "positive integer"]),
    (lambda p: water(p["tmp"], "--batch-size", "-3"), ["--batch-size", "positive integer"]),
    (lambda p: gen(p["tmp"], "--batch", "0"), ["--batch", "positive integer"]),
    (lambda p: gen(p["tmp"], "--top-p", "1.5"), ["--top-p", "between 0 and 1"]),
    (lambda p: gen(p["tmp"], "--temperature", "-1"), ["--temperature", ">= 0"]),
    (lambda p: gen(p["tmp"], "--temperature", "nan"), ["--temperature", "finite"]),
    (lambda p: gen(p["tmp"], "--top-k", "-2"), ["--top-k", "0 or more"]),
    (lambda p: gen(p["tmp"], "--steps", "0"), ["--steps", "positive integer"]),
    (lambda p: gen(p["tmp"], "--diffusion-steps", "0"), ["--diffusion-steps", "positive integer"]),
    (lambda p: rec(p["tmp"], "--diffusion-steps", "0"), ["--diffusion-steps", "positive integer"]),
    (lambda p: rec(p["tmp"], "--steps", "x"), ["--steps", "positive integer", "'x'"]),
    (lambda p: gen(p["tmp"], "--tile", "100"), ["--tile", "multiple of 16"]),
    (lambda p: water(p["tmp"], "--tile", "0"), ["--tile", "multiple of 16"]),
    (lambda p: gen(p["tmp"], "--overlap", "224"), ["--overlap (224) must be smaller than --tile (224)"]),
    (lambda p: water(p["tmp"], "--overlap", "-1"), ["--overlap", "0 or more"]),
    (lambda p: embed(p["tmp"], "--layer", "99"), ["--layer 99", "12 encoder blocks"]),
    (lambda p: embed(p["tmp"], "--layer", "-13"), ["--layer -13", "12 encoder blocks"]),
    (lambda p: gen(p["tmp"], "--offset", "S2L2A=abc"), ["--offset", "a number after S2L2A=", "'abc'"]),
    (lambda p: gen(p["tmp"], "--offset", "S2L2A=inf"), ["--offset", "finite"]),
    (lambda p: tok(p["tmp"], "--offset", "abc"), ["--offset", "'abc'"]),
    (lambda p: gen(p["tmp"], "--seed", "abc"), ["--seed", "'abc'"]),
    (lambda p: few(p, "--shots", "0"), ["--shots", "positive integer"]),
    (lambda p: few(p, "--shots", "-1"), ["--shots", "positive integer"]),
    (lambda p: few(p, "--ways", "0"), ["--ways", "positive integer"]),
    (lambda p: few(p, "--episodes", "0"), ["--episodes", "positive integer"]),
    (lambda p: few(p, "--queries", "0"), ["--queries", "positive integer"]),
    (lambda p: ["prepare", "--src", EXAMPLES, "-o", p["tmp"] / "s", "--shard-size", "0"], ["--shard-size"]),
    (lambda p: gen(p["tmp"], "--model", "huge"), ["--model", "unknown model 'huge'"]),
    (lambda p: gen(p["tmp"], "--precision", "fp16"), ["--precision", "invalid choice: 'fp16'"]),
]

UNKNOWN_FLAGS = [
    (
        lambda p: gen(p["tmp"], "--ouptut", "x"),
        ["unrecognized argument '--ouptut'", "did you mean '--output'"],
    ),
    (lambda p: gen(p["tmp"], "--temprature", "1"), ["did you mean '--temperature'"]),
    (
        lambda p: ["info", "--device", "cpu"],
        ["info has no '--device' option", "commands that have it", "embed"],
    ),
    (lambda p: few(p, "--precision", "bf16"), ["fewshot has no '--precision'", "generate", "embed"]),
    (lambda p: few(p, "--json", "--overwrite"), ["fewshot has no '--overwrite'", "tokenize"]),
    (lambda p: tok(p["tmp"], "--xyzzy"), ["unrecognized argument '--xyzzy'"]),
    (lambda p: ["finetune", "scene", "--bogus"], ["unrecognized argument '--bogus'"]),
    (lambda p: ["finetune", "scene", "--batch-sise", "2"], ["did you mean '--batch-size'"]),
]

# name -> expected suggestion (None: no name is close, so none may be offered)
MODALITY_NAMES = [
    (lambda p: [*gen(p["tmp"])[:2], f"S9={S2}", *gen(p["tmp"])[3:]], "S9", None),
    (lambda p: ["generate", "--input", f"S2L2A={S2}", "--to", "dme", "-o", p["tmp"] / "new"], "dme", "DEM"),
    (lambda p: ["tokenize", DEM, "-m", "foo", "-o", p["tmp"] / "t.npz"], "foo", None),
    (lambda p: ["inspect", DEM, "-m", "lulcc"], "lulcc", "LULC"),
    (lambda p: gen(p["tmp"], "--offset", "S2L2B=1000"), "S2L2B", "S2L2A"),
    (lambda p: embed(p["tmp"], "--input", f"optical={S2}"), "optical", None),
]

OUTPUT_PATHS = [
    (lambda p: [*tok(p["tmp"])[:5], p["tmp"] / "missing" / "t.npz"], ["missing'", "does not exist"]),
    (lambda p: [*tok(p["tmp"])[:5], p["afile"] / "t.npz"], ["afile", "is a file, not a folder"]),
    (lambda p: [*tok(p["tmp"])[:5], p["adir"]], ["adir", "is a folder"]),
    (lambda p: rec(p["tmp"], "--png", p["tmp"] / "missing" / "q.png"), ["missing", "does not exist"]),
    (
        lambda p: ["generate", "--input", f"S2L2A={S2}", "--to", "DEM", "-o", p["afile"]],
        ["afile", "is a file"],
    ),
    (
        lambda p: ["generate", "--input", f"S2L2A={S2}", "--to", "DEM", "-o", p["afile"] / "sub"],
        ["cannot be created"],
    ),
    (lambda p: [*embed(p["tmp"])[:3], "-o", p["adir"]], ["adir", "is a folder"]),
    (lambda p: [*water(p["tmp"])[:4], "-o", p["tmp"] / "missing" / "w.tif"], ["missing", "does not exist"]),
    (lambda p: ["prepare", "--src", EXAMPLES, "-o", p["afile"]], ["afile", "is a file"]),
    (
        lambda p: ["inspect", DEM, "-m", "DEM", "--png", p["afile"] / "q.png"],
        ["afile", "is a file, not a folder"],
    ),
]

INPUT_PATHS = [
    (
        lambda p: [
            "generate",
            "--input",
            f"S2L2A={p['tmp'] / 'no.tif'}",
            "--to",
            "DEM",
            "-o",
            p["tmp"] / "n",
        ],
        ["S2L2A input", "does not exist"],
    ),
    (lambda p: ["tokenize", p["adir"], "-m", "S2L2A", "-o", p["tmp"] / "t.npz"], ["adir", "is a folder"]),
    (lambda p: ["inspect", p["tmp"] / "no.tif", "-m", "DEM"], ["no.tif", "does not exist"]),
    (
        lambda p: ["tokenize", DEM, "-m", "DEM", "--input", f"DEM={DEM}", "-o", p["tmp"] / "t.npz"],
        ["not both"],
    ),
    (
        lambda p: [*few(p)[:1], "--embeddings", p["adir"], "--labels", p["labels.csv"]],
        ["adir", "is a folder"],
    ),
    (lambda p: [*few(p)[:3], "--labels", p["tmp"] / "none.csv"], ["none.csv", "does not exist"]),
    (
        lambda p: ["fewshot", "--embeddings", p["bad.npy"], "--labels", p["labels.csv"]],
        ["not an embeddings file"],
    ),
    (lambda p: water(p["tmp"], "--label", p["adir"]), ["label", "is a folder"]),
    (lambda p: [*water(p["tmp"])[:3], f"DEM={DEM}", "-o", p["tmp"] / "w.tif"], ["S2L2A=PATH"]),
    (lambda p: ["prepare", "--src", p["tmp"] / "nope", "-o", p["tmp"] / "s"], ["nope", "does not exist"]),
    (lambda p: ["pretrain", "-c", p["tmp"] / "none.yaml"], ["none.yaml", "does not exist"]),
    (
        lambda p: ["finetune", "scene", "-c", p["tmp"] / "c.yaml", "--ckpt_path", "x"],
        ["c.yaml", "does not exist"],
    ),
    (lambda p: gen(p["tmp"], "--weights", p["tmp"] / "nothing.pt"), ["--weights", "nothing.pt"]),
]


@pytest.mark.parametrize("make,phrases", BAD_NUMBERS + UNKNOWN_FLAGS + OUTPUT_PATHS + INPUT_PATHS)
def test_bad_option_is_one_line_and_touches_nothing(run_cli, paths, make, phrases) -> None:
    run_cli(make(paths)).expect_failure(*phrases)


@pytest.mark.parametrize("make,name,suggestion", MODALITY_NAMES)
def test_unknown_modality_suggests_a_real_close_match_or_nothing(
    run_cli, paths, make, name, suggestion
) -> None:
    outcome = run_cli(make(paths))
    outcome.expect_failure(f"unknown modality '{name}'", "valid names")
    if suggestion is None:
        assert "did you mean" not in outcome.err.lower()
    else:
        assert f"Did you mean '{suggestion}'?" in outcome.err


DEVICE_COMMANDS = [gen, embed, water, tok, rec]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
@pytest.mark.parametrize("make", DEVICE_COMMANDS, ids=lambda f: f.__name__)
def test_cuda_without_a_gpu_is_named(run_cli, paths, make) -> None:
    run_cli(make(paths["tmp"], "--device", "cuda")).expect_failure(
        "device 'cuda' is not available here; available: cpu"
    )


def test_finetune_scene_cuda_without_a_gpu(run_cli, paths) -> None:
    if torch.cuda.is_available():
        pytest.skip("the machine has a GPU")
    argv = ["finetune", "scene", "-c", DEM, "--ckpt_path", DEM, "--input", f"DEM={DEM}"]
    outcome = run_cli([*argv, "-o", paths["tmp"] / "o", "--device", "cuda"])
    outcome.expect_failure("device 'cuda' is not available")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(run_cli, paths) -> None:
    locked = paths["adir"]
    locked.chmod(0o500)
    try:
        run_cli([*tok(paths["tmp"])[:5], locked / "t.npz"]).expect_failure("not writable")
    finally:
        locked.chmod(0o700)
