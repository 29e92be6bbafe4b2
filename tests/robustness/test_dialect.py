"""One config dialect for ``finetune``, ``pretrain`` and ``train-tokenizer``: bad keys, old forms, ``--set``,
``--print-config`` and resuming from another config's checkpoint, each answered in one line (exit 2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from terramind.cli.main import main

pytest.importorskip("lightning")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FLOODS = ROOT / "configs" / "finetune" / "sen1floods11"


def _ft_config(tmp_path: Path, **changes: Any) -> Path:
    """The example-tile fine-tuning config of ``tests/cli/test_finetune.py``, with sections replaced."""
    spec = importlib.util.spec_from_file_location("ft_cli", ROOT / "tests" / "cli" / "test_finetune.py")
    assert spec is not None and spec.loader is not None
    ft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ft)
    path = ft._config(tmp_path, EXAMPLES)
    values = yaml.safe_load(path.read_text())
    for section, value in changes.items():
        values[section] = {**values.get(section, {}), **value}
    path.write_text(yaml.safe_dump(values))
    return path


def _overlay(tmp_path: Path, values: dict[str, Any], name: str = "more.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("task", {"num_clases": 2}, "num_clases"),
        ("data", {"data_rot": "/x"}, "data_rot"),
        ("trainer", {"max_epoch": 5}, "max_epoch"),
        ("backbone", {"sensors": []}, "sensors"),  # given once, at the top level: not a backbone key
        ("temporal", {"aggregator": "mean", "encoder": {}}, "encoder"),
    ],
)
def test_an_unknown_key_names_the_file_and_the_key(
    run_cli, tmp_path: Path, section: str, values: dict[str, Any], key: str
) -> None:
    overlay = _overlay(tmp_path, {section: values})
    outcome = run_cli(
        ["finetune", "fit", "-c", FLOODS / "base.yaml", "-c", FLOODS / "s2.yaml", "-c", overlay]
    )
    outcome.expect_failure(f"{overlay}.{section}: unknown key(s) ['{key}']", "valid keys")
    assert outcome.err.count("\n") == 1


def test_the_old_lightningcli_form_is_refused_with_a_pointer(run_cli, tmp_path: Path) -> None:
    old = {
        "seed_everything": 0,
        "model": {"class_path": "terramind.finetune.SegmentationTask", "init_args": {"num_classes": 2}},
    }
    outcome = run_cli(["finetune", "fit", "-c", _overlay(tmp_path, old, "old.yaml")])
    outcome.expect_failure("unknown key(s) ['model', 'seed_everything']", "old LightningCLI form", "README")


def test_an_unknown_task_kind_lists_the_kinds(run_cli, tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, {"task": {"kind": "segmentaton"}})
    run_cli(
        ["finetune", "fit", "-c", FLOODS / "base.yaml", "-c", FLOODS / "s2.yaml", "-c", overlay]
    ).expect_failure("task.kind must be one of", "'segmentation'", "got 'segmentaton'")


def test_a_temporal_task_needs_a_temporal_section(run_cli, tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, {"task": {"kind": "temporal_segmentation"}})
    run_cli(
        ["finetune", "fit", "-c", FLOODS / "base.yaml", "-c", FLOODS / "s2.yaml", "-c", overlay]
    ).expect_failure("temporal_segmentation needs a temporal: section")


def test_set_replaces_values_after_the_files_and_refuses_unknown_keys(
    run_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = ["-c", FLOODS / "base.yaml", "-c", FLOODS / "s2.yaml"]
    sets = ["--set", "data.data_root=/data/floods", "--set", "trainer.max_epochs=3", "--set", "task.lr=1e-3"]
    assert main(["finetune", "fit", *map(str, files), *sets, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["data_root"] == "/data/floods" and printed["trainer"]["max_epochs"] == 3
    assert printed["task"]["lr"] == 1e-3 and printed["task"]["loss"] == "dice"  # the rest from the files
    assert printed["backbone"]["modalities"] == ["S2L1C"]
    run_cli(["finetune", "fit", *files, "--set", "data.root=/x"]).expect_failure(
        "--set.data: unknown key(s) ['root']"
    )
    run_cli(["finetune", "fit", *files, "--set", "trainer"]).expect_failure("expected SECTION.KEY=VALUE")


def test_pretrain_takes_set_and_print_config(
    run_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ROOT / "configs" / "pretrain" / "tiny_cpu.yaml"
    assert main(["pretrain", "-c", str(config), "--set", "optim.lr=0.5", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 0.5
    run_cli(["pretrain", "-c", config, "--set", "optim.learning_rate=0.5"]).expect_failure(
        "--set.optim: unknown key(s) ['learning_rate']"
    )


def test_resume_or_validate_from_another_configs_checkpoint_is_one_line(run_cli, tmp_path: Path) -> None:
    config = _ft_config(tmp_path, trainer={"max_steps": 1, "logger": "none"})
    assert main(["finetune", "fit", "-c", str(config)]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["terramind"]["task"]["decoder"] == "fcn"
    other = _overlay(tmp_path, {"task": {"decoder_kwargs": {"channels": 16}}})
    run = tmp_path / "run"
    run_cli(["finetune", "fit", "-c", config, "-c", other, "--resume", "last"], watch=run).expect_failure(
        "written by another configuration", "differs in: task"
    )
    run_cli(
        ["finetune", "validate", "-c", config, "-c", other, "--ckpt_path", last], watch=run
    ).expect_failure("written by another configuration", "differs in: task")


def test_fit_resumes_from_last(tmp_path: Path) -> None:
    config = _ft_config(tmp_path, trainer={"max_steps": 1, "logger": "none"})
    assert main(["finetune", "fit", "-c", str(config)]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["global_step"] == 1
    more = ["--set", "trainer.max_steps=2", "--resume", "last"]
    assert main(["finetune", "fit", "-c", str(config), *more]) == 0
    second = torch.load(last, weights_only=True)
    assert second["global_step"] == 2  # one more step, from the saved optimiser state
    changed = [
        k for k in first["state_dict"] if not torch.equal(first["state_dict"][k], second["state_dict"][k])
    ]
    assert changed  # the resumed step trained


def test_invalid_yaml_in_a_file_or_a_set_value_is_one_line_naming_where(run_cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("task:\n  lr: [1e-4\n")
    base = ["finetune", "fit", "-c", FLOODS / "base.yaml", "-c", FLOODS / "s2.yaml"]
    cases = [
        ([*base, "-c", broken], f"{broken}: not valid YAML:"),
        ([*base, "--set", "task.lr=[1"], "task.lr: the value is not valid YAML:"),
    ]
    for argv, phrase in cases:
        outcome = run_cli(argv)
        outcome.expect_failure(phrase, "(line ")
        assert len(outcome.err.strip().splitlines()) == 1, outcome.err  # not the echoed YAML source
