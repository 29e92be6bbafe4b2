"""The encoder as a feature extractor for fine-tuning: the reference ``TerraMindViT`` semantics.

Inputs are keyed by modality *names* (``S2L2A``, ``s1``, ...); the output is one tensor per encoder block,
the last after the final norm, merged across image modalities by ``merge``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from einops import rearrange
from torch import nn

from terramind.core.errors import ModalityError, ShapeError
from terramind.modalities import Kind, get_modality
from terramind.model.config import TerraMindConfig
from terramind.model.embeddings import PixelEmbedding, SequenceEmbedding
from terramind.model.terramind import TerraMindEncoder, init_weights

MERGE_METHODS: tuple[str | None, ...] = ("mean", "max", "concat", None)

ModalityEntry = str | Mapping[str, int]


def input_key(name: str) -> str:
    """Official encoder key a modality name feeds (``S2L2A`` -> ``untok_sen2l2a@224``, ``LULC`` -> tokens).

    An official key is returned unchanged, so ``tok_sen2l2a@224`` selects S2L2A *token* input.

    Raises:
        ModalityError: For unknown names and modalities that are not v1 inputs.
    """
    spec = get_modality(name)
    if name in spec.keys:
        return name
    key = spec.pixel_key if spec.input_kind is Kind.PIXEL else spec.token_key
    if spec.input_kind is None or key is None:
        raise ModalityError(
            f"{spec.name} is not an input of TerraMind v1 (it exists in {', '.join(spec.versions)})"
        )
    return key


class TerraMindBackbone(TerraMindEncoder):
    """TerraMind encoder returning per-block features.

    Args:
        config: Model size.
        modalities: Names (``"S2L2A"``, ``"S1RTC"``, ``"LULC"``, ``"coords"``; aliases and official keys work)
            and ``{"NAME": channels}`` entries for new, freshly initialised pixel modalities.
        merge: ``"mean"`` or ``"max"`` over image modalities token-wise, ``"concat"`` along the feature axis
            (absent modalities filled with a learned ``missing_mod_token``), or None (all tokens in input
            order). The first three drop sequence modalities (coords). :meth:`forward_dict` gives the tokens
            per modality instead, whatever ``merge``.
    """

    def __init__(
        self, config: TerraMindConfig, modalities: Sequence[ModalityEntry], merge: str | None = "mean"
    ):
        if merge not in MERGE_METHODS:
            raise ValueError(f"unknown merge {merge!r}: use one of {MERGE_METHODS}")
        names, extra = _resolve(modalities)
        super().__init__(
            config, encoder_keys=[k for k in names.values() if k not in extra], extra_pixel=extra
        )
        self.names = names  # user name -> key
        self.new_modalities = tuple(extra)  # keys of freshly initialised pixel modalities
        self.merge = merge
        self.image_keys = [
            k for k, m in self.encoder_embeddings.items() if not isinstance(m, SequenceEmbedding)
        ]
        if merge == "concat":
            self.missing_mod_token = nn.Parameter(torch.empty(config.dim))
        init_weights(self)
        if merge == "concat":
            nn.init.normal_(self.missing_mod_token, std=0.02)
        width = config.dim * (len(self.image_keys) if merge == "concat" else 1)
        self.out_channels = [width] * config.encoder_depth

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the concat merge's learned missing-modality token, which gets no weight decay."""
        return ("missing_mod_token",) if "missing_mod_token" in self._parameters else ()

    def key_of(self, name: str) -> str:
        """Return the encoder key an input name refers to (name given at construction, alias or key).

        Raises:
            ModalityError: If the backbone was not built with that modality.
        """
        if name in self.names:
            return self.names[name]
        key = input_key(name) if name not in self.encoder_embeddings else name
        if key not in self.encoder_embeddings:
            raise ModalityError(
                f"this backbone was built for {list(self.names)}, not {name!r}: add it to modalities= "
                f"when creating the backbone"
            )
        return key

    def forward(self, inputs: Mapping[str, torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
        """Features of every encoder block, merged across modalities by ``merge``.

        Args:
            inputs: ``{name: tensor}``: standardized images (B, C, H, W) for pixel modalities, token ids
                (B, H/16, W/16) for LULC/NDVI, ids (B, L) for coords. A bare tensor is the first modality.

        Returns:
            One (B, N, D) tensor per block (the last after the final norm); (B, N, D*M) for concat.
        """
        keyed, layers, counts = self._encode(inputs)
        if self.merge is None:
            return layers
        is_image = [k in self.image_keys for k in keyed]
        return [self._merge(t, counts, is_image) for t in layers]

    def forward_dict(
        self, inputs: Mapping[str, torch.Tensor] | torch.Tensor
    ) -> list[dict[str, torch.Tensor]]:
        """Features of every encoder block, split per input: one dict name -> (B, N_m, D) per block.

        Args:
            inputs: As for :meth:`forward`; the dicts are keyed by the names given here.
        """
        if isinstance(inputs, torch.Tensor):
            inputs = {next(iter(self.names)): inputs}
        _, layers, counts = self._encode(inputs)
        return [dict(zip(inputs, t.split(counts, dim=1), strict=True)) for t in layers]

    def _encode(
        self, inputs: Mapping[str, torch.Tensor] | torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[int]]:
        """Embed and encode; returns the inputs by key, per-block tokens (B, N, D) and tokens per input."""
        if isinstance(inputs, torch.Tensor):
            inputs = {next(iter(self.names)): inputs}
        keyed = {self.key_of(name): value for name, value in inputs.items()}
        if len(keyed) != len(inputs):
            raise ModalityError(f"inputs {list(inputs)} name the same modality twice")
        tokens, counts = self.embed_tokens(keyed)
        return keyed, self.run_encoder(tokens), counts

    def _merge(self, tokens: torch.Tensor, counts: list[int], is_image: list[bool]) -> torch.Tensor:
        parts = [t for t, img in zip(tokens.split(counts, dim=1), is_image, strict=True) if img]
        if not parts:
            raise ModalityError(f"merge={self.merge!r} needs at least one image modality among the inputs")
        if len({p.shape[1] for p in parts}) > 1:
            raise ShapeError(
                f"merge={self.merge!r} needs the same token count for every image modality, got "
                f"{[p.shape[1] for p in parts]}: give all images the same size, or use forward_dict"
            )
        stacked = torch.stack(parts, dim=1)  # (B, M, N, D)
        if self.merge == "mean":
            return stacked.mean(dim=1)
        if self.merge == "max":
            return stacked.amax(dim=1)
        missing = len(self.image_keys) - len(parts)
        if missing:  # absent modalities go last, as in the reference
            b, _, n, d = stacked.shape
            fill = self.missing_mod_token.expand(b, missing, n, d)
            stacked = torch.cat([stacked, fill], dim=1)
        return rearrange(stacked, "b m n d -> b n (m d)")

    def select_bands(self, name: str, bands: Sequence[str]) -> None:
        """Adapt a pixel modality's patch embedding to a band subset or order, by band name.

        Columns of known bands are copied (the weight is viewed as (D, 16*16 pixels, C)); other band names
        get fresh xavier-initialised columns, as in the reference's band selection.

        Args:
            name: Modality name.
            bands: Band names in the order of the new input channels.
        """
        key = self.key_of(name)
        module = self.encoder_embeddings[key]
        if not isinstance(module, PixelEmbedding):
            raise ModalityError(f"{name} is not a pixel modality: bands can only be selected for raw images")
        if not bands:
            raise ModalityError(f"bands for {name} must name at least one band")
        lookup = {b.upper(): i for i, b in enumerate(module.bands)}
        old = module.proj.weight.detach()
        dim, pixels = old.shape[0], module.patch_size**2
        bound = math.sqrt(6.0 / (dim + pixels * len(bands)))
        new = torch.empty(dim, pixels, len(bands), dtype=old.dtype).uniform_(-bound, bound)
        old = rearrange(old, "d (p c) -> d p c", p=pixels)
        for i, band in enumerate(bands):
            if band.upper() in lookup:
                new[..., i] = old[..., lookup[band.upper()]]
        module.proj = nn.Linear(pixels * len(bands), dim, bias=False)
        module.proj.weight = nn.Parameter(rearrange(new, "d p c -> d (p c)"))
        module.channels, module.bands = len(bands), tuple(bands)


def _resolve(modalities: Sequence[ModalityEntry]) -> tuple[dict[str, str], dict[str, int]]:
    """Map user entries to encoder keys; returns (name -> key) and the new pixel modalities (name -> C)."""
    if isinstance(modalities, (str, Mapping)):
        modalities = [modalities]
    if not modalities:
        raise ModalityError("give at least one modality, e.g. modalities=['S2L2A']")
    names: dict[str, str] = {}
    extra: dict[str, int] = {}
    for entry in modalities:
        items = entry.items() if isinstance(entry, Mapping) else [(entry, None)]
        for name, channels in items:
            if channels is not None:
                if not isinstance(channels, int) or channels < 1:
                    raise ModalityError(
                        f"new modality {name!r}: give a positive channel count, got {channels!r}"
                    )
                extra[name] = channels
            key = name if channels is not None else input_key(name)
            if key in names.values():
                raise ModalityError(f"modality {name!r} is listed twice")
            names[name] = key
    return names, extra
