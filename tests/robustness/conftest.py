"""The robustness suite's harness: run a command as a user would and check how it fails.

Every case states the exit code, that no traceback escaped (in-process: no exception left ``main``), a
phrase that the one-line message must contain, and the exact set of files before and after the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from terramind.cli.main import main

# Lightning gives its loggers a stream handler on sys.stderr when first imported; imported inside a test,
# that is the test's capture stream, closed when the test ends, and later tests then print "Logging error"
# tracebacks. Imported here, the handler holds pytest's session-long stream.
with contextlib.suppress(ImportError):
    import lightning.pytorch  # noqa: F401


@dataclass(frozen=True)
class Outcome:
    """What a command run left behind: exit code, captured streams, files under the watched folder."""

    code: int
    out: str
    err: str
    files_before: frozenset[str]
    files_after: frozenset[str]

    def expect_failure(self, *phrases: str, code: int = 2) -> None:
        """Assert a clean failure: the exit code, one message naming the problem, no files changed."""
        assert self.code == code, f"exit {self.code}, expected {code}; stderr: {self.err!r}"
        assert "Traceback" not in self.err, self.err
        lowered = self.err.lower()
        for phrase in phrases:
            assert phrase.lower() in lowered, f"{phrase!r} not in {self.err!r}"
        assert self.files_after == self.files_before, (
            f"files changed: added {sorted(self.files_after - self.files_before)}, "
            f"removed {sorted(self.files_before - self.files_after)}"
        )


def snapshot(folder: Path) -> frozenset[str]:
    """Every file and folder under ``folder``, as paths relative to it (hidden ones included)."""
    return frozenset(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run ``terramind ARGV`` in-process, watching ``tmp_path`` (or ``watch=``) for file changes.

    An exception that escapes ``main`` fails the test: the CLI must answer every user error itself.
    """

    def run(argv: Sequence[str], *, watch: Path | None = None) -> Outcome:
        folder = watch or tmp_path
        before = snapshot(folder)
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err, before, snapshot(folder))

    return run
