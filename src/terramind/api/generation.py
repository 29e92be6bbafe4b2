"""Public verb for any-to-any generation: ``create_generator``."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from terramind.api.models import create_model
from terramind.api.tokenizers import create_coords_tokenizer, create_tokenizer
from terramind.build import Weights, WeightsSpec, resolve_tokenizer_weights, tokenizer_weights_for
from terramind.generation.generate import Generator, check_modalities, needed_tokenizers, prune_embeddings
from terramind.tokenizers.base import Tokenizer, TokenizerLoader


def create_generator(
    name: str = "terramind_v1_base",
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    weights: Weights = None,
    tokenizer_weights: WeightsSpec = None,
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
        weights: Model weights: None or ``"random"`` (untrained, seeded from ``name``), ``"hub"``, a local
            file, or a folder holding the release file.
        tokenizer_weights: None or ``"random"`` (untrained, seeded per modality), ``"hub"``, a folder with the
            release files (``TerraMind_Tokenizer_<MOD>.pt``, coords ``config.json``), or a mapping modality
            -> one of these that names every tokenizer needed. The coordinate tokenizer is a vocabulary, not
            weights: with random weights (or no mapping entry) it comes from the hub. Random weights are
            the same on every load and in every process, so results depend only on ``seed``.
        keep_decoders: Keep every output decoder in memory between calls (faster, more memory).

    Returns:
        A :class:`~terramind.generation.generate.Generator`.

    Raises:
        ModalityError: An output that cannot be generated, or an output that is also an input.
        CheckpointError: Weights that cannot be found or loaded, or a mapping without a needed entry.
    """
    given, _ = check_modalities(inputs, outputs)  # fail before loading gigabytes
    given_names = {spec.name for spec in given}
    tokenizers: dict[str, Tokenizer] = {}
    loaders: dict[str, TokenizerLoader] = {}
    for modality in needed_tokenizers(inputs, outputs):
        entry = tokenizer_weights_for(tokenizer_weights, modality)
        if modality == "coords":  # a small vocabulary
            tokenizers[modality] = create_coords_tokenizer(entry)
        elif modality in given_names:  # encodes inputs: resident, with its encoder
            tokenizers[modality] = create_tokenizer(modality, weights=entry)
        else:  # an output is only decoded; "hub" is fetched once here, not at every load
            path = resolve_tokenizer_weights(modality, entry)
            loaders[modality] = partial(create_tokenizer, modality, weights=path, decode_only=True)
    model = prune_embeddings(create_model(name, weights=weights), inputs, outputs)
    generator = Generator(model, tokenizers, inputs=inputs, outputs=outputs, loaders=loaders)
    return generator.keep_loaded() if keep_decoders else generator
