"""One builder per artefact: deterministic random weights, and the api and fine-tuning wrappers agree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import terramind
from terramind.api import create_backbone, create_model
from terramind.build import build_backbone, build_image_tokenizer, build_model
from terramind.core.errors import InputError, ModalityError
from terramind.finetune import Backbone

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from tiny_tokenizers import tiny_config

TINY = "terramind_v1_tiny"
RGB = ["B04", "B03", "B02"]


def _same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Bit-identical state dicts (same keys in the same order, equal tensors and dtypes)."""
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full tiny checkpoint in the official layout, from the seeded random model."""
    path = tmp_path_factory.mktemp("ckpt") / "TerraMind_v1_tiny.pt"
    torch.save(create_model(TINY).state_dict(), path)
    return path


def test_random_models_and_backbones_are_bit_identical_and_leave_the_rng_alone() -> None:
    state = torch.random.get_rng_state()
    assert _same(build_model(TINY).state_dict(), build_model(TINY, "random").state_dict())
    one = build_backbone(TINY, ["S2L2A", {"NEW": 3}], bands={"S2L2A": RGB}, merge="concat")
    two = build_backbone(TINY, ["S2L2A", {"NEW": 3}], "none", bands={"S2L2A": RGB}, merge="concat")
    assert _same(one.state_dict(), two.state_dict())  # band selection and new sensors are seeded too
    assert torch.equal(torch.random.get_rng_state(), state)
    small = build_backbone("terramind_v1_small", ["S2L2A"], encoder_depth=1).state_dict()
    tiny = build_backbone(TINY, ["S2L2A"]).state_dict()
    assert small["encoder_norm.weight"].shape != tiny["encoder_norm.weight"].shape  # each size its own seed


@pytest.mark.parametrize("modality", ["DEM", "LULC"])  # a diffusion and a ViT decoder
def test_random_tokenizers_are_bit_identical_and_decoders_are_their_decoder_part(modality: str) -> None:
    cfg = tiny_config(modality, 1)
    state = torch.random.get_rng_state()
    full = build_image_tokenizer(modality, config=cfg).state_dict()
    again = build_image_tokenizer(modality, "random", config=cfg).state_dict()
    decoder = build_image_tokenizer(modality, config=cfg, decode_only=True).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _same(full, again)
    assert any(k.startswith("encoder.") for k in full) and not any(k.startswith("encoder.") for k in decoder)
    assert _same(decoder, {k: v for k, v in full.items() if not k.startswith("encoder.")})
    other = build_image_tokenizer("NDVI", config=tiny_config("NDVI", 1), decode_only=True).state_dict()
    assert not torch.equal(decoder["quant_proj.weight"], other["quant_proj.weight"])  # seeded per modality


def test_random_weights_are_the_same_in_another_process() -> None:
    code = (
        "import torch; from terramind.build import build_backbone;"
        "sd = build_backbone('terramind_v1_tiny', ['S2L2A'], encoder_depth=1).state_dict();"
        "print(repr(float(sum(v.double().sum() for v in sd.values()))))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(terramind.__file__).parents[1])}  # this source, not another
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    sd = build_backbone(TINY, ["S2L2A"], encoder_depth=1).state_dict()
    assert float(other.stdout.strip()) == float(sum(v.double().sum() for v in sd.values()))


def test_model_and_tim_generator_from_a_file(official: Path) -> None:
    full = torch.load(official, weights_only=True)
    assert _same(build_model(TINY, official.parent).state_dict(), full)  # a folder holding the release file
    part = build_model(TINY, official, encoder_keys=["untok_sen2l2a@224"], decoder_keys=["tok_lulc@224"])
    own = part.state_dict()
    assert all(torch.equal(v, full[k]) for k, v in own.items())  # the other embeddings are ignored
    assert "encoder_embeddings.untok_sar@224.proj.weight" not in own


@pytest.mark.parametrize("weights", ["random", "file"])
def test_the_api_and_finetune_backbones_are_the_builders(official: Path, weights: str) -> None:
    spec = official if weights == "file" else None
    args = {"bands": {"S2L2A": RGB}, "merge": None, "encoder_depth": 2}
    built = build_backbone(TINY, ["S2L2A", "S1RTC"], spec, **args).state_dict()
    api = create_backbone(TINY, ["S2L2A", "S1RTC"], weights=spec, **args).state_dict()
    tuned = Backbone(TINY, ["S2L2A", "S1RTC"], weights=spec, **args).encoder.state_dict()
    assert _same(built, api) and _same(built, tuned)
    assert not any(k.startswith("encoder.2.") for k in built)


def test_encoder_depth_through_the_api_takes_the_first_blocks(official: Path) -> None:
    full = torch.load(official, weights_only=True)
    backbone = create_backbone(TINY, ["S2L2A"], weights=official, encoder_depth=2)
    assert len(backbone.out_channels) == 2 and len(backbone.encoder) == 2
    assert torch.equal(backbone.state_dict()["encoder.1.attn.qkv.weight"], full["encoder.1.attn.qkv.weight"])
    for depth in (0, 13):
        with pytest.raises(InputError, match="encoder_depth must be between 1 and 12"):
            create_backbone(TINY, ["S2L2A"], encoder_depth=depth)


def test_band_adapted_checkpoints_load_through_the_finetune_backbone(official: Path, tmp_path: Path) -> None:
    adapted = create_backbone(TINY, ["S2L2A"], weights=official, bands={"S2L2A": RGB})
    saved = tmp_path / "adapted.pt"
    torch.save(adapted.state_dict(), saved)
    tuned = Backbone(TINY, ["S2L2A"], weights=saved, bands={"S2L2A": RGB})
    assert _same(tuned.encoder.state_dict(), adapted.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(tuned.eval()({"S2L2A": x})[-1], adapted.eval()({"S2L2A": x})[-1])


def test_forward_returns_tensors_and_forward_dict_splits_per_input() -> None:
    backbone = build_backbone(TINY, ["S2L2A", "S1RTC"], merge="mean", encoder_depth=1).eval()
    x = {"S2L2A": torch.randn(1, 12, 32, 32), "S1RTC": torch.randn(1, 2, 32, 32)}
    merged = backbone(x)
    parts = backbone.forward_dict(x)
    assert all(isinstance(t, torch.Tensor) for t in merged) and list(parts[-1]) == ["S2L2A", "S1RTC"]
    # the mean of the per-input tokens is the merged output (float32 sum of two: exact to rounding)
    mean = (parts[-1]["S2L2A"] + parts[-1]["S1RTC"]) / 2
    assert torch.allclose(merged[-1], mean, atol=1e-6)
    with pytest.raises(ValueError, match="unknown merge 'dict'"):
        build_backbone(TINY, ["S2L2A"], merge="dict")


def test_coords_is_not_an_image_tokenizer() -> None:
    with pytest.raises(ModalityError, match="create_coords_tokenizer"):
        build_image_tokenizer("coords")
