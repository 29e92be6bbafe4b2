"""The bf16 CPU decode's prepacked convolutions: packed after the first call, bit-identical, module intact."""

from __future__ import annotations

import pytest
import torch
from tiny_tokenizers import tiny_config
from torch.func import functional_call

from terramind.tokenizers import build_tokenizer
from terramind.tokenizers.image import _cast_weights
from terramind.tokenizers.unet import Conv2d, PrepackedUNet, prepacks

pytestmark = pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    reason="needs oneDNN with bf16 kernels on this CPU (prepacking is off without them)",
)


@pytest.mark.parametrize("given", ["all", "linear"])  # conv weights cast up front, or packed from fp32 ones
def test_prepacked_unet_is_bit_identical_and_packs_after_the_first_call(given: str) -> None:
    torch.manual_seed(0)
    unet = build_tokenizer(tiny_config("S1RTC", 2)).decoder.eval()
    with torch.no_grad():  # the zero-initialised output conv would make every output exactly 0
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, codes = torch.randn(1, 2, 32, 32), torch.rand(1, 5, 2, 2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert prepacks("cpu", torch.bfloat16) and not prepacks("cpu", torch.float16)
        weights = _cast_weights(unet, torch.bfloat16, channels_last=True)
        linear = {k: v for k, v in weights.items() if not k.startswith(tuple(_conv_names(unet)))}
        # it puts the packed conv weights into its dict in place
        packed = PrepackedUNet(unet, dict(weights) if given == "all" else linear)
        outs = [packed(x, torch.tensor([t]), codes) for t in (999, 499, 99)]
        expected = [functional_call(unet, weights, (x, torch.tensor([t]), codes)) for t in (999, 499, 99)]
    assert all(torch.equal(a, b) for a, b in zip(outs, expected, strict=True))
    convs = [n for n, m in unet.named_modules() if isinstance(m, Conv2d)]
    assert packed.packed and all(packed.weights[f"{n}.weight"].is_mkldnn for n in convs)
    assert not any(m._forward_pre_hooks for m in unet.modules())  # the size hooks are gone
    assert all(not p.is_mkldnn and p.dtype == torch.float32 for p in unet.parameters())
    assert not prepacks("cpu", torch.bfloat16)  # outside autocast: fp32, nothing packed


def _conv_names(unet: torch.nn.Module) -> list[str]:
    return [f"{n}." for n, m in unet.named_modules() if isinstance(m, Conv2d)]
