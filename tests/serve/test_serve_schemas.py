"""The HTTP fields are the CLI's options: same names, defaults and choices (one vocabulary)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from terramind.cli.main import build_parser, leaf_parsers
from terramind.core.errors import InputError
from terramind.generation.options import GenerationOptions
from terramind.serve import schemas

NOT_ON_THE_CLI = {"guidance", "temperature_schedule"}  # options of the Python record that generate lacks
RENAMED = {"outputs": "to"}  # generate --to MOD,MOD is the form field outputs=MOD,MOD (the spelling)
NEGATED = {"chain": "no_chain"}  # --no-chain (store_true) is chain=false


def generate_options() -> dict[str, object]:
    """dest -> argparse action of ``terramind generate``."""
    parser = leaf_parsers(build_parser("generate"))["generate"]
    return {a.dest: a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS}


def test_option_fields_are_the_records_fields_with_its_defaults() -> None:
    record = GenerationOptions()
    names = [f.name for f in dataclasses.fields(GenerationOptions)]
    assert [f.name for f in schemas.OPTION_FIELDS] == names
    for f in schemas.OPTION_FIELDS:
        value = getattr(record, f.name)
        assert f.default == (str(value) if f.name == "temperature_schedule" else value), f.name
        assert f.help, f"{f.name} has no help text (the record's docstring names it)"
    assert schemas.ALL_FIELDS["strategy"].choices == ("single", "roar", "maskgit")
    assert schemas.ALL_FIELDS["precision"].choices == ("auto", "fp32", "bf16")


def test_every_field_matches_the_generate_command() -> None:
    actions = generate_options()
    for f in schemas.ALL_FIELDS.values():
        if f.name in NOT_ON_THE_CLI:
            assert f.name not in actions, f"generate gained --{f.name}: drop it from NOT_ON_THE_CLI"
            continue
        dest = RENAMED.get(f.name) or NEGATED.get(f.name) or f.name
        action = actions[dest]
        assert f"--{dest.replace('_', '-')}" in action.option_strings  # the flag is the field with dashes
        if f.name in NEGATED:
            assert action.default is (not f.default), f.name
        elif f.name == "offset":
            assert action.default == {} and f.default == ""
        elif f.name != "outputs":  # --to is required; the field defaults to every served output
            assert action.default == f.default, f.name
        if f.choices:
            assert tuple(sorted(action.choices)) == tuple(sorted(f.choices)), f.name


def test_parse_request_reads_cli_spellings_of_values() -> None:
    spec, options = schemas.parse_request(
        {"outputs": "lulc", "seed": "7", "offset": "S2L2A=1000", "chain": "false", "diffusion_steps": "3",
         "temperature_schedule": "onex:0.5:1", "strategy": "maskgit", "steps": "4"},
        ("LULC", "DEM"), precision="bf16",
    )  # fmt: skip
    assert spec == schemas.JobSpec(outputs=("LULC",), seed=7, offset={"S2L2A": 1000.0})
    assert options == GenerationOptions(
        strategy="maskgit", steps=4, chain=False, diffusion_steps=3, temperature_schedule="onex:0.5:1",
        precision="bf16",
    )  # fmt: skip
    _, defaults = schemas.parse_request({}, ("LULC",))
    assert defaults == GenerationOptions()


@pytest.mark.parametrize(
    ("form", "phrase"),
    [
        ({"steps": "0"}, "steps must be an integer >= 1"),
        ({"temperature": "hot"}, "temperature must be a number, got 'hot'"),
        ({"outputs": "LULC,LULC"}, "outputs lists a modality twice"),
        ({"offset": "S2L2A=inf"}, "finite number"),
        ({"offset": "S2L2A=1,s2l2a=2"}, "offset S2L2A given twice"),
        ({"batch_size": "0"}, "batch_size must be a positive integer"),
        ({"bogus": "1"}, "unknown field(s) bogus; fields are outputs, seed"),
    ],
)
def test_parse_request_refuses_with_the_field_name(form: dict[str, str], phrase: str) -> None:
    with pytest.raises(InputError) as err:
        schemas.parse_request(form, ("LULC",))
    assert phrase in str(err.value)


def test_form_schema_has_a_file_path_and_example_field_per_input() -> None:
    props = schemas.form_schema(("S2L2A",))["properties"]
    assert props["S2L2A"]["format"] == "binary"
    assert {"S2L2A_path", "S2L2A_example"} <= set(props)
    assert props["diffusion_steps"] == {
        "type": "integer", "default": 10, "description": "DDIM steps of the diffusion decoders."
    }  # fmt: skip
