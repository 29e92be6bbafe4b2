"""Argument parsing shared by several subcommands (a private module: discovery skips names with ``_``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from terramind.core.errors import InputError
from terramind.modalities import get_modality


def parse_pairs(items: Sequence[str], what: str) -> dict[str, str]:
    """Parse ``MOD=VALUE`` items into a dict keyed by canonical modality name.

    Raises:
        InputError: An item without ``=``, name or value, or a modality given twice.
        ModalityError: An unknown modality name.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"{what} must look like MOD=VALUE (e.g. S2L2A=scene.tif), got {item!r}")
        canonical = get_modality(name).name
        if canonical in out:
            raise InputError(f"{what} {canonical} given twice")
        out[canonical] = value
    return out


def parse_inputs(items: Sequence[str]) -> dict[str, Path]:
    """``["S2L2A=dir", ...]`` -> ``{"S2L2A": Path("dir")}`` with canonical modality names."""
    return {name: Path(value) for name, value in parse_pairs(items, "--input").items()}
