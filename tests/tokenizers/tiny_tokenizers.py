"""Down-sized tokenizer configurations for fast tests (same code paths as the released ones)."""

from __future__ import annotations

from terramind.tokenizers import (
    LEVELS_4375,
    LEVELS_15360,
    TokenizerConfig,
    UNetConfig,
    ViTConfig,
)

TINY_VIT = ViTConfig(dim=32, depth=1, heads=2, grid=4)
TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))


def tiny_config(modality: str, channels: int) -> TokenizerConfig:
    """A tiny DiVAE config, or the tiny ViT-decoder config for LULC."""
    if modality == "LULC":
        return TokenizerConfig("LULC", 10, LEVELS_4375, TINY_VIT, TINY_VIT, classes=10)
    return TokenizerConfig(modality, channels, LEVELS_15360, TINY_VIT, TINY_UNET)
