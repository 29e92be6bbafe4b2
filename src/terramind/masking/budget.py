"""Token budgets: how many input and target tokens each modality gets, drawn from Dirichlet distributions.

This is the 4M recipe (arXiv 2312.06647) that TerraMind's pretraining derives from: per sample,
pick a mixture component, draw modality proportions ``p ~ Dir(alpha)``, take ``floor(p * budget)`` tokens
per modality, clamp to what each modality has, and hand the remainder to modalities with room left in
proportion to ``p``. Targets are drawn the same way, but an image modality can only offer the positions its
inputs did not take (inputs and targets of one modality are disjoint).

Everything is pure: randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from terramind.core.errors import InputError

# Added to Dirichlet proportions before sharing a remainder, so a modality whose proportion underflowed
# to 0 (tiny alphas) can still take tokens when it is the only one with room left.
_EPS = 1e-9


class StreamKind(enum.Enum):
    """Whether a stream is a grid of patch positions or a token sequence (span-masked)."""

    IMAGE = "image"
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class Stream:
    """One modality as the masking sees it: a number of token positions and its Dirichlet weights.

    Attributes:
        name: Modality name (any unique string; the trainer maps it to model keys).
        num_tokens: Token positions one sample offers (196 for a 224 px image, ``max_length`` for a sequence).
        input_alpha: Dirichlet concentration as an input; 0 means never an input.
        target_alpha: Dirichlet concentration as a target; 0 means never a target.
        kind: Image (random positions) or sequence (span masking).
    """

    name: str
    num_tokens: int
    input_alpha: float = 0.5
    target_alpha: float = 0.5
    kind: StreamKind = StreamKind.IMAGE

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise InputError(f"stream {self.name!r}: num_tokens must be >= 1, got {self.num_tokens}")
        if self.input_alpha < 0 or self.target_alpha < 0:
            raise InputError(f"stream {self.name!r}: Dirichlet alphas must be >= 0 (0 switches it off)")


@dataclass(frozen=True)
class MixtureComponent:
    """An alternative set of alphas, chosen per sample with probability proportional to ``weight``.

    4M mixes the symmetric Dirichlet with components such as "RGB -> all" (one modality only as input).

    Attributes:
        weight: Relative probability of the component.
        input_alphas: Input alpha per stream name (streams not named get 0).
        target_alphas: Target alpha per stream name (streams not named get 0).
    """

    weight: float
    input_alphas: Mapping[str, float]
    target_alphas: Mapping[str, float]


@dataclass(frozen=True)
class MaskingConfig:
    """Budgets of one masking scheme.

    Attributes:
        streams: The modalities, in a fixed order.
        num_input_tokens: Encoder tokens per sample.
        num_target_tokens: Decoder (target) tokens per sample.
        mixture: Optional alternative alphas; empty means the streams' own alphas only.
    """

    streams: tuple[Stream, ...]
    num_input_tokens: int
    num_target_tokens: int
    mixture: tuple[MixtureComponent, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names) or not names:
            raise InputError(f"masking streams must be unique and non-empty, got {names}")
        if self.num_input_tokens < 1 or self.num_target_tokens < 0:
            raise InputError("num_input_tokens must be >= 1 and num_target_tokens >= 0")
        for comp in self.mixture:
            unknown = (set(comp.input_alphas) | set(comp.target_alphas)) - set(names)
            if unknown or comp.weight <= 0:
                raise InputError(f"mixture component names unknown streams {sorted(unknown)} or weight <= 0")
        for in_alphas, tgt_alphas in self.components():
            self._check_capacity(in_alphas, tgt_alphas)

    def components(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(input alphas, target alphas) per mixture component, in stream order."""
        if not self.mixture:
            return [
                (
                    np.array([s.input_alpha for s in self.streams]),
                    np.array([s.target_alpha for s in self.streams]),
                )
            ]
        return [
            (
                np.array([c.input_alphas.get(s.name, 0.0) for s in self.streams]),
                np.array([c.target_alphas.get(s.name, 0.0) for s in self.streams]),
            )
            for c in self.mixture
        ]

    def _check_capacity(self, in_alphas: np.ndarray, tgt_alphas: np.ndarray) -> None:
        """Raise when the budgets cannot be met even with every modality present.

        With disjoint inputs and targets per modality the budgets fit iff inputs fit the input-eligible
        modalities, targets fit the target-eligible ones, and both together fit the union.
        """
        sizes = np.array([s.num_tokens for s in self.streams])
        is_seq = np.array([s.kind is StreamKind.SEQUENCE for s in self.streams])
        cap_in, cap_tgt = sizes[in_alphas > 0].sum(), sizes[tgt_alphas > 0].sum()
        # A sequence's input and target are separate token lists, so it offers its length to both.
        either = (in_alphas > 0) | (tgt_alphas > 0)
        cap_any = sizes[either & ~is_seq].sum() + sizes[is_seq & (in_alphas > 0)].sum()
        cap_any += sizes[is_seq & (tgt_alphas > 0)].sum()
        if (
            self.num_input_tokens > cap_in
            or self.num_target_tokens > cap_tgt
            or self.num_input_tokens + self.num_target_tokens > cap_any
        ):
            raise InputError(
                f"token budgets exceed the available tokens: {self.num_input_tokens} inputs (modalities "
                f"offer {cap_in}) and {self.num_target_tokens} targets (offer {cap_tgt}; {cap_any} in all, "
                f"inputs and targets of one modality are disjoint); lower num_input_tokens/"
                f"num_target_tokens or add modalities"
            )


