import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from terramind.core.errors import InputError
from terramind.masking import (
    MaskingConfig,
    MixtureComponent,
    Stream,
    StreamKind,
    collate_masks,
    draw_budgets,
    sample_masks,
    span_mask,
    split_budget,
)

alphas = st.sampled_from([0.0, 0.1, 0.5, 1.0, 1000.0])


@st.composite
def configs(draw):
    n = draw(st.integers(1, 5))
    streams = []
    for i in range(n):
        a_in, a_tgt = draw(alphas), draw(alphas)
        if i == 0:  # at least one stream is both input and target
            a_in, a_tgt = max(a_in, 0.1), max(a_tgt, 0.1)
        streams.append(Stream(f"m{i}", draw(st.sampled_from([1, 4, 16, 196])), a_in, a_tgt))
    cap_in = sum(s.num_tokens for s in streams if s.input_alpha > 0)
    cap_tgt = sum(s.num_tokens for s in streams if s.target_alpha > 0)
    cap_any = sum(s.num_tokens for s in streams if s.input_alpha > 0 or s.target_alpha > 0)
    n_in = draw(st.integers(1, cap_in))
    n_tgt = draw(st.integers(0, min(cap_tgt, cap_any - n_in)))
    return MaskingConfig(tuple(streams), n_in, n_tgt)


@settings(max_examples=150, deadline=None)
@given(configs(), st.integers(0, 2**32 - 1))
def test_budgets_exact_and_within_capacity(config, seed):
    b = draw_budgets(config, np.random.default_rng(seed))
    sizes = np.array([s.num_tokens for s in config.streams])
    assert sum(b.inputs) == config.num_input_tokens
    room = int(
        sum(sz - i for sz, i, s in zip(sizes, b.inputs, config.streams, strict=True) if s.target_alpha > 0)
    )
    assert sum(b.targets) == min(config.num_target_tokens, room)
    for s, i, t in zip(config.streams, b.inputs, b.targets, strict=True):
        assert i >= 0 and t >= 0 and i + t <= s.num_tokens
        assert i == 0 or s.input_alpha > 0
        assert t == 0 or s.target_alpha > 0


@settings(max_examples=100, deadline=None)
@given(configs(), st.integers(0, 2**32 - 1), st.data())
def test_masks_disjoint_in_bounds_and_match_budgets(config, seed, data):
    names = [s.name for s in config.streams]
    present = data.draw(st.lists(st.sampled_from(names), unique=True))
    m = sample_masks(config, np.random.default_rng(seed), present=present)
    avail = sum(s.num_tokens for s in config.streams if s.name in present and s.input_alpha > 0)
    assert m.num_inputs == min(config.num_input_tokens, avail)
    assert set(m.images) == set(present)
    for _name, im in m.images.items():
        inp, tgt = set(im.input_positions.tolist()), set(im.target_positions.tolist())
        assert not inp & tgt
        assert len(inp) == len(im.input_positions) and len(tgt) == len(im.target_positions)
        assert all(0 <= p < im.num_tokens for p in inp | tgt)
        assert im.input_mask.sum() == len(inp)
        with pytest.raises(ValueError):
            im.input_positions[...] = 0  # read-only


@settings(max_examples=50, deadline=None)
@given(configs(), st.integers(0, 2**31))
def test_same_seed_same_masks(config, seed):
    a = sample_masks(config, np.random.default_rng(seed))
    b = sample_masks(config, np.random.default_rng(seed))
    assert a.budgets == b.budgets
    for k in a.images:
        np.testing.assert_array_equal(a.images[k].input_positions, b.images[k].input_positions)
        np.testing.assert_array_equal(a.images[k].target_positions, b.images[k].target_positions)


def test_different_seeds_differ():
    config = MaskingConfig((Stream("a", 196), Stream("b", 196), Stream("c", 196)), 128, 128)
    draws = {
        tuple(sample_masks(config, np.random.default_rng(s)).images["a"].input_positions.tolist())
        for s in range(20)
    }
    assert len(draws) == 20


