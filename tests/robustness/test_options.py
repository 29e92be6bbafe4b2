"""Generation options out of range fail on the command line with one line naming the option, before
any weights load or any file is written; and in Python with the same :class:`InputError`."""

from __future__ import annotations

from pathlib import Path

import pytest

from terramind.core.errors import InputError
from terramind.generation import GenerationOptions, TemperatureSchedule


@pytest.mark.parametrize(
    "flags,phrases",
    [
        # the command line refuses them while parsing, naming the flag and the value given
        (["--steps", "0"], ["argument --steps: must be a positive integer", "got '0'"]),
        (["--diffusion-steps", "0"], ["argument --diffusion-steps: must be a positive integer", "got '0'"]),
        (["--temperature", "-1"], ["argument --temperature: must be a finite number >= 0", "got '-1'"]),
        (["--top-p", "1.5"], ["argument --top-p: must be between 0 and 1", "got '1.5'"]),
        (["--top-k", "-2"], ["argument --top-k: must be 0 or more", "got '-2'"]),
    ],
)
def test_generate_refuses_options_out_of_range(
    run_cli, tmp_path: Path, examples_dir: Path, flags: list[str], phrases: list[str]
) -> None:
    s2 = examples_dir / "S2L2A" / "38D_378R_2_3.tif"
    argv = [
        "generate",
        "--input",
        f"S2L2A={s2}",
        "--to",
        "LULC",
        "-o",
        tmp_path / "out",
        "--weights",
        "random",
    ]
    run_cli([*argv, *flags]).expect_failure(*phrases)


@pytest.mark.parametrize(
    "values,phrase",
    [
        ({"strategy": "beam"}, "unknown decoding strategy 'beam'; choose one of 'single', 'roar', 'maskgit'"),
        ({"precision": "fp16"}, "precision must be one of 'auto', 'fp32', 'bf16'"),
        ({"guidance": 0.0}, "guidance must be > 0"),
        ({"steps": 2.5}, "steps must be an integer, got 2.5"),
        ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
        ({"chain": 1}, "chain must be true or false"),
        ({"temperature_schedule": "cosine"}, "unknown temperature schedule 'cosine'"),
        ({"temperature_schedule": "onex:0.5"}, "must look like 'onex:0.5:1'"),
        ({"stpes": 3}, "unknown generation option(s) ['stpes']"),
    ],
)
def test_options_record_refuses_bad_values(values: dict[str, object], phrase: str) -> None:
    with pytest.raises(InputError) as info:
        GenerationOptions.from_mapping(values)
    assert phrase in str(info.value)


def test_options_round_trip_through_plain_values() -> None:
    opts = GenerationOptions(
        strategy="maskgit", steps=8, temperature_schedule=TemperatureSchedule("onex", 0.5, 1)
    )
    plain = opts.as_dict()
    assert plain["temperature_schedule"] == "onex:0.5:1"
    assert GenerationOptions.from_mapping(plain) == opts
    assert opts.replace(steps=2) == GenerationOptions(
        strategy="maskgit", steps=2, temperature_schedule=TemperatureSchedule.parse("onex:0.5:1")
    )
    with pytest.raises(InputError, match="steps"):
        opts.replace(steps=0)
