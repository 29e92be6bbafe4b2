"""The one record that steers a generation call: :class:`GenerationOptions`.

Every caller builds one of these and hands it on unchanged: :meth:`Generator.generate
<terramind.generation.generate.Generator.generate>`, the scene tile function, the CLI (one function turns its
arguments into a record) and the benchmarks. Values are checked once, here, with messages that name the
option and its allowed range. What is not an option of the decoding itself (the seed, input units, offsets,
sample indices) stays a keyword of the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from terramind.build.precision import PRECISIONS, Precision
from terramind.core.errors import InputError
from terramind.generation.schedule import TemperatureSchedule
from terramind.generation.strategies import STRATEGIES
from terramind.layers.sampling import SamplingConfig

StrategyName = Literal["single", "roar", "maskgit"]
Compile = bool | Literal["auto"]
AUTO_COMPILE_AFTER: dict[str, int | None] = {"cuda": 1, "cpu": None}
"""``compile="auto"``: per device type, compile a decoder once it has run this many times at one shape
(None: never). A one-tile command never compiles (the first call of a shape always runs eager); a scene or a
batch job compiles from its second batch on. CPU: see BENCHMARKS.md for why it stays eager."""


@dataclass(frozen=True)
class GenerationOptions:
    """How tokens are decoded and detokenized.

    Attributes:
        strategy: ``"roar"`` (random order), ``"maskgit"`` (most confident first) or ``"single"`` (every token
            in one pass, the reference's decoding).
        steps: Decoding steps per image output (1 = every token in one pass).
        temperature: Sampling temperature; 0 is greedy.
        temperature_schedule: How the temperature changes over the steps (a string such as
            ``"onex:0.5:1"`` is parsed with :meth:`TemperatureSchedule.parse`).
        top_k: Keep only the k most likely tokens, on the unscaled logits (0 = off).
        top_p: Nucleus filter on the unscaled logits (0 or 1 = off).
        guidance: Classifier-free guidance scale (1 = off); the unconditional pass drops the inputs.
        chain: Feed each generated output to the encoder for the following outputs.
        diffusion_steps: DDIM steps of the diffusion decoders.
        precision: ``"auto"`` (bf16 where the hardware multiplies bf16 natively, else fp32; see
            :mod:`terramind.build.precision`), ``"fp32"`` (exact, the parity path) or ``"bf16"`` (autocast for
            model and tokenizer decoders).
        compile: Compile the diffusion decoders (:mod:`terramind.layers.compile`): True, False or
            ``"auto"`` (see :data:`AUTO_COMPILE_AFTER`).
    """

    strategy: StrategyName = "roar"
    steps: int = 1
    temperature: float = 1.0
    temperature_schedule: TemperatureSchedule = field(default_factory=TemperatureSchedule)
    top_k: int = 0
    top_p: float = 0.8
    guidance: float = 1.0
    chain: bool = True
    diffusion_steps: int = 10
    precision: Precision = "auto"
    compile: Compile = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.temperature_schedule, str):  # the CLI/JSON spelling
            object.__setattr__(
                self, "temperature_schedule", TemperatureSchedule.parse(self.temperature_schedule)
            )
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown decoding strategy {self.strategy!r}; choose one of {_names(StrategyName)}"
            )
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {_names(Precision)}, got {self.precision!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise InputError(f"compile must be true, false or 'auto', got {self.compile!r}")
        for name, kinds in _TYPES.items():
            value = getattr(self, name)
            if isinstance(value, bool) is not (kinds == (bool,)) or not isinstance(value, kinds):
                raise InputError(f"{name} must be {_TYPE_NAMES[kinds]}, got {value!r}")
        for name in ("steps", "diffusion_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.guidance > 0:
            raise InputError(f"guidance must be > 0 (1 = off), got {self.guidance}")
        SamplingConfig(self.temperature, self.top_k, self.top_p)  # checks their ranges in their one home

    @property
    def sampling(self) -> SamplingConfig:
        """Base temperature and filters, as the sampler takes them."""
        return SamplingConfig(self.temperature, self.top_k, self.top_p)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> GenerationOptions:
        """Build options from plain values (a config file, a JSON request); unknown keys are refused.

        Raises:
            InputError: A key that is not an option, or a value out of range.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise InputError(f"unknown generation option(s) {unknown}; options are {', '.join(names)}")
        return cls(**values)  # type: ignore[arg-type]  # values are checked in __post_init__

    def replace(self, **changes: object) -> GenerationOptions:
        """Return a copy with some options changed (checked like a new record)."""
        return self.from_mapping({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, object]:
        """Plain values (the schedule as its string form), e.g. for a resume fingerprint or a log."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["temperature_schedule"] = str(self.temperature_schedule)
        return out


_TYPES: dict[str, tuple[type, ...]] = {
    "steps": (int,), "diffusion_steps": (int,), "top_k": (int,), "chain": (bool,),
    "temperature": (int, float), "top_p": (int, float), "guidance": (int, float),
}  # fmt: skip
_TYPE_NAMES = {(int,): "an integer", (bool,): "true or false", (int, float): "a number"}


def _names(literal: object) -> str:
    return ", ".join(repr(v) for v in get_args(literal))
