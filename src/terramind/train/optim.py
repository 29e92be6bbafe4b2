"""AdamW over the shared weight-decay policy (``terramind.layers.decay``) and the warmup + cosine schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from terramind.core.errors import InputError
from terramind.layers.decay import param_groups
from terramind.train.config import OptimSection


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear from ~0 to 1 over the warmup, then cosine down to ``min_ratio``.

    Args:
        step: Optimizer steps taken so far.
        warmup_steps: Warmup length.
        total_steps: Total steps of the run.
        min_ratio: Final multiplier.

    Returns:
        The multiplier of the peak learning rate.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` with a per-step :func:`warmup_cosine` schedule."""
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio)
    )
    return optimizer, schedule


def lightning_optimizers(model: nn.Module, optim: OptimSection, total_steps: int) -> dict[str, Any]:
    """``configure_optimizers`` result for Lightning: :func:`build_optimizer` stepped every batch.

    Raises:
        InputError: ``total_steps`` below 1 (``trainer.max_steps: -1``): the schedule needs the run's length.
    """
    if total_steps < 1:
        raise InputError(f"trainer.max_steps must be >= 1 for the warmup + cosine schedule: {total_steps}")
    optimizer, schedule = build_optimizer(
        model,
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        betas=optim.betas,
        warmup_steps=optim.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=optim.min_lr_ratio,
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
