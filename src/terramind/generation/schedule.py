"""Token and temperature schedules for iterative decoding (4M, arXiv 2312.06647).

A token schedule says how many tokens of a modality are decided at each step (it sums to the modality's token
count); a temperature schedule gives the sampling temperature of each step. Numbers match the reference's
``linear_schedule`` / ``cosine_schedule`` / ``linear_temp_schedule`` / ``onex_temp_schedule``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from terramind.core.errors import InputError

TOKEN_SCHEDULES = ("linear", "cosine")
ScheduleKind = Literal["constant", "linear", "onex"]
TEMPERATURE_SCHEDULES = ("constant", "linear", "onex:<min_t>:<power>")
_MIN_TEMPERATURE = 1e-9  # decaying schedules never reach exactly 0 (that would switch to greedy)


def token_schedule(kind: str, steps: int, total: int) -> list[int]:
    """Tokens decided per step.

    Args:
        kind: ``"linear"`` (equal shares, larger ones first) or ``"cosine"`` (few tokens first, MaskGIT).
        steps: Number of decoding steps (at most ``total``; linear drops empty trailing steps).
        total: Tokens of the modality (196 for a 224 px image).

    Returns:
        Positive counts summing to ``total``.
    """
    if steps < 1:
        raise InputError(f"decoding steps must be >= 1, got {steps}")
    if total < 1:
        raise InputError(f"a schedule needs at least one token, got {total}")
    if kind == "linear":
        edges = np.linspace(0, total, steps + 1, dtype=int)
        counts = sorted((int(c) for c in np.diff(edges)), reverse=True)
    elif kind == "cosine":
        # rounded cumulatively: the reference rounds each step's share, which can overshoot the total
        done = [round(total * 0.5 * (1 - math.cos(math.pi * i / steps))) for i in range(steps + 1)]
        counts = [b - a for a, b in itertools.pairwise(done)]
    else:
        raise InputError(f"unknown token schedule {kind!r}; choose one of {', '.join(TOKEN_SCHEDULES)}")
    return [c for c in counts if c > 0]


@dataclass(frozen=True)
class TemperatureSchedule:
    """How the sampling temperature changes over the decoding steps.

    Attributes:
        kind: ``"constant"``; ``"linear"`` (decays with the share of tokens still to decide);
            ``"onex"`` (a 1/x^power decay from the base temperature down to ``min``).
        min: Final temperature of ``"onex"`` (ignored by the other kinds).
        power: Exponent of ``"onex"`` (ignored by the other kinds).
    """

    kind: ScheduleKind = "constant"
    min: float = 0.0
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in get_args(ScheduleKind):
            choices = ", ".join(TEMPERATURE_SCHEDULES)
            raise InputError(f"unknown temperature schedule {self.kind!r}; choose one of {choices}")
        if self.min < 0:
            raise InputError(f"the onex schedule's minimum temperature must be >= 0, got {self.min}")

    @classmethod
    def parse(cls, text: str) -> TemperatureSchedule:
        """Read the string form: ``constant``, ``linear`` or ``onex:<min>:<power>`` (e.g. ``onex:0.5:1``).

        Raises:
            InputError: Another name, or an ``onex`` form without two numbers.
        """
        name, *params = text.strip().split(":")
        if name != "onex":
            if params or name not in get_args(ScheduleKind):
                raise InputError(
                    f"unknown temperature schedule {text!r}; choose one of {', '.join(TEMPERATURE_SCHEDULES)}"
                )
            return cls(name)  # type: ignore[arg-type]  # checked against ScheduleKind just above
        try:
            low, power = (float(v) for v in params)
        except ValueError:
            raise InputError(
                f"temperature schedule {text!r} must look like 'onex:0.5:1' (onex:<min>:<power>)"
            ) from None
        return cls("onex", low, power)

    def __str__(self) -> str:
        return f"onex:{self.min:g}:{self.power:g}" if self.kind == "onex" else self.kind


def temperature_schedule(schedule: TemperatureSchedule, temperature: float, tokens: list[int]) -> list[float]:
    """Temperature of each step of a token schedule.

    Args:
        schedule: The schedule's kind and parameters.
        temperature: Starting (or constant) temperature; 0 is greedy for every step.
        tokens: The token schedule.

    Returns:
        One temperature per step.
    """
    if schedule.kind == "constant" or temperature == 0:
        return [float(temperature)] * len(tokens)
    counts = np.asarray(tokens, dtype=float)
    left = (counts.sum() - np.cumsum(counts)) / counts.sum()  # share still undecided after each step
    if schedule.kind == "linear":
        temps = np.concatenate([[1.0], left[:-1]]) * temperature
    else:
        temps = _onex(schedule, temperature, counts)
    return [float(t) for t in np.clip(temps, _MIN_TEMPERATURE, None)]


def _onex(schedule: TemperatureSchedule, temperature: float, counts: np.ndarray) -> np.ndarray:
    """Evaluate the onex schedule at the first ``len(counts)`` of its token points."""
    y = 1.0 / np.linspace(1, 100, int(counts.sum())) ** schedule.power
    y = (y - y.min()) / (y.max() - y.min())
    shrink = 1.0 - np.cumsum(counts) / counts.sum()
    # the reference pairs the first len(counts) points of the per-token curve with the per-step shrink
    return schedule.min + (temperature - schedule.min) * y[: len(counts)] * shrink
