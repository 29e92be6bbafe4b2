"""The TerraMind model: key layout, encode/decode contract, masking, errors, backbone merges."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.model import (
    ALL_DECODER_KEYS,
    ALL_ENCODER_KEYS,
    BASE,
    CONFIGS,
    LARGE,
    TINY,
    TerraMind,
    TerraMindBackbone,
)

MICRO = dataclasses.replace(
    TINY, name="micro", dim=32, encoder_depth=2, decoder_depth=2, num_heads=2, mlp_hidden=64
)
S2 = "untok_sen2l2a@224"
LULC = "tok_lulc@224"


@pytest.fixture(scope="module")
def model() -> TerraMind:
    torch.manual_seed(0)
    return TerraMind(
        MICRO, encoder_keys=[S2, "untok_sen1rtc@224", LULC, "coords"], decoder_keys=[LULC, "coords"]
    ).eval()


def test_configs_match_the_release() -> None:
    assert set(CONFIGS) == {f"terramind_v1_{s}" for s in ("tiny", "small", "base", "large")}
    assert BASE.mlp_hidden == 2048 and LARGE.mlp_hidden == 2730 and TINY.mlp_hidden == 768
    assert not BASE.qkv_bias and TINY.qkv_bias and LARGE.encoder_depth == 24
    assert len(ALL_ENCODER_KEYS) == 13 and len(ALL_DECODER_KEYS) == 7


def test_full_tiny_key_count_and_size() -> None:
    with torch.device("meta"):
        m = TerraMind(TINY)
    assert sum(p.numel() for p in m.parameters()) == 52_059_456  # the released tiny's 52.06 M
    sd = m.state_dict()
    assert sd["encoder_embeddings.coords.pos_emb"].shape == (1, 512, 192)
    assert sd["encoder_embeddings.untok_sen2l2a@224.proj.weight"].shape == (192, 3072)
    dec = m.decoder_embeddings[LULC]
    assert dec.to_logits.weight is dec.token_emb.weight
    assert dec.mod_emb is m.encoder_embeddings[LULC].mod_emb


def test_patch_order_is_channel_fastest(model: TerraMind) -> None:
    emb = model.encoder_embeddings[S2]
    x = torch.zeros(1, 12, 16, 16)
    x[0, 5, 0, 1] = 1.0  # pixel (0, 1), channel 5 -> flat feature (0 * 16 + 1) * 12 + 5
    tokens, _ = emb(x)
    assert torch.allclose(tokens[0, 0], emb.proj.weight[:, 17])


def test_encode_without_masks_has_no_padding(model: TerraMind) -> None:
    inputs = {S2: torch.randn(2, 12, 32, 48), LULC: torch.randint(0, 4375, (2, 14, 14))}
    enc = model.encode(inputs)
    assert enc.tokens.shape == (2, 6 + 196, 32) and enc.mask is None
    assert enc.embeddings.shape == enc.tokens.shape


def test_masked_tokens_do_not_influence_the_rest(model: TerraMind) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 12, 32, 32)
    keep = torch.tensor([[True, False, True, False], [True, True, True, True]])
    enc = model.encode({S2: x}, {S2: keep})
    assert enc.mask is not None and enc.mask.tolist() == [[True, True, False, False], [True] * 4]
    alone = model.encode({S2: x[:1]}, {S2: keep[:1]})
    # batch size and padding change only fp32 summation order in 2 blocks of width 32: about
    # width x 2^-24 x |x| (|x| <= 3) per block ~ 1e-5 worst case, measured 5e-7; a leak moves tokens by O(0.1)
    assert torch.allclose(alone.tokens, enc.tokens[:1, :2], atol=1e-5)
    logits = model.decode_logits(enc, LULC, torch.tensor([[0, 5], [3, 4]]), (14, 14))
    logits_alone = model.decode_logits(alone, LULC, torch.tensor([[0, 5]]), (14, 14))
    assert torch.allclose(logits[:1], logits_alone, atol=1e-4)  # twice the depth; measured 1.5e-7


def test_decode_is_per_query_set_consistent(model: TerraMind) -> None:
    enc = model.encode({S2: torch.randn(1, 12, 32, 32)})
    both = model.decode_logits(enc, LULC, torch.tensor([[1, 2]]), (14, 14))
    assert both.shape == (1, 2, 4375)
    seq = model.decode_sequence_logits(enc, "coords", torch.tensor([[5, 6, 7]]))
    prefix = model.decode_sequence_logits(enc, "coords", torch.tensor([[5, 6]]))
    # causal: later tokens do not change earlier ones (measured 0: the same sums; 1e-5 as for the encoder)
    assert torch.allclose(seq[:, :2], prefix, atol=1e-5)


def test_encode_errors(model: TerraMind) -> None:
    with pytest.raises(ShapeError, match="COASTAL_AEROSOL"):
        model.encode({S2: torch.randn(1, 3, 32, 32)})
    with pytest.raises(ShapeError, match="pad"):
        model.encode({S2: torch.randn(1, 12, 30, 32)})
    with pytest.raises(ModalityError, match="untok_dem@224"):
        model.encode({"untok_dem@224": torch.randn(1, 1, 32, 32)})
    with pytest.raises(InputError, match="tokenizer"):
        model.encode({LULC: torch.randn(1, 14, 14)})
    with pytest.raises(InputError, match="at least one"):
        model.encode({S2: torch.randn(1, 12, 16, 16)}, {S2: torch.zeros(1, 1, dtype=torch.bool)})
    with pytest.raises(ModalityError):
        model.decode_logits(
            model.encode({S2: torch.randn(1, 12, 16, 16)}), "coords", torch.zeros(1, 1).long(), (14, 14)
        )


def test_backbone_merges() -> None:
    torch.manual_seed(0)
    bb = TerraMindBackbone(MICRO, ["S2L2A", "S1RTC", "coords"], merge=None).eval()
    s2, s1 = torch.randn(1, 12, 32, 32), torch.randn(1, 2, 32, 32)
    coords = torch.tensor([[3, 4, 5, 6]])
    raw = bb({"S2L2A": s2, "s1rtc": s1, "coords": coords})
    assert len(raw) == 2 and raw[-1].shape == (1, 12, 32)
    bb.merge = "mean"
    mean = bb({"S2L2A": s2, "s1rtc": s1, "coords": coords})[-1]
    # coords dropped; a mean of two fp32 values of |x| <= ~3: one rounding, <= 2.4e-7
    assert torch.allclose(mean, (raw[-1][:, :4] + raw[-1][:, 4:8]) / 2, atol=1e-6)
    bb.merge = "max"
    assert torch.allclose(bb({"S2L2A": s2, "S1RTC": s1})[0], torch.maximum(*bb_raw_split(bb, s2, s1)))
    d = bb.forward_dict({"S2L2A": s2, "coords": coords})[-1]
    assert isinstance(d, dict) and d["coords"].shape == (1, 4, 32)


def bb_raw_split(
    bb: TerraMindBackbone, s2: torch.Tensor, s1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    merge, bb.merge = bb.merge, None
    out = bb({"S2L2A": s2, "S1RTC": s1})[0]
    bb.merge = merge
    assert isinstance(out, torch.Tensor)
    return out[:, :4], out[:, 4:]


def test_backbone_concat_fills_missing_and_new_sensor() -> None:
    bb = TerraMindBackbone(MICRO, ["S2L2A", {"MYSENSOR": 4}], merge="concat").eval()
    assert bb.out_channels == [64, 64]
    out = bb({"S2L2A": torch.randn(1, 12, 32, 32)})[-1]
    assert out.shape == (1, 4, 64)
    assert torch.allclose(out[0, :, 32:], bb.missing_mod_token.expand(4, 32))
    assert bb({"MYSENSOR": torch.randn(1, 4, 32, 32)})[-1].shape == (1, 4, 64)
    with pytest.raises(ModalityError, match="built for"):
        bb({"DEM": torch.randn(1, 1, 32, 32)})
    with pytest.raises(ModalityError):
        TerraMindBackbone(MICRO, ["NOTAMODALITY"])


def test_select_bands_copies_columns_by_name() -> None:
    bb = TerraMindBackbone(MICRO, ["S2L2A"])
    old = bb.encoder_embeddings[S2].proj.weight.detach().clone().reshape(32, 256, 12)
    bb.select_bands("S2L2A", ["RED", "green", "MY_BAND"])
    new = bb.encoder_embeddings[S2].proj.weight.detach().reshape(32, 256, 3)
    assert torch.equal(new[..., 0], old[..., 3]) and torch.equal(new[..., 1], old[..., 2])
    assert bb({"S2L2A": torch.randn(1, 3, 32, 32)})[-1].shape == (1, 4, 32)
    with pytest.raises(ShapeError, match="RED, green, MY_BAND"):
        bb({"S2L2A": torch.randn(1, 12, 32, 32)})
