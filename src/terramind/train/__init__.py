"""Training: masked-token pretraining and tokenizer training on PyTorch Lightning, and the CPU proof."""

from terramind.train.config import (
    DataSection,
    MaskingSection,
    ModalityEntry,
    ModelSection,
    OptimSection,
    PretrainConfig,
    TrainerSection,
    load_yaml,
)
from terramind.train.pretrain import MaskDrawer, PretrainModule, pretrain
from terramind.train.tokenizer import (
    TokenizerModule,
    TokenizerTrainConfig,
    load_trained_tokenizer,
    train_tokenizer,
)

__all__ = [
    "DataSection",
    "MaskDrawer",
    "MaskingSection",
    "ModalityEntry",
    "ModelSection",
    "OptimSection",
    "PretrainConfig",
    "PretrainModule",
    "TokenizerModule",
    "TokenizerTrainConfig",
    "TrainerSection",
    "load_trained_tokenizer",
    "load_yaml",
    "pretrain",
    "train_tokenizer",
]
