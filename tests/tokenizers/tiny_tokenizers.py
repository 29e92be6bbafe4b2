"""Down-sized tokenizer configurations for fast tests (same factory and code paths as the released ones)."""

from __future__ import annotations

from terramind.checkpoints.tokenizers import tokenizer_config
from terramind.tokenizers import TokenizerConfig, UNetConfig, ViTConfig

TINY_VIT = ViTConfig(dim=32, depth=1, heads=2, grid=4)
TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))


def tiny_config(modality: str, channels: int | None = None) -> TokenizerConfig:
    """A tiny DiVAE config, or the tiny ViT-decoder config for LULC (catalog facts, tiny networks).

    ``channels`` is accepted for older callers and not used: the catalog gives the encoder's channels (as
    before, LULC takes its 10 one-hot classes whatever a caller passes).
    """
    del channels
    return tokenizer_config(modality, encoder=TINY_VIT, unet=TINY_UNET, vit_decoder=TINY_VIT)
