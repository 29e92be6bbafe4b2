"""A time axis around the single-time TerraMind encoder: per-date encoding, then a temporal aggregator.

TerraMind has no time axis. :class:`TemporalBackbone` runs any encoder with the fine-tuning surface
(``{modality: (B, C, H, W)} -> list of (B, N, D)``, e.g. :class:`terramind.finetune.Backbone`, TiM included)
once per date, batched over ``B x T`` with shared weights, and combines the per-date tokens of every block
with an aggregator from :data:`AGGREGATORS`:

- ``mean`` / ``max``: over the valid dates of each sample;
- ``concat``: dates in time order side by side along features (``steps x D`` wide; missing dates get a
  learned "missing" vector per slot, never zeros);
- ``attention``: lightweight temporal attention (L-TAE, Garnot & Landrieu 2020, arXiv:2007.00586): one
  learned master query per head, keys from the date's features plus a sinusoidal time-stamp encoding, each
  head pooling its own channel group;
- ``difference``: bi-temporal change, later date minus earlier date (exactly two valid dates).

Inputs (:class:`terramind.data.series.Series`): per modality ``(B, C, T, H, W)``, time stamps ``(B, T)`` in
days since 1970-01-01 and a validity mask ``(B, T)``; a static modality is ``(B, C, H, W)`` (or ``T = 1``)
and is given to the encoder at every date. Missing dates are masked: they are not even encoded, and mean,
max and attention exclude them (their features are never averaged in as zeros).

Modalities on different dates (``group``):

- ``"date"`` (default): the time-varying modalities share one date axis: the same ``T``, step ``t`` of
  every modality is date ``t`` (e.g. ImpactMesh's 4 steps of S1RTC and S2L2A). Their stamps must agree
  within ``date_tolerance`` days where both are valid; the date's stamp is the first time-varying
  modality's (input order). They are encoded together at each date, as TerraMind fuses modalities; a date
  counts as valid only where every time-varying modality is valid there.
- ``"modality"``: each time-varying modality is its own series (S2 every 5 days, S1 every 6: any ``T``,
  own stamps and mask), encoded with the static modalities and aggregated over its own dates; the
  aggregated features of the series are then averaged. No cross-modal fusion within a date, no
  nearest-date pairing to get wrong.

The encoder may be frozen (``freeze_encoder``: no gradients, run under ``no_grad`` to save activations)
or trained; TiM runs per date when the encoder is a TiM backbone (``Backbone(tim_modalities=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from einops import rearrange, repeat
from torch import nn

from terramind.core.errors import ShapeError, TerraMindError
from terramind.data.series import Series, as_series

Group = Literal["date", "modality"]
TimeEncoding = Literal["relative", "day_of_year"]
DAYS_PER_YEAR = 365.2425  # Gregorian mean year: the annual cycle of the day-of-year encoding

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "AttentionAggregator",
    "ConcatAggregator",
    "DifferenceAggregator",
    "MaxAggregator",
    "MeanAggregator",
    "StepFeatures",
    "TemporalBackbone",
    "embed_series",
    "time_encoding",
]


class Aggregator(Protocol):
    """Combines per-date tokens of one block into one set of tokens."""

    out_width: int

    def __call__(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Aggregate ``x (B, T, N, D)`` with stamps ``times (B, T)`` (days) and mask ``valid (B, T)``.

        Returns:
            ``(B, N, out_width)``.
        """
        ...


def _check_some_valid(valid: torch.Tensor) -> None:
    empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ShapeError(f"samples {empty} have no valid date: every series needs at least one")


class _SameWidth(nn.Module):
    """An aggregator whose tokens keep the backbone's width (``out_width`` = ``width``).

    Args:
        width: Token width D.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_width = width


class MeanAggregator(_SameWidth):
    """Mean over the valid dates (masked: a missing date is excluded, not counted as zeros)."""

    def forward(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D) -> (B, N, D)``."""
        _check_some_valid(valid)
        w = valid.to(x.dtype)[:, :, None, None]  # (B, T, 1, 1)
        return (x * w).sum(dim=1) / w.sum(dim=1)


