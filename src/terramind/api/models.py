"""Public verbs for the transformer: ``create_backbone`` (features for fine-tuning) and ``create_model``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from terramind.build import Weights, build_backbone, build_model
from terramind.modalities import Sensor, using_catalog, with_sensors
from terramind.model import TerraMind, TerraMindBackbone
from terramind.model.backbone import ModalityEntry


def create_backbone(
    name: str,
    modalities: Sequence[ModalityEntry] | ModalityEntry,
    *,
    weights: Weights = None,
    merge: str | None = "mean",
    bands: Mapping[str, Sequence[str]] | None = None,
    encoder_depth: int | None = None,
    sensors: Sequence[Sensor] | None = None,
) -> TerraMindBackbone:
    """Create a TerraMind encoder that returns the features of every block.

    Call the result on ``{modality: tensor}``: standardized images (B, C, H, W) with H, W multiples of 16
    for raw modalities, token ids (B, H/16, W/16) for LULC and NDVI (the backbone runs no tokenizer), ids
    (B, L) for coords. It returns a list with one tensor per encoder block, the last after the final norm;
    ``forward_dict`` returns each block's tokens per modality instead.

    Args:
        name: ``terramind_v1_tiny``, ``_small``, ``_base`` or ``_large``.
        modalities: Modality names (``"S2L2A"``, ``"S1RTC"``, ``"DEM"``, ``"LULC"``, aliases work), names of
            registered sensors (``sensors=`` or an enclosing ``using_catalog``) and ``{"NAME": channels}``
            entries for new pixel modalities with unknown statistics. New sensors and ``{"NAME": channels}``
            entries get a freshly initialised patch embedding.
        weights: None or ``"random"`` (random init, seeded from ``name``: the same every time), ``"hub"``
            (official file), a path to an official file, a backbone state dict or a saved model, or a folder
            holding the official file.
        merge: ``"mean"`` (default) or ``"max"`` over image modalities, ``"concat"`` along features, or None
            (all tokens in input order).
        bands: ``{"S2L2A": [band names]}``: adapt a patch embedding to a band subset/order by name, copying
            the pretrained columns of known bands.
        encoder_depth: Use only the first encoder blocks (quick runs, tests).
        sensors: New sensors to register for this call: records of ``pixel_modality`` or mappings
            ``{name, bands, mean, std}``; the default catalog is left unchanged.

    Returns:
        The backbone (``nn.Module``); ``out_channels`` lists the feature width per block.

    Raises:
        InputError: Unknown model name or bad ``encoder_depth``.
        ModalityError: Unknown modality or band.
        CheckpointError: Unreadable weights, another model size, or missing keys.
    """
    with using_catalog(with_sensors(sensors)):
        return build_backbone(
            name, modalities, weights, bands=bands, merge=merge, encoder_depth=encoder_depth
        )


def create_model(name: str, *, weights: Weights = None) -> TerraMind:
    """Create the full TerraMind encoder-decoder (all 13 input and 7 output embeddings of v1).

    Use ``encode`` on inputs keyed by official keys (``untok_sen2l2a@224``, ``tok_lulc@224``, ``coords``)
    and ``decode_logits`` / ``decode_sequence_logits`` for target tokens.

    Args:
        name: ``terramind_v1_tiny``, ``_small``, ``_base`` or ``_large``.
        weights: None or ``"random"`` (random init, seeded from ``name``), ``"hub"``, a path to an official
            file or our own saved model, or a folder holding the official file.

    Returns:
        The model in eval mode.

    Raises:
        InputError: Unknown model name.
        CheckpointError: Unreadable weights, another size, or missing/unused keys.
    """
    return build_model(name, weights)
