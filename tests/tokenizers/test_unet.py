"""UNet parts: the GroupNorm shortcut for bf16 and the timestep features."""

from __future__ import annotations

import torch

from terramind.tokenizers.unet import GroupNorm32, timestep_features


def test_groupnorm_bf16_matches_the_fp32_round_trip() -> None:
    torch.manual_seed(0)
    norm = GroupNorm32(32, 64)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 64, 8, 8).bfloat16()
    with torch.no_grad():
        fast = norm(x)
        slow = torch.nn.functional.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).bfloat16()
    assert fast.dtype == torch.bfloat16
    assert torch.equal(fast, slow)


def test_timestep_features_are_cos_then_sin() -> None:
    feats = timestep_features(torch.tensor([0.0, 5.0]), 8)
    assert feats.shape == (2, 8)
    assert torch.equal(feats[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert torch.allclose(feats[1, 0], torch.cos(torch.tensor(5.0))) and torch.allclose(
        feats[1, 4], torch.sin(torch.tensor(5.0))
    )
