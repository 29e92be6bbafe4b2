"""One record per released TerraMind v1 tokenizer, and loading them (keys: tests/checkpoints/keys).

Each record says where the weights live on the hub and which architecture they fill. Only the tokenizer a
call asks for is built and read: a DiVAE tokenizer is 289 M parameters (1.16 GB in fp32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from terramind.checkpoints.io import HubFile, load_into, read_state_dict
from terramind.core.errors import CheckpointError, ModalityError
from terramind.modalities import ModalitySpec, get_modality
from terramind.tokenizers import (
    CoordsTokenizer,
    ImageTokenizer,
    TokenizerConfig,
    UNetConfig,
    ViTConfig,
    build_tokenizer,
)

_ENCODER_PROJ = "encoder.proj.weight"  # (768, channels, 16, 16): tells the tokenizers' files apart
REPO = "ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{}"


@dataclass(frozen=True)
class TokenizerRecord:
    """A released tokenizer: its name, modality, weights file and architecture.

    Attributes:
        name: Registry name of the release (``terramind_v1_tokenizer_s2l2a``).
        modality: Canonical modality name.
        hub: Where the weights live (sha256 pinned when known).
        config: Architecture (None for the coordinate vocabulary).
        params: Parameter count of the architecture (None for the vocabulary).
    """

    name: str
    modality: str
    hub: HubFile
    config: TokenizerConfig | None
    params: int | None


def tokenizer_config(
    modality: str | ModalitySpec,
    *,
    encoder: ViTConfig | None = None,
    unet: UNetConfig | None = None,
    vit_decoder: ViTConfig | None = None,
    decoder_kind: str | None = None,
) -> TokenizerConfig:
    """Build an image tokenizer architecture: the ONE factory that releases, training and tests call.

    Channels, FSQ levels, classes and decoder kind come from the catalog record; only the network sizes
    are arguments (the released sizes by default).

    Args:
        modality: Modality name or record.
        encoder: Encoder ViT shape (default: the released one).
        unet: Diffusion decoder shape, used when the decoder kind is ``diffusion``.
        vit_decoder: ViT decoder shape, used when the decoder kind is ``vit``.
        decoder_kind: ``diffusion`` or ``vit`` to override the catalog's (e.g. training a diffusion decoder
            for class maps); None: the catalog's.

    Raises:
        ModalityError: The modality has no image tokenizer (no FSQ levels in the catalog).
    """
    spec = get_modality(modality)
    if spec.fsq_levels is None:
        raise ModalityError(f"{spec.name} has no image tokenizer (no FSQ levels in the catalog)")
    kind = decoder_kind or spec.decoder_kind
    decoder: UNetConfig | ViTConfig = (
        (vit_decoder or ViTConfig()) if kind == "vit" else (unet or UNetConfig())
    )
    classes = len(spec.classes) if spec.classes is not None else None
    return TokenizerConfig(
        spec.name, spec.tokenizer_channels, spec.fsq_levels, encoder or ViTConfig(), decoder, classes
    )


def _image(mod: str, params: int) -> TokenizerRecord:
    hub = HubFile(REPO.format(mod), f"TerraMind_Tokenizer_{mod}.pt")
    return TokenizerRecord(f"terramind_v1_tokenizer_{mod.lower()}", mod, hub, tokenizer_config(mod), params)


# Parameter counts measured on the reference builds (key listings in tests/checkpoints/keys).
TOKENIZERS: MappingProxyType[str, TokenizerRecord] = MappingProxyType(
    {
        "S2L2A": _image("S2L2A", 289_290_693),
        "S1GRD": _image("S1GRD", 286_587_173),
        "S1RTC": _image("S1RTC", 286_587_173),
        "DEM": _image("DEM", 286_316_821),
        "NDVI": _image("NDVI", 286_316_821),
        "LULC": _image("LULC", 183_894_021),
        "coords": TokenizerRecord(
            "terramind_v1_coords_tokenizer",
            "coords",
            HubFile(REPO.format("Coords"), "config.json"),
            None,
            None,
        ),
    }
)


def tokenizer_record(modality: str) -> TokenizerRecord:
    """Return the release record of a modality's tokenizer (any alias of the modality name works).

    Raises:
        ModalityError: If the modality has no released v1 tokenizer (S2L1C, S2RGB, caption).
    """
    spec = get_modality(modality)
    if spec.name not in TOKENIZERS:
        raise ModalityError(
            f"{spec.name} has no TerraMind v1 tokenizer; tokenizers exist for {', '.join(TOKENIZERS)}"
        )
    return TOKENIZERS[spec.name]


def _decoder_key(key: str) -> bool:
    """Keys a decode-only tokenizer reads: not the encoder's, but its patch projection, to check the file."""
    return not key.startswith("encoder.") or key == _ENCODER_PROJ


