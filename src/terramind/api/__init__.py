"""The public verbs: create a backbone, a full model, a tokenizer or a generator; generate a scene."""

from terramind.api.generation import create_generator
from terramind.api.models import create_backbone, create_model
from terramind.api.scene import generate_scene
from terramind.api.tokenizers import create_coords_tokenizer, create_tokenizer

__all__ = [
    "create_backbone",
    "create_coords_tokenizer",
    "create_generator",
    "create_model",
    "create_tokenizer",
    "generate_scene",
]
