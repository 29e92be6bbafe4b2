"""The HTTP vocabulary of ``terramind serve``, derived from the records the CLI speaks.

A generation request is a multipart form. Its decoding options are the fields of
:class:`~terramind.generation.options.GenerationOptions`, read off the dataclass (names, types, defaults,
allowed literals, help from its docstring), so HTTP, Python and the CLI cannot drift apart:
``diffusion_steps=10`` is ``--diffusion-steps 10`` is ``GenerationOptions(diffusion_steps=10)``. The job
fields (``outputs``, ``seed``, ``offset``, ``tile``, ``overlap``, ``batch_size``) carry the CLI's names and
defaults (``outputs`` is ``generate --to``); ``tests/serve/test_schemas.py`` compares both with the parser of
``terramind generate``.

Inputs are one form field per modality: an uploaded file named by the modality (``S2L2A=@tile.tif``), a
server-side path under ``--data-root`` (``S2L2A_path=scenes/t.tif``) or an example tile
(``S2L2A_example=38D_378R_2_3.tif``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from terramind.core.errors import InputError
from terramind.generation.options import GenerationOptions
from terramind.modalities import get_modality
from terramind.modalities.tokens import PATCH_SIZE

Kind = Literal["integer", "number", "boolean", "string"]
PATH_SUFFIX = "_path"  # S2L2A_path=...: a file under --data-root
EXAMPLE_SUFFIX = "_example"  # S2L2A_example=NAME.tif: an example tile
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_KINDS: dict[type, Kind] = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclass(frozen=True)
class FormField:
    """One form field of a request.

    Attributes:
        name: The field's name (the Python name; the CLI spells it with dashes).
        kind: JSON-schema type of its value.
        default: Value when the field is absent.
        choices: Allowed values of a string field (empty: any).
        help: What it means.
    """

    name: str
    kind: Kind
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""

    def parse(self, text: str) -> Any:
        """Convert a form value to the field's type.

        Raises:
            InputError: A value that is not of the field's type or not one of its choices.
        """
        text = text.strip()
        if self.kind == "boolean":
            if text.lower() not in _TRUE + _FALSE:
                raise InputError(f"{self.name} must be true or false, got {text!r}")
            return text.lower() in _TRUE
        if self.kind in ("integer", "number"):
            try:
                return int(text) if self.kind == "integer" else float(text)
            except ValueError:
                what = "an integer" if self.kind == "integer" else "a number"
                raise InputError(f"{self.name} must be {what}, got {text!r}") from None
        if self.choices and text not in self.choices:
            raise InputError(f"{self.name} must be one of {', '.join(self.choices)}, got {text!r}")
        return text

    def json_schema(self) -> dict[str, Any]:
        """Return the field as an OpenAPI/JSON-schema property."""
        schema: dict[str, Any] = {"type": self.kind, "default": self.default, "description": self.help}
        if self.choices:
            schema["enum"] = list(self.choices)
        return schema


def _attribute_help(cls: type) -> dict[str, str]:
    """``name -> text`` of the ``Attributes:`` section of a Google-style class docstring."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[-1]
    found: dict[str, str] = {}
    for name, text in re.findall(r"^\s{4}(\w+): (.*(?:\n\s{8}.*)*)", section, flags=re.MULTILINE):
        found[name] = " ".join(text.split())
    return found


def _option_field(f: dataclasses.Field[Any], hint: Any, help_text: str) -> FormField:
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    if typing.get_origin(hint) is Literal:
        return FormField(f.name, "string", default, tuple(typing.get_args(hint)), help_text)
    if hint in _KINDS:
        return FormField(f.name, _KINDS[hint], default, (), help_text)
    return FormField(f.name, "string", str(default), (), help_text)  # a record with a string form


def option_fields() -> tuple[FormField, ...]:
    """Return the decoding options: one field per :class:`GenerationOptions` attribute, in its order."""
    hints = typing.get_type_hints(GenerationOptions)
    helps = _attribute_help(GenerationOptions)
    return tuple(
        _option_field(f, hints[f.name], helps.get(f.name, "")) for f in dataclasses.fields(GenerationOptions)
    )


OPTION_FIELDS = option_fields()


