"""4M-style masking for pretraining: Dirichlet token budgets, disjoint image positions, span masking.

Pure and seeded: every function takes an explicit ``numpy.random.Generator``.
"""

from terramind.masking.budget import (
    Budgets,
    MaskingConfig,
    MixtureComponent,
    Stream,
    StreamKind,
    draw_budgets,
    split_budget,
)
from terramind.masking.image import ImageMask, image_mask
from terramind.masking.masks import (
    ImageBatchMask,
    SequenceBatchMask,
    TokenMasks,
    collate_masks,
    sample_masks,
)
from terramind.masking.sequence import SpanMask, span_mask

__all__ = [
    "Budgets",
    "ImageBatchMask",
    "ImageMask",
    "MaskingConfig",
    "MixtureComponent",
    "SequenceBatchMask",
    "SpanMask",
    "Stream",
    "StreamKind",
    "TokenMasks",
    "collate_masks",
    "draw_budgets",
    "image_mask",
    "sample_masks",
    "span_mask",
    "split_budget",
]
