"""Inference precision: what ``"auto"`` chooses on this hardware, and the one autocast context.

``"auto"`` (the default of every inference command) runs bf16 autocast where the hardware multiplies bf16
natively -- CPUs with the ``avx512_bf16`` or ``amx_bf16`` instructions, CUDA GPUs of compute capability 8.0 or
newer (Ampere, Hopper) -- and fp32 elsewhere, where bf16 would be emulated and slower. ``"fp32"`` is the exact
path the parity tests pin (bit-identical to the reference's true-fp32 outputs where they are). The choice is
printed once per process (to stderr), with the reason and how to get the other one.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch

from terramind.core.errors import InputError

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
"""Autocast dtype of each concrete precision (None: none). A new precision is one entry here and one above."""

NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bf16 dot-product instructions
NATIVE_BF16_CUDA_CAPABILITY = (8, 0)  # Ampere and newer have bf16 tensor cores


@dataclass(frozen=True)
class PrecisionChoice:
    """A resolved precision and why.

    Attributes:
        precision: ``"fp32"`` or ``"bf16"``.
        reason: What decided it, for the one-line announcement.
    """

    precision: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None for fp32)."""
        return AUTOCAST_DTYPES[self.precision]


def resolve_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """Turn ``"auto"``, ``"fp32"`` or ``"bf16"`` into a concrete precision for ``device``.

    Raises:
        InputError: An unknown precision name.
    """
    if requested not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native = (major, minor) >= NATIVE_BF16_CUDA_CAPABILITY
        return PrecisionChoice("bf16" if native else "fp32", f"CUDA compute capability {major}.{minor}")
    if device.type == "cpu":
        flags = [f for f in NATIVE_BF16_CPU_FLAGS if f in cpu_flags()]
        reason = f"CPU has {flags[0]}" if flags else "CPU lacks avx512_bf16/amx_bf16"
        return PrecisionChoice("bf16" if flags else "fp32", reason)
    return PrecisionChoice("fp32", f"no native bf16 rule for {device.type}")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """Instruction-set flags of this CPU from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


_announced: set[tuple[str, str]] = set()


def announce(choice: PrecisionChoice) -> None:
    """Print what ``"auto"`` chose, once per process and choice (stderr)."""
    key = (choice.precision, choice.reason)
    if key in _announced:
        return
    _announced.add(key)
    bf16 = choice.precision == "bf16"
    other = "--precision fp32 for exact parity" if bf16 else "--precision bf16 to force it"
    print(f"precision auto -> {choice.precision} ({choice.reason}); {other}", file=sys.stderr)


def inference_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """:func:`resolve_precision`, announcing the choice when it was ``"auto"``."""
    choice = resolve_precision(requested, device)
    if requested == "auto":
        announce(choice)
    return choice


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[PrecisionChoice]:
    """Run the block in ``precision`` (``"auto"`` resolved and announced) on ``device``; yields the choice."""
    choice = inference_precision(precision, device)
    if choice.dtype is None:
        yield choice
        return
    with torch.autocast(torch.device(device).type, dtype=choice.dtype):
        yield choice
