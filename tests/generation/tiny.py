"""Tiny random TerraMind + tokenizers for fast generation tests (seconds, not minutes, on 2 CPU cores)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from terramind.generation.generate import Generator, needed_tokenizers
from terramind.modalities import get_modality
from terramind.model import TerraMind, TerraMindConfig
from terramind.tokenizers import TokenizerConfig, UNetConfig, ViTConfig, build_tokenizer
from terramind.tokenizers.image import LEVELS_4375, LEVELS_15360

TINY_MODEL = TerraMindConfig("terramind_test_tiny", 32, 1, 1, 2, "gelu", 64, True, True, True)
TINY_VIT = ViTConfig(dim=32, depth=1, heads=2)
TINY_UNET = UNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), groups=4)


def tiny_tokenizer(name: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised down-sized image tokenizer; every parameter perturbed so outputs vary."""
    spec = get_modality(name)
    lulc = spec.classes is not None
    cfg = TokenizerConfig(
        spec.name,
        10 if lulc else spec.num_bands,
        LEVELS_4375 if lulc else LEVELS_15360,
        encoder=TINY_VIT,
        decoder=TINY_VIT if lulc else TINY_UNET,
        classes=10 if lulc else None,
    )
    torch.manual_seed(seed)
    tok = build_tokenizer(cfg)
    with torch.no_grad():  # the zero-initialised output conv would make every decode exactly 0
        for p in tok.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return tok.eval()


def tiny_model(inputs: Sequence[str], outputs: Sequence[str], seed: int = 0) -> TerraMind:
    """A random TerraMind with only the embeddings these modalities need (chaining included)."""
    enc = []
    for name in inputs:
        spec = get_modality(name)
        enc.append(spec.pixel_key if spec.pixel_key and spec.input_kind.value == "pixel" else spec.token_key)
    enc += [get_modality(m).token_key for m in outputs]
    dec = [get_modality(m).token_key for m in outputs]
    torch.manual_seed(seed)
    return TerraMind(TINY_MODEL, encoder_keys=list(dict.fromkeys(enc)), decoder_keys=dec).eval()


def tiny_generator(inputs: Sequence[str], outputs: Sequence[str], seed: int = 0) -> Generator:
    """A :class:`Generator` over the tiny model and tiny tokenizers."""
    names = [m for m in needed_tokenizers(inputs, outputs) if m != "coords"]
    toks = {m: tiny_tokenizer(m, seed + i) for i, m in enumerate(names)}
    return Generator(tiny_model(inputs, outputs, seed), toks, inputs=inputs, outputs=outputs)