class MaxAggregator(_SameWidth):
    """Element-wise maximum over the valid dates."""

    def forward(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D) -> (B, N, D)``."""
        _check_some_valid(valid)
        return x.masked_fill(~valid[:, :, None, None], float("-inf")).amax(dim=1)


def _time_order(
    x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each sample's dates by time stamp, valid dates first; returns ``(x, valid)`` reordered."""
    key = torch.where(valid, times.double(), torch.inf)  # missing dates last
    order = key.argsort(dim=1, stable=True)  # (B, T)
    x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
    return x, torch.gather(valid, 1, order)


class ConcatAggregator(nn.Module):
    """Dates in time order, side by side along features: ``steps x D`` wide.

    Args:
        width: Token width D.
        steps: Number of date slots; a series may have fewer dates (the rest are missing), not more.
    """

    def __init__(self, width: int, steps: int) -> None:
        super().__init__()
        if steps < 1:
            raise TerraMindError(f"concat needs steps >= 1 (the number of date slots), got {steps}")
        self.steps = steps
        self.out_width = width * steps
        # A missing date fills its slot with this learned vector (initialised like a token embedding).
        self.missing = nn.Parameter(torch.randn(steps, width) * 0.02)

    def forward(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D) -> (B, N, steps * D)``, dates sorted by time stamp."""
        b, t, n, d = x.shape
        if t > self.steps:
            raise ShapeError(f"concat has {self.steps} date slots, the series has {t} dates")
        x, valid = _time_order(x, times, valid)
        pad = self.steps - t
        x = torch.cat([x, x.new_zeros(b, pad, n, d)], dim=1)  # (B, steps, N, D)
        valid = torch.cat([valid, valid.new_zeros(b, pad)], dim=1)
        x = torch.where(valid[:, :, None, None], x, self.missing[None, :, None, :].to(x.dtype))
        return rearrange(x, "b t n d -> b n (t d)")


class DifferenceAggregator(_SameWidth):
    """Bi-temporal change: the later date's tokens minus the earlier date's (exactly two valid dates)."""

    def forward(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D) -> (B, N, D)``."""
        counts = valid.sum(dim=1)
        if x.shape[1] < 2 or bool((counts != 2).any()):
            raise ShapeError(
                f"difference needs exactly two valid dates per sample (before, after), got "
                f"{counts.tolist()} of T={x.shape[1]}"
            )
        x, _ = _time_order(x, times, valid)
        return x[:, 1] - x[:, 0]


