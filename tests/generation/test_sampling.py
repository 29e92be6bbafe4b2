"""Sampling, schedules and the image decoding strategies, against fake logits (no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terramind.core.errors import InputError
from terramind.generation.sampling import SamplingConfig, derive_seed, filter_logits, generators, sample
from terramind.generation.schedule import temperature_schedule, token_schedule
from terramind.generation.strategies import decode_grid, decode_sequence, get_strategy


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


def test_token_schedules_match_the_reference_numbers():
    assert token_schedule("linear", 1, 196) == [196]
    assert token_schedule("linear", 4, 196) == [49, 49, 49, 49]
    assert token_schedule("linear", 3, 10) == [4, 3, 3]
    assert token_schedule("linear", 20, 5) == [1, 1, 1, 1, 1]
    cos = token_schedule("cosine", 8, 196)
    assert sum(cos) == 196 and cos[0] < cos[len(cos) // 2]  # few tokens first
    with pytest.raises(InputError):
        token_schedule("zigzag", 2, 10)


def test_temperature_schedules():
    assert temperature_schedule("constant", 0.7, [5, 5]) == [0.7, 0.7]
    assert temperature_schedule("linear", 1.0, [5, 5]) == [1.0, 0.5]
    onex = temperature_schedule("onex:0.5:0.5", 2.0, [4, 4, 4])
    assert onex[0] == pytest.approx(2.0 * (1 - 4 / 12) + 0.5 * (4 / 12)) and onex[0] > onex[1] > 0
    with pytest.raises(InputError):
        temperature_schedule("onex:abc", 1.0, [1])


def _fake_logits(vocab=6, n=16):
    table = torch.randn(n, vocab, generator=torch.Generator().manual_seed(0))
    calls = []

    def fn(ids, known, positions):
        calls.append((known.sum(1).tolist(), positions.shape[1]))
        return table[positions]  # (B, q, V): each position has its own fixed distribution

    return fn, table, calls


@pytest.mark.parametrize("name,steps,passes", [("single", 5, 1), ("roar", 4, 4), ("maskgit", 4, 4)])
def test_strategies_decide_every_token_once(name, steps, passes):
    fn, table, calls = _fake_logits()
    ids = decode_grid(
        fn,
        get_strategy(name),
        batch=2,
        total=16,
        steps=steps,
        sampling=SamplingConfig(temperature=0.0),
        gens=generators(0, [0, 1], "t"),
    )
    assert len(calls) == passes
    assert torch.equal(ids, table.argmax(-1).expand(2, -1))  # greedy: the per-position argmax, everywhere
    assert calls[-1][0][0] + calls[-1][1] == 16  # the last pass queries exactly the undecided tokens


def test_roar_orders_are_random_per_sample_and_maskgit_keeps_the_confident():
    seen = []

    def fn(ids, known, positions):
        seen.append(positions.clone())
        logits = torch.full((positions.shape[0], positions.shape[1], 3), -10.0)
        logits[..., 0] = positions.float()  # larger position = more confident token 0
        return logits

    decode_grid(
        fn,
        get_strategy("roar"),
        batch=2,
        total=16,
        steps=4,
        sampling=SamplingConfig(1.0, 0, 0.0),
        gens=generators(0, [0, 1], "t"),
    )
    assert not torch.equal(seen[0][0], seen[0][1])
    seen.clear()
    ids = decode_grid(
        fn,
        get_strategy("maskgit"),
        batch=1,
        total=16,
        steps=2,
        sampling=SamplingConfig(1.0, 0, 0.0),
        gens=generators(0, [0], "t"),
    )
    assert seen[0].shape[1] == 16 and seen[1].shape[1] < 16
    assert set(range(16)) - set(seen[1][0].tolist()) >= {15, 14}  # the most confident went first
    assert ids.shape == (1, 16)


def test_sequence_decoding_stops_at_the_sentinel_per_sample():
    script = [[7, 6, 9], [8, 8, 6]]  # sample 0 stops after one token, sample 1 after two

    def fn(ids):
        step = ids.shape[1] - 1
        logits = torch.full((2, ids.shape[1], 10), -50.0)
        for b in range(2):
            logits[b, -1, script[b][step]] = 50.0
        return logits

    out = decode_sequence(
        fn, start=5, stop=6, max_tokens=4, sampling=SamplingConfig(0.0), gens=generators(0, [0, 1], "s")
    )
    assert out.tolist() == [[7, 6, 6], [8, 8, 6]]


def test_unknown_strategy():
    with pytest.raises(InputError, match="roar"):
        get_strategy("beam")


def test_schedule_sums_property():
    rng = np.random.default_rng(0)
    for _ in range(50):
        total, steps = int(rng.integers(1, 300)), int(rng.integers(1, 40))
        for kind in ("linear", "cosine"):
            counts = token_schedule(kind, steps, total)
            assert sum(counts) == total and min(counts) > 0 and len(counts) <= steps
