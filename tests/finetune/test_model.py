from __future__ import annotations

import pytest
import torch

from terramind.core.errors import ShapeError, TerraMindError
from terramind.finetune.decoders import build_decoder
from terramind.finetune.model import DenseModel, PooledModel
from terramind.finetune.necks import DEFAULT_SCALES, PyramidNeck, default_layer_indices, tokens_to_map


def _inputs(b: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    return {"S2L2A": torch.randn(b, 12, size, size), "S1RTC": torch.randn(b, 2, size, size)}


def test_default_layer_indices_match_reference_choice() -> None:
    assert default_layer_indices(12) == [2, 5, 8, 11]
    assert default_layer_indices(24) == [5, 11, 17, 23]


def test_tokens_to_map_is_row_major() -> None:
    tokens = torch.arange(6.0).reshape(1, 6, 1)  # (B, N=2*3, D=1)
    fmap = tokens_to_map(tokens, grid=(2, 3))
    assert fmap.shape == (1, 1, 2, 3)
    assert fmap[0, 0, 1, 0].item() == 3.0  # second row starts at token 3
    with pytest.raises(ShapeError):
        tokens_to_map(torch.zeros(1, 7, 4))


def test_pyramid_neck_resolutions_and_channels() -> None:
    neck = PyramidNeck(32, [0, 1, 2, 3], scales=DEFAULT_SCALES)
    layers = [torch.randn(2, 16, 32) for _ in range(4)]
    maps = neck(layers, grid=(4, 4))
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [m.shape[1] for m in maps] == neck.out_channels == [8, 16, 32, 32]
    with pytest.raises(ShapeError, match="do not fit"):
        PyramidNeck(32, [0, 9])(layers)


@pytest.mark.parametrize("decoder", ["unet", "upernet", "fcn"])
def test_dense_model_outputs_input_resolution(standin: torch.nn.Module, decoder: str) -> None:
    kwargs = {"channels": [32, 16, 16, 8]} if decoder == "unet" else {"channels": 16}
    model = DenseModel(standin, 5, decoder=decoder, decoder_kwargs=kwargs)
    out = model(_inputs())
    assert out.shape == (2, 5, 32, 32)
    out.sum().backward()
    assert standin.embed["S1RTC"].weight.grad is not None  # gradients reach the backbone


def test_dense_model_rejects_bad_sizes(standin: torch.nn.Module) -> None:
    model = DenseModel(standin, 2, decoder="fcn")
    with pytest.raises(ShapeError, match="multiple of 16"):
        model({"S2L2A": torch.randn(1, 12, 40, 40)})


def test_dense_model_refuses_layer_indices_deeper_than_the_backbone(standin: torch.nn.Module) -> None:
    with pytest.raises(ShapeError, match=r"layer_indices \[2, 5, 8, 99\] do not fit a backbone of"):
        DenseModel(standin, 2, layer_indices=[2, 5, 8, 99], decoder="fcn")


def test_pooled_model_logits(standin: torch.nn.Module) -> None:
    out = PooledModel(standin, 7)(_inputs())
    assert out.shape == (2, 7)


def test_unknown_decoder_is_a_clear_error() -> None:
    with pytest.raises(TerraMindError, match="unknown decoder 'segformer'"):
        build_decoder("segformer", [8, 16])
