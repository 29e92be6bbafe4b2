"""The patched, code-conditioned UNet of the DiVAE decoders (tests/checkpoints/keys).

The noisy image is folded into 4x4 patches (``C*16`` channels, channel-major), the FSQ code map is upsampled
(nearest) to the patch grid and concatenated, and a guided-diffusion-style UNet predicts the clean image
(x0-prediction). Structure of the release: 4 levels (channel multipliers 1, 2, 2, 2 of 256), 3 residual
blocks per level, single-head attention at downsampling factors 4 and 8 and in the middle, GroupNorm(32)
computed in fp32, the timestep embedding added after each block's first convolution. Submodule names
(``input_blocks.5.0.in_layers.2`` ...) follow the official state dicts, which is why the residual blocks keep
their ``nn.Sequential`` layouts (index 2 of ``out_layers`` is the release's dropout slot).

Under CPU autocast (bf16) the feature maps run channels-last (NHWC): oneDNN's bf16 convolutions, which are
~70% of a step, skip their layout reorders, and GroupNorm, SiLU and the adds have NHWC kernels. Measured on
the base S1RTC decoder, one 224 px step: 4.2 s instead of 5.1 s of CPU time (2 threads, avx512_bf16), the
same result to bf16 rounding. fp32 keeps NCHW, so the exact (parity) path is untouched.

The decode casts the weights to bf16 once per decode (channels-last, the layout oneDNN wants for
channels-last inputs), and :class:`PrepackedUNet` then reorders each convolution weight once into the blocked
layout oneDNN picks for the input size it sees (what inductor's freezing does): eager oneDNN otherwise copies
and reorders every weight in every call (``aten::copy_`` in a torch.profiler breakdown). oneDNN runs the same
kernels on the same bf16 values, so the result is bit-identical; ``benchmarks/bench_unet_step.py`` has the
A/B (a step of S1RTC, 224 px, 2 threads).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a DiVAE decoder UNet.

    Attributes:
        model_channels: Width of the first level.
        channel_mult: Width multiplier per level; each level but the last halves the resolution.
        num_res_blocks: Residual blocks per level on the way down (one more on the way up).
        attention_ds: Downsampling factors at which blocks get self-attention.
        patch_size: Pixel patch folded into channels before the UNet.
        groups: GroupNorm groups.
    """

    model_channels: int = 256
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 3
    attention_ds: tuple[int, ...] = (4, 8)
    patch_size: int = 4
    groups: int = 32

    @property
    def time_dim(self) -> int:
        """Width of the timestep embedding MLP."""
        return 4 * self.model_channels


def channels_last(device: torch.device | str) -> bool:
    """Whether the UNet runs channels-last (NHWC) on ``device`` now: under bf16/fp16 autocast on the CPU."""
    return torch.device(device).type == "cpu" and torch.is_autocast_enabled("cpu")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that also runs a weight prepacked by oneDNN (:class:`PrepackedUNet`); same state dict."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not weight.is_mkldnn:
            return super()._conv_forward(input, weight, bias)
        x = input.to(weight.dtype).contiguous(memory_format=torch.channels_last)  # as autocast casts it
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, self.padding, self.stride, self.dilation, self.groups, "none", [], ""
        )


