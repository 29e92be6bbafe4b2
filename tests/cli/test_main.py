import argparse
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from terramind.cli import _args
from terramind.cli.main import build_parser, leaf_parsers, main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"


def test_subcommands_are_discovered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"info", "inspect"} <= set(sub.choices)
    assert not any(name.startswith(("-", "_")) for name in sub.choices)  # private helpers are no commands
    assert "zeroshot water" in leaf_parsers(build_parser())  # nested tasks are walked


def _inputs_parser() -> argparse.ArgumentParser:
    p = _args.Parser(prog="t")
    _args.add_inputs(p)
    return p


def test_modality_pairs_are_canonical_and_checked(capsys):
    args = _inputs_parser().parse_args(["--input", f"s2l2a={EXAMPLE}", "--input", f"S1RTC={EXAMPLE.parent}"])
    assert args.input == {"S2L2A": EXAMPLE, "S1RTC": EXAMPLE.parent}
    for argv, message in [
        (["--input", "S2L2A"], "MOD=VALUE"),
        (["--input", f"S2L2A={EXAMPLE}", "--input", f"s2l2a={EXAMPLE}"], "S2L2A given twice"),
        (["--input", "S2L2A=missing.tif"], "'missing.tif' does not exist"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            _inputs_parser().parse_args(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1  # one line, with a pointer to --help
        assert "(see 't --help')" in err


def test_unknown_flag_gets_a_close_spelling(capsys):
    assert main(["generate", "--input", f"S2L2A={EXAMPLE}", "--to", "DEM", "--ouptut", "x"]) == 2
    assert "did you mean '--output'?" in capsys.readouterr().err


def test_unsupported_flag_names_the_commands_that_have_it(capsys):
    assert main(["info", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "info has no '--precision' option" in err and "generate" in err and "reconstruct" in err
    assert "embed" in err and "fewshot" not in err  # fewshot has no --precision


@pytest.mark.parametrize(
    "exc,code,phrase",
    [
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/a.tif"), 2, "/x/a.tif"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/x"), 2, "Is a directory: /x"),
        (OSError(errno.ENOSPC, "No space left on device", "/x/o.tif"), 2, "No space left"),
        (OSError(errno.EBADF, "Bad file descriptor"), 3, "internal error"),
        (RuntimeError("boom"), 3, "internal error"),
    ],
)
def test_the_boundary_maps_errors_to_exit_codes(monkeypatch, capsys, exc, code, phrase):
    from terramind.cli import info

    def fail(args):
        raise exc

    monkeypatch.setattr(info, "run", fail)
    assert main(["info"]) == code
    err = capsys.readouterr().err
    assert phrase in err
    assert ("Traceback" in err) == (code == 3)  # user errors are one line; bugs keep their traceback
    if code == 2:
        assert err.startswith("terramind info: error: ") and err.count("\n") == 1


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
