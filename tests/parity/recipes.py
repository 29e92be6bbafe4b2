"""Seeded weight recipes shared by the tokenizer golden maker (peer venv) and the parity test (ours)."""

from __future__ import annotations

import math

import torch


def recipe_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights by key name: fan-in scaled matrices, norm weights near 1, small biases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        w = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            w = w / math.sqrt(math.prod(shape[1:]))
        elif name.endswith(".weight"):
            w = 1 + 0.1 * w
        else:
            w = 0.1 * w
        out[name] = w
    return out
