from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from terramind.core.errors import ModalityError
from terramind.model import TINY, TerraMind
from terramind.tim import TiMGenerator, sample_tokens

CONFIG = replace(TINY, encoder_depth=1, decoder_depth=1)


def _generator(**kwargs: object) -> TiMGenerator:
    torch.manual_seed(0)
    model = TerraMind(CONFIG, encoder_keys=["untok_sen2l2a@224"], decoder_keys=["tok_lulc@224"])
    return TiMGenerator(model, ["LULC"], **kwargs)  # type: ignore[arg-type]


def test_sampling_is_reproducible_and_greedy_at_zero_temperature() -> None:
    logits = torch.randn(2, 5, 11)
    a = sample_tokens(logits, generator=torch.Generator().manual_seed(1))
    b = sample_tokens(logits, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (2, 5)
    assert torch.equal(sample_tokens(logits, temperature=0), logits.argmax(-1))


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
    first = tim({"S2L2A": x})["LULC"]
    again = tim({"S2L2A": x.flip(0)})["LULC"]  # same samples, other order: served from the cache
    assert torch.equal(again, first.flip(0))
    assert len(tim._cache) == 2


def test_tim_needs_generable_image_modality() -> None:
    model = TerraMind(CONFIG, encoder_keys=["untok_sen2l2a@224"], decoder_keys=["tok_lulc@224"])
    with pytest.raises(ModalityError, match="S2L1C cannot be a TiM modality"):
        TiMGenerator(model, ["S2L1C"])
    with pytest.raises(ModalityError, match="no decoder embedding"):
        TiMGenerator(model, ["DEM"])
