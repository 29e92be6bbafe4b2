"""Token sampling: top-k / top-p filtering, temperature, and seeded per-sample random draws.

Order of operations follows the reference sampler (parity tests): top-k and top-p filter the **unscaled**
logits, then ``softmax(logits / temperature)`` is sampled; temperature 0 selects the argmax. All randomness
comes from explicit CPU ``torch.Generator`` objects, one per sample, so a sample's result never depends on the
batch it was generated in nor on the device: uniform numbers are drawn on the CPU and turned into token ids
by inverse-CDF lookup on the logits' device.

It lives in ``layers``, below ``generation`` and everything built on it (``tim`` decodes through generation's
strategies and this sampler), so there is one filter and one tempered distribution in the code base.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from terramind.core.errors import InputError

GREEDY_EPS = 1e-10  # temperatures within this of 0 select the argmax (as the reference's np.isclose)


@dataclass(frozen=True)
class SamplingConfig:
    """How one token distribution is turned into a choice.

    Attributes:
        temperature: Softmax temperature; 0 is greedy (argmax).
        top_k: Keep only the k most likely tokens (0: off).
        top_p: Keep the smallest set of tokens whose probability mass reaches p (0 or 1: off).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.8

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InputError(f"top_p must lie in [0, 1] (0 = off), got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """True when tokens are chosen by argmax."""
        return self.temperature < GREEDY_EPS


def derive_seed(seed: int, *parts: object) -> int:
    """Derive a 63-bit seed from ``seed`` and labels (sample index, purpose), stable across runs.

    Hashing instead of ``seed + i`` keeps the streams of neighbouring samples and purposes unrelated.
    """
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def fresh_seed() -> int:
    """Draw a new seed from the operating system, for calls given none.

    Torch's global generator stays untouched, so no caller's random stream shifts.
    """
    return random.SystemRandom().randrange(2**62)


def generators(seed: int, indices: Sequence[int], purpose: str) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``(seed, sample index, purpose)``."""
    return [torch.Generator().manual_seed(derive_seed(seed, i, purpose)) for i in indices]


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set logits outside the top-k / top-p nucleus to ``-inf`` (on a copy), along the last axis.

    The most likely token always survives; top-p keeps tokens up to and including the first one that
    brings the cumulative probability above ``p``.
    """
    out = logits.clone()
    if top_k > 0:
        k = min(top_k, out.shape[-1])
        kth = torch.topk(out, k, dim=-1).values[..., -1:]
        out[out < kth] = float("-inf")
    if 0.0 < top_p < 1.0:  # 1 keeps every token (a cumulative sum can round past 1)
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        cum = torch.cumsum(torch.softmax(sorted_logits.float(), dim=-1), dim=-1)
        drop = cum > top_p
        drop[..., 1:] = drop[..., :-1].clone()  # shift right: keep the token that crosses p
        drop[..., 0] = False
        out[torch.zeros_like(drop).scatter(-1, order, drop)] = float("-inf")
    return out


def probabilities(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Return the distribution tokens are drawn from: filtered, then tempered softmax (float32)."""
    filtered = filter_logits(logits.float(), cfg.top_k, cfg.top_p)
    return torch.softmax(filtered / cfg.temperature, dim=-1)


def sample(
    logits: torch.Tensor, cfg: SamplingConfig, gens: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per position.

    Args:
        logits: (B, n, V) unscaled logits.
        cfg: Temperature and filtering.
        gens: One generator per batch row (unused when greedy).

    Returns:
        ``(ids (B, n) long, probs (B, n))``: the chosen tokens and their probability under the sampling
        distribution (1 for greedy choices, as in the reference's MaskGIT ranking).
    """
    if cfg.greedy:
        ids = logits.argmax(-1)
        return ids, torch.ones(ids.shape, dtype=torch.float32, device=logits.device)
    if len(gens) != logits.shape[0]:
        raise ValueError(f"need one generator per sample: {len(gens)} for batch {logits.shape[0]}")
    probs = probabilities(logits, cfg)
    b, n, _ = probs.shape
    u = torch.stack([torch.rand(n, generator=g, dtype=torch.float64) for g in gens]).to(probs.device)
    cdf = torch.cumsum(probs.double(), dim=-1)  # (B, n, V)
    u = u * cdf[..., -1]  # scale into the total mass so rounding never runs past the last token
    ids = torch.searchsorted(cdf, u.unsqueeze(-1)).squeeze(-1).clamp_max(probs.shape[-1] - 1)
    # a zero-probability token can only be hit on exact ties: step back to the nearest allowed one
    chosen = probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    if bool((chosen == 0).any()):
        ids = torch.where(chosen == 0, probs.argmax(-1), ids)
        chosen = probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return ids.reshape(b, n), chosen
