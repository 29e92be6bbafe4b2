import subprocess
import sys
from pathlib import Path

import pytest

from terramind.cli._args import parse_inputs
from terramind.cli.main import build_parser
from terramind.core.errors import InputError


def test_subcommands_are_discovered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"info", "inspect"} <= set(sub.choices)
    assert not any(name.startswith(("-", "_")) for name in sub.choices)  # private helpers are no commands


def test_modality_pairs_are_canonical_and_checked():
    assert parse_inputs(["s2l2a=a.tif", "S1RTC=b.tif"]) == {"S2L2A": Path("a.tif"), "S1RTC": Path("b.tif")}
    with pytest.raises(InputError, match="MOD=VALUE"):
        parse_inputs(["S2L2A"])
    with pytest.raises(InputError, match="given twice"):
        parse_inputs(["S2L2A=a.tif", "s2l2a=b.tif"])


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    result = subprocess.run(
        [sys.executable, "-m", "terramind.cli.main", "inspect", str(text), "--modality", "S2L2A"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("terramind inspect: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
