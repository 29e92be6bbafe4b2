"""``--precision`` on the embedding commands: a bad value exits 2 in one line, naming the flag, no file
written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2 = EXAMPLES / "S2L2A" / "38D_378R_2_3.tif"


TINY = ["--model", "tiny", "--weights", "random"]

CASES = [
    (
        ["-o", "e.npy", "--precision", "fp16"],
        ["--precision", "invalid choice: 'fp16'", "'auto', 'fp32', 'bf16'"],
    ),
    (["--scene", "-o", "e.tif", "--precision", "half"], ["--precision", "invalid choice: 'half'"]),
    (["-o", "e.npy", "--precision"], ["--precision", "expected one argument"]),
]


@pytest.mark.parametrize(("extra", "phrases"), CASES)
def test_bad_precision_on_embed(run_cli, tmp_path: Path, extra: list[str], phrases: list[str]) -> None:
    argv = [
        "embed",
        "--input",
        f"S2L2A={S2}",
        *TINY,
        *[tmp_path / a if a.startswith("e.") else a for a in extra],
    ]
    run_cli(argv).expect_failure(*phrases)


def test_bad_precision_on_batch_embed(run_cli, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    argv = ["batch", "embed", "--manifest", EXAMPLES, "-o", tmp_path / "b", "--precision", "fp64"]
    run_cli(argv).expect_failure("--precision", "invalid choice: 'fp64'")


def test_bad_precision_field_on_the_embed_route(tmp_path: Path) -> None:
    from terramind.core.errors import InputError
    from terramind.serve.embed import _embed_options

    pytest.importorskip("fastapi")
    with pytest.raises(InputError, match="precision must be one of auto, fp32, bf16, got 'fp8'"):
        _embed_options({"precision": "fp8"}, "auto")
    assert _embed_options({}, "fp32")[3] == "fp32"  # absent: the server's --precision
    assert _embed_options({"precision": "bf16"}, "fp32")[3] == "bf16"  # given: the request's
