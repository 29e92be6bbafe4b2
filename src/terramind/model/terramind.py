"""The TerraMind encoder-decoder (arXiv 2504.11171), with the official checkpoint key names.

The model maps embedded inputs to features and decoder queries to logits; it knows nothing of tokenizers,
files or sampling. Inputs are keyed by the official internal keys (``untok_sen2l2a@224`` for raw pixels,
``tok_lulc@224`` for image token ids, ``coords`` for sequences).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.layers import Block, DecoderBlock, LayerNorm
from terramind.modalities import MODALITIES, get_modality
from terramind.model.config import TerraMindConfig
from terramind.model.embeddings import PixelEmbedding, SequenceEmbedding, TokenEmbedding
from terramind.model.packing import pack

# The 13 encoder and 7 decoder embeddings of every released v1 checkpoint, in catalog order.
_V1 = [m for m in MODALITIES.values() if "v1" in m.versions]
ALL_ENCODER_KEYS: tuple[str, ...] = (
    *(m.pixel_key for m in _V1 if m.pixel_key),
    *(m.token_key for m in _V1 if m.token_key and m.is_image),
    *(m.token_key for m in _V1 if m.token_key and not m.is_image),
)
ALL_DECODER_KEYS: tuple[str, ...] = tuple(m.token_key for m in _V1 if m.token_key and m.generable)

Embedding = PixelEmbedding | TokenEmbedding | SequenceEmbedding
_E = TypeVar("_E", TokenEmbedding, SequenceEmbedding)


@dataclass
class Encoded:
    """Encoder output, the input of every decoding call.

    Attributes:
        tokens: (B, N, D) encoder output after ``encoder_norm``.
        embeddings: (B, N, D) position plus modality embeddings of those tokens (the decoder context adds
            them again, as the reference: tests/parity/test_model_parity.py).
        mask: (B, N) bool, True = real token, False = padding; None when every token is real.
    """

    tokens: torch.Tensor
    embeddings: torch.Tensor
    mask: torch.Tensor | None = None


def _build_embedding(
    key: str, cfg: TerraMindConfig, *, decoder: bool, channels: int | None = None
) -> Embedding:
    """Build the embedding of one official key (or of a new pixel modality with ``channels``)."""
    if channels is not None:
        return PixelEmbedding(channels, cfg.dim, cfg.patch_size, cfg.grid)
    spec = get_modality(key)
    if key == spec.pixel_key and not decoder:
        return PixelEmbedding(spec.num_bands, cfg.dim, cfg.patch_size, cfg.grid, spec.bands)
    if key != spec.token_key or spec.vocab_size is None or (decoder and not spec.generable):
        raise ModalityError(f"{key!r} has no {'decoder' if decoder else 'encoder'} embedding in TerraMind")
    if spec.is_image:
        return TokenEmbedding(spec.vocab_size, cfg.dim, cfg.grid, logits=decoder)
    return SequenceEmbedding(spec.vocab_size, cfg.dim, logits=decoder)


def init_weights(module: nn.Module) -> None:
    """MAE-style initialisation (as the reference's 4M code); only matters when training from scratch.

    Linear: xavier-uniform with the fan of one chunk for fused q/k/v and k/v projections, zero bias.
    Embeddings, modality embeddings and the mask token: N(0, 0.02). Tied ``to_logits`` keep the embedding's.
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and not name.endswith("to_logits"):
            chunks = 3 if name.endswith("qkv") else 2 if name.endswith(".kv") else 1
            bound = math.sqrt(6.0 / (m.weight.shape[0] // chunks + m.weight.shape[1]))
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)


class TerraMindEncoder(nn.Module):
    """Embeddings, encoder blocks and final norm: the part shared by the full model and the backbone.

    Args:
        config: Model size.
        encoder_keys: Official keys of the input embeddings to build.
        extra_pixel: New pixel modalities, name -> channels (freshly initialised).
    """

    def __init__(
        self,
        config: TerraMindConfig,
        *,
        encoder_keys: Sequence[str] = ALL_ENCODER_KEYS,
        extra_pixel: Mapping[str, int] | None = None,
    ):
        super().__init__()
        self.config = config
        extra = dict(extra_pixel or {})
        embeddings = {k: _build_embedding(k, config, decoder=False) for k in encoder_keys}
        embeddings.update(
            {k: _build_embedding(k, config, decoder=False, channels=c) for k, c in extra.items()}
        )
        self.encoder_embeddings = nn.ModuleDict(embeddings)
        c = config
        self.encoder = nn.ModuleList(
            Block(c.dim, c.num_heads, c.mlp_hidden, c.mlp, c.qkv_bias, c.proj_bias, c.mlp_bias, c.norm_eps)
            for _ in range(c.encoder_depth)
        )
        self.encoder_norm = LayerNorm(c.dim, c.norm_eps)

    def embed(
        self, inputs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[int]]:
        """Embed and concatenate the inputs in dict order, dropping masked-out tokens.

        Returns:
            ``x`` and ``emb`` (B, N, D), the (B, N) real-token mask (None: all real) and the token count of
            each input before masking (used to split the sequence by modality).
        """
        masks = masks or {}
        unknown = [k for k in masks if k not in inputs]
        if unknown:
            raise InputError(f"masks given for {unknown}, which are not among the inputs {list(inputs)}")
        parts = self._embed_parts(inputs, masks)
        counts = [x.shape[1] for x, _ in parts]
        x = torch.cat([x for x, _ in parts], 1)
        emb = torch.cat([e.expand(x.shape[0], -1, -1) for _, e in parts], 1)
        if not masks:
            return x, emb, None, counts
        keep = torch.cat(
            [self._keep(key, masks.get(key), part[0]) for key, part in zip(inputs, parts, strict=True)],
            1,
        )
        if not bool(keep.any(1).all()):
            raise InputError("every sample needs at least one unmasked input token")
        x, emb, real = pack(x, emb, keep)
        return x, emb, real, counts

    def embed_tokens(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        """Return the encoder input ``x + emb`` (B, N, D) of unmasked inputs and each input's token count.

        The fast path of the backbone: positions are added per modality, no separate ``emb`` is kept.
        """
        parts = self._embed_parts(inputs, {})
        tokens = [x + emb for x, emb in parts]
        return (tokens[0] if len(tokens) == 1 else torch.cat(tokens, 1)), [t.shape[1] for t in tokens]

    def _embed_parts(
        self, inputs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not inputs:
            raise InputError("no inputs given: pass at least one modality")
        batch = next(iter(inputs.values())).shape[0]
        parts = []
        for key, value in inputs.items():
            x, emb = self._embed_one(key, value, masks.get(key))
            if x.shape[0] != batch:
                raise ShapeError(f"{key}: batch size {x.shape[0]} differs from the first input's {batch}")
            parts.append((x, emb))
        return parts

    @staticmethod
    def _keep(key: str, mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """Return one input's (B, N) keep-mask (all True when not masked), checked against its tokens."""
        shape = tuple(x.shape[:2])
        if mask is None:
            return torch.ones(shape, dtype=torch.bool, device=x.device)
        if tuple(mask.shape) != shape or mask.dtype != torch.bool:
            raise ShapeError(f"mask of {key} must be bool {shape}, got {mask.dtype} {tuple(mask.shape)}")
        return mask

    def _embed_one(
        self, key: str, value: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self.encoder_embeddings:
            raise ModalityError(
                f"this model has no input embedding {key!r}; it has {list(self.encoder_embeddings)}"
            )
        module = self.encoder_embeddings[key]
        if isinstance(module, PixelEmbedding):
            check_pixels(key, value, module.channels, module.patch_size, module.bands)
            return module(value)
        if value.is_floating_point() or value.is_complex():
            raise InputError(f"{key} takes integer token ids, got {value.dtype}; run its tokenizer first")
        if isinstance(module, SequenceEmbedding):
            return module(value, mask)
        return module(value)

    def run_encoder(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Run the blocks on embedded tokens ``x`` (B, N, D).

        Args:
            x: Content plus position/modality embeddings.
            mask: (B, N) real-token mask; padding is never attended to.

        Returns:
            Every block's output; the last one after ``encoder_norm``.
        """
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N) keys
        out = []
        for block in self.encoder:
            x = block(x, attn_mask)
            out.append(x)
        out[-1] = self.encoder_norm(x)
        return out

    def forward_encoder_layers(
        self, inputs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """Every encoder block's output (B, N, D), the last after ``encoder_norm`` (backbone semantics).

        Args:
            inputs: See :meth:`TerraMind.encode`.
            masks: See :meth:`TerraMind.encode`.
        """
        if not masks:
            return self.run_encoder(self.embed_tokens(inputs)[0])
        x, emb, mask, _ = self.embed(inputs, masks)
        return self.run_encoder(x + emb, mask)


def check_pixels(key: str, x: torch.Tensor, channels: int, patch: int, bands: Sequence[str] = ()) -> None:
    """Check a raw image input (B, C, H, W) against its embedding's channels and patch size.

    Raises:
        ShapeError: Wrong rank, channel count (listing the expected bands) or a size not a multiple of 16.
        InputError: A non-floating tensor.
    """
    if x.dim() != 4:
        raise ShapeError(f"{key}: expected a (B, C, H, W) image, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        listing = f": {', '.join(bands)}" if bands else ""
        raise ShapeError(f"{key}: expected {channels} channels{listing}; got {x.shape[1]}")
    h, w = x.shape[-2:]
    if h % patch or w % patch:
        ph, pw = -h % patch, -w % patch
        raise ShapeError(
            f"{key}: height and width must be multiples of {patch}, got {h}x{w}; pad by {ph} rows and {pw} "
            f"columns (e.g. torch.nn.functional.pad(x, (0, {pw}, 0, {ph}), mode='reflect')) or cut the image "
            f"into {patch * 14}x{patch * 14} tiles"
        )
    if not x.is_floating_point():
        raise InputError(f"{key}: expected a standardized float image, got {x.dtype}")


class TerraMind(TerraMindEncoder):
    """The full TerraMind encoder-decoder; ``state_dict()`` uses the official key names.

    Args:
        config: Model size.
        encoder_keys: Official keys of the input embeddings (default: all 13 of the v1 release).
        decoder_keys: Official keys of the output embeddings (default: all 7).
        extra_pixel: New pixel input modalities, name -> channels.
    """

    def __init__(
        self,
        config: TerraMindConfig,
        *,
        encoder_keys: Sequence[str] = ALL_ENCODER_KEYS,
        decoder_keys: Sequence[str] = ALL_DECODER_KEYS,
        extra_pixel: Mapping[str, int] | None = None,
    ):
        super().__init__(config, encoder_keys=encoder_keys, extra_pixel=extra_pixel)
        c = config
        self.decoder_embeddings = nn.ModuleDict(
            {k: _build_embedding(k, c, decoder=True) for k in decoder_keys}
        )
        for key, module in self.decoder_embeddings.items():
            if key in self.encoder_embeddings:  # one modality embedding per key (test_terramind.py)
                module.mod_emb = self.encoder_embeddings[key].mod_emb
        self.decoder_proj_context = nn.Linear(c.dim, c.dim)  # always with bias, even for base/large
        self.decoder = nn.ModuleList(
            DecoderBlock(
                c.dim, c.num_heads, c.mlp_hidden, c.mlp, c.qkv_bias, c.proj_bias, c.mlp_bias, c.norm_eps
            )
            for _ in range(c.decoder_depth)
        )
        self.decoder_norm = LayerNorm(c.dim, c.norm_eps)
        self.mask_token = nn.Parameter(torch.empty(1, 1, c.dim).normal_(std=0.02))
        init_weights(self)

    def no_weight_decay(self) -> tuple[str, ...]:
        """Name the learned mask token, which gets no weight decay (``terramind.layers.decay``)."""
        return ("mask_token",)

    def encode(
        self, inputs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None = None
    ) -> Encoded:
        """Encode the inputs.

        Args:
            inputs: By official key: pixels ``untok_*`` (B, C, H, W) standardized; image token ids ``tok_*``
                (B, h, w) or (B, N); sequence ids ``coords`` (B, L). Token order follows dict order.
            masks: Per key, (B, N_key) bool, True = this token is an input (absent key: all are). Samples may
                keep different counts; the batch is then padded and ``Encoded.mask`` marks real tokens.

        Returns:
            The :class:`Encoded` context for decoding.
        """
        x, emb, mask, _ = self.embed(inputs, masks)
        return Encoded(self.run_encoder(x + emb, mask)[-1], emb, mask)

    def decode_logits(
        self, encoded: Encoded, key: str, positions: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Logits of image tokens of one target modality at the given grid positions.

        Queries are ``mask_token + pos + mod`` and attend to each other only (all of one modality) and to the
        encoder context. Decoding several modalities in one pass gives the same result, because the official
        decoder restricts self-attention to the same modality (tests/parity/test_model_parity.py).

        Args:
            encoded: Output of :meth:`encode`.
            key: Target key ``tok_*``.
            positions: (B, n) long flat indices into the ``grid`` (row-major).
            grid: Token grid (h, w) of the target, (14, 14) for 224 px.

        Returns:
            (B, n, vocab) logits.
        """
        module = self._decoder_embedding(key, TokenEmbedding)
        pos = module.positions(grid)[0]  # (h*w, D)
        queries = self.mask_token + pos[positions]  # (B, n, D)
        return module.to_logits(self._decode(encoded, queries, None))

    def decode_sequence_logits(self, encoded: Encoded, key: str, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits of a sequence target (``coords``): position i predicts token i + 1.

        Args:
            encoded: Output of :meth:`encode`.
            key: Sequence key, ``coords``.
            ids: (B, L) ids fed to the decoder (the target sequence without its last token).

        Returns:
            (B, L, vocab) logits.
        """
        module = self._decoder_embedding(key, SequenceEmbedding)
        x, emb = module(ids)
        length = ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()  # True = may attend
        return module.to_logits(self._decode(encoded, x + emb, causal))

    def _decoder_embedding(self, key: str, kind: type[_E]) -> _E:
        module = self.decoder_embeddings[key] if key in self.decoder_embeddings else None  # noqa: SIM401
        if not isinstance(module, kind):
            valid = [k for k, m in self.decoder_embeddings.items() if isinstance(m, kind)]
            raise ModalityError(f"{key!r} is not a {kind.__name__} target of this model; valid: {valid}")
        return module

    def _decode(
        self, encoded: Encoded, queries: torch.Tensor, self_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Run the decoder blocks; returns the normed decoder output (B, n, D)."""
        context = self.decoder_proj_context(encoded.tokens) + encoded.embeddings
        cross = None if encoded.mask is None else encoded.mask[:, None, None, :]  # (B, 1, 1, N)
        y = queries
        for block in self.decoder:
            y = block(y, context, self_mask, cross)
        return self.decoder_norm(y)
