"""Public verbs for the transformer: ``create_backbone`` (features for fine-tuning) and ``create_model``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from terramind.checkpoints.models import (
    Weights,
    load_backbone_weights,
    load_model_weights,
    model_record,
    read_weights,
)
from terramind.core.errors import ModalityError
from terramind.model import TerraMind, TerraMindBackbone
from terramind.model.embeddings import PixelEmbedding

ModalityEntry = str | Mapping[str, int]


def create_backbone(
    name: str,
    modalities: Sequence[ModalityEntry] | ModalityEntry,
    *,
    weights: Weights = None,
    merge: str | None = "mean",
    bands: Mapping[str, Sequence[str]] | None = None,
) -> TerraMindBackbone:
    """Create a TerraMind encoder that returns the features of every block.

    Call the result on ``{modality: tensor}``: standardized images (B, C, H, W) with H, W multiples of 16
    for raw modalities, token ids (B, H/16, W/16) for LULC and NDVI (the backbone runs no tokenizer), ids
    (B, L) for coords. It returns a list with one tensor per encoder block, the last after the final norm.

    Args:
        name: ``terramind_v1_tiny``, ``_small``, ``_base`` or ``_large``.
        modalities: Modality names (``"S2L2A"``, ``"S1RTC"``, ``"DEM"``, ``"LULC"``, aliases work) and
            ``{"NAME": channels}`` entries for new pixel modalities (freshly initialised).
        weights: None (random init), ``"hub"`` (official file) or a path to an official file, a backbone
            state dict or a saved model.
        merge: ``"mean"`` (default) or ``"max"`` over image modalities, ``"concat"`` along features,
            ``"dict"`` (name -> tokens) or None (all tokens in input order).
        bands: ``{"S2L2A": [band names]}``: adapt a patch embedding to a band subset/order by name, copying
            the pretrained columns of known bands.

    Returns:
        The backbone (``nn.Module``); ``out_channels`` lists the feature width per block.

    Raises:
        InputError: Unknown model name.
        ModalityError: Unknown modality or band.
        CheckpointError: Unreadable weights, another model size, or missing keys.
    """
    record = model_record(name)
    entries = [modalities] if isinstance(modalities, (str, Mapping)) else list(modalities)
    backbone = TerraMindBackbone(record.config, entries, merge=merge)
    loaded = read_weights(record, weights)
    pending = dict(bands or {})
    if loaded is not None:
        state_dict, what = loaded
        # a saved backbone whose bands were already adapted holds the narrower patch embedding
        for mod in [m for m in pending if _holds_adapted(backbone, state_dict, m, pending[m])]:
            backbone.select_bands(mod, pending.pop(mod))
        load_backbone_weights(backbone, state_dict, what)
    for mod, band_names in pending.items():
        backbone.select_bands(mod, band_names)
    return backbone


def _holds_adapted(
    backbone: TerraMindBackbone, state_dict: Mapping[str, torch.Tensor], modality: str, bands: Sequence[str]
) -> bool:
    key = backbone.key_of(modality)
    weight = state_dict.get(f"encoder_embeddings.{key}.proj.weight")
    module = backbone.encoder_embeddings[key]
    if not isinstance(module, PixelEmbedding):
        raise ModalityError(f"{modality} is not a pixel modality: bands can only be selected for raw images")
    pixels = backbone.config.patch_size**2
    return weight is not None and weight.shape[1] == pixels * len(bands) != pixels * module.channels


def create_model(name: str, *, weights: Weights = None) -> TerraMind:
    """Create the full TerraMind encoder-decoder (all 13 input and 7 output embeddings of v1).

    Use ``encode`` on inputs keyed by official keys (``untok_sen2l2a@224``, ``tok_lulc@224``, ``coords``)
    and ``decode_logits`` / ``decode_sequence_logits`` for target tokens.

    Args:
        name: ``terramind_v1_tiny``, ``_small``, ``_base`` or ``_large``.
        weights: None (random init), ``"hub"`` or a path to an official file or our own saved model.

    Returns:
        The model in eval mode.

    Raises:
        InputError: Unknown model name.
        CheckpointError: Unreadable weights, another size, or missing/unused keys.
    """
    record = model_record(name)
    model = TerraMind(record.config)
    loaded = read_weights(record, weights)
    if loaded is not None:
        load_model_weights(model, *loaded)
    return model.eval()
