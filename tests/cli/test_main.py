import subprocess
import sys

from terramind.cli.main import build_parser


def test_subcommands_are_discovered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"info", "inspect"} <= set(sub.choices)


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
