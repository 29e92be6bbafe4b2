"""The temporal backbone: per-date encoding batched over B x T, static broadcast, grouping rules, freezing,
TiM per date, embeddings per date."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from terramind.core.errors import ShapeError
from terramind.data.series import Series, require_single_time
from terramind.finetune.backbone import Backbone
from terramind.finetune.temporal import TemporalBackbone, embed_series

B, T, S = 2, 3, 32


def _series(t_s1: int = T, seed: int = 0) -> Series:
    g = torch.Generator().manual_seed(seed)
    s2 = torch.randn(B, 12, T, S, S, generator=g)
    s1 = torch.randn(B, 2, t_s1, S, S, generator=g)
    dem = torch.randn(B, 1, S, S, generator=g)
    times = torch.tensor([[0.0, 5.0, 12.0], [3.0, 9.0, 15.0]], dtype=torch.float64)
    s1_times = torch.arange(t_s1, dtype=torch.float64).expand(B, -1) * 6
    valid = torch.ones(B, T, dtype=torch.bool)
    s1_times = times if t_s1 == T else s1_times
    return Series(
        {"S2L2A": s2, "S1RTC": s1, "DEM": dem},
        {"S2L2A": times, "S1RTC": s1_times},
        {"S2L2A": valid, "S1RTC": torch.ones(B, t_s1, dtype=torch.bool)},
    )


def test_encoder_runs_once_over_the_valid_dates_only(encoder: Any) -> None:
    series = _series()
    series.valid["S2L2A"][0, 1] = False
    backbone = TemporalBackbone(encoder, "mean")
    out = backbone(series)
    assert [x.shape for x in out] == [(B, 4, 16)] * 2
    assert encoder.seen == [B * T - 1]  # one batched call; the missing date is not encoded


def test_missing_date_equals_the_series_without_it(encoder: Any) -> None:
    series = _series()
    series.valid["S2L2A"][:, 1] = False
    series.inputs["S2L2A"][:, :, 1] = 1e4  # garbage at the missing date
    keep = [0, 2]
    shorter = Series(
        {
            **series.inputs,
            "S2L2A": series.inputs["S2L2A"][:, :, keep],
            "S1RTC": series.inputs["S1RTC"][:, :, keep],
        },
        {m: t[:, keep] for m, t in series.times.items()},
        {m: v[:, keep] for m, v in series.valid.items()},
    )
    for name in ("mean", "max", "attention"):
        torch.manual_seed(0)
        backbone = TemporalBackbone(encoder, name)
        # the same dates through the same weights: equal up to the order of a 2- vs 3-term masked sum
        torch.testing.assert_close(backbone(series)[-1], backbone(shorter)[-1], atol=1e-6, rtol=0)


def test_static_modality_is_broadcast_to_every_date(encoder: Any) -> None:
    series = _series()
    backbone = TemporalBackbone(encoder, "mean")
    as_4d = backbone(series)[-1]
    five = Series({**series.inputs, "DEM": series.inputs["DEM"][:, :, None]}, series.times, series.valid)
    assert torch.equal(backbone(five)[-1], as_4d)  # (B, C, 1, H, W) is the same static input


def test_group_by_date_needs_one_date_axis_group_by_modality_does_not(encoder: Any) -> None:
    series = _series(t_s1=2)
    with pytest.raises(ShapeError, match="different numbers of dates"):
        TemporalBackbone(encoder, "mean")(series)
    out = TemporalBackbone(encoder, "attention", group="modality")(series)
    assert out[-1].shape == (B, 4, 16)
    assert encoder.seen[-2:] == [B * 3, B * 2]  # S2 series and S1 series, each with DEM at every date
    apart = _series()
    apart.times["S1RTC"] = apart.times["S1RTC"] + 2.0
    with pytest.raises(ShapeError, match="2 days apart"):
        TemporalBackbone(encoder, "mean")(apart)
    TemporalBackbone(encoder, "mean", date_tolerance=2.0)(apart)


def test_max_steps_is_enforced(encoder: Any) -> None:
    with pytest.raises(ShapeError, match="S2L2A has 3 dates, more than max_steps=2"):
        TemporalBackbone(encoder, "mean", max_steps=2)(_series())


def test_frozen_encoder_gets_no_gradient_the_aggregator_does(
    encoder: Any, make_encoder: Callable[..., Any]
) -> None:
    backbone = TemporalBackbone(encoder, "attention", freeze_encoder=True)
    backbone(_series())[-1].sum().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.aggregators[-1].parameters())
    trainable = TemporalBackbone(make_encoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1}), "mean")
    trainable(_series())[-1].sum().backward()
    assert all(p.grad is not None for p in trainable.encoder.parameters())


def test_plain_mapping_gets_consecutive_valid_dates(encoder: Any) -> None:
    series = _series()
    backbone = TemporalBackbone(encoder, "attention")
    plain = backbone({"S2L2A": series.inputs["S2L2A"], "DEM": series.inputs["DEM"]})
    assert plain[-1].shape == (B, 4, 16)


def test_embeddings_per_date_and_aggregated(encoder: Any) -> None:
    series = _series()
    series.valid["S1RTC"][1, 2] = False
    backbone = TemporalBackbone(encoder, "mean")
    per_date = embed_series(backbone, series, per_date=True)
    assert isinstance(per_date, dict) and set(per_date) == {"S2L2A+S1RTC"}
    emb = per_date["S2L2A+S1RTC"]
    assert emb.shape == (B, T, 16)
    assert torch.isnan(emb[1, 2]).all() and torch.isfinite(emb[0]).all()
    pooled = embed_series(backbone, series)
    assert isinstance(pooled, torch.Tensor) and pooled.shape == (B, 16)
    # mean aggregation commutes with token pooling: the series embedding is the mean of its dates'
    torch.testing.assert_close(pooled[1], emb[1, :2].mean(0), atol=1e-6, rtol=0)


def test_terramind_tiny_per_date_and_tim_per_date(examples_dir: Path) -> None:
    encoder = Backbone(
        "terramind_v1_tiny", ["S2L2A"], merge=None, encoder_depth=1, tim_modalities=["LULC"], tim_seed=0
    )
    backbone = TemporalBackbone(encoder, "attention", freeze_encoder=True)
    x = torch.randn(1, 12, 2, S, S)
    out = backbone(
        Series(
            {"S2L2A": x},
            {"S2L2A": torch.tensor([[0.0, 30.0]])},
            {"S2L2A": torch.ones(1, 2, dtype=torch.bool)},
        )
    )
    assert out[-1].shape == (1, 2 * 4, 192)  # 4 S2 tokens + 4 TiM LULC tokens per date, per date aggregated


def test_single_time_model_refuses_a_time_axis() -> None:
    with pytest.raises(ShapeError, match=r"S2L2A has a time axis .* T=3 .*TemporalBackbone"):
        require_single_time({"S2L2A": torch.zeros(1, 12, 3, 32, 32)})
    require_single_time({"S2L2A": torch.zeros(1, 12, 32, 32)})
