"""Span masking for token sequences (coordinates, captions) with sentinel tokens (4M, arXiv 2312.06647).

A random keep probability decides, token by token, what stays in the input; each run of dropped tokens is
replaced in the input by one sentinel ``[S_k]`` and becomes ``[S_k] dropped tokens`` in the target, which
ends with ``[EOS]``. When the result does not fit the budgets the keep probability moves towards what fits
(times 0.9 per try, as in 4M) and the draw is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terramind.core.errors import InputError
from terramind.modalities.tokens import EOS_ID, SENTINEL_BASE_ID

# Special ids of the official WordPiece vocabularies (tests/tokenizers/test_coords.py).
_MAX_TRIES = 64
_DECAY = 0.9


@dataclass(frozen=True)
class SpanMask:
    """One span-masked sequence.

    Attributes:
        input_ids: Encoder input: kept tokens with one sentinel per dropped span (may be empty).
        target_ids: Decoder target: each sentinel followed by its span, then ``[EOS]`` (empty: no target).
    """

    input_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


def _spans(ids: np.ndarray, dropped: np.ndarray, sentinel_base: int, eos: int) -> SpanMask:
    inputs: list[int] = []
    targets: list[int] = []
    sentinel = sentinel_base
    for i, token in enumerate(ids.tolist()):
        if not dropped[i]:
            inputs.append(token)
            continue
        if i == 0 or not dropped[i - 1]:
            inputs.append(sentinel)
            targets.append(sentinel)
            sentinel += 1
        targets.append(token)
    if targets:
        targets.append(eos)
    return SpanMask(tuple(inputs), tuple(targets))


def span_mask(
    ids: np.ndarray,
    max_inputs: int,
    max_targets: int,
    rng: np.random.Generator,
    *,
    sentinel_base: int = SENTINEL_BASE_ID,
    eos: int = EOS_ID,
) -> SpanMask:
    """Span-mask one sequence within the given budgets.

    Args:
        ids: Token ids of the sequence (without padding).
        max_inputs: Most input tokens (sentinels count).
        max_targets: Most target tokens (sentinels and ``[EOS]`` count).
        rng: Source of randomness.
        sentinel_base: Id of ``[S_0]``; span k uses ``sentinel_base + k``.
        eos: Id of ``[EOS]``.

    Returns:
        The masked sequence; ``len(input_ids) <= max_inputs`` and ``len(target_ids) <= max_targets``.
        If no split fits after repeated tries, both are empty (the modality sits this sample out).
    """
    if max_inputs < 0 or max_targets < 0:
        raise InputError(f"sequence budgets must be >= 0, got {max_inputs} inputs, {max_targets} targets")
    if len(ids) == 0:
        return SpanMask((), ())
    keep = float(rng.uniform())
    for _ in range(_MAX_TRIES):
        result = _spans(ids, rng.uniform(size=len(ids)) >= keep, sentinel_base, eos)
        if len(result.input_ids) <= max_inputs and len(result.target_ids) <= max_targets:
            return result
        if len(result.input_ids) > max_inputs:
            keep *= _DECAY
        else:
            keep = 1.0 - (1.0 - keep) * _DECAY
    return SpanMask((), ())
