from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.core.errors import InputError
from terramind.data.tiles import GeoTiffDataset, modality_inputs
from terramind.evaluate.embeddings import embed_batches
from terramind.evaluate.fewshot import few_shot, prototype_predict
from terramind.model import TINY, TerraMindBackbone

NAMES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]


def _clusters(n_classes: int, per_class: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_classes, 16))
    labels = np.repeat(np.arange(n_classes), per_class)
    return centres[labels] + rng.normal(0, spread, (len(labels), 16)), labels


def test_prototypes_pick_the_nearest_class_mean() -> None:
    support = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0]])
    labels = np.array([0, 0, 1])
    query = np.array([[0.0, 1.0], [6.0, 0.0]])
    assert prototype_predict(support, labels, query, "euclidean").tolist() == [0, 1]
    # cosine looks at directions only: (1, 0.1) points like class 1's prototype (10, 0)
    assert prototype_predict(support, labels, np.array([[1.0, 0.1]]), "cosine").tolist() == [1]


def test_separable_classes_are_solved_and_random_labels_are_at_chance() -> None:
    x, y = _clusters(8, 20, spread=0.05)
    easy = few_shot(x, y, n_way=5, k_shot=1, episodes=50)
    assert easy.mean > 0.99
    shuffled = np.random.default_rng(1).permutation(y)
    chance = few_shot(x, shuffled, n_way=5, k_shot=1, episodes=200)
    assert abs(chance.mean - 0.2) < 0.05
    spread = np.std(chance.accuracies, ddof=1)
    assert chance.ci95 == pytest.approx(1.96 * spread / math.sqrt(200))


def test_too_few_classes_is_an_error() -> None:
    x, y = _clusters(3, 5, spread=0.1)
    with pytest.raises(InputError, match="5-way 1-shot needs 5 classes"):
        few_shot(x, y, n_way=5)


def test_quadrants_of_real_tiles_are_recognised(examples_dir: Path) -> None:
    """Real data: each example tile is a class, its four 112 px quadrants the samples."""
    files = [{"S2L2A": examples_dir / "S2L2A" / f"{n}.tif"} for n in NAMES]
    dataset = GeoTiffDataset(files, modality_inputs(["S2L2A"], {}, {}, {}, {}))
    torch.manual_seed(0)
    backbone = TerraMindBackbone(replace(TINY, encoder_depth=2), ["S2L2A"])
    quads = [
        dataset[i]["inputs"]["S2L2A"][:, r : r + 112, c : c + 112]
        for i in range(len(NAMES))
        for r in (0, 112)
        for c in (0, 112)
    ]
    emb = embed_batches(backbone, [{"S2L2A": torch.stack(quads)}])
    assert emb.shape == (20, 192)
    result = few_shot(emb, np.repeat(np.arange(5), 4), n_way=5, k_shot=1, n_query=3, episodes=100)
    assert result.mean > 0.5  # chance is 0.2


def test_nonfinite_rows_are_refused_or_skipped(caplog: pytest.LogCaptureFixture) -> None:
    x, y = _clusters(5, 6, spread=0.1)
    x[[2, 9]] = np.nan
    names = [f"tile_{i}" for i in range(len(x))]
    with pytest.raises(InputError, match=r"2 embedding row\(s\) hold NaN/inf: \['tile_2', 'tile_9'\]"):
        few_shot(x, y, n_query=2, episodes=5, names=names)
    result = few_shot(x, y, n_query=2, episodes=5, names=names, skip_bad=True)
    assert math.isfinite(result.mean) and "tile_2" in caplog.text


def test_meaningless_embeddings_and_episodes_are_refused() -> None:
    x, y = _clusters(5, 6, spread=0.1)
    with pytest.raises(InputError, match="identical"):
        few_shot(np.ones_like(x), y, n_query=2)
    with pytest.raises(InputError, match="hold no vectors"):
        few_shot(np.zeros((len(x), 0)), y, n_query=2)
    with pytest.raises(InputError, match=r"at least 7 samples each \(1 shot\(s\) \+ 6 queries\).*0: 6"):
        few_shot(x, y, n_query=6)  # 6 per class: one shot and six queries do not fit
    with pytest.raises(InputError, match="at least 1"):
        few_shot(x, y, n_query=0)


def test_one_episode_has_no_interval() -> None:
    x, y = _clusters(5, 6, spread=0.1)
    result = few_shot(x, y, n_query=2, episodes=1)
    assert result.ci95 is None and "95% CI undefined" in str(result)
    assert few_shot(x, y, n_query=2, episodes=3).ci95 is not None
