"""Transformer parts: sin-cos layout, interpolation, attention masks, MLP kinds, norm buffers."""

from __future__ import annotations

import pytest
import torch

from terramind.layers import Attention, Block, DecoderBlock, LayerNorm, Mlp, resize_grid, sincos_1d, sincos_2d


def test_sincos_2d_first_half_encodes_row() -> None:
    pos = sincos_2d(3, 5, 8)[0]  # (15, 8): [sin r, cos r, sin c, cos c] with 2 frequencies each
    row, col = 2, 4
    v = pos[row * 5 + col]
    assert torch.allclose(v[0], torch.tensor(float(row)).sin())
    assert torch.allclose(v[4], torch.tensor(float(col)).sin())
    assert torch.allclose(v[2], torch.tensor(float(row)).cos())


def test_sincos_1d_and_bad_widths() -> None:
    pe = sincos_1d(4, 6)
    assert pe.shape == (1, 4, 6)
    assert torch.allclose(pe[0, 3, 0], torch.tensor(3.0).sin())
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 6)
    with pytest.raises(ValueError):
        sincos_1d(2, 5)


def test_resize_grid_identity_and_shape() -> None:
    pos = sincos_2d(14, 14, 16)
    assert resize_grid(pos, (14, 14), (14, 14)) is pos
    out = resize_grid(pos, (14, 14), (16, 20))
    assert out.shape == (1, 320, 16)
    assert not torch.allclose(out[0, :196], pos[0])


def test_attention_key_mask_ignores_masked_tokens() -> None:
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    keep = torch.tensor([[True, True, True, False, False]])
    masked = attn(x, mask=keep[:, None, None, :])
    changed = x.clone()
    changed[:, 3:] = 100.0  # contents of masked keys must not matter for the real queries
    again = attn(changed, mask=keep[:, None, None, :])
    # masked keys get exactly zero weight; what is left is fp32 summation order (~1e-7 of |out| ~ 1), while
    # keys of 100 leaking in would move the output by O(1)
    assert torch.allclose(masked[:, :3], again[:, :3], atol=1e-6)
    assert not torch.allclose(attn(x)[:, :3], masked[:, :3])


def test_cross_attention_needs_context() -> None:
    attn = Attention(8, 2, cross=True)
    with pytest.raises(ValueError):
        attn(torch.randn(1, 2, 8))
    assert attn(torch.randn(1, 2, 8), torch.randn(1, 7, 8)).shape == (1, 2, 8)


def test_mlp_kinds_and_names() -> None:
    gelu, swiglu = Mlp(8, 32, "gelu"), Mlp(8, 21, "swiglu", bias=False)
    assert set(dict(gelu.named_parameters())) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert set(dict(swiglu.named_parameters())) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    x = torch.randn(2, 8)
    manual = swiglu.fc2(torch.nn.functional.silu(swiglu.fc1(x)) * swiglu.fc3(x))
    assert torch.allclose(swiglu(x), manual)
    with pytest.raises(ValueError):
        Mlp(8, 8, "relu")


def test_layernorm_bias_is_a_zero_buffer() -> None:
    norm = LayerNorm(6)
    assert "bias" in norm.state_dict() and "bias" not in dict(norm.named_parameters())
    y = norm(torch.randn(3, 6) * 5 + 2)
    assert torch.allclose(y.mean(-1), torch.zeros(3), atol=1e-5)  # 6 values < 2.3: 6 x 2^-24 x 2.3 ~ 1e-6


def test_blocks_keep_shape_and_key_names() -> None:
    block, dec = Block(16, 2, 64), DecoderBlock(16, 2, 64)
    x, ctx = torch.randn(1, 4, 16), torch.randn(1, 6, 16)
    assert block(x).shape == x.shape and dec(x, ctx).shape == x.shape
    keys = set(dec.state_dict())
    assert {"cross_attn.q.weight", "cross_attn.kv.weight", "self_attn.qkv.weight", "query_norm.bias"} <= keys