@dataclass(frozen=True)
class Budgets:
    """Input and target token counts per stream for one sample (stream order of the config)."""

    inputs: tuple[int, ...]
    targets: tuple[int, ...]


def split_budget(
    total: int, alphas: np.ndarray, capacity: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Share ``total`` tokens across modalities with Dirichlet proportions, never beyond ``capacity``.

    Args:
        total: Tokens to hand out.
        alphas: Dirichlet concentration per modality (0: takes nothing).
        capacity: Most tokens each modality can take.
        rng: Source of randomness.

    Returns:
        Integer counts; they sum to ``min(total, capacity of the modalities with alpha > 0)``.
    """
    counts = np.zeros(len(alphas), dtype=np.int64)
    active = (alphas > 0) & (capacity > 0)
    if total <= 0 or not active.any():
        return counts
    props = np.zeros(len(alphas))
    props[active] = rng.dirichlet(alphas[active])
    cap = np.where(active, capacity, 0)
    counts = np.minimum(np.floor(props * total).astype(np.int64), cap)
    remainder = min(total, int(cap.sum())) - int(counts.sum())
    while remainder > 0:
        room = cap - counts
        weights = np.where(room > 0, props + _EPS, 0.0)
        extra = rng.multinomial(remainder, weights / weights.sum())
        counts += np.minimum(extra, room)
        remainder = min(total, int(cap.sum())) - int(counts.sum())
    return counts


def draw_budgets(
    config: MaskingConfig, rng: np.random.Generator, available: Sequence[int] | None = None
) -> Budgets:
    """Draw one sample's input and target budgets.

    Args:
        config: The masking scheme.
        rng: Source of randomness.
        available: Tokens each stream actually has in this sample (0: modality missing); defaults to
            ``num_tokens`` of every stream.

    Returns:
        The budgets; inputs sum to ``num_input_tokens`` whenever the present modalities offer that many,
        targets to ``num_target_tokens`` whenever enough positions are left after the inputs (image
        targets never exceed ``available - inputs``).
    """
    sizes = np.array([s.num_tokens for s in config.streams] if available is None else list(available))
    if len(sizes) != len(config.streams) or (sizes < 0).any():
        raise InputError(f"available must give a count >= 0 for each of the {len(config.streams)} streams")
    components = config.components()
    weights = np.array([c.weight for c in config.mixture]) if config.mixture else np.ones(1)
    in_alphas, tgt_alphas = components[int(rng.choice(len(components), p=weights / weights.sum()))]
    inputs = split_budget(config.num_input_tokens, in_alphas, sizes, rng)
    is_seq = np.array([s.kind is StreamKind.SEQUENCE for s in config.streams])
    # Image targets may only use positions the inputs left free; a sequence's target is its own list.
    targets = split_budget(config.num_target_tokens, tgt_alphas, np.where(is_seq, sizes, sizes - inputs), rng)
    return Budgets(inputs=tuple(int(v) for v in inputs), targets=tuple(int(v) for v in targets))
