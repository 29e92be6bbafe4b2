"""Few-shot classification on embeddings: N-way K-shot episodes with a nearest-prototype classifier.

The paper's protocol (1-shot 5-way, 200 episodes; Snell et al. 2017 prototypes): each episode draws N
classes, K support and Q query samples per class; a query is assigned to the class whose mean support
embedding (prototype) is nearest. The result is the mean episode accuracy with a 95% normal interval
(1.96 standard errors over episodes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from terramind.core.errors import InputError

log = logging.getLogger(__name__)

Metric = Literal["euclidean", "cosine"]


@dataclass(frozen=True)
class FewShotResult:
    """Accuracy over few-shot episodes.

    Attributes:
        mean: Mean accuracy over episodes.
        ci95: Half-width of the 95% interval of the mean (1.96 standard errors); None (undefined) for a
            single episode.
        accuracies: Accuracy of every episode.
        n_way: Classes per episode.
        k_shot: Support samples per class.
        n_query: Query samples per class.
    """

    mean: float
    ci95: float | None
    accuracies: tuple[float, ...]
    n_way: int
    k_shot: int
    n_query: int

    def __str__(self) -> str:
        return (
            f"{self.n_way}-way {self.k_shot}-shot, {len(self.accuracies)} episodes: "
            f"accuracy {100 * self.mean:.2f}% "
            + (
                f"± {100 * self.ci95:.2f}% (95% CI)"
                if self.ci95 is not None
                else "(95% CI undefined: one episode)"
            )
        )


def prototype_predict(
    support: np.ndarray, support_labels: np.ndarray, query: np.ndarray, metric: Metric
) -> np.ndarray:
    """Label each query with the class of the nearest support prototype.

    Args:
        support: ``(S, D)`` support embeddings.
        support_labels: ``(S,)`` their classes.
        query: ``(Q, D)`` query embeddings.
        metric: ``euclidean`` distance or ``cosine`` similarity.

    Returns:
        ``(Q,)`` predicted classes.
    """
    classes = np.unique(support_labels)
    protos = np.stack([support[support_labels == c].mean(axis=0) for c in classes])  # (N, D)
    if metric == "cosine":
        q = query / np.linalg.norm(query, axis=1, keepdims=True).clip(1e-12)
        p = protos / np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
        return classes[(q @ p.T).argmax(axis=1)]
    dist = ((query[:, None, :] - protos[None, :, :]) ** 2).sum(-1)  # (Q, N)
    return classes[dist.argmin(axis=1)]


def few_shot(
    embeddings: np.ndarray,
    labels: Sequence[int | str] | np.ndarray,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    episodes: int = 200,
    metric: Metric = "euclidean",
    seed: int = 0,
    names: Sequence[str] | None = None,
    skip_bad: bool = False,
) -> FewShotResult:
    """Run N-way K-shot prototype episodes.

    Args:
        embeddings: ``(n, D)`` embeddings (per-token arrays are mean-pooled first).
        labels: ``n`` class labels.
        n_way: Classes per episode.
        k_shot: Support samples per class.
        n_query: Query samples per class (fewer where a class has fewer samples left, at least one).
        episodes: Number of episodes.
        metric: ``euclidean`` or ``cosine``.
        seed: Seed of the episode sampler.
        names: Row names (tile names), for messages.
        skip_bad: Leave out rows with NaN/inf values (logged) instead of refusing.

    Returns:
        The :class:`FewShotResult`.

    Raises:
        InputError: Mismatched lengths; NaN/inf rows (without ``skip_bad``) or zero-width embeddings; fewer
            than ``n_way`` classes with ``k_shot + n_query`` samples (degenerate episodes).
    """
    x, y = _checked(embeddings, labels, names, skip_bad)
    if min(n_way, k_shot, n_query, episodes) < 1:
        raise InputError(
            f"ways, shots, queries and episodes must be at least 1 "
            f"(got {n_way}, {k_shot}, {n_query}, {episodes})"
        )
    classes, counts = np.unique(y, return_counts=True)
    usable = classes[counts >= k_shot + n_query]
    if len(usable) < n_way:
        per_class = ", ".join(
            f"{c}: {n}" for c, n in list(zip(classes.tolist(), counts.tolist(), strict=True))[:10]
        )
        raise InputError(
            f"{n_way}-way {k_shot}-shot needs {n_way} classes with at least {k_shot + n_query} samples "
            f"each ({k_shot} shot(s) + {n_query} queries); {len(usable)} of the {len(classes)} classes "
            f"have that many (samples per class: {per_class}); lower --ways/--shots/--queries or add samples"
        )
    rng = np.random.default_rng(seed)
    accuracies = [_episode(x, y, usable, n_way, k_shot, n_query, metric, rng) for _ in range(episodes)]
    mean = float(np.mean(accuracies))
    ci95 = 1.96 * float(np.std(accuracies, ddof=1)) / math.sqrt(episodes) if episodes > 1 else None
    return FewShotResult(mean, ci95, tuple(accuracies), n_way, k_shot, n_query)


def _checked(
    embeddings: np.ndarray,
    labels: Sequence[int | str] | np.ndarray,
    names: Sequence[str] | None,
    skip_bad: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ``(n, D)`` embeddings and labels, refusing what would make the numbers meaningless."""
    if embeddings.ndim not in (2, 3) or embeddings.shape[-1] == 0 or len(embeddings) == 0:
        raise InputError(
            f"embeddings of shape {embeddings.shape} hold no vectors: expected (n, D) or (n, tokens, D) "
            f"with n, D > 0; embed the tiles again"
        )
    x = embeddings.reshape(len(embeddings), -1, embeddings.shape[-1]).mean(axis=1)  # (n, D)
    y = np.asarray(labels)
    if len(x) != len(y):
        raise InputError(f"{len(y)} labels for {len(x)} embeddings")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        rows = [names[i] if names is not None else str(i) for i in bad[:5].tolist()]
        message = f"{bad.size} embedding row(s) hold NaN/inf: {rows}{' ...' if bad.size > 5 else ''}"
        if not skip_bad:
            raise InputError(f"{message}; check those input tiles (or skip_bad)")
        log.warning("%s: skipped", message)
        keep = np.isfinite(x).all(axis=1)
        x, y = x[keep], y[keep]
    if float(np.ptp(x, axis=0).max(initial=0.0)) == 0.0:
        raise InputError("every embedding is identical: there is nothing to classify; embed the tiles again")
    return x, y


def _episode(
    x: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    n_way: int,
    k_shot: int,
    n_query: int,
    metric: Metric,
    rng: np.random.Generator,
) -> float:
    chosen = rng.choice(classes, size=n_way, replace=False)
    support, query = [], []
    for c in chosen:
        idx = rng.permutation(np.flatnonzero(y == c))
        support.append(idx[:k_shot])
        query.append(idx[k_shot : k_shot + n_query])
    s, q = np.concatenate(support), np.concatenate(query)
    return float((prototype_predict(x[s], y[s], x[q], metric) == y[q]).mean())
