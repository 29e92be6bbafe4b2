"""Composition below generation: one weights specification and resolver, one builder per artefact."""

from terramind.build.builders import (
    ModelWeights,
    build_backbone,
    build_coords_tokenizer,
    build_image_tokenizer,
    build_model,
    model_config,
    read_model_weights,
    resolve_tokenizer_weights,
    tokenizer_weights_for,
)
from terramind.build.weights import Weights, WeightsSpec, is_random, pick, resolve, seed_of, seeded

__all__ = [
    "ModelWeights",
    "Weights",
    "WeightsSpec",
    "build_backbone",
    "build_coords_tokenizer",
    "build_image_tokenizer",
    "build_model",
    "is_random",
    "model_config",
    "pick",
    "read_model_weights",
    "resolve",
    "resolve_tokenizer_weights",
    "seed_of",
    "seeded",
    "tokenizer_weights_for",
]
