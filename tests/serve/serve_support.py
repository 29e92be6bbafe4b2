"""Shared pieces of the serve tests: the example tiles and a host over the tiny random generator."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from terramind.serve.host import ModelHost

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2 = EXAMPLES / "S2L2A" / "38D_378R_2_3.tif"
TINY = Path(__file__).parents[1] / "generation" / "tiny.py"
_spec = importlib.util.spec_from_file_location("serve_gen_tiny", TINY)
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

INPUTS = ("S2L2A", "S1RTC")
OUTPUTS = ("LULC", "DEM")


def tiny_host() -> ModelHost:
    """A host over the tiny random generator (seconds to build) and a random v1-tiny encoder for embed."""
    from terramind.api.models import create_backbone

    return ModelHost(
        lambda: tiny.tiny_generator(list(INPUTS), list(OUTPUTS)),
        backbone_factory=lambda: create_backbone("terramind_v1_tiny", list(INPUTS)),
    )


MakeClient = Callable[..., Any]
"""``make_client(**config changes)`` -> a started ``TestClient`` (the ``make_client`` fixture)."""
