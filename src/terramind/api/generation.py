"""Public verb for any-to-any generation: ``create_generator``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from terramind.api.models import create_model
from terramind.api.tokenizers import create_tokenizer
from terramind.checkpoints.tokenizers import TOKENIZERS, Weights
from terramind.core.errors import CheckpointError
from terramind.generation.generate import (
    Generator,
    Tokenizer,
    check_modalities,
    needed_tokenizers,
    prune_embeddings,
)
from terramind.tokenizers import ImageTokenizer

TokenizerWeights = str | os.PathLike[str] | Mapping[str, Weights] | None
"""``None`` (random), ``"hub"``, a folder holding the release files, or a path per modality."""


def create_generator(
    name: str = "terramind_v1_base",
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    weights: Weights = None,
    tokenizer_weights: TokenizerWeights = None,
) -> Generator:
    """Create a generator from TerraMind and only the tokenizers it needs.

    Example::

        gen = create_generator("terramind_v1_base", inputs=["S2L2A"], outputs=["LULC", "S1RTC"],
                               weights="hub", tokenizer_weights="hub")
        out = gen.generate({"S2L2A": s2}, seed=0)   # s2: (B, 12, 224, 224) reflectance DN
        out["LULC"]  # (B, 1, 224, 224) class ids 0-9;  out["S1RTC"]: (B, 2, 224, 224) dB

    Args:
        name: Model size (``terramind_v1_tiny``/``small``/``base``/``large``).
        inputs: Modalities that will be given (S2L2A, S2L1C, S2RGB, S1GRD, S1RTC, DEM, LULC, NDVI, coords).
        outputs: Modalities to generate, in order (S2L2A, S1GRD, S1RTC, DEM, LULC, NDVI, coords).
        weights: Model weights: None (random, untrained), ``"hub"`` or a local file.
        tokenizer_weights: None (random), ``"hub"``, a folder with the release files
            (``TerraMind_Tokenizer_<MOD>.pt``, coords ``config.json``), or a mapping modality -> path.

    Returns:
        A :class:`~terramind.generation.generate.Generator`.

    Raises:
        ModalityError: An output that cannot be generated, or an output that is also an input.
        CheckpointError: Weights that cannot be found or loaded.
    """
    given, _ = check_modalities(inputs, outputs)  # fail before loading gigabytes
    tokenizers: dict[str, Tokenizer] = {}
    for modality in needed_tokenizers(inputs, outputs):
        tokenizer = create_tokenizer(modality, weights=_tokenizer_file(modality, tokenizer_weights))
        if isinstance(tokenizer, ImageTokenizer) and modality not in {spec.name for spec in given}:
            tokenizer.drop_encoder()  # an output is only decoded: its encoder would be dead weight
        tokenizers[modality] = tokenizer
    model = prune_embeddings(create_model(name, weights=weights), inputs, outputs)
    return Generator(model, tokenizers, inputs=inputs, outputs=outputs)


def _tokenizer_file(modality: str, weights: TokenizerWeights) -> Weights:
    """Pick the weights argument of one tokenizer from the generator's ``tokenizer_weights``."""
    if isinstance(weights, Mapping):
        return weights.get(modality)
    if weights is None and modality == "coords":
        return "hub"  # a vocabulary, not weights: there is no random version of it
    if weights is None or os.fspath(weights) == "hub" or not Path(weights).is_dir():
        return weights
    path = Path(weights) / TOKENIZERS[modality].hub.filename
    if not path.exists():
        filename = TOKENIZERS[modality].hub.filename
        raise CheckpointError(f"{str(weights)!r} has no {filename} for the {modality} tokenizer")
    return path