class PrepackedUNet:
    """The UNet on bf16 ``weights``; after its first call, on conv weights prepacked for oneDNN.

    The first call records each convolution's input size (forward pre-hooks, removed after it) and runs on
    ``weights`` as they are (convolutions missing from them run on the module's fp32 weights, which autocast
    casts per call); then each :class:`Conv2d` weight is put in ``weights``, in place, as its reorder for
    that size (``mkldnn_reorder_conv2d_weight``), made from its bf16 copy in ``weights`` or, when absent,
    cast from the module's weight one at a time. Given without conv weights (what the decode does), no dense
    bf16 copy of the convolutions is ever held: memory is one packed bf16 copy. Same values, same kernels:
    bit-identical. For one decode (one input shape); bf16 autocast on the CPU only (:func:`prepacks`).

    Args:
        unet: The UNet (its own parameters are untouched).
        weights: Parameters cast to bf16, by qualified name (for ``functional_call``): its Linear layers', and
            optionally its convolutions'; owned by this object from now on (updated in place).
    """

    def __init__(self, unet: nn.Module, weights: dict[str, Tensor]) -> None:
        self.unet, self.weights = unet, weights
        self.packed = False

    def __call__(self, x: Tensor, t: Tensor, codes: Tensor) -> Tensor:
        """Predict the clean image (see :meth:`PatchedUNet.forward`)."""
        from torch.func import functional_call

        if self.packed:
            return cast(Tensor, functional_call(self.unet, self.weights, (x, t, codes)))
        sizes: dict[str, list[int]] = {}
        convs = {n: m for n, m in self.unet.named_modules() if isinstance(m, Conv2d)}
        hooks = [m.register_forward_pre_hook(_size_recorder(sizes, n)) for n, m in convs.items()]
        try:
            out = functional_call(self.unet, self.weights, (x, t, codes))
        finally:
            for hook in hooks:
                hook.remove()
        for name, size in sizes.items():
            self._pack(name, convs[name], size)
        self.packed = True
        return cast(Tensor, out)

    def _pack(self, name: str, conv: Conv2d, size: list[int]) -> None:
        """Put the conv's weight, reordered by oneDNN for input ``size``, and its bf16 bias in ``weights``."""
        key = f"{name}.weight"
        dense = self.weights.pop(key, None)
        if dense is None:  # cast here, one weight at a time: no dense bf16 copy of all of them
            dense = conv.weight.to(torch.bfloat16, memory_format=torch.channels_last)
        args = (list(cast(tuple[int, int], conv.padding)), list(conv.stride), list(conv.dilation))
        self.weights[key] = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
            dense.to_mkldnn(), *args, conv.groups, size
        )  # the stub omits the ATen op's optional input_size
        if conv.bias is not None and f"{name}.bias" not in self.weights:
            self.weights[f"{name}.bias"] = conv.bias.to(torch.bfloat16)


