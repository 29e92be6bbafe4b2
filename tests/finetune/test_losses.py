from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from terramind.core.errors import TerraMindError
from terramind.finetune.losses import build_loss


def _seg(num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, num_classes, 8, 8), torch.randint(0, num_classes, (2, 8, 8))


def test_ce_ignores_ignore_index() -> None:
    logits, target = _seg()
    masked = target.clone()
    masked[:, :4] = -1
    loss = build_loss("ce", ignore_index=-1)(logits, masked)
    keep = masked != -1
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    assert torch.allclose(loss, expected)


def test_dice_is_zero_for_a_perfect_prediction_and_ignores_pixels() -> None:
    _, target = _seg()
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100
    dice = build_loss("dice", ignore_index=-1)
    # softmax of 100-logit gaps is one-hot up to e^-100; sums over 128 pixels round at ~128 x 2^-24 = 8e-6.
    # One wrong pixel of ~43 per class raises the loss by ~1e-2.
    assert dice(perfect, target).item() < 1e-3
    wrong = target.clone()
    wrong[:, :4] = -1  # ignored pixels may hold anything
    scrambled = perfect.clone()
    scrambled[:, :, :4] = scrambled[:, :, :4].roll(1, dims=1)
    assert dice(scrambled, wrong).item() < 1e-3
    assert dice(scrambled, target).item() > 0.1


def test_focal_downweights_easy_pixels_and_equals_ce_at_gamma_zero() -> None:
    logits, target = _seg()
    ce = build_loss("ce")(logits, target)
    focal = build_loss("focal")(logits, target)
    assert focal < ce
    from terramind.finetune.losses import FocalLoss

    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), ce)


def test_class_weights_change_the_loss() -> None:
    logits, target = _seg()
    plain = build_loss("ce")(logits, target)
    weighted = build_loss("ce", class_weights=[1.0, 5.0, 0.1])(logits, target)
    assert not torch.allclose(plain, weighted)


def test_regression_loss_skips_nan_targets() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, float("nan")], [3.0, 0.0]]]])
    assert build_loss("mse")(pred, target).item() == pytest.approx((1 + 9 + 0) / 3)
    assert build_loss("l1")(pred, target).item() == pytest.approx(4 / 3)


def test_unknown_loss() -> None:
    with pytest.raises(TerraMindError, match="unknown loss 'hinge'"):
        build_loss("hinge")


def test_bce_leaves_ignored_labels_out_of_the_mean() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(4, 3), torch.randint(0, 2, (4, 3)).float()
    masked = target.clone()
    masked[:2, 1] = -1
    loss = build_loss("bce", ignore_index=-1)(logits, masked)
    keep = masked != -1
    expected = F.binary_cross_entropy_with_logits(logits[keep], target[keep])
    # same terms summed in another order: float32 rounding of a 10-term mean, far below 1e-6
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0)
    assert not torch.allclose(loss, F.binary_cross_entropy_with_logits(logits, target), rtol=1e-3)


def test_bce_pos_weight_applies_to_valid_labels() -> None:
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, -1.0]])
    loss = build_loss("bce", class_weights=[3.0, 5.0], ignore_index=-1)(logits, target)
    assert loss.item() == pytest.approx(3.0 * math.log(2.0), rel=1e-6)  # only label 0: 3 * -log(sigmoid(0))
