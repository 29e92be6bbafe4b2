import weakref

import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from terramind.api import generation as api_generation
from terramind.core import TerraMindError
from terramind.core.errors import CheckpointError
from terramind.generation import GenerationOptions
from terramind.generation.generate import Generator

INPUTS, OUTPUTS = ["S2L2A", "LULC"], ["DEM", "NDVI"]
TWO_DDIM_STEPS = GenerationOptions(diffusion_steps=2)


class Loads:
    """Stand-in for ``create_tokenizer``: tiny tokenizers; records what was built and what is alive."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.alive: list[weakref.ref] = []
        self.exclusive = True  # fail when a decoder loads while another one is still referenced

    def __call__(self, modality: str, weights=None, decode_only: bool = False):
        self.calls.append((modality, decode_only))
        tok = tiny_tokenizer(modality)
        if decode_only:
            tok.drop_encoder()
            self.alive = [r for r in self.alive if r() is not None]
            assert not (self.exclusive and self.alive), (
                "a decoder was loaded while another was still referenced (no gc here)"
            )
            self.alive.append(weakref.ref(tok))
        return tok


@pytest.fixture
def loads(monkeypatch):
    fake = Loads()
    monkeypatch.setattr(api_generation, "create_tokenizer", fake)
    monkeypatch.setattr(
        api_generation, "create_model", lambda name, weights=None: tiny_model(INPUTS, OUTPUTS)
    )
    return fake


def _inputs() -> dict[str, torch.Tensor]:
    return {
        "S2L2A": torch.rand(1, 12, 64, 64, generator=torch.Generator().manual_seed(1)) * 3000,
        "LULC": torch.randint(0, 10, (1, 64, 64), generator=torch.Generator().manual_seed(2)),
    }


def _resident() -> Generator:
    toks = {m: tiny_tokenizer(m) for m in ("LULC", "DEM", "NDVI")}
    return Generator(tiny_model(INPUTS, OUTPUTS), toks, inputs=INPUTS, outputs=OUTPUTS)


def test_output_decoders_are_loaded_one_at_a_time_without_encoders(loads):
    gen = api_generation.create_generator("terramind_v1_tiny", inputs=INPUTS, outputs=OUTPUTS)
    assert loads.calls == [("LULC", False)]  # an input class map is tokenized: resident, with its encoder
    assert set(gen.loaders) == {"DEM", "NDVI"}
    out = gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    assert loads.calls[1:] == [("DEM", True), ("NDVI", True)]  # Loads asserts the DEM one was freed first
    assert [r() is not None for r in loads.alive] == [True]  # only the last one (NDVI) is held
    assert set(gen.tokenizers) == {"LULC"}
    gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    assert loads.calls[3:] == [("DEM", True), ("NDVI", True)]  # two outputs: each call reloads them
    loads.exclusive = False
    gen.keep_loaded()
    assert loads.calls[5:] == [("DEM", True)]  # the held NDVI decoder is kept, not read again
    assert set(gen.tokenizers) == {"LULC", "DEM", "NDVI"}

    expected = _resident().generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    for name in OUTPUTS:
        assert out[name].shape == (1, 1, 64, 64)
        assert torch.equal(out[name], expected[name])


def test_a_single_output_decoder_is_loaded_once(loads):
    gen = api_generation.create_generator("terramind_v1_tiny", inputs=INPUTS, outputs=["DEM"])
    a = gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)["DEM"]
    b = gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)["DEM"]
    assert loads.calls == [("LULC", False), ("DEM", True)]
    assert torch.equal(a, b)


def test_keep_decoders_loads_each_once(loads):
    loads.exclusive = False
    gen = api_generation.create_generator(
        "terramind_v1_tiny", inputs=INPUTS, outputs=OUTPUTS, keep_decoders=True
    )
    assert loads.calls == [("LULC", False), ("DEM", True), ("NDVI", True)]
    with pytest.raises(TerraMindError, match="decoding only"):
        gen.tokenizers["DEM"].encode(torch.zeros(1, 1, 64, 64))
    a = gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    b = gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    assert len(loads.calls) == 3  # not read again
    assert all(torch.equal(a[name], b[name]) for name in OUTPUTS)


def test_random_decoders_are_the_same_on_every_load():
    from terramind.build import build_image_tokenizer

    cfg = tiny_tokenizer("DEM").cfg
    state = torch.random.get_rng_state()
    first = build_image_tokenizer("DEM", None, decode_only=True, config=cfg)
    second = build_image_tokenizer("DEM", "random", decode_only=True, config=cfg)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ndvi = tiny_tokenizer("NDVI").cfg
    other = build_image_tokenizer("NDVI", None, decode_only=True, config=ndvi).state_dict()  # another seed
    assert not torch.equal(a["quant_proj.weight"], other["quant_proj.weight"])


def test_hub_decoders_are_fetched_once_not_at_every_load(loads, monkeypatch, tmp_path):
    from terramind.build import weights as build_weights

    fetched: list[str] = []

    def fetch(hub):
        fetched.append(hub.filename)
        return tmp_path / hub.filename

    monkeypatch.setattr(build_weights, "fetch", fetch)
    gen = api_generation.create_generator(
        "terramind_v1_tiny", inputs=INPUTS, outputs=OUTPUTS, tokenizer_weights="hub"
    )
    for _ in range(2):  # two outputs: each call loads both decoders again
        gen.generate(_inputs(), TWO_DDIM_STEPS, seed=0)
    assert len(loads.calls) == 5
    assert sorted(fetched) == ["TerraMind_Tokenizer_DEM.pt", "TerraMind_Tokenizer_NDVI.pt"]


def test_a_tokenizer_weights_mapping_must_name_every_decoder(loads):
    with pytest.raises(CheckpointError, match="tokenizer_weights has no entry for NDVI"):
        api_generation.create_generator(
            "terramind_v1_tiny", inputs=INPUTS, outputs=OUTPUTS, tokenizer_weights={"lulc": None, "DEM": None}
        )
    gen = api_generation.create_generator(  # aliases work; None asks for random weights explicitly
        "terramind_v1_tiny",
        inputs=INPUTS,
        outputs=OUTPUTS,
        tokenizer_weights={"lulc": None, "dem": None, "NDVI": None},
    )
    assert set(gen.loaders) == {"DEM", "NDVI"}
