"""Modality tokenizers: images <-> FSQ token ids (ViT encoder; diffusion or ViT decoder) and coordinates."""

from terramind.tokenizers.base import ImageTokenizerLike, SequenceTokenizerLike, Tokenizer, TokenizerLoader
from terramind.tokenizers.coords import CoordsTokenizer
from terramind.tokenizers.diffusion import ddim_sample, make_scheduler
from terramind.tokenizers.fsq import FSQ
from terramind.tokenizers.image import (
    LEVELS_4375,
    LEVELS_15360,
    DiVAETokenizer,
    ImageTokenizer,
    TokenizerConfig,
    VQVAETokenizer,
    build_tokenizer,
)
from terramind.tokenizers.unet import PatchedUNet, UNetConfig
from terramind.tokenizers.vit import ViTConfig, ViTDecoder, ViTEncoder

__all__ = [
    "FSQ",
    "LEVELS_4375",
    "LEVELS_15360",
    "CoordsTokenizer",
    "DiVAETokenizer",
    "ImageTokenizer",
    "ImageTokenizerLike",
    "PatchedUNet",
    "SequenceTokenizerLike",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerLoader",
    "UNetConfig",
    "VQVAETokenizer",
    "ViTConfig",
    "ViTDecoder",
    "ViTEncoder",
    "build_tokenizer",
    "ddim_sample",
    "make_scheduler",
]
