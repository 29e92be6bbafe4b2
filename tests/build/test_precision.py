"""What ``precision="auto"`` chooses (build/precision.py), and the one autocast context."""

from __future__ import annotations

import pytest
import torch

from terramind.build import precision
from terramind.core.errors import InputError


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "_announced", set())


@pytest.mark.parametrize(
    ("flags", "expected", "reason"),
    [
        ({"avx512f", "avx512_bf16"}, "bf16", "CPU has avx512_bf16"),
        ({"amx_bf16", "avx512_bf16"}, "bf16", "CPU has amx_bf16"),
        ({"avx2", "avx512f"}, "fp32", "CPU lacks avx512_bf16/amx_bf16"),
        (set(), "fp32", "CPU lacks avx512_bf16/amx_bf16"),
    ],
)
def test_auto_on_cpu_follows_the_bf16_instruction_flags(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], expected: str, reason: str
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision("auto", "cpu") == precision.PrecisionChoice(expected, reason)


@pytest.mark.parametrize(("capability", "expected"), [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")])
def test_auto_on_cuda_follows_the_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    choice = precision.resolve_precision("auto", "cuda")
    assert choice.precision == expected
    assert choice.reason == f"CUDA compute capability {capability[0]}.{capability[1]}"


def test_explicit_precisions_are_kept_whatever_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert precision.resolve_precision("fp32", "cpu").precision == "fp32"
    assert precision.resolve_precision("bf16", "cpu").dtype is torch.bfloat16
    with pytest.raises(InputError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        precision.resolve_precision("fp16", "cpu")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    assert all(" " not in f and f for f in flags)


def test_auto_is_announced_once_per_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh: None
) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    for _ in range(3):
        precision.inference_precision("auto", "cpu")
    precision.inference_precision("fp32", "cpu")  # an explicit choice is not announced
    err = capsys.readouterr().err
    assert err == "precision auto -> bf16 (CPU has avx512_bf16); --precision fp32 for exact parity\n"


def test_autocast_context_enables_bf16_only_when_chosen(fresh: None) -> None:
    with precision.autocast("bf16", "cpu") as choice:
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
        assert choice.precision == "bf16"
    with precision.autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
