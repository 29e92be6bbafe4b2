"""Public verb for any-to-any generation: ``create_generator``."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import torch

from terramind.api.models import create_model
from terramind.api.tokenizers import create_tokenizer
from terramind.checkpoints.tokenizers import TOKENIZERS, Weights, resolve_tokenizer_weights
from terramind.core.errors import CheckpointError
from terramind.generation.generate import Generator, check_modalities, needed_tokenizers, prune_embeddings
from terramind.modalities import get_modality
from terramind.tokenizers.base import Tokenizer, TokenizerLoader

TokenizerWeights = str | os.PathLike[str] | Mapping[str, Weights] | None
"""``None`` (random), ``"hub"``, a folder holding the release files, or a path per modality."""


def create_generator(
    name: str = "terramind_v1_base",
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    weights: Weights = None,
    tokenizer_weights: TokenizerWeights = None,
    keep_decoders: bool = False,
) -> Generator:
    """Create a generator from TerraMind and only the tokenizers it needs.

    Example::

        gen = create_generator("terramind_v1_base", inputs=["S2L2A"], outputs=["LULC", "S1RTC"],
                               weights="hub", tokenizer_weights="hub")
        out = gen.generate({"S2L2A": s2}, seed=0)   # s2: (B, 12, 224, 224) reflectance DN
        from terramind.generation import GenerationOptions   # how to decode: one record
        out = gen.generate({"S2L2A": s2}, GenerationOptions(steps=4, temperature=0.5), seed=0)
        out["LULC"]  # (B, 1, 224, 224) class ids 0-9;  out["S1RTC"]: (B, 2, 224, 224) dB

    The decoders of the outputs are built without their encoders and, by default, loaded only while they
    decode: peak memory holds one decoder (about 1.1 GB for a diffusion decoder, weights and file pages
    while loading), not all of them. For many calls (a loop over tiles) pass ``keep_decoders=True`` or
    call ``gen.keep_loaded()``, so they are not read again each call.

    Args:
        name: Model size (``terramind_v1_tiny``/``small``/``base``/``large``).
        inputs: Modalities that will be given (S2L2A, S2L1C, S2RGB, S1GRD, S1RTC, DEM, LULC, NDVI, coords).
        outputs: Modalities to generate, in order (S2L2A, S1GRD, S1RTC, DEM, LULC, NDVI, coords).
        weights: Model weights: None (random, untrained), ``"hub"`` or a local file.
        tokenizer_weights: None (random), ``"hub"``, a folder with the release files
            (``TerraMind_Tokenizer_<MOD>.pt``, coords ``config.json``), or a mapping modality -> path.
            Random decoders are seeded per modality, so a decoder loaded twice is the same decoder.
        keep_decoders: Keep every output decoder in memory between calls (faster, more memory).

    Returns:
        A :class:`~terramind.generation.generate.Generator`.

    Raises:
        ModalityError: An output that cannot be generated, or an output that is also an input.
        CheckpointError: Weights that cannot be found or loaded.
    """
    given, _ = check_modalities(inputs, outputs)  # fail before loading gigabytes
    given_names = {spec.name for spec in given}
    tokenizers: dict[str, Tokenizer] = {}
    loaders: dict[str, TokenizerLoader] = {}
    for modality in needed_tokenizers(inputs, outputs):
        weights_file = _tokenizer_file(modality, tokenizer_weights)
        if modality in given_names or modality == "coords":  # encodes inputs, or a small vocabulary
            tokenizers[modality] = create_tokenizer(modality, weights=weights_file)
        else:  # an output is only decoded; "hub" is fetched once here, not at every load
            loaders[modality] = partial(_decoder, modality, resolve_tokenizer_weights(modality, weights_file))
    model = prune_embeddings(create_model(name, weights=weights), inputs, outputs)
    generator = Generator(model, tokenizers, inputs=inputs, outputs=outputs, loaders=loaders)
    return generator.keep_loaded() if keep_decoders else generator


def _decoder(modality: str, weights: Weights) -> Tokenizer:
    """Load a decode-only tokenizer; random weights come from a seed of the modality, the same every call."""
    if weights is not None:
        return create_tokenizer(modality, weights=weights, decode_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(modality.encode()))
        return create_tokenizer(modality, weights=None, decode_only=True)


def _tokenizer_file(modality: str, weights: TokenizerWeights) -> Weights:
    """Pick the weights argument of one tokenizer from the generator's ``tokenizer_weights``."""
    if isinstance(weights, Mapping):
        given = {get_modality(k).name: v for k, v in weights.items()}
        if modality in given:
            return given[modality]
        if modality == "coords":
            return "hub"  # a vocabulary, not weights: there is no random version of it
        raise CheckpointError(
            f"tokenizer_weights has no entry for {modality}: add {modality!r}: 'hub' or a file "
            f"(None for random weights)"
        )
    if weights is None and modality == "coords":
        return "hub"  # a vocabulary, not weights: there is no random version of it
    if weights is None or os.fspath(weights) == "hub" or not Path(weights).is_dir():
        return weights
    path = Path(weights) / TOKENIZERS[modality].hub.filename
    if not path.exists():
        filename = TOKENIZERS[modality].hub.filename
        raise CheckpointError(f"{str(weights)!r} has no {filename} for the {modality} tokenizer")
    return path
