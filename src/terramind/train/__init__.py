"""Training: masked-token pretraining and tokenizer training on PyTorch Lightning, and the CPU proof.

Names are imported on first use, so that ``terramind.train.objective``, ``losses`` and ``optim`` load
without the data pipeline's libraries (rasterio, webdataset) or Lightning: the GPU proof
(``benchmarks/gpu_pretrain_proof.sh``) runs on a machine that may lack them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataSection": "terramind.train.config",
    "MaskingSection": "terramind.train.config",
    "ModalityEntry": "terramind.train.config",
    "ModelSection": "terramind.train.config",
    "OptimSection": "terramind.train.config",
    "PretrainConfig": "terramind.train.config",
    "TrainerSection": "terramind.train.config",
    "load_yaml": "terramind.train.config",
    "MaskDrawer": "terramind.train.objective",
    "PretrainModule": "terramind.train.pretrain",
    "pretrain": "terramind.train.pretrain",
    "TokenizerModule": "terramind.train.tokenizer",
    "TokenizerTrainConfig": "terramind.train.tokenizer",
    "load_trained_tokenizer": "terramind.train.tokenizer",
    "train_tokenizer": "terramind.train.tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'terramind.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