def test_dirichlet_spread_follows_alpha():
    rng = np.random.default_rng(0)
    caps = np.array([1000, 1000])
    peaked = [split_budget(100, np.array([1000.0, 1000.0]), caps, rng)[0] for _ in range(200)]
    spread = [split_budget(100, np.array([0.1, 0.1]), caps, rng)[0] for _ in range(200)]
    assert np.std(peaked) < 5 < np.std(spread)


def test_budget_exceeding_available_is_an_error():
    with pytest.raises(InputError, match="exceed the available tokens"):
        MaskingConfig((Stream("a", 196), Stream("b", 196)), 300, 100)
    with pytest.raises(InputError, match="exceed the available tokens"):
        MaskingConfig((Stream("a", 196, target_alpha=0), Stream("b", 196, input_alpha=0)), 197, 10)
    with pytest.raises(InputError, match="unique"):
        MaskingConfig((Stream("a", 196), Stream("a", 196)), 10, 10)


def test_mixture_component_only_uses_its_modalities():
    rgb_to_all = MixtureComponent(1.0, {"rgb": 1000.0}, {"a": 1.0, "b": 1.0})
    config = MaskingConfig((Stream("rgb", 196), Stream("a", 196), Stream("b", 196)), 64, 64, (rgb_to_all,))
    for seed in range(10):
        b = draw_budgets(config, np.random.default_rng(seed))
        assert b.inputs == (64, 0, 0) and b.targets[0] == 0 and sum(b.targets) == 64


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(10, 1000), min_size=1, max_size=12),
    st.integers(0, 16),
    st.integers(0, 16),
    st.integers(0, 2**31),
)
def test_span_mask_within_budget_and_reconstructs(ids, max_in, max_tgt, seed):
    s = span_mask(np.array(ids), max_in, max_tgt, np.random.default_rng(seed))
    assert len(s.input_ids) <= max_in and len(s.target_ids) <= max_tgt
    if s.target_ids:  # filling each sentinel with its span gives back the sequence
        assert s.target_ids[-1] == 3
        spans, cur = {}, None
        for t in s.target_ids[:-1]:
            if 4 <= t < 10:
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        rebuilt = [x for t in s.input_ids for x in (spans[t] if 4 <= t < 10 else [t])]
        assert rebuilt == ids
    elif s.input_ids:
        assert list(s.input_ids) == ids


def test_sequences_and_collate():
    config = MaskingConfig(
        (Stream("img", 16), Stream("coords", 4, kind=StreamKind.SEQUENCE)),
        num_input_tokens=8,
        num_target_tokens=8,
    )
    masks = [
        sample_masks(config, np.random.default_rng(i), sequences={"coords": np.array([100, 200, 3])})
        for i in range(4)
    ] + [sample_masks(config, np.random.default_rng(9), present=["img"])]
    images, seqs = collate_masks(masks, config)
    im = images["img"]
    assert im.input_mask.shape == (5, 16)
    assert im.input_mask.sum(1).tolist() == [len(m.images["img"].input_positions) for m in masks]
    for i, m in enumerate(masks):
        n = len(m.images["img"].target_positions)
        assert im.target_valid[i].sum() == n
        assert im.target_positions[i, :n].tolist() == m.images["img"].target_positions.tolist()
        assert not im.input_mask[i, im.target_positions[i, :n]].any()
    assert seqs["coords"].input_ids.shape == (5, 4) and not seqs["coords"].input_valid[4].any()
    assert seqs["coords"].target_ids.dtype == torch.long


def test_unknown_or_missing_streams():
    config = MaskingConfig((Stream("img", 16), Stream("coords", 4, kind=StreamKind.SEQUENCE)), 4, 4)
    with pytest.raises(InputError, match="unknown streams"):
        sample_masks(config, np.random.default_rng(0), present=["img", "nope"])
    with pytest.raises(InputError, match="ids were not given"):
        sample_masks(config, np.random.default_rng(0))
