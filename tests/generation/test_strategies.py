"""Schedules and the image decoding strategies, against fake logits (no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from terramind.core.errors import InputError
from terramind.generation.schedule import TemperatureSchedule, temperature_schedule, token_schedule
from terramind.generation.strategies import decode_grid, decode_sequence, get_strategy
from terramind.layers.sampling import SamplingConfig, generators


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
    parse = TemperatureSchedule.parse
    assert temperature_schedule(parse("constant"), 0.7, [5, 5]) == [0.7, 0.7]
    assert temperature_schedule(parse("linear"), 1.0, [5, 5]) == [1.0, 0.5]
    onex = temperature_schedule(parse("onex:0.5:0.5"), 2.0, [4, 4, 4])
    assert onex[0] == pytest.approx(2.0 * (1 - 4 / 12) + 0.5 * (4 / 12)) and onex[0] > onex[1] > 0
    with pytest.raises(InputError):
        parse("onex:abc")


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