def _check_modality(sd: dict[str, torch.Tensor], cfg: TokenizerConfig, hub: HubFile, path: Path) -> None:
    """Name the likely source when a file belongs to another tokenizer (channel count or decoder kind)."""
    proj = sd.get(_ENCODER_PROJ)
    if proj is None or proj.ndim != 4:
        return
    has_unet = "decoder.time_embed.0.weight" in sd
    if proj.shape[1] != cfg.channels or has_unet != cfg.is_diffusion:
        others = [
            r.modality
            for r in TOKENIZERS.values()
            if r.config and r.config.channels == proj.shape[1] and r.config.is_diffusion == has_unet
        ]
        found = "diffusion" if has_unet else "ViT"
        wanted = "diffusion" if cfg.is_diffusion else "ViT"
        raise CheckpointError(
            f"{path} is not a {cfg.modality} tokenizer checkpoint: its encoder takes {proj.shape[1]} "
            f"channels with a {found} decoder (a {'/'.join(others) or 'foreign'} tokenizer?), while "
            f"{cfg.modality} needs {cfg.channels} channels and a {wanted} decoder: pass {hub.filename}"
        )


def load_image_tokenizer(
    modality: str,
    path: str | os.PathLike[str],
    *,
    config: TokenizerConfig | None = None,
    decode_only: bool = False,
) -> ImageTokenizer:
    """Build one image tokenizer and fill it with the weights of a file.

    Random tokenizers, ``"hub"`` and folders are :func:`terramind.build.build_image_tokenizer`'s.

    Args:
        modality: Modality name or alias.
        path: A local ``.pt``/``.safetensors`` file.
        config: Architecture to build instead of the release's (down-sized models in tests, experiments).
        decode_only: Build no encoder and read none of its weights (86 M parameters less); ``encode``
            raises. For outputs that are only generated.

    Returns:
        The tokenizer in eval mode.

    Raises:
        CheckpointError: Unreadable file, a checkpoint of another tokenizer, or keys that do not match.
    """
    record = tokenizer_record(modality)
    cfg = config or record.config
    if cfg is None:
        raise ModalityError(f"{record.modality} is not an image modality: use load_coords_tokenizer")
    path = Path(path)
    sd = read_state_dict(path, keep=_decoder_key if decode_only else None)
    _check_modality(sd, cfg, record.hub, path)
    if decode_only:
        sd.pop(_ENCODER_PROJ, None)
    with torch.device("meta"):  # no random init of weights that the file replaces at once
        tokenizer = build_tokenizer(cfg, encoder=not decode_only)
    load_into(tokenizer, sd, what=f"{record.modality} tokenizer weights {path}", assign=True)
    return tokenizer.eval()


def load_coords_tokenizer(path: str | os.PathLike[str]) -> CoordsTokenizer:
    """Load the coordinate vocabulary from a local JSON file (the release's ``config.json``).

    Raises:
        CheckpointError: An unreadable file.
    """
    return CoordsTokenizer.from_file(Path(path))