@dataclass(frozen=True)
class JobSpec:
    """What a generation job computes besides the decoding options; the CLI's names and defaults.

    Attributes:
        outputs: Modalities to generate, in order (``generate --to``); default: every output served.
        seed: Seed of all random sampling.
        offset: Per modality, a value added to the mean (S2 products with the +1000 DN offset).
        tile: Tile side in pixels (a multiple of 16).
        overlap: Overlap of neighbouring tiles in pixels.
        batch_size: Tiles per model call.
    """

    outputs: tuple[str, ...]
    seed: int = 0
    offset: Mapping[str, float] = dataclasses.field(default_factory=dict)
    tile: int = 224
    overlap: int = 32
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.tile < PATCH_SIZE or self.tile % PATCH_SIZE:
            raise InputError(
                f"tile must be a positive multiple of {PATCH_SIZE} (the patch size), got {self.tile}"
            )
        if not 0 <= self.overlap < self.tile:
            raise InputError(
                f"overlap ({self.overlap}) must be 0 or more and smaller than tile ({self.tile})"
            )
        if self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer (1 or more), got {self.batch_size}")

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for the job record)."""
        return {**dataclasses.asdict(self), "outputs": list(self.outputs), "offset": dict(self.offset)}


def _job_fields() -> tuple[FormField, ...]:
    helps = _attribute_help(JobSpec)
    fields = []
    for f in dataclasses.fields(JobSpec):
        if f.name in ("outputs", "offset"):  # lists written as text: LULC,S1RTC and S2L2A=1000
            default = "" if f.name == "offset" else None
            fields.append(FormField(f.name, "string", default, (), helps[f.name]))
        else:
            fields.append(FormField(f.name, "integer", f.default, (), helps[f.name]))
    return tuple(fields)


JOB_FIELDS = _job_fields()
ALL_FIELDS = {f.name: f for f in (*JOB_FIELDS, *OPTION_FIELDS)}


def parse_outputs(text: str | None, served: tuple[str, ...]) -> tuple[str, ...]:
    """``LULC,S1RTC`` -> canonical names, each one the server generates (None: all of them).

    Raises:
        ModalityError: An unknown name.
        InputError: A name the server does not generate, a repeat, or an empty list.
    """
    if text is None or not text.strip():
        return served
    names = tuple(get_modality(item.strip()).name for item in text.split(",") if item.strip())
    missing = [n for n in names if n not in served]
    if missing:
        raise InputError(
            f"outputs {', '.join(missing)} are not served here; this server generates {', '.join(served)}"
        )
    if len(set(names)) != len(names):
        raise InputError(f"outputs lists a modality twice: {','.join(names)}")
    return names


def parse_offsets(text: str) -> dict[str, float]:
    """``S2L2A=1000[,S1RTC=0]`` -> canonical modality -> finite number.

    Raises:
        InputError: An item that is not ``MOD=NUMBER``, a repeat or a non-finite number.
    """
    out: dict[str, float] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"offset must look like MOD=NUMBER[,MOD=NUMBER] (e.g. S2L2A=1000), got {item!r}")
        number = FormField("offset", "number", 0.0).parse(value)
        if number != number or abs(number) == float("inf"):
            raise InputError(f"the offset must be a finite number, got {value!r}")
        key = get_modality(name.strip()).name
        if key in out:
            raise InputError(f"offset {key} given twice")
        out[key] = number
    return out


def parse_request(
    form: Mapping[str, str], served: tuple[str, ...], *, precision: str = "auto"
) -> tuple[JobSpec, GenerationOptions]:
    """Read a request's job fields and decoding options (absent fields take their defaults).

    Args:
        form: The request's text fields (file and path fields are left out by the caller).
        served: The outputs the server generates.
        precision: The server's default precision (``--precision``).

    Raises:
        InputError: An unknown field (with the known ones), or a value of the wrong type or out of range.
    """
    unknown = sorted(set(form) - set(ALL_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(ALL_FIELDS)}")
    values = {
        name: ALL_FIELDS[name].parse(text) for name, text in form.items() if name not in ("outputs", "offset")
    }
    options = {f.name: values[f.name] for f in OPTION_FIELDS if f.name in values}
    options.setdefault("precision", precision)
    spec = JobSpec(
        outputs=parse_outputs(form.get("outputs"), served),
        offset=parse_offsets(form.get("offset", "")),
        **{f.name: values[f.name] for f in JOB_FIELDS if f.name in values},
    )
    return spec, GenerationOptions.from_mapping(options)


def form_schema(inputs: tuple[str, ...], *, uploads: bool = True) -> dict[str, Any]:
    """JSON schema of the multipart form of ``POST /v1/generate`` (for the OpenAPI document).

    Args:
        inputs: The input modalities the server takes.
        uploads: Whether each input has a file field (``/v1/embed`` and ``/v1/generate`` do).
    """
    props: dict[str, Any] = {}
    for name in inputs:
        if uploads:
            props[name] = {"type": "string", "format": "binary", "description": f"{name} GeoTIFF"}
        props[name + PATH_SUFFIX] = {"type": "string", "description": f"{name} file under --data-root"}
        props[name + EXAMPLE_SUFFIX] = {"type": "string", "description": f"{name} example tile by file name"}
    for f in ALL_FIELDS.values():
        props[f.name] = f.json_schema()
    return {"type": "object", "properties": props}
