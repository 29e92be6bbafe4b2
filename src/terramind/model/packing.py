"""Packing a per-sample subset of tokens into a dense, padded batch (the reference's layout).

When each sample keeps a different number of input tokens, the kept tokens move to the front in their
original order (what the official model's stable sort does) and the batch is padded to the largest count.
"""

from __future__ import annotations

import torch
from einops import repeat


def pack(
    x: torch.Tensor, emb: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the tokens marked in ``keep``, per sample, front-aligned and zero-padded.

    Args:
        x: Token contents (B, N, D).
        emb: Position plus modality embeddings (B, N, D).
        keep: (B, N) bool, True = keep.

    Returns:
        ``x`` and ``emb`` (B, n, D) with n the largest per-sample count (padding zeroed), and the (B, n) mask
        of real tokens, or None when no sample needed padding.
    """
    counts = keep.sum(1)  # (B,)
    n = int(counts.max())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :n]  # (B, n) kept first
    index = repeat(order, "b n -> b n d", d=x.shape[-1])
    x, emb = x.gather(1, index), emb.gather(1, index)
    real = torch.arange(n, device=x.device)[None] < counts[:, None]  # (B, n)
    if bool(real.all()):
        return x, emb, None
    pad = ~real[..., None]
    return x.masked_fill(pad, 0.0), emb.masked_fill(pad, 0.0), real
