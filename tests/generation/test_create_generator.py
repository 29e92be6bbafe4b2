import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from terramind.api import generation as api_generation
from terramind.core import TerraMindError
from terramind.generation.generate import Generator

INPUTS, OUTPUTS = ["S2L2A", "LULC"], ["DEM"]


def test_output_only_tokenizers_are_loaded_without_their_encoder(monkeypatch):
    monkeypatch.setattr(api_generation, "create_tokenizer", lambda m, weights=None: tiny_tokenizer(m))
    monkeypatch.setattr(
        api_generation, "create_model", lambda name, weights=None: tiny_model(INPUTS, OUTPUTS)
    )
    gen = api_generation.create_generator("terramind_v1_tiny", inputs=INPUTS, outputs=OUTPUTS)
    assert gen.tokenizers["DEM"].encoder is None  # only decoded
    assert gen.tokenizers["LULC"].encoder is not None  # an input class map is still tokenized
    with pytest.raises(TerraMindError, match="decoding only"):
        gen.tokenizers["DEM"].encode(torch.zeros(1, 1, 64, 64))

    full = Generator(
        tiny_model(INPUTS, OUTPUTS),
        {m: tiny_tokenizer(m) for m in ("LULC", "DEM")},
        inputs=INPUTS,
        outputs=OUTPUTS,
    )
    x = {
        "S2L2A": torch.rand(1, 12, 64, 64, generator=torch.Generator().manual_seed(1)) * 3000,
        "LULC": torch.randint(0, 10, (1, 64, 64), generator=torch.Generator().manual_seed(2)),
    }
    a = gen.generate(x, seed=0, diffusion_steps=2)["DEM"]
    b = full.generate(x, seed=0, diffusion_steps=2)["DEM"]
    assert a.shape == (1, 1, 64, 64)
    assert torch.equal(a, b)
