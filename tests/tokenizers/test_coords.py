"""Coordinate tokenizer with a small WordPiece vocabulary of the release's form."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tokenizers.decoders import WordPiece as WordPieceDecoder
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from terramind.core.errors import CheckpointError, InputError
from terramind.tokenizers import CoordsTokenizer
from terramind.tokenizers.coords import SPECIAL_TOKENS
from tokenizers import AddedToken, Tokenizer


def grid(lo: float, hi: float) -> list[float]:
    return [lo + 0.25 * i for i in range(int((hi - lo) / 0.25) + 1)]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Special tokens 0-6, then whole-word lat=/lon= entries on the 0.25 degree grid of a small region."""
    words = [f"lat={v:.2f}" for v in grid(-1.0, 2.0)] + [f"lon={v:.2f}" for v in grid(-2.0, 1.0)]
    vocab = {w: i for i, w in enumerate((*SPECIAL_TOKENS, *words))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = BertNormalizer()
    tok.pre_tokenizer = BertPreTokenizer()
    tok.decoder = WordPieceDecoder()
    tok.add_tokens([AddedToken(w, normalized=False, special=True) for w in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(w, normalized=False) for w in words])
    path = tmp_path_factory.mktemp("coords") / "config.json"
    tok.save(str(path))
    return path


def test_round_trip_snaps_to_quarter_degrees(vocab_file: Path) -> None:
    tok = CoordsTokenizer.from_file(vocab_file)
    lonlat = torch.tensor([[0.6, -0.9], [-1.88, 1.13]])
    ids = tok.encode(lonlat)
    assert ids.shape == (2, 3) and ids.dtype == torch.long
    assert ids[:, 2].tolist() == [3, 3]  # [EOS]
    assert tok.tokenizer.id_to_token(int(ids[0, 0])) == "lat=-1.00"
    assert torch.equal(tok.decode(ids), torch.tensor([[0.5, -1.0], [-2.0, 1.25]]))


def test_decode_of_garbage_is_nan(vocab_file: Path) -> None:
    tok = CoordsTokenizer.from_file(vocab_file)
    out = tok.decode(torch.tensor([[3, 3, 0], [8, 8, 3]]))
    assert all(math.isnan(v) for v in out.flatten().tolist())


def test_bad_coordinates(vocab_file: Path) -> None:
    tok = CoordsTokenizer.from_file(vocab_file)
    with pytest.raises(InputError, match=r"\(B, 2\)"):
        tok.encode(torch.zeros(2, 3))
    with pytest.raises(InputError, match="lat in"):
        tok.encode(torch.tensor([[0.0, 95.0]]))


def test_missing_vocabulary_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        CoordsTokenizer.from_file(tmp_path / "nope.json")
