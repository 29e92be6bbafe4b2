"""Image tokenizers: ViT encoder + FSQ, with a diffusion (DiVAE) or ViT (VQ-VAE, LULC) decoder.

One small surface for all six released tokenizers: :meth:`ImageTokenizer.encode` maps a standardized image to
token ids ``(B, H/16, W/16)`` and :meth:`ImageTokenizer.decode` maps ids back to a standardized image (LULC:
10-class logits). Submodule names (``encoder``, ``quant_proj``, ``decoder``, ``post_quant_proj``) are those of
the official checkpoints, so released files load strictly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from terramind.core.errors import InputError, ShapeError, TerraMindError
from terramind.layers.compile import compile_module
from terramind.modalities.catalog import FSQ_7_5_5_5_5, FSQ_8_8_8_6_5
from terramind.tokenizers.diffusion import ddim_sample, initial_noise
from terramind.tokenizers.fsq import FSQ
from terramind.tokenizers.unet import PatchedUNet, PrepackedUNet, UNetConfig, channels_last, prepacks
from terramind.tokenizers.vit import ViTConfig, ViTDecoder, ViTEncoder

# The FSQ level tables live in the catalog (modalities/catalog.py); named here by their codebook sizes.
LEVELS_15360 = FSQ_8_8_8_6_5
LEVELS_4375 = FSQ_7_5_5_5_5


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of one image tokenizer.

    Attributes:
        modality: Canonical modality name (``"S2L2A"``).
        channels: Input channels of the encoder (LULC: 10 one-hot classes).
        levels: FSQ levels, first dimension least significant.
        encoder: Encoder ViT shape.
        decoder: ``UNetConfig`` for a diffusion decoder, ``ViTConfig`` for the LULC ViT decoder.
        classes: Number of classes for a categorical modality (decoder returns logits), else None.
    """

    modality: str
    channels: int
    levels: tuple[int, ...] = LEVELS_15360
    encoder: ViTConfig = field(default_factory=ViTConfig)
    decoder: UNetConfig | ViTConfig = field(default_factory=UNetConfig)
    classes: int | None = None

    @property
    def is_diffusion(self) -> bool:
        """True for DiVAE tokenizers (diffusion UNet decoder)."""
        return isinstance(self.decoder, UNetConfig)