def time_encoding(
    times: torch.Tensor, valid: torch.Tensor, width: int, kind: TimeEncoding, period: float = 1000.0
) -> torch.Tensor:
    """Sinusoidal encoding of time stamps.

    ``relative``: days since the sample's first valid date, at frequencies ``period ** (-2i / width)``
    (L-TAE's encoding with its period of 1000 days); shifting every date of a sample changes nothing.
    ``day_of_year``: harmonics ``k = 1..width/2`` of the annual cycle (seasonality; whole years drop out).

    Args:
        times: ``(B, T)`` days since 1970-01-01.
        valid: ``(B, T)`` validity mask (the reference date of ``relative`` is the first valid one).
        width: Encoding width (even).
        kind: ``relative`` or ``day_of_year``.
        period: Longest period of the ``relative`` encoding, in days.

    Returns:
        ``(B, T, width)`` float32.
    """
    if width % 2:
        raise TerraMindError(f"time encoding needs an even width, got {width}")
    t = times.double()
    half = torch.arange(width // 2, dtype=torch.float64, device=times.device)
    if kind == "relative":
        start = torch.where(valid, t, torch.inf).amin(dim=1, keepdim=True)
        t = torch.where(valid, t - start, 0.0)  # missing dates are masked downstream; keep them finite
        angles = t[..., None] * period ** (-2 * half / width)
    elif kind == "day_of_year":
        angles = torch.remainder(t, DAYS_PER_YEAR)[..., None] * (2 * math.pi * (half + 1) / DAYS_PER_YEAR)
    else:
        raise TerraMindError(f"unknown time encoding {kind!r}: use 'relative' or 'day_of_year'")
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class AttentionAggregator(nn.Module):
    """Lightweight temporal attention (L-TAE): learned master queries over time-stamped dates.

    Per token position, each head scores the dates with ``q_h . k_t / sqrt(d_k)`` where ``k_t`` is a linear
    map of the date's (normalised) features plus its time-stamp encoding; missing dates get no weight. Head
    ``h`` pools its own ``D / heads`` channel group; a linear layer mixes the heads.

    Args:
        width: Token width D (divisible by ``heads``).
        heads: Attention heads.
        key_dim: Width of keys and queries per head.
        encoding: Time-stamp encoding: ``relative`` (days since the first date) or ``day_of_year``.
        period: Longest period of the ``relative`` encoding, in days.
    """

    def __init__(
        self,
        width: int,
        heads: int = 8,
        key_dim: int = 8,
        encoding: TimeEncoding = "relative",
        period: float = 1000.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise TerraMindError(f"attention width {width} is not divisible by heads={heads}")
        self.out_width, self.heads, self.encoding, self.period = width, heads, encoding, period
        self.norm = nn.LayerNorm(width)
        self.key = nn.Linear(width, heads * key_dim)
        self.query = nn.Parameter(torch.randn(heads, key_dim) * key_dim**-0.5)
        self.scale = key_dim**-0.5
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T, N, D) -> (B, N, D)``."""
        _check_some_valid(valid)
        pos = time_encoding(times, valid, x.shape[-1], self.encoding, self.period).to(x.dtype)
        x = self.norm(x) + pos[:, :, None, :]  # (B, T, N, D)
        keys = rearrange(self.key(x), "b t n (h k) -> b n h t k", h=self.heads)
        scores = torch.einsum("bnhtk,hk->bnht", keys, self.query.to(x.dtype)) * self.scale
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, N, heads, T)
        values = rearrange(x, "b t n (h c) -> b n h t c", h=self.heads)
        pooled = torch.einsum("bnht,bnhtc->bnhc", weights, values)
        return self.out(rearrange(pooled, "b n h c -> b n (h c)"))


AggregatorFactory = Callable[..., nn.Module]
# name -> class; each takes the token width first, then its own keyword options.
AGGREGATORS: dict[str, AggregatorFactory] = {
    "mean": MeanAggregator,
    "max": MaxAggregator,
    "concat": ConcatAggregator,
    "attention": AttentionAggregator,
    "difference": DifferenceAggregator,
}


def build_aggregator(name: str, width: int, **options: object) -> nn.Module:
    """Build the aggregator ``name`` for tokens of ``width``, with its options (``steps``, ``heads``...)."""
    if name not in AGGREGATORS:
        raise TerraMindError(f"unknown aggregator {name!r}: choose one of {', '.join(AGGREGATORS)}")
    try:
        return AGGREGATORS[name](width, **options)
    except TypeError as err:
        raise TerraMindError(f"aggregator {name!r}: {err}") from err


@dataclass(frozen=True)
class StepFeatures:
    """Per-date features of one group of modalities encoded together.

    Attributes:
        modalities: The time-varying modalities of the group (static ones are given at every date).
        layers: One ``(B, T, N, D)`` tensor per encoder block; rows of missing dates are zeros, masked.
        times: ``(B, T)`` days since 1970-01-01.
        valid: ``(B, T)`` mask of the dates that were encoded.
    """

    modalities: tuple[str, ...]
    layers: list[torch.Tensor]
    times: torch.Tensor
    valid: torch.Tensor


@dataclass(frozen=True)
class _Group:
    modalities: tuple[str, ...]
    inputs: dict[str, torch.Tensor]  # series (B, C, T, H, W) and static (B, C, H, W) or token ids
    times: torch.Tensor  # (B, T)
    valid: torch.Tensor  # (B, T)


class TemporalBackbone(nn.Module):
    """Run a single-time encoder per date and aggregate over time; the fine-tuning backbone surface.

    Args:
        encoder: A backbone returning one ``(B, N, D)`` tensor per block and declaring ``out_channels``
            (:class:`terramind.finetune.Backbone` of any size, TiM included).
        aggregator: ``mean``, ``max``, ``concat``, ``attention`` or ``difference`` (:data:`AGGREGATORS`).
        aggregator_options: Options of the aggregator: ``steps`` (concat), ``heads``, ``key_dim``,
            ``encoding`` (``relative`` | ``day_of_year``), ``period`` (attention).
        group: ``date`` (time-varying modalities share dates, encoded together) or ``modality`` (one
            series per modality, aggregated separately, then averaged); see the module docstring.
        max_steps: Refuse series with more dates than this (None: no limit).
        date_tolerance: With ``group="date"``: the largest difference, in days, between the stamps of two
            modalities at the same step (S1 and S2 acquired a few days apart).
        freeze_encoder: Keep the encoder's weights fixed and run it without gradients.
    """

    def __init__(
        self,
        encoder: nn.Module,
        aggregator: str = "mean",
        *,
        aggregator_options: Mapping[str, object] | None = None,
        group: Group = "date",
        max_steps: int | None = None,
        date_tolerance: float = 0.0,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if group not in ("date", "modality"):
            raise TerraMindError(f"group must be 'date' or 'modality', got {group!r}")
        widths = getattr(encoder, "out_channels", None)
        if not widths:
            raise TerraMindError(f"{type(encoder).__name__} must declare out_channels (one width per block)")
        self.encoder = encoder
        self.aggregator_name, self.group, self.max_steps = aggregator, group, max_steps
        self.date_tolerance = date_tolerance
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        options = dict(aggregator_options or {})
        self.aggregators = nn.ModuleList(build_aggregator(aggregator, w, **options) for w in widths)
        self.out_channels = [int(a.out_width) for a in self.aggregators]  # type: ignore[arg-type]

    def forward(self, series: Series | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Return the aggregated features of every block.

        Args:
            series: A :class:`terramind.data.series.Series`, or a mapping of ``(B, C, T, H, W)`` series and
                static inputs (then the dates are 0, 1, ... days apart and all valid).

        Returns:
            One ``(B, N, out_channels[i])`` tensor per encoder block.
        """
        per_group = [self._aggregate(s) for s in self.per_step(series)]
        if len(per_group) == 1:
            return per_group[0]
        return [torch.stack(layer).mean(dim=0) for layer in zip(*per_group, strict=True)]

    def per_step(self, series: Series | Mapping[str, torch.Tensor]) -> list[StepFeatures]:
        """Encode every valid date of every group (one group per series with ``group="modality"``)."""
        series = as_series(series)
        return [self._encode(g) for g in self._groups(series)]

    def _aggregate(self, step: StepFeatures) -> list[torch.Tensor]:
        return [agg(x, step.times, step.valid) for agg, x in zip(self.aggregators, step.layers, strict=True)]

    def _groups(self, series: Series) -> list[_Group]:
        """Split the inputs into groups encoded together, per the ``group`` rule."""
        timed = {m: x for m, x in series.inputs.items() if x.ndim == 5 and x.shape[2] > 1}
        static = {m: (x[:, :, 0] if x.ndim == 5 else x) for m, x in series.inputs.items() if m not in timed}
        for m, x in timed.items():
            if self.max_steps is not None and x.shape[2] > self.max_steps:
                raise ShapeError(f"{m} has {x.shape[2]} dates, more than max_steps={self.max_steps}")
        if not timed:  # no time axis at all: one date
            first = next(iter(series.inputs.values()))
            one = torch.zeros(first.shape[0], 1, device=first.device)
            return [_Group((), static, one, one > -1)]
        if self.group == "modality":
            return [
                _Group((m,), {**static, m: x}, series.times[m], series.valid[m]) for m, x in timed.items()
            ]
        return [_joint_group(timed, static, series, self.date_tolerance)]

    def _encode(self, group: _Group) -> StepFeatures:
        """Encode the valid dates of a group, batched over ``B x T``; rows of missing dates stay zero."""
        _check_some_valid(group.valid)  # before the encoder runs, not after
        b, t = group.valid.shape
        keep = group.valid.reshape(-1).nonzero().flatten()  # indices into (b t)
        flat = {m: _flatten_dates(x, t)[keep] for m, x in group.inputs.items()}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            layers = self.encoder(flat)
        out = []
        for f in layers:
            if keep.numel() < b * t:  # scatter the encoded dates back; missing rows stay zero (masked)
                full = f.new_zeros(b * t, *f.shape[1:])
                full[keep] = f
                f = full
            out.append(rearrange(f, "(b t) n d -> b t n d", b=b))  # a view: no copy of every block
        return StepFeatures(group.modalities, out, group.times, group.valid)


def _flatten_dates(x: torch.Tensor, t: int) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B T, C, H, W)``; a static input is repeated for every date."""
    if x.ndim == 5:
        return rearrange(x, "b c t h w -> (b t) c h w")
    return repeat(x, "b ... -> (b t) ...", t=t)


def _joint_group(
    timed: Mapping[str, torch.Tensor], static: dict[str, torch.Tensor], series: Series, tolerance: float
) -> _Group:
    """Put all time-varying modalities on one date axis (same T, stamps within ``tolerance`` days).

    A date is valid where every modality is valid.
    """
    names = list(timed)
    steps = {m: x.shape[2] for m, x in timed.items()}
    if len(set(steps.values())) > 1:
        raise ShapeError(
            f"modalities have different numbers of dates {steps}: with group='date' they must share "
            "one date axis; use group='modality' for separate series"
        )
    times = series.times[names[0]]
    valid = torch.stack([series.valid[m] for m in names]).all(dim=0)
    for m in names[1:]:
        gap = ((series.times[m] - times).abs() * valid).max()  # only where both are valid
        if gap > tolerance:
            raise ShapeError(
                f"{names[0]} and {m} are {float(gap):g} days apart at one step (date_tolerance="
                f"{tolerance:g}): with group='date' they must share one date axis; raise date_tolerance "
                "or use group='modality' for separate series"
            )
    return _Group(tuple(names), {**static, **timed}, times, valid)


def embed_series(
    backbone: TemporalBackbone, series: Series | Mapping[str, torch.Tensor], *, per_date: bool = False
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Embeddings of time series: the last block's tokens, averaged over the patch grid.

    Args:
        backbone: The temporal backbone.
        series: Inputs with a time axis (see :meth:`TemporalBackbone.forward`).
        per_date: One embedding per date instead of one per series.

    Returns:
        ``per_date=False``: ``(B, D_out)``, aggregated over time. ``per_date=True``: per group of modalities
        encoded together (key ``"S2L2A+S1RTC"``), ``(B, T, D)`` with NaN rows for missing dates.
    """
    with torch.no_grad():
        if not per_date:
            return backbone(series)[-1].mean(dim=1)
        out = {}
        for step in backbone.per_step(series):
            emb = step.layers[-1].mean(dim=2)  # (B, T, D)
            out["+".join(step.modalities) or "static"] = emb.masked_fill(~step.valid[..., None], float("nan"))
        return out
