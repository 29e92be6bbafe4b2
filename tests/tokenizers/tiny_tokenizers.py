"""Down-sized tokenizer configurations for fast tests (same factory and code paths as the released ones)."""

from __future__ import annotations

from terramind.checkpoints.tokenizers import tokenizer_config
from terramind.tokenizers import TokenizerConfig, UNetConfig, ViTConfig

TINY_VIT = ViTConfig(dim=32, depth=1, heads=2, grid=4)
TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))


def tiny_config(modality: str, channels: int | None = None) -> TokenizerConfig:
    """A tiny DiVAE config, or the tiny ViT-decoder config for LULC (catalog facts, tiny networks).

    ``channels``, when given, is checked against the catalog's (the callers state what they build).
    """
    cfg = tokenizer_config(modality, encoder=TINY_VIT, unet=TINY_UNET, vit_decoder=TINY_VIT)
    if channels is not None and channels != cfg.channels:
        raise ValueError(f"{modality} tokenizers take {cfg.channels} channels, not {channels}")
    return cfg