class ImageTokenizer(nn.Module):
    """Encoder and quantiser shared by both tokenizer kinds; subclasses add the decoder.

    Args:
        cfg: The architecture.
        encoder: Build the ViT encoder; without it the tokenizer only decodes (``encode`` raises).
    """

    def __init__(self, cfg: TokenizerConfig, *, encoder: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder: ViTEncoder | None = ViTEncoder(cfg.channels, cfg.encoder) if encoder else None
        self.quant_proj = nn.Conv2d(cfg.encoder.dim, len(cfg.levels), 1)
        self.quantize = FSQ(cfg.levels)

    @property
    def modality(self) -> str:
        """Canonical modality name."""
        return self.cfg.modality

    @property
    def codebook_size(self) -> int:
        """Number of distinct token ids."""
        return self.quantize.codebook_size

    @property
    def num_channels(self) -> int:
        """Channels of the encoder input (LULC: 10 classes)."""
        return self.cfg.channels

    @property
    def patch_size(self) -> int:
        """Pixels per token side (16)."""
        return self.cfg.encoder.patch_size

    @property
    def side_multiple(self) -> int:
        """Image sides must be multiples of this to encode and decode (the patch size; more for a UNet)."""
        return self.patch_size

    def drop_encoder(self) -> None:
        """Free the ViT encoder (86 M parameters) of a tokenizer that will only decode.

        A generator needs only the decoders of its output modalities; ``encode`` raises afterwards.
        """
        self.encoder = None

    def prepare(self, x: Tensor) -> Tensor:
        """Check an input image and return it as float ``(B, C, H, W)``."""
        if x.ndim != 4 or x.shape[1] != self.num_channels:
            raise ShapeError(
                f"{self.modality} tokenizer expects (B, {self.num_channels}, H, W) standardized input, "
                f"got shape {tuple(x.shape)}"
            )
        self._check_size(x.shape[-2], x.shape[-1])
        if not x.is_floating_point():
            x = x.float()
        if not bool(torch.isfinite(x).all()):
            raise InputError(
                f"{self.modality} input contains NaN or infinite values: fill or mask them first"
            )
        return x

    def _check_size(self, height: int, width: int) -> None:
        p = self.patch_size
        if height % p or width % p or height == 0 or width == 0:
            raise ShapeError(
                f"{self.modality} image sides must be positive multiples of {p} px, got {height}x{width}: "
                f"crop or pad it (224 px gives 14x14 tokens)"
            )

    def encode_codes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encode to quantised codes ``(B, 5, h, w)`` in [0, 1] and ids ``(B, h, w)``."""
        if self.encoder is None:
            raise TerraMindError(
                f"this {self.modality} tokenizer was loaded for decoding only: create it with "
                f"create_tokenizer({self.modality!r}) to encode"
            )
        latents = self.quant_proj(self.encoder(self.prepare(x)))
        return self.quantize.quantize(latents)

    def encode(self, x: Tensor) -> Tensor:
        """Token ids ``(B, H/16, W/16)`` (long) of a standardized image ``(B, C, H, W)``."""
        return self.encode_codes(x)[1]

    def decode_codes(
        self,
        codes: Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        compile: bool = False,
    ) -> Tensor:
        """Decode a code map ``(B, 5, h, w)``; see :meth:`decode`."""
        raise NotImplementedError

    def decode(
        self,
        ids: Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        compile: bool = False,
    ) -> Tensor:
        """Decode token ids ``(B, h, w)`` to a standardized image ``(B, C, 16h, 16w)`` (LULC: logits).

        Args:
            ids: Token ids in ``[0, codebook_size)``.
            steps: Diffusion steps (DiVAE only).
            generator: CPU generator for the initial noise (DiVAE only; reference parity).
            noise: Explicit initial noise ``(B, C, 16h, 16w)``, instead of drawing it (DiVAE only).
            compile: Run the diffusion UNet compiled (:mod:`terramind.layers.compile`; DiVAE only): the first
                call per shape compiles, later ones are faster.
        """
        codes = self.quantize.ids_to_codes(ids).to(self.quant_proj.weight.device)
        return self.decode_codes(codes, steps=steps, generator=generator, noise=noise, compile=compile)


class DiVAETokenizer(ImageTokenizer):
    """Tokenizer whose decoder is a code-conditioned diffusion UNet sampled with DDIM."""

    def __init__(self, cfg: TokenizerConfig, *, encoder: bool = True) -> None:
        super().__init__(cfg, encoder=encoder)
        if not isinstance(cfg.decoder, UNetConfig):
            raise ValueError("DiVAETokenizer needs a UNetConfig decoder")
        self.decoder = PatchedUNet(cfg.channels, len(cfg.levels), cfg.decoder)
        self._compiled: dict[str, Callable[..., Tensor]] = {}  # by device type; not a submodule

    @property
    def side_multiple(self) -> int:
        """Pixels per cell of the UNet's smallest grid: sides must let it halve ``levels - 1`` times."""
        unet = self.decoder.cfg
        factor = 2 ** (len(unet.channel_mult) - 1) * unet.patch_size
        return math.lcm(factor, self.patch_size)

    def decode_codes(
        self,
        codes: Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        compile: bool = False,
    ) -> Tensor:
        """Sample an image ``(B, C, 16h, 16w)`` conditioned on ``codes`` ``(B, 5, h, w)``."""
        b, _, h, w = codes.shape
        self._check_unet_grid(h, w)
        shape = (b, self.num_channels, h * self.patch_size, w * self.patch_size)
        if noise is None:
            noise = initial_noise(shape, generator)
        elif tuple(noise.shape) != shape:
            raise ShapeError(f"initial noise must have shape {shape}, got {tuple(noise.shape)}")
        noise = noise.to(codes.device)
        with torch.no_grad():  # sampling never needs gradients; a 50-step graph would exhaust memory
            return ddim_sample(self._denoiser(codes, compile), noise, steps)

    def _denoiser(self, codes: Tensor, compiled: bool) -> Callable[[Tensor, Tensor], Tensor]:
        """Return the UNet as a function of ``(x_t, t)``, conditioned on ``codes``.

        Compiled, the UNet is called as is: the graph casts the weights itself (inductor's freezing folds the
        casts into constants on the CPU). Eager under autocast, the conv and linear weights are cast to the
        autocast dtype once per decode rather than once per step (autocast caches no casts in inference mode).
        Autocast would cast exactly these weights to exactly this dtype, so the result is bit-identical; it
        saves a fifth of a bf16 step on the CPU, for a transient copy of the weights in bf16.
        """
        device = codes.device.type
        if compiled:
            if device not in self._compiled:
                self._compiled[device] = compile_module(self.decoder, device)
            unet = self._compiled[device]
            return lambda x, t: unet(x, t, codes)
        if not torch.is_autocast_enabled(device):
            return lambda x, t: self.decoder(x, t, codes)
        dtype, nhwc = torch.get_autocast_dtype(device), channels_last(device)
        if prepacks(device, dtype):  # bf16 on the CPU: conv weights prepacked for oneDNN after the first step
            linear = _cast_weights(self.decoder, dtype, channels_last=nhwc, kinds=(nn.Conv1d, nn.Linear))
            unet = PrepackedUNet(self.decoder, linear)  # packs its convolutions from the fp32 weights
            return lambda x, t: unet(x, t, codes)
        weights = _cast_weights(self.decoder, dtype, channels_last=nhwc)
        return lambda x, t: functional_call(self.decoder, weights, (x, t, codes))

    def _check_unet_grid(self, h: int, w: int) -> None:
        """Reject token grids the UNet cannot halve ``levels - 1`` times (skips need whole sides)."""
        factor = self.side_multiple  # pixels per smallest-grid cell
        if (h * self.patch_size) % factor or (w * self.patch_size) % factor:
            raise ShapeError(
                f"{self.modality} diffusion decoding needs image sides that are multiples of {factor} px "
                f"(an even token grid), got {h}x{w} tokens = {h * self.patch_size}x{w * self.patch_size} px: "
                f"use e.g. 224 or 256 px tiles"
            )


class VQVAETokenizer(ImageTokenizer):
    """Tokenizer with a deterministic ViT decoder that returns class logits (LULC)."""

    def __init__(self, cfg: TokenizerConfig, *, encoder: bool = True) -> None:
        super().__init__(cfg, encoder=encoder)
        if not isinstance(cfg.decoder, ViTConfig):
            raise ValueError("VQVAETokenizer needs a ViTConfig decoder")
        self.post_quant_proj = nn.Conv2d(len(cfg.levels), cfg.decoder.dim, 1)
        self.decoder = ViTDecoder(cfg.classes or cfg.channels, cfg.decoder)

    def prepare(self, x: Tensor) -> Tensor:
        """Accept class ids ``(B, H, W)``/``(B, 1, H, W)`` (one-hot encoded here) or one-hot ``(B, K, H, W)``.

        Raises:
            ShapeError: For other shapes or sides that are not multiples of 16.
            InputError: For class ids outside 0-9 or fractional values.
        """
        k = self.num_channels
        if x.ndim == 4 and x.shape[1] == k:
            return super().prepare(x)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ShapeError(
                f"{self.modality} tokenizer expects class ids (B, H, W) or (B, 1, H, W), or one-hot "
                f"(B, {k}, H, W); got shape {tuple(x.shape)}"
            )
        self._check_size(x.shape[-2], x.shape[-1])
        if x.is_floating_point() and not bool((x == x.round()).all()):
            raise InputError(f"{self.modality} class ids must be whole numbers 0-{k - 1}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= k):
            raise InputError(
                f"{self.modality} class ids must lie in 0-{k - 1}, found [{int(x.min())}, {int(x.max())}]: "
                f"remap the classes (0 no data, 1 water, ..., 9 rangeland)"
            )
        return F.one_hot(x.long(), k).permute(0, 3, 1, 2).float()

    def decode_codes(
        self,
        codes: Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        compile: bool = False,
    ) -> Tensor:
        """Class logits ``(B, K, 16h, 16w)`` of ``codes`` ``(B, 5, h, w)`` (sampling arguments unused)."""
        return self.decoder(self.post_quant_proj(codes))


CAST_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Layers whose parameters a reduced-precision decode casts once (autocast would cast them per call)."""


def _cast_weights(
    module: nn.Module,
    dtype: torch.dtype,
    *,
    channels_last: bool = False,
    kinds: tuple[type[nn.Module], ...] = CAST_LAYERS,
) -> dict[str, Tensor]:
    """Parameters of the module's ``kinds`` of layers (by qualified name), cast to ``dtype``.

    With ``channels_last`` the 2-D convolution weights are also laid out channels-last, the layout oneDNN
    wants for channels-last inputs (it would otherwise copy them in every call; same values, same result).
    """
    return {
        f"{prefix}.{name}" if prefix else name: p.to(dtype, memory_format=_layout(p, channels_last))
        for prefix, layer in module.named_modules()
        if isinstance(layer, kinds)
        for name, p in layer.named_parameters(recurse=False)
    }


def _layout(p: Tensor, channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last and p.dim() == 4 else torch.preserve_format


def build_tokenizer(cfg: TokenizerConfig, *, encoder: bool = True) -> ImageTokenizer:
    """Build a randomly initialised tokenizer of the given architecture (``encoder=False``: decode only)."""
    kind = DiVAETokenizer if cfg.is_diffusion else VQVAETokenizer
    return kind(cfg, encoder=encoder)
