"""The TerraMind transformer: configurations, embeddings, encoder-decoder and backbone."""

from terramind.model.backbone import MERGE_METHODS, TerraMindBackbone
from terramind.model.config import BASE, CONFIGS, LARGE, SMALL, TINY, TerraMindConfig
from terramind.model.terramind import (
    ALL_DECODER_KEYS,
    ALL_ENCODER_KEYS,
    Encoded,
    TerraMind,
    TerraMindEncoder,
    init_weights,
)

__all__ = [
    "ALL_DECODER_KEYS",
    "ALL_ENCODER_KEYS",
    "BASE",
    "CONFIGS",
    "LARGE",
    "MERGE_METHODS",
    "SMALL",
    "TINY",
    "Encoded",
    "TerraMind",
    "TerraMindBackbone",
    "TerraMindConfig",
    "TerraMindEncoder",
    "init_weights",
]
