from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from terramind.core.errors import InputError
from terramind.evaluate.embeddings import embed_batches, read_embeddings, write_embeddings


class _Tokens(nn.Module):
    """Two 'blocks': (B, C, H, W) -> tokens of 4 positions x C features."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        x = inputs["S2L2A"].flatten(2).transpose(1, 2)[:, :4]  # (B, 4, C)
        return [x * 0, x]


def test_mean_pooling_and_tokens() -> None:
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    batches = [{"S2L2A": x[:1]}, {"S2L2A": x[1:]}]
    mean = embed_batches(_Tokens(), batches)
    assert mean.shape == (2, 3)
    assert np.allclose(mean, x.flatten(2).mean(-1).numpy())
    tokens = embed_batches(_Tokens(), batches, pooling="tokens")
    assert tokens.shape == (2, 4, 3)
    assert not embed_batches(_Tokens(), batches, layer=0).any()


def test_npy_round_trip_keeps_names(tmp_path: Path) -> None:
    array = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    out = write_embeddings(tmp_path / "e.npy", ["a", "b", "c"], array)
    assert (tmp_path / "e.names.txt").read_text().split() == ["a", "b", "c"]
    names, back = read_embeddings(out)
    assert names == ["a", "b", "c"] and np.array_equal(back, array)


def test_parquet_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    array = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    names, back = read_embeddings(write_embeddings(tmp_path / "e.parquet", ["x", "y"], array))
    assert names == ["x", "y"] and np.allclose(back, array)


def test_bad_outputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"must end in \.npy or \.parquet"):
        write_embeddings(tmp_path / "e.csv", ["a"], np.zeros((1, 2)))
    with pytest.raises(InputError, match="2 names for 1 embeddings"):
        write_embeddings(tmp_path / "e.npy", ["a", "b"], np.zeros((1, 2)))
    np.save(tmp_path / "lonely.npy", np.zeros((1, 2)))
    with pytest.raises(InputError, match=r"lonely\.names\.txt"):
        read_embeddings(tmp_path / "lonely.npy")
