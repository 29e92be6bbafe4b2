"""Random disjoint input and target positions for one image modality (4M, arXiv 2312.06647)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terramind.core.errors import InputError


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class ImageMask:
    """Which patch positions of one image modality are inputs and which are targets.

    Attributes:
        num_tokens: Positions in the grid (row-major, ``h * w``).
        input_positions: Sorted input positions (read-only int64 array).
        target_positions: Target positions in random order (read-only int64 array); never inputs.
    """

    num_tokens: int
    input_positions: np.ndarray
    target_positions: np.ndarray

    @property
    def input_mask(self) -> np.ndarray:
        """Boolean ``(num_tokens,)``; True where the position is an encoder input."""
        mask = np.zeros(self.num_tokens, dtype=bool)
        mask[self.input_positions] = True
        return mask


def image_mask(num_tokens: int, num_inputs: int, num_targets: int, rng: np.random.Generator) -> ImageMask:
    """Pick disjoint random input and target positions.

    One permutation serves both: its first ``num_inputs`` entries are inputs, the next ``num_targets``
    targets, so they can never overlap.

    Args:
        num_tokens: Positions in the grid.
        num_inputs: Input positions to pick.
        num_targets: Target positions to pick.
        rng: Source of randomness.

    Returns:
        The mask.
    """
    if num_inputs < 0 or num_targets < 0 or num_inputs + num_targets > num_tokens:
        raise InputError(
            f"cannot pick {num_inputs} inputs and {num_targets} targets from {num_tokens} positions"
        )
    order = rng.permutation(num_tokens)
    return ImageMask(
        num_tokens=num_tokens,
        input_positions=_frozen(np.sort(order[:num_inputs])),
        target_positions=_frozen(order[num_inputs : num_inputs + num_targets].copy()),
    )
