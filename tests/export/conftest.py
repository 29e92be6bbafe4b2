"""Export tests use down-sized tokenizers (the released ones are 86 M + 200 M parameters)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from tiny_tokenizers import tiny_config

from terramind.api import export as export_module
from terramind.tokenizers import build_tokenizer


@pytest.fixture(autouse=True)
def tiny_tokenizers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_tokenizer`` of the export module builds tiny tokenizers, perturbed so outputs vary."""

    def create(modality: str, *, weights: object = None, decode_only: bool = False) -> torch.nn.Module:
        torch.manual_seed(0)
        tok = build_tokenizer(tiny_config(modality), encoder=not decode_only)
        with torch.no_grad():
            for p in tok.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        return tok.eval()

    monkeypatch.setattr(export_module, "create_tokenizer", create)
