"""Decoding strategies for image token grids behind one small protocol, and autoregressive sequences.

An image strategy answers three questions per step: how many tokens each step decides (:meth:`plan`),
which positions the decoder is queried at (:meth:`query`), and which of the sampled tokens are kept
(:meth:`keep`). :func:`decode_grid` runs that loop against any ``logits(ids, known, positions)`` function,
so strategies are testable without a model. Kept tokens become known and (in the generator) are fed back as
encoder inputs of the target modality for the next step, the 4M way.

- ``single``: every token in one decoder pass, sampled independently -- what the official wrapper does
  (tests/parity/test_generation_parity.py); the parity mode.
- ``roar``: random-order decoding; each step queries a random subset of the undecided positions and keeps
  all of them (a linear token schedule over ``steps``).
- ``maskgit``: each step queries every undecided position and keeps the most confident samples (a cosine
  token schedule over ``steps``).

Sequences (coordinates) are decoded token by token with :func:`decode_sequence`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from terramind.core.errors import InputError
from terramind.generation.schedule import TemperatureSchedule, temperature_schedule, token_schedule
from terramind.layers.sampling import SamplingConfig, sample

LogitsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(ids (B, N), known (B, N) bool, positions (B, q)) -> logits (B, q, V)``."""


class Strategy(Protocol):
    """How the tokens of one image modality are decided, step by step."""

    name: str

    def plan(self, total: int, steps: int) -> list[int]:
        """Tokens decided at each step (sums to ``total``)."""
        ...

    def query(self, known: torch.Tensor, count: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """Positions (B, q) to query, all undecided, given the known mask (B, N) and this step's count."""
        ...

    def keep(self, probs: torch.Tensor, count: int) -> torch.Tensor:
        """Pick indices (B, count) into the queried positions to keep, from their probs (B, q)."""
        ...


def _undecided(known: torch.Tensor) -> torch.Tensor:
    """(B, n) positions not yet known, ascending; every row has the same count by construction."""
    b = known.shape[0]
    return torch.nonzero(~known, as_tuple=False)[:, 1].reshape(b, -1)


class SinglePass:
    """All tokens in one decoder pass (the official wrapper's behaviour); ignores ``steps``."""

    name = "single"

    def plan(self, total: int, steps: int) -> list[int]:
        """One step with every token."""
        return [total]

    def query(self, known: torch.Tensor, count: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """Every undecided position, in raster order."""
        return _undecided(known)

    def keep(self, probs: torch.Tensor, count: int) -> torch.Tensor:
        """Keep every sample."""
        return torch.arange(probs.shape[1], device=probs.device).expand(probs.shape[0], -1)


class Roar(SinglePass):
    """Random-order decoding with a linear token schedule (4M's ROAR)."""

    name = "roar"

    def plan(self, total: int, steps: int) -> list[int]:
        """Equal shares over ``steps``."""
        return token_schedule("linear", steps, total)

    def query(self, known: torch.Tensor, count: int, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """``count`` undecided positions per sample, in that sample's own random order."""
        free = _undecided(known)
        picks = [torch.randperm(free.shape[1], generator=g)[:count] for g in gens]
        order = torch.stack(picks).to(free.device)
        return free.gather(1, order)


class MaskGit(SinglePass):
    """Confidence-ordered decoding with a cosine token schedule (MaskGIT)."""

    name = "maskgit"

    def plan(self, total: int, steps: int) -> list[int]:
        """Few tokens first, many later."""
        return token_schedule("cosine", steps, total)

    def keep(self, probs: torch.Tensor, count: int) -> torch.Tensor:
        """Keep the ``count`` samples with the highest probability."""
        return torch.topk(probs, count, dim=-1).indices


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (SinglePass(), Roar(), MaskGit())}


def get_strategy(name: str) -> Strategy:
    """Return the strategy registered under ``name``."""
    if name not in STRATEGIES:
        raise InputError(f"unknown decoding strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def decode_grid(
    logits_fn: LogitsFn,
    strategy: Strategy,
    *,
    batch: int,
    total: int,
    steps: int,
    sampling: SamplingConfig,
    gens: Sequence[torch.Generator],
    schedule: TemperatureSchedule | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Decide all ``total`` tokens of a grid.

    Args:
        logits_fn: Decoder logits for queried positions given the tokens known so far.
        strategy: Which positions to query and keep.
        batch: Number of samples.
        total: Tokens per sample (h * w).
        steps: Requested decoding steps (the strategy may use fewer).
        sampling: Base temperature and filters.
        gens: One generator per sample (order and token draws).
        schedule: Temperature schedule over the steps (default constant).
        device: Where the id tensors live.

    Returns:
        (B, total) long token ids.
    """
    plan = strategy.plan(total, steps)
    temps = temperature_schedule(schedule or TemperatureSchedule(), sampling.temperature, plan)
    ids = torch.zeros(batch, total, dtype=torch.long, device=device)
    known = torch.zeros(batch, total, dtype=torch.bool, device=device)
    for count, temp in zip(plan, temps, strict=True):
        positions = strategy.query(known, count, gens)
        logits = logits_fn(ids, known, positions)
        cfg = SamplingConfig(temp, sampling.top_k, sampling.top_p)
        tokens, probs = sample(logits, cfg, gens)
        chosen = strategy.keep(probs, count)
        ids.scatter_(1, positions.gather(1, chosen), tokens.gather(1, chosen))
        known.scatter_(1, positions.gather(1, chosen), True)
    return ids


SequenceLogitsFn = Callable[[torch.Tensor], torch.Tensor]
"""``(ids (B, L)) -> logits (B, L, V)``, causal teacher-forced decoder logits."""


def decode_sequence(
    logits_fn: SequenceLogitsFn,
    *,
    start: int,
    stop: int,
    max_tokens: int,
    sampling: SamplingConfig,
    gens: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Autoregressive decoding of a short sequence (coordinates).

    Args:
        logits_fn: Causal decoder logits of the sequence so far.
        start: Id fed first (the ``[S_1]`` sentinel for 4M-style span targets).
        stop: Id that ends a sequence (the closing sentinel ``[S_2]``).
        max_tokens: At most this many tokens are generated.
        sampling: Temperature and filters.
        gens: One generator per sample.
        device: Where the ids live.

    Returns:
        (B, n) generated ids without ``start``; samples that stopped early are padded with ``stop``.
    """
    out = torch.full((len(gens), 1), start, dtype=torch.long, device=device)
    done = torch.zeros(len(gens), dtype=torch.bool, device=device)
    for _ in range(max_tokens):
        last = logits_fn(out)[:, -1:]  # (B, 1, V)
        token, _ = sample(last, sampling, gens)
        token = torch.where(done[:, None], torch.full_like(token, stop), token)
        out = torch.cat([out, token], dim=1)
        done |= token[:, 0] == stop
        if bool(done.all()):
            break
    return out[:, 1:]
