from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from terramind.core.errors import InputError, ModalityError
from terramind.model import TINY, TerraMind
from terramind.model.backbone import input_key
from terramind.tim import TiMGenerator

CONFIG = replace(TINY, encoder_depth=1, decoder_depth=1)


def _generator(**kwargs: object) -> TiMGenerator:
    torch.manual_seed(0)
    model = TerraMind(CONFIG, encoder_keys=["untok_sen2l2a@224"], decoder_keys=["tok_lulc@224"])
    return TiMGenerator(model, ["LULC"], **kwargs)  # type: ignore[arg-type]


def test_seeded_sampling_is_per_sample_and_leaves_the_global_stream_alone() -> None:
    tim = _generator()
    x = torch.randn(3, 12, 32, 32)
    state = torch.random.get_rng_state()
    full = tim({"S2L2A": x}, seed=5)["LULC"]
    assert torch.equal(tim({"S2L2A": x}, seed=5)["LULC"], full)  # same seed, same tokens
    one = tim({"S2L2A": x[2:]}, seed=5, sample_indices=[2])["LULC"]
    assert torch.equal(one, full[2:])  # a sample's tokens do not depend on its batch
    assert not torch.equal(tim({"S2L2A": x}, seed=6)["LULC"], full)  # random weights: flat logits, 4375 ids
    fresh = tim({"S2L2A": x})["LULC"]  # no seed: a fresh one, recorded so the call can be repeated
    assert tim.last_seed is not None
    assert torch.equal(tim({"S2L2A": x}, seed=tim.last_seed)["LULC"], fresh)
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global generator was never drawn from


def test_greedy_tim_is_the_argmax_of_the_decoder() -> None:
    tim = _generator(temperature=0)
    x = torch.randn(2, 12, 32, 32)
    ids = tim({"S2L2A": x})["LULC"]
    encoded = tim.model.encode({input_key("S2L2A"): x})
    logits = tim.model.decode_logits(encoded, "tok_lulc@224", torch.arange(4).expand(2, -1), (2, 2))
    assert torch.equal(ids.flatten(1), logits.argmax(-1))


def test_generator_is_frozen_and_outputs_token_grid() -> None:
    tim = _generator()
    assert not any(p.requires_grad for p in tim.parameters())
    tim.train()
    assert not tim.model.training  # the frozen model stays in eval mode
    out = tim({"S2L2A": torch.randn(2, 12, 64, 64)})
    ids = out["LULC"]
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < 4375
    assert tim({"S2L2A": torch.randn(1, 12, 64, 64), "LULC": torch.zeros(1, 4, 4, dtype=torch.long)}) == {}


def test_cache_reuses_ids_per_input() -> None:
    tim = _generator(cache=True)
    x = torch.randn(2, 12, 32, 32)
    first = tim({"S2L2A": x}, seed=0)["LULC"]
    again = tim({"S2L2A": x.flip(0)}, seed=1)["LULC"]  # same samples, other order: served from the cache
    assert torch.equal(again, first.flip(0))
    assert len(tim._cache) == 2


def test_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    tim = _generator(cache=True, cache_size=2)
    a, b, c = (torch.randn(1, 12, 32, 32) for _ in range(3))
    first_a = tim({"S2L2A": a}, seed=0)["LULC"]
    tim({"S2L2A": b}, seed=0)
    tim({"S2L2A": a}, seed=1)  # a is used again: b is now the least recently used
    tim({"S2L2A": c}, seed=0)
    assert len(tim._cache) == 2
    assert torch.equal(tim({"S2L2A": a}, seed=9)["LULC"], first_a)  # a was kept
    cached_b = tim({"S2L2A": b}, seed=9)["LULC"]  # b was dropped: generated again with seed 9
    assert torch.equal(cached_b, _generator()({"S2L2A": b}, seed=9)["LULC"])
    with pytest.raises(InputError, match="cache_size"):
        _generator(cache=True, cache_size=0)


def test_tim_needs_generable_image_modality() -> None:
    model = TerraMind(CONFIG, encoder_keys=["untok_sen2l2a@224"], decoder_keys=["tok_lulc@224"])
    with pytest.raises(ModalityError, match="S2L1C cannot be a TiM modality"):
        TiMGenerator(model, ["S2L1C"])
    with pytest.raises(ModalityError, match="no decoder embedding"):
        TiMGenerator(model, ["DEM"])
