"""One vocabulary: every shared option has the same name, default, type and help in every command.

The test walks every subparser (nested ones such as ``zeroshot water`` and ``finetune scene``'s own parser
included) and compares each visible option that two or more commands have. The few differences that are
meant are listed in ``DIFFERENT`` with the reason.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import pytest

from terramind.cli.finetune import scene_parser
from terramind.cli.main import _parse, build_parser, leaf_parsers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "S2L2A" / "38D_378R_2_3.tif"

# option -> the fields allowed to differ, and why
DIFFERENT = {
    "--output": ({"help"}, "the help says what the command writes (a file or a folder)"),
    "--png": (
        {"action", "type", "nargs", "const", "default", "help", "metavar"},
        "a flag where the output is a folder "
        "(generate: one PNG per output), a PATH where the output is one file",
    ),
    "--config": (
        {"action", "default", "help"},
        "the training commands' -c files are run configs (base + overlays), a task's are its config",
    ),
    "--input": (
        {"type", "help"},
        "the scene commands (generate, zeroshot water, inspect) also take band files as a list or a glob",
    ),
    "--format": (
        {"default", "choices", "help"},
        "the kind of file written: export's model formats (onnx, torch-export), embed's products",
    ),
    "--workers": (
        {"help"},
        "how many at once in both; serve's workers are jobs sharing one model, batch's each hold a model",
    ),
}
# commands that run TerraMind or a tokenizer, and the options each must have
RUNS_MODEL = (
    "generate",
    "embed",
    "embed-series",
    "zeroshot water",
    "serve",
    "batch generate",
    "batch embed",
    "batch zeroshot-water",
)
RUNS_TOKENIZER = ("tokenize", "reconstruct")
RUNS_TASK = ("finetune scene", "batch predict")
TRAINERS = ("pretrain", "train-tokenizer", "finetune fit")


def commands() -> dict[str, argparse.ArgumentParser]:
    parsers = leaf_parsers(build_parser())
    parsers["finetune scene"] = scene_parser()
    return parsers


def _fields(action: argparse.Action) -> dict[str, object]:
    return {
        "strings": tuple(action.option_strings),
        "action": type(action).__name__,
        "default": action.default,
        "type": action.type,
        "help": action.help,
        "choices": tuple(action.choices) if action.choices else None,
        "nargs": action.nargs,
        "const": action.const,
        "metavar": action.metavar,
    }


def _visible_options() -> dict[str, dict[str, dict[str, object]]]:
    """Long option -> command -> fields, for options shown in help."""
    found: dict[str, dict[str, dict[str, object]]] = defaultdict(dict)
    for name, parser in commands().items():
        for action in parser._actions:
            longs = [s for s in action.option_strings if s.startswith("--")]
            if action.help != argparse.SUPPRESS and longs:
                found[longs[0]][name] = _fields(action)
    return found


def test_shared_options_are_identical_everywhere() -> None:
    problems = []
    for option, per_command in _visible_options().items():
        allowed = DIFFERENT.get(option, (set(), ""))[0]
        (first, reference), *rest = per_command.items()
        for name, fields in rest:
            differ = {k for k in fields if fields[k] != reference[k]} - allowed
            problems += [
                f"{option}: {k} {fields[k]!r} in {name}, {reference[k]!r} in {first}" for k in differ
            ]
    assert not problems, "\n".join(problems)


def test_the_walk_sees_every_command_and_the_shared_options() -> None:
    found = _visible_options()
    assert set(commands()) >= {*RUNS_MODEL, *RUNS_TOKENIZER, *RUNS_TASK, "fewshot", "inspect", "prepare"}
    assert set(found["--device"]) == {*RUNS_MODEL, *RUNS_TOKENIZER, *RUNS_TASK}  # and nowhere it is ignored
    assert len(found["--batch-size"]) >= 4 and len(found["--seed"]) >= 4


@pytest.mark.parametrize(
    "name,needed",
    [(n, ("--device", "--weights", "--model")) for n in RUNS_MODEL]
    + [(n, ("--device", "--weights", "--tokenizer-weights")) for n in RUNS_TOKENIZER]
    + [(n, ("--device",)) for n in RUNS_TASK],
)
def test_commands_that_run_a_model_have_device_weights_and_model(name: str, needed: tuple[str, ...]) -> None:
    options = commands()[name]._option_string_actions
    assert [o for o in needed if o not in options] == []


def test_outputs_are_spelled_o_output_and_old_spellings_are_hidden() -> None:
    for name, parser in commands().items():
        strings = {s: a for a in parser._actions for s in a.option_strings}
        if "--output" in strings:
            assert strings["--output"].option_strings == ["-o", "--output"], name
        for old in ("--out", "--batch", "--bf16"):
            assert old not in strings or strings[old].help == argparse.SUPPRESS, (name, old)


def test_old_spellings_still_work_with_a_note(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["generate", "--input", f"S2L2A={EXAMPLE}", "--to", "DEM", "--out", str(tmp_path), "--batch", "2"]
    args = _parse([*argv, "--bf16", "--weights", "none"])
    assert (args.output, args.batch_size, args.precision, args.weights) == (tmp_path, 2, "bf16", "random")
    err = capsys.readouterr().err
    for old, new in [("--out", "-o/--output"), ("--batch", "--batch-size"), ("--bf16", "--precision bf16")]:
        assert f"'{old}' is deprecated and will be removed in the next release: use '{new}'" in err
    assert "'--weights none' is deprecated: use '--weights random'" in err
    args = _parse(["reconstruct", str(EXAMPLE), "-m", "S2L2A", "-o", str(tmp_path / "r.tif"), "--steps", "3"])
    assert args.diffusion_steps == 3 and "use '--diffusion-steps'" in capsys.readouterr().err


def test_new_spellings_print_no_note(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [
        "generate",
        "--input",
        f"S2L2A={EXAMPLE}",
        "--to",
        "DEM",
        "-o",
        str(tmp_path),
        "--batch-size",
        "2",
    ]
    args = _parse([*argv, "--precision", "bf16", "--weights", "random"])
    assert (args.batch_size, args.precision, args.device) == (2, "bf16", "cpu" if not _cuda() else "cuda")
    assert capsys.readouterr().err == ""


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("name", TRAINERS)
def test_the_three_trainers_share_config_options(name: str) -> None:
    options = commands()[name]._option_string_actions
    assert [o for o in ("--config", "--resume", "--set", "--print-config") if o not in options] == []
