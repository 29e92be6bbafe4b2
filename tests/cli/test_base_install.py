"""The CLI without the optional extras: a real process in which their libraries cannot be imported.

``scripts/check_base_install.sh`` (run by ``.ci/run``) checks a real base-only venv; this test gives the same
answer within seconds in the development venv by blocking the extras' top-level modules.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# pyyaml is no extra: huggingface_hub, a base dependency, requires it
EXTRAS = ("lightning", "torchmetrics", "jsonargparse", "webdataset", "tensorboard", "pyarrow", "zarr")

SCRIPT = textwrap.dedent(
    """
    import contextlib, importlib.abc, importlib.machinery, io, json, sys

    class Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        # found (libraries that probe with find_spec carry on), but importing fails as when not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Block())
    from terramind.cli.main import build_parser, leaf_parsers, main

    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            return main(argv), err.getvalue()

    results = {"--help": run(["--help"])}
    for name in leaf_parsers(build_parser()):
        results[name] = run([*name.split(), "--help"])
    results["finetune scene"] = run(["finetune", "scene", "--help"])
    results["pretrain run"] = run(["pretrain", "-c", "configs/pretrain/tiny_cpu.yaml"])
    results["prepare run"] = run(["prepare", "--src", "examples", "-o", OUT])
    floods = ["-c", "configs/finetune/sen1floods11/base.yaml", "-c", "configs/finetune/sen1floods11/s2.yaml"]
    results["finetune run"] = run(["finetune", "fit", *floods])
    print(json.dumps(results))
    """
)


def test_every_help_works_and_train_commands_name_the_extra(tmp_path: Path) -> None:
    prelude = f"BLOCKED = {set(EXTRAS)!r}\nOUT = {str(tmp_path / 'shards')!r}\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    import json

    results = json.loads(done.stdout)
    helps = {k: v for k, v in results.items() if not k.endswith(" run")}
    assert len(helps) >= 14  # every command, zeroshot water and the finetune commands
    assert {k: code for k, (code, _) in helps.items() if code != 0} == {}
    for name in ("pretrain run", "prepare run", "finetune run"):
        code, err = results[name]
        assert code == 2 and "pip install 'terramind[train]'" in err, (name, err)
        assert "Traceback" not in err and err.count("\n") == 1, (name, err)
    assert not (tmp_path / "shards").exists()
