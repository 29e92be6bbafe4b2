"""The one place that decides how a module is compiled with ``torch.compile``, per device.

CUDA: ``mode="reduce-overhead"`` records CUDA graphs, so a diffusion step or a transformer pass at small batch
is one graph launch instead of hundreds of kernel launches from Python (the eager bf16 decode is launch-bound
on an H200). CPU: inductor with ``freezing`` -- parameters become constants, so oneDNN pre-packs the
convolution and matmul weights once and casts to bf16 under autocast are folded away.

Shapes are static (``dynamic=False``): a new batch size or tile size compiles once more, which keeps every
compiled graph as fast as a fixed shape allows. The compiled wrapper is cached by the caller on the module's
owner (never registered as a submodule, so state dicts are unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

COMPILE_MODES: dict[str, dict[str, Any]] = {
    "cuda": {"mode": "reduce-overhead"},
    "cpu": {"options": {"freezing": True}},
}
"""``torch.compile`` keyword arguments by device type (others: inductor's defaults)."""


def compile_module(module: nn.Module, device: torch.device | str) -> Callable[..., Any]:
    """Compile ``module`` for inference on ``device`` (static shapes; see the module docstring)."""
    kind = torch.device(device).type
    return torch.compile(module, dynamic=False, **COMPILE_MODES.get(kind, {}))


def release_graph_output(x: torch.Tensor) -> torch.Tensor:
    """Copy a tensor that a CUDA-graph replay returned, so the next replay cannot overwrite it."""
    return x.clone() if x.is_cuda else x
