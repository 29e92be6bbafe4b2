"""Every aggregator: shapes, time-stamp handling, permutation equivariance and masking of missing dates."""

from __future__ import annotations

import pytest
import torch

from terramind.core.errors import ShapeError, TerraMindError
from terramind.finetune.temporal import (
    AGGREGATORS,
    DAYS_PER_YEAR,
    AttentionAggregator,
    ConcatAggregator,
    build_aggregator,
    time_encoding,
)

B, T, N, D = 2, 4, 3, 16
# Reordering a sum of T fp32 terms changes it by at most (T - 1) * 2**-24 * sum(|terms|) (Higham, eq. 4.4).
# Terms here are O(1) (randn features; LayerNorm'd values plus unit-amplitude time encodings for attention,
# weights <= 1), so sum(|terms|) <= 4 * 5 and the bound is 3 * 6e-8 * 20 < 4e-6: 1e-5 leaves room for the
# one extra rounding of each normalisation.
ATOL = 1e-5


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, N, D, generator=g)
    times = torch.tensor([[18700.0, 18705.0, 18713.0, 18720.0], [18800.0, 18806.0, 18812.0, 18830.0]])
    valid = torch.ones(B, T, dtype=torch.bool)
    return x, times, valid


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_aggregator(name, D, **({"steps": T} if name == "concat" else {}))


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_shapes_and_declared_width(name: str) -> None:
    x, times, valid = _data()
    if name == "difference":
        x, times, valid = x[:, :2], times[:, :2], valid[:, :2]
    agg = _build(name)
    out = agg(x, times, valid)
    assert out.shape == (B, N, agg.out_width)
    assert agg.out_width == (T * D if name == "concat" else D)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mean", "max", "attention", "concat"])
def test_permuting_dates_with_their_stamps_changes_nothing(name: str) -> None:
    x, times, valid = _data()
    agg = _build(name)
    perm = torch.tensor([2, 0, 3, 1])
    a = agg(x, times, valid)
    b = agg(x[:, perm], times[:, perm], valid[:, perm])
    if name in ("max", "concat"):  # a selection or a reordering: exact
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    # ...and the same permutation of the data alone (stamps kept) changes attention and concat
    if name in ("attention", "concat"):
        c = agg(x[:, perm], times, valid)
        assert (c - a).abs().max() > 1e-3


def test_attention_relative_encoding_ignores_a_shift_but_not_a_rescaling() -> None:
    x, times, valid = _data()
    agg = _build("attention")
    a = agg(x, times, valid)
    assert torch.equal(agg(x, times + 365.0, valid), a)  # whole days in float64: the same offsets exactly
    assert (agg(x, (times - times[:, :1]) * 3.0, valid) - a).abs().max() > 1e-3


def test_day_of_year_encoding_repeats_every_year() -> None:
    _, times, valid = _data()
    times = times.double()  # float32 stamps near 2e4 days round to 2e-3 days; the encoding itself is float64
    enc = time_encoding(times, valid, D, "day_of_year")
    later = time_encoding(times + 3 * DAYS_PER_YEAR, valid, D, "day_of_year")
    # float64 remainder of ~2e4 days: error ~1e-11 days, times 2 pi k / 365 per day for k <= 8: far below 1e-6
    torch.testing.assert_close(enc, later, atol=1e-6, rtol=0)
    half = time_encoding(times + DAYS_PER_YEAR / 2, valid, D, "day_of_year")
    assert (half - enc).abs().max() > 0.5  # half a year later the first harmonic flips sign


def test_difference_is_later_minus_earlier_by_stamp() -> None:
    x, times, valid = _data()
    x, times, valid = x[:, :2], times[:, :2], valid[:, :2]
    agg = _build("difference")
    out = agg(x, times, valid)
    assert torch.equal(out, x[:, 1] - x[:, 0])
    assert torch.equal(agg(x.flip(1), times.flip(1), valid), out)  # given newest first: same change
    assert torch.equal(agg(x, times.flip(1), valid), -out)  # stamps say the first is later


def test_missing_dates_are_masked_not_zero_filled() -> None:
    x, times, valid = _data()
    x = -(x.abs() + 1.0)  # negative: a zero-filled date would pull the mean up and win the max
    valid[:, 1] = False
    garbage = x.clone()
    garbage[:, 1] = 1e4  # whatever sits at a missing date must not matter
    keep = torch.tensor([0, 2, 3])
    for name in ("mean", "max", "attention"):
        agg = _build(name)
        masked = agg(garbage, times, valid)
        dropped = agg(x[:, keep], times[:, keep], valid[:, keep])
        torch.testing.assert_close(masked, dropped, atol=ATOL, rtol=0)
        zero_filled = x.clone()
        zero_filled[:, 1] = 0.0
        assert (agg(zero_filled, times, torch.ones_like(valid)) - masked).abs().max() > 1e-2, name


def test_concat_fills_missing_slots_with_the_learned_vector() -> None:
    x, times, valid = _data()
    valid[0, 3] = False
    agg = _build("concat")
    assert isinstance(agg, ConcatAggregator)
    out = agg(x, times, valid)  # (B, N, T*D), slots in time order
    assert torch.equal(out[0, :, 3 * D :], agg.missing[3].expand(N, D))
    assert torch.equal(out[1, :, 3 * D :], x[1, 3])
    short = agg(x[:, :2], times[:, :2], valid[:, :2])  # fewer dates than slots: the rest are missing
    assert torch.equal(short[:, :, 2 * D : 3 * D], agg.missing[2].expand(B, N, D))
    with pytest.raises(ShapeError, match="4 date slots"):
        agg(torch.cat([x, x], dim=1), torch.cat([times, times + 100], 1), torch.cat([valid, valid], 1))


def test_bad_uses_are_refused() -> None:
    x, times, valid = _data()
    with pytest.raises(ShapeError, match="no valid date"):
        _build("mean")(x, times, torch.zeros_like(valid))
    with pytest.raises(ShapeError, match="exactly two valid dates"):
        _build("difference")(x, times, valid)
    with pytest.raises(TerraMindError, match="unknown aggregator 'median'"):
        build_aggregator("median", D)
    with pytest.raises(TerraMindError, match="not divisible by heads"):
        AttentionAggregator(D, heads=5)
