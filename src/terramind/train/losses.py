"""Masked-token cross-entropy over several target modalities (4M's per-modality mean, arXiv 2312.06647)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TargetLogits:
    """Predictions and answers of one target modality.

    Attributes:
        logits: ``(B, n, vocab)``.
        targets: ``(B, n)`` token ids.
        valid: ``(B, n)`` bool, False on padding.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor


@dataclass(frozen=True)
class LossResult:
    """Total loss and its parts.

    Attributes:
        loss: The scalar to minimise.
        per_modality: Mean token cross-entropy of each modality that had targets (detached).
        accuracy: Top-1 accuracy of each such modality (detached).
        num_tokens: Target tokens counted.
    """

    loss: torch.Tensor
    per_modality: dict[str, torch.Tensor]
    accuracy: dict[str, torch.Tensor]
    num_tokens: int


def masked_token_loss(outputs: Mapping[str, TargetLogits], reduction: str = "mod") -> LossResult:
    """Cross-entropy of masked target tokens.

    Args:
        outputs: Per target modality, its logits, answers and validity mask.
        reduction: ``mod``: mean over modalities of each modality's mean token loss (official default, so a
            modality with few targets still counts fully); ``token``: mean over all target tokens.

    Returns:
        The loss and per-modality diagnostics; modalities without valid targets are left out of both (their
        logits enter the graph with weight 0).
    """
    sums, counts, per_mod, accuracy = [], [], {}, {}
    unused = []
    for name, out in outputs.items():
        n = int(out.valid.sum())
        if n == 0:
            unused.append(out.logits.sum() * 0.0)
            continue
        logits, targets = out.logits[out.valid].float(), out.targets[out.valid]  # (n, V), (n,)
        total = F.cross_entropy(logits, targets, reduction="sum")
        sums.append(total)
        counts.append(n)
        per_mod[name] = total.detach() / n
        accuracy[name] = (logits.argmax(-1) == targets).float().mean().detach()
    if not sums:
        raise ValueError("no target tokens in this batch: the masking config gives targets to no modality")
    if reduction == "mod":
        loss = torch.stack([s / c for s, c in zip(sums, counts, strict=True)]).mean()
    else:
        loss = torch.stack(sums).sum() / sum(counts)
    # Logits without valid targets join the graph with weight 0: every rank then runs the same backward
    # through the decoder (sharded training, FSDP, needs the same collectives on every rank).
    for zero in unused:
        loss = loss + zero
    return LossResult(loss, per_mod, accuracy, sum(counts))
