"""Token sampling: top-k / top-p filters, greedy choice, seeded per-sample draws (no model)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from terramind.core.errors import InputError
from terramind.layers.sampling import SamplingConfig, derive_seed, filter_logits, generators, sample


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[[1.0, 5.0, 3.0, 4.0, 2.0]]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[[False, True, False, True, False]]]
    assert torch.equal(logits, torch.tensor([[[1.0, 5.0, 3.0, 4.0, 2.0]]]))  # input untouched


def test_top_p_keeps_the_token_that_crosses_p_and_uses_unscaled_logits():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    out = filter_logits(probs.log()[None, None], top_p=0.7)
    assert torch.isfinite(out)[0, 0].tolist() == [True, True, False, False]
    # the nucleus is chosen before temperature: a high temperature must not widen it
    cfg = SamplingConfig(temperature=100.0, top_p=0.7)
    ids, _ = sample(probs.log().expand(1, 500, 4), cfg, generators(0, [0], "t"))
    assert set(ids.unique().tolist()) == {0, 1}


def test_greedy_is_argmax_and_needs_no_generator():
    logits = torch.randn(2, 7, 11)
    ids, probs = sample(logits, SamplingConfig(temperature=0.0), [])
    assert torch.equal(ids, logits.argmax(-1)) and bool((probs == 1).all())


def test_sampling_follows_the_distribution_and_the_seed():
    logits = torch.tensor([0.1, 0.3, 0.6]).log().expand(1, 20000, 3)
    cfg = SamplingConfig(temperature=1.0, top_p=0.0)
    ids, _ = sample(logits, cfg, generators(7, [0], "t"))
    freq = torch.bincount(ids[0], minlength=3).float() / ids.numel()
    # binomial spread of a frequency over 20000 draws: sqrt(0.6 * 0.4 / 20000) = 3.5e-3; 0.02 is ~6 sigma
    assert torch.allclose(freq, torch.tensor([0.1, 0.3, 0.6]), atol=0.02)
    again, _ = sample(logits, cfg, generators(7, [0], "t"))
    other, _ = sample(logits, cfg, generators(8, [0], "t"))
    assert torch.equal(ids, again) and not torch.equal(ids, other)


def test_seeds_differ_by_sample_and_purpose():
    assert len({derive_seed(0, i, p) for i in range(50) for p in ("a", "b")}) == 100
    assert derive_seed(3, 1, "x") == derive_seed(3, 1, "x")


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=-2), dict(top_p=1.5)])
def test_bad_sampling_settings(bad):
    with pytest.raises(InputError):
        SamplingConfig(**bad)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12), st.floats(0.05, 1.0))
def test_top_p_keeps_smallest_nucleus(values: list[float], top_p: float) -> None:
    logits = torch.tensor(values)
    kept = torch.isfinite(filter_logits(logits, top_p=top_p))
    probs = logits.softmax(-1)
    assert probs[kept].max() == probs.max()  # a most likely token always survives (ties: any of them)
    # every kept token is at least as likely as every dropped one
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max() - 1e-7
        # without its least likely member the kept set would fall short of top_p
        assert probs[kept].sum() - probs[kept].min() < top_p + 1e-6


def test_top_p_of_one_keeps_every_token():
    # over a FSQ-sized vocabulary the float32 cumulative sum of this one rounds past 1 (308 tokens)
    logits = torch.randn(1, 1, 15360, generator=torch.Generator().manual_seed(0)) * 3
    assert bool(torch.isfinite(filter_logits(logits, top_p=1.0)).all())