def _size_recorder(sizes: dict[str, list[int]], name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
    def record(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:  # returns None: arguments unchanged
        sizes[name] = list(inputs[0].shape)

    return record


def prepacks(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether a decode on ``device`` in ``dtype`` runs :class:`PrepackedUNet` (bf16 autocast on the CPU)."""
    return (
        channels_last(device)
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # oneDNN's bf16 kernels on this CPU
    )


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with fp32 statistics whatever the input dtype (as the release, for fp16/bf16 stability).

    The release upcasts reduced-precision input to fp32 and casts back. On CPU the ATen kernel already
    accumulates bf16/fp16 input in fp32 with fp32 affine parameters (same result to ~1e-8), so we skip the
    two full-tensor copies there: about 3x faster per call in the bf16 path.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x``; the output has the input's dtype."""
        with torch.autocast(x.device.type, enabled=False):
            if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16):
                return F.group_norm(x, self.num_groups, self.weight.float(), self.bias.float(), self.eps)
            out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


def timestep_features(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal timestep features ``(N, dim)`` in the release's ``[cos, sin]`` order."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angle = t.float()[:, None] * freqs[None]
    return torch.cat([angle.cos(), angle.sin()], dim=-1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, plus the projected timestep embedding, GN-SiLU-conv, and a (1x1 conv) skip."""

    def __init__(self, channels: int, out_channels: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            GroupNorm32(groups, channels), nn.SiLU(), Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels),
            nn.SiLU(),
            nn.Identity(),  # the release's (p=0) dropout slot keeps the conv at index 3
            Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the block to ``x`` ``(B, C, H, W)`` with timestep embedding ``emb`` ``(B or 1, T)``."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class SpatialAttention(nn.Module):
    """Single-head self-attention over all positions of a feature map, residual.

    The release's legacy QKV layout puts q, k, v one after another along the channel axis of a 1x1 Conv1d;
    its ``1/sqrt(sqrt(d))`` scaling of both q and k is the usual ``1/sqrt(d)``, so SDPA computes the same.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the ``H*W`` positions of ``x`` ``(B, C, H, W)``."""
        hh, ww = x.shape[-2:]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")
        # token-major q/k/v (channels contiguous) let SDPA take its fused CPU kernel, not the math fallback
        qkv = F.linear(tokens, self.qkv.weight[..., 0], self.qkv.bias)
        q, k, v = (t.unsqueeze(1) for t in qkv.chunk(3, dim=-1))  # (b, 1, n, c) each
        out = F.scaled_dot_product_attention(q, k, v)[:, 0]
        out = F.linear(out, self.proj_out.weight[..., 0], self.proj_out.bias)
        return x + rearrange(out, "b (h w) c -> b c h w", h=hh, w=ww)


class Downsample(nn.Module):
    """3x3 stride-2 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Halve the resolution."""
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 upsampling then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Double the resolution."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.ModuleList):
    """A few layers applied in order; residual blocks also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Run the layers on ``x``."""
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class PatchedUNet(nn.Module):
    """x0-predicting UNet over 4x4-patchified images, conditioned on concatenated FSQ codes.

    Args:
        channels: Image channels ``C`` (input and output).
        cond_channels: Channels of the code map (FSQ dimension, 5).
        cfg: Shape of the UNet.
    """

    def __init__(self, channels: int, cond_channels: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.channels = channels
        p2 = cfg.patch_size**2
        mc, td, g = cfg.model_channels, cfg.time_dim, cfg.groups
        self.time_embed = nn.Sequential(nn.Linear(mc, td), nn.SiLU(), nn.Linear(td, td))
        self.input_blocks = nn.ModuleList([Stage([Conv2d(channels * p2 + cond_channels, mc, 3, padding=1)])])
        skips, ch, ds = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.input_blocks.append(self._stage(ch, mult * mc, ds))
                ch = mult * mc
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.input_blocks.append(Stage([Downsample(ch)]))
                skips.append(ch)
                ds *= 2
        self.middle_block = Stage([ResBlock(ch, ch, td, g), SpatialAttention(ch, g), ResBlock(ch, ch, td, g)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                stage = self._stage(ch + skips.pop(), mult * mc, ds)
                ch = mult * mc
                if level and i == cfg.num_res_blocks:
                    stage.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(stage)
        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), Conv2d(ch, channels * p2, 3, padding=1))

    def _stage(self, ch_in: int, ch_out: int, ds: int) -> Stage:
        stage = Stage([ResBlock(ch_in, ch_out, self.cfg.time_dim, self.cfg.groups)])
        if ds in self.cfg.attention_ds:
            stage.append(SpatialAttention(ch_out, self.cfg.groups))
        return stage

    def forward(self, x: Tensor, t: Tensor, codes: Tensor) -> Tensor:
        """Predict the clean image.

        Args:
            x: Noisy image ``(B, C, H, W)``, sides multiples of ``4 * 2**(levels-1)``.
            t: Timestep, a scalar or ``(B,)`` tensor.
            codes: FSQ code map ``(B, D, h, w)``.

        Returns:
            Predicted clean image ``(B, C, H, W)``.
        """
        p = self.cfg.patch_size
        hp, wp = x.shape[-2] // p, x.shape[-1] // p
        folded = rearrange(x, "b c (h p) (w q) -> b (c p q) h w", p=p, q=p)
        cond = F.interpolate(codes.to(folded.dtype), size=(hp, wp), mode="nearest")
        emb = self.time_embed(timestep_features(t.reshape(-1), self.cfg.model_channels).to(x.device))
        h = torch.cat([folded, cond], dim=1)
        if channels_last(h.device):
            h = h.contiguous(memory_format=torch.channels_last)  # bf16 on the CPU: NHWC (module docstring)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb)
        out = self.out(h)
        return rearrange(out, "b (c p q) h w -> b c (h p) (w q)", p=p, q=p)
