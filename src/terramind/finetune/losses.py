"""Losses chosen by name with :func:`build_loss`.

Cross-entropy, dice and focal for classes (all honour an ignore index and class weights), BCE for
multi-label targets, masked MSE / L1 for regression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from terramind.core.errors import TerraMindError


def _weights(class_weights: Sequence[float] | None) -> torch.Tensor | None:
    return None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)


class CrossEntropy(nn.Module):
    """Cross-entropy over class logits ``(B, K, ...)`` with optional class weights and ignore index."""

    weight: torch.Tensor | None

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int = -100) -> None:
        super().__init__()
        self.register_buffer("weight", _weights(class_weights), persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the non-ignored targets."""
        return F.cross_entropy(
            logits.float(), target.long(), weight=self.weight, ignore_index=self.ignore_index
        )


class FocalLoss(CrossEntropy):
    """Focal loss (Lin et al. 2017): cross-entropy times ``(1 - p_true) ** gamma``, mean over valid pixels."""

    def __init__(
        self, class_weights: Sequence[float] | None = None, ignore_index: int = -100, gamma: float = 2.0
    ) -> None:
        super().__init__(class_weights, ignore_index)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean focal loss over the non-ignored targets."""
        target = target.long()
        ce = F.cross_entropy(
            logits.float(), target, weight=self.weight, ignore_index=self.ignore_index, reduction="none"
        )
        valid = target != self.ignore_index
        p_true = torch.exp(-F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none"))
        loss = (1 - p_true) ** self.gamma * ce
        return loss[valid].sum() / valid.sum().clamp(min=1)


class DiceLoss(nn.Module):
    """Soft multi-class dice loss, ``1 - mean_k 2|P∩T| / (|P|+|T|)``, over non-ignored pixels.

    Class weights scale each class's dice term (normalised to sum to one).
    """

    weight: torch.Tensor | None

    def __init__(
        self, class_weights: Sequence[float] | None = None, ignore_index: int = -100, smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.register_buffer("weight", _weights(class_weights), persistent=False)
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dice loss of ``(B, K, H, W)`` logits against ``(B, H, W)`` class ids."""
        num_classes = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1).float()  # (B, 1, H, W)
        probs = logits.float().softmax(dim=1) * valid
        onehot = (
            F.one_hot(target.long().clamp(0, num_classes - 1), num_classes).movedim(-1, 1).float() * valid
        )
        dims = [0, *range(2, logits.ndim)]
        inter = (probs * onehot).sum(dims)
        dice = (2 * inter + self.smooth) / (probs.sum(dims) + onehot.sum(dims) + self.smooth)  # (K,)
        weight = torch.ones_like(dice) if self.weight is None else self.weight
        return 1 - (dice * weight).sum() / weight.sum()


class MultiLabelBCE(nn.Module):
    """Binary cross-entropy with logits for multi-hot targets; class weights act as ``pos_weight``.

    Targets equal to ``ignore_index`` (one label of one sample, e.g. unknown) are left out of the mean.
    """

    pos_weight: torch.Tensor | None

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int = -100) -> None:
        super().__init__()
        self.register_buffer("pos_weight", _weights(class_weights), persistent=False)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean BCE of ``(B, K)`` logits against ``(B, K)`` 0/1 targets, over the non-ignored ones."""
        valid = target != self.ignore_index
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), target.float() * valid, pos_weight=self.pos_weight, reduction="none"
        )
        return loss[valid].sum() / valid.sum().clamp(min=1)


class MaskedRegression(nn.Module):
    """MSE (``p=2``) or L1 (``p=1``) over pixels whose target is finite and not the ignore value."""

    def __init__(self, ignore_index: float = float("nan"), p: int = 2) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.p = p

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean error of ``(B, C, H, W)`` predictions against targets of the same shape."""
        valid = torch.isfinite(target) & (target != self.ignore_index)
        err = (pred.float() - torch.nan_to_num(target.float()))[valid].abs() ** self.p
        return err.sum() / valid.sum().clamp(min=1)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropy,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "bce": MultiLabelBCE,
    "mse": lambda class_weights=None, ignore_index=float("nan"): MaskedRegression(ignore_index, p=2),
    "l1": lambda class_weights=None, ignore_index=float("nan"): MaskedRegression(ignore_index, p=1),
}


def build_loss(
    name: str, *, class_weights: Sequence[float] | None = None, ignore_index: float = -100
) -> nn.Module:
    """Build a loss by name.

    Args:
        name: ``ce``, ``dice``, ``focal`` (segmentation, classification), ``bce`` (multi-label), ``mse``,
            ``l1`` (regression).
        class_weights: Optional weight per class.
        ignore_index: Target value excluded from the loss.

    Returns:
        A module called as ``loss(outputs, targets)``.
    """
    if name not in LOSSES:
        raise TerraMindError(f"unknown loss {name!r}: choose one of {sorted(LOSSES)}")
    return LOSSES[name](class_weights=class_weights, ignore_index=ignore_index)
