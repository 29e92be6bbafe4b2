"""One builder per artefact: backbone, full model, image tokenizer, coordinate vocabulary.

``terramind.api`` (``create_backbone``, ``create_model``, ``create_tokenizer``, ``create_coords_tokenizer``),
the generator's composition and ``terramind.finetune.Backbone`` are thin wrappers over these, so every
feature (band-adapted checkpoints, ``encoder_depth``, new pixel modalities, folders of release files,
deterministic random weights) works the same through each of them. Weights are resolved by
:mod:`terramind.build.weights`; random initialisation is seeded from the artefact's name there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from terramind.build.weights import Weights, WeightsSpec, is_random, pick, resolve, seeded
from terramind.checkpoints.io import load_into, read_state_dict
from terramind.checkpoints.models import (
    check_size,
    load_backbone_weights,
    load_model_weights,
    model_record,
)
from terramind.checkpoints.tokenizers import load_coords_tokenizer, load_image_tokenizer, tokenizer_record
from terramind.core.errors import CheckpointError, InputError, ModalityError
from terramind.modalities import get_modality
from terramind.model import ALL_DECODER_KEYS, ALL_ENCODER_KEYS, TerraMind, TerraMindBackbone, TerraMindConfig
from terramind.model.backbone import ModalityEntry
from terramind.model.embeddings import PixelEmbedding
from terramind.tokenizers import CoordsTokenizer, ImageTokenizer, TokenizerConfig, ViTEncoder, build_tokenizer


@dataclass(frozen=True)
class ModelWeights:
    """A model state dict already read (and checked against its size), to fill several modules from one read.

    Attributes:
        state: Tensors by official key names, encoder blocks past the requested depth dropped.
        source: The file it came from, for messages.
    """

    state: Mapping[str, torch.Tensor]
    source: str


def model_config(name: str, encoder_depth: int | None = None) -> TerraMindConfig:
    """Return the configuration of a released size, optionally with only its first encoder blocks.

    Raises:
        InputError: An unknown model name (the message lists the known ones), or an ``encoder_depth``
            outside ``1 .. depth of the size``.
    """
    config = model_record(name).config
    if encoder_depth is None:
        return config
    if not 1 <= encoder_depth <= config.encoder_depth:
        raise InputError(
            f"encoder_depth must be between 1 and {config.encoder_depth} for {config.name}, "
            f"got {encoder_depth}"
        )
    return replace(config, encoder_depth=encoder_depth)


def read_model_weights(
    name: str, weights: Weights | ModelWeights, *, encoder_depth: int | None = None
) -> ModelWeights | None:
    """Read the model weights ``weights`` names, checked against the size ``name``; None for random init.

    Args:
        name: Model size.
        weights: A :data:`~terramind.build.weights.Weights` specification, or weights already read.
        encoder_depth: Keep only the first encoder blocks (a reduced-depth backbone takes those).

    Raises:
        CheckpointError: Unreadable or missing file, a checkpoint of another size, or the hub unreachable.
    """
    if isinstance(weights, ModelWeights):
        state, source = weights.state, weights.source
    else:
        record = model_record(name)
        path = resolve(weights, record.hub, what=record.name)
        if path is None:
            return None
        state, source = read_state_dict(path), f"weights file {str(path)!r}"
        check_size(record.config, state, source)
    if encoder_depth is not None:
        state = {k: v for k, v in state.items() if not _past_depth(k, encoder_depth)}
    return ModelWeights(state, source)


def _past_depth(key: str, depth: int) -> bool:
    """Whether ``key`` belongs to an encoder block at index ``depth`` or later."""
    parts = key.split(".")
    return parts[0] == "encoder" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= depth


def build_backbone(
    name: str,
    modalities: Sequence[ModalityEntry] | ModalityEntry,
    weights: Weights | ModelWeights = None,
    *,
    bands: Mapping[str, Sequence[str]] | None = None,
    merge: str | None = "mean",
    encoder_depth: int | None = None,
) -> TerraMindBackbone:
    """Build a TerraMind encoder returning per-block features (see ``terramind.api.create_backbone``).

    Args:
        name: Model size.
        modalities: Modality names (aliases work; registered sensors of the current catalog too, see
            :func:`terramind.modalities.using_catalog`) and ``{"NAME": channels}`` entries for new pixel
            modalities with unknown statistics. Both new kinds get a freshly initialised patch embedding.
        weights: Random (None, ``"random"``), ``"hub"``, a file or folder (official file, backbone state
            dict or saved model), or weights already read.
        bands: ``{modality: [band names]}``: adapt patch embeddings to a band subset/order by name; a
            checkpoint that already holds the adapted embedding loads as it is.
        merge: ``"mean"``, ``"max"``, ``"concat"`` or None.
        encoder_depth: Use only the first encoder blocks.

    Raises:
        InputError: Unknown model name or bad ``encoder_depth``.
        ModalityError: Unknown modality or band.
        CheckpointError: Unreadable weights, another model size, or missing keys.
    """
    config = model_config(name, encoder_depth)
    listed = [modalities] if isinstance(modalities, (str, Mapping)) else list(modalities)
    entries = [_sensor_entry(e) for e in listed]
    loaded = read_model_weights(name, weights, encoder_depth=encoder_depth)
    pending = dict(bands or {})
    with seeded(f"backbone:{config.name}"):
        backbone = TerraMindBackbone(config, entries, merge=merge)
        if loaded is not None:
            # a saved backbone whose bands were already adapted holds the narrower patch embedding
            for mod in [m for m in pending if _holds_adapted(backbone, loaded.state, m, pending[m])]:
                backbone.select_bands(mod, pending.pop(mod))
            load_backbone_weights(backbone, loaded.state, loaded.source)
        for mod, band_names in pending.items():  # after loading: copies the pretrained columns by name
            backbone.select_bands(mod, band_names)
    return backbone


def _sensor_entry(entry: ModalityEntry) -> ModalityEntry:
    """Turn a registered sensor into a new pixel modality of its band count (freshly initialised)."""
    if isinstance(entry, Mapping):
        return entry
    spec = get_modality(entry)
    return {spec.name: spec.num_bands} if spec.is_new_sensor else entry


def _holds_adapted(
    backbone: TerraMindBackbone, state: Mapping[str, torch.Tensor], modality: str, bands: Sequence[str]
) -> bool:
    """Whether ``state`` holds the patch embedding of ``modality`` already adapted to ``bands``."""
    key = backbone.key_of(modality)
    weight = state.get(f"encoder_embeddings.{key}.proj.weight")
    module = backbone.encoder_embeddings[key]
    if not isinstance(module, PixelEmbedding):
        raise ModalityError(f"{modality} is not a pixel modality: bands can only be selected for raw images")
    pixels = backbone.config.patch_size**2
    return weight is not None and weight.shape[1] == pixels * len(bands) != pixels * module.channels


def build_model(
    name: str,
    weights: Weights | ModelWeights = None,
    *,
    encoder_keys: Sequence[str] | None = None,
    decoder_keys: Sequence[str] | None = None,
    encoder_depth: int | None = None,
) -> TerraMind:
    """Build the TerraMind encoder-decoder, in eval mode.

    Args:
        name: Model size.
        weights: Random (None, ``"random"``), ``"hub"``, a file or folder, or weights already read.
        encoder_keys: Official input keys to embed (default: all of v1); with a subset, the checkpoint's
            other embeddings are ignored.
        decoder_keys: Official output keys to decode (default: all of v1), likewise.
        encoder_depth: Use only the first encoder blocks.

    Raises:
        InputError: Unknown model name or bad ``encoder_depth``.
        CheckpointError: Unreadable weights, another size, a backbone-only file, or missing/unused keys.
    """
    config = model_config(name, encoder_depth)
    loaded = read_model_weights(name, weights, encoder_depth=encoder_depth)
    with seeded(config.name):
        model = TerraMind(
            config,
            encoder_keys=ALL_ENCODER_KEYS if encoder_keys is None else encoder_keys,
            decoder_keys=ALL_DECODER_KEYS if decoder_keys is None else decoder_keys,
        )
    if loaded is not None:
        subset = encoder_keys is not None or decoder_keys is not None
        load_model_weights(model, loaded.state, loaded.source, ignore_others=subset)
    return model.eval()


def build_image_tokenizer(
    modality: str,
    weights: Weights = None,
    *,
    decode_only: bool = False,
    config: TokenizerConfig | None = None,
) -> ImageTokenizer:
    """Build the image tokenizer of one modality, in eval mode.

    Args:
        modality: Modality name or alias with an image tokenizer (S2L2A, S1GRD, S1RTC, DEM, NDVI, LULC).
        weights: Random (None, ``"random"``), ``"hub"``, a file, or a folder holding the release file.
        decode_only: Build no encoder and read none of its weights; ``encode`` raises.
        config: Architecture to build instead of the release's (down-sized models in tests, experiments).

    Raises:
        ModalityError: Unknown modality, one without a tokenizer, or coords (use
            :func:`build_coords_tokenizer`).
        CheckpointError: Unreadable weights or a checkpoint of another tokenizer.
    """
    record = tokenizer_record(modality)
    cfg = config or record.config
    if cfg is None:
        raise ModalityError(
            f"{record.modality} has a vocabulary, not an image tokenizer: use create_coords_tokenizer"
        )
    path = resolve_tokenizer_weights(record.modality, weights)
    if path is not None:
        return load_image_tokenizer(record.modality, path, config=cfg, decode_only=decode_only)
    return _random_tokenizer(cfg, decode_only=decode_only)


def resolve_tokenizer_weights(modality: str, weights: Weights) -> Path | None:
    """Return the local file of a tokenizer's weights now (``"hub"`` downloaded or found in the cache).

    For callers that load the same tokenizer many times (a generator's decoders): resolving once saves a hub
    request per load. None means random initialisation.

    Raises:
        CheckpointError: A folder without the release file, or the hub unreachable without a cached copy.
    """
    record = tokenizer_record(modality)
    return resolve(weights, record.hub, what=f"the {record.modality} tokenizer")


def _random_tokenizer(cfg: TokenizerConfig, *, decode_only: bool) -> ImageTokenizer:
    """Build a seeded random tokenizer whose decoder part is the same with and without the encoder."""
    with seeded(f"tokenizer:{cfg.modality}"):
        decoder = build_tokenizer(cfg, encoder=False)
    if decode_only:
        return decoder.eval()
    with seeded(f"tokenizer:{cfg.modality}:encoder"):
        encoder = ViTEncoder(cfg.channels, cfg.encoder)
    with torch.device("meta"):  # filled at once by the two seeded parts, in the module's own key order
        tokenizer = build_tokenizer(cfg)
    state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **decoder.state_dict()}
    load_into(tokenizer, state, what=f"random {cfg.modality} tokenizer", assign=True)
    return tokenizer.eval()


def build_coords_tokenizer(weights: Weights = "hub") -> CoordsTokenizer:
    """Load the coordinate tokenizer's vocabulary: ``"hub"``, its ``config.json``, or a folder holding it.

    The coordinate "weights" are a vocabulary download: there is no random version.

    Raises:
        CheckpointError: For random weights (None, ``"random"``), an unreadable file or the hub unreachable.
    """
    record = tokenizer_record("coords")
    path = resolve(weights, record.hub, what="the coordinate tokenizer")
    if path is None:
        raise CheckpointError(
            "the coordinate tokenizer is a vocabulary, not weights: pass weights='hub' or the path of its "
            f"config.json ({record.hub.url})"
        )
    return load_coords_tokenizer(path)


def tokenizer_weights_for(weights: WeightsSpec, modality: str) -> Weights:
    """One tokenizer's entry of a ``tokenizer_weights`` specification shared by several tokenizers.

    The coordinate vocabulary is not weights: random (None, ``"random"``) or no entry in a mapping means the
    hub's vocabulary; an explicit None entry for coords in a mapping is refused when it is loaded.

    Raises:
        CheckpointError: A mapping without an entry for an image tokenizer's modality.
    """
    if modality != "coords":
        return pick(weights, modality)
    if isinstance(weights, Mapping):
        return {get_modality(k).name: v for k, v in weights.items()}.get("coords", "hub")
    return "hub" if is_random(weights) else weights
