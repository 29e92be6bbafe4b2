"""Tokenizer parity with the official implementation (terratorch).

CI: down-sized reference tokenizers (``make_tokenizer_goldens.py tiny``) whose weights come from a seeded
recipe repeated here; we compare token ids, codes and decoded outputs.

``parity`` marker: the six full-size tokenizers against ``peer_out/tokenizers`` (``peer_terratorch.py`` with
``--timesteps 5 --perturb 0.02``, plus ``--timesteps 50`` for DEM, then ``make_tokenizer_goldens.py fp32``).
Note that the recorded peer outputs are bf16-matmul results (terratorch's import sets float32 matmul
precision "medium"); the tight checks use the fp32 re-run, the recorded ones are compared with matching
precision.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch
from bounds import assert_fp32_close, rel_err
from recipes import recipe_weights

from terramind.checkpoints.tokenizers import load_image_tokenizer
from terramind.tokenizers import (
    LEVELS_4375,
    LEVELS_15360,
    DiVAETokenizer,
    ImageTokenizer,
    TokenizerConfig,
    UNetConfig,
    ViTConfig,
    build_tokenizer,
)
from terramind.tokenizers.diffusion import initial_noise, make_scheduler
from terramind.tokenizers.unet import GroupNorm32

GOLDENS = Path(__file__).parent / "goldens"
PEER = Path(__file__).resolve().parents[2] / "peer_out" / "tokenizers"
TINY_VIT = ViTConfig(dim=32, depth=1, heads=2, grid=4)
TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))
TINY = {
    "divae": TokenizerConfig("S1GRD", 2, LEVELS_15360, TINY_VIT, TINY_UNET),
    "vqvae": TokenizerConfig("LULC", 10, LEVELS_4375, TINY_VIT, TINY_VIT, classes=10),
}
MODS = ("S2L2A", "S1GRD", "S1RTC", "DEM", "NDVI", "LULC")


def decode_float64(tok: ImageTokenizer, ids: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """Our own decode of ``ids`` in float64, with the float32 initial noise of ``seed``.

    The reference the float32 tolerances below are derived from: the same arithmetic with a unit roundoff
    of 2^-53 instead of 2^-24. Two fp32 casts of our code that exist for half precision are lifted here:
    ``GroupNorm32`` normalises in fp32 (plain ``GroupNorm`` is the same computation on fp32 input), and the
    sinusoidal timestep features are fp32 (the same values for both runs, cast to double). The DDIM loop
    is ``ddim_sample``'s, which casts to fp32; ``test_float64_replica_is_our_decode`` checks it in fp32.
    """
    tok64 = copy.deepcopy(tok).double()
    codes = tok64.quantize.ids_to_codes(ids).double()
    if not isinstance(tok64, DiVAETokenizer):
        return tok64.decode_codes(codes)
    return _ddim_replica(tok64, codes, steps, seed)


def _ddim_replica(tok: DiVAETokenizer, codes: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """``DiVAETokenizer.decode_codes`` without its fp32 casts: runs in the tokenizer's dtype."""
    dtype = tok.quant_proj.weight.dtype
    b, _, h, w = codes.shape
    shape = (b, tok.num_channels, h * tok.patch_size, w * tok.patch_size)
    x = initial_noise(shape, torch.Generator().manual_seed(seed)).to(dtype)
    hook = tok.decoder.time_embed.register_forward_pre_hook(lambda _, args: tuple(a.to(dtype) for a in args))
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    with mock.patch.object(GroupNorm32, "forward", torch.nn.GroupNorm.forward), torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(tok.decoder(x, t, codes.to(dtype)), t, x).prev_sample
    hook.remove()
    return x


@pytest.fixture(params=sorted(TINY))
def tiny(request: pytest.FixtureRequest) -> tuple[ImageTokenizer, dict]:
    golden = torch.load(GOLDENS / f"tokenizer_tiny_{request.param}.pt", weights_only=True)
    tok = build_tokenizer(TINY[request.param]).eval()
    own = {k: tuple(v.shape) for k, v in tok.state_dict().items()}
    assert own == golden["shapes"], "our key names/shapes differ from the reference's"
    sd = recipe_weights(golden["shapes"], 7)
    # torch.randn's vectorised kernels differ from its scalar one (CPUs without AVX2) by an ulp per value,
    # so the sum of |w| agrees to 2^-24 = 6e-8 relative at worst (6e-9 measured with
    # ATEN_CPU_CAPABILITY=default); 1e-7 allows that, while one wrong weight shifts the sum by ~1e-5.
    assert sum(float(v.double().abs().sum()) for v in sd.values()) == pytest.approx(
        golden["checksum"], rel=1e-7
    )
    tok.load_state_dict(sd, strict=True)
    return tok, golden


def test_tiny_tokens_and_codes_match(tiny: tuple[ImageTokenizer, dict]) -> None:
    tok, golden = tiny
    with torch.inference_mode():
        codes, ids = tok.encode_codes(golden["x"])
    assert torch.equal(ids, golden["tokens"].long())
    # codes are level/(levels-1) in [0, 1], one rounded division each (error <= 2^-24 = 6e-8); 1e-6 is
    # far below the smallest code step (1/7), so one wrong level fails
    assert torch.allclose(codes, golden["quant"], atol=1e-6)


def test_tiny_decode_matches(tiny: tuple[ImageTokenizer, dict]) -> None:
    tok, golden = tiny
    with torch.inference_mode():
        out = tok.decode(
            golden["tokens"].long(), steps=golden["steps"], generator=torch.Generator().manual_seed(3000)
        )
        ours64 = decode_float64(tok, golden["tokens"].long(), golden["steps"], 3000)
    assert out.shape == golden["decoded"].shape
    assert_fp32_close(out, golden["decoded"], ours64)  # rel_err 4.3e-6 (DiVAE), 3.6e-7 (VQ-VAE) here


def test_tiny_decode_50_steps_matches() -> None:
    golden = torch.load(GOLDENS / "tokenizer_tiny_divae.pt", weights_only=True)
    tok = build_tokenizer(TINY["divae"]).eval()
    tok.load_state_dict(recipe_weights(golden["shapes"], 7), strict=True)
    with torch.inference_mode():
        out = tok.decode(golden["tokens"].long(), steps=50, generator=torch.Generator().manual_seed(3000))
        ours64 = decode_float64(tok, golden["tokens"].long(), 50, 3000)
    # rel_err 1.29e-4 here (8.5e-5 on the machine the golden was made on), fp32-vs-fp64 of ours 9.4e-5
    assert_fp32_close(out, golden["decoded_50"], ours64)


def test_float64_replica_is_our_decode() -> None:
    """The float64 reference's DDIM loop, run in fp32, is bit-identical to our decode."""
    golden = torch.load(GOLDENS / "tokenizer_tiny_divae.pt", weights_only=True)
    tok = build_tokenizer(TINY["divae"]).eval()
    tok.load_state_dict(recipe_weights(golden["shapes"], 7), strict=True)
    ids = golden["tokens"].long()
    with torch.inference_mode():
        out = tok.decode(ids, steps=5, generator=torch.Generator().manual_seed(3000))
        replica = _ddim_replica(tok, tok.quantize.ids_to_codes(ids), 5, 3000)
    assert torch.equal(replica, out)


# ---- full-size comparison against peer_out (excluded by default) ----


def _peer(mod: str, suffix: str = "") -> tuple[Path, Path]:
    tag = f"terramind_v1_tokenizer_{mod.lower()}_seed0_B1_perturb0.02"
    return PEER / f"{tag}.state_dict.pt", PEER / f"{tag}{suffix}"


@pytest.fixture
def matmul_precision() -> Iterator[None]:
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


@pytest.mark.parity
@pytest.mark.parametrize("mod", MODS)
@pytest.mark.parametrize("kind", ["fp32", "recorded"])
def test_full_tokenizer_parity(mod: str, kind: str, matmul_precision: None) -> None:
    suffix = ".fp32.io.pt" if kind == "fp32" else ".io.pt"
    sd_path, io_path = _peer(mod, suffix)
    if not (sd_path.is_file() and io_path.is_file()):
        pytest.skip(
            f"missing {io_path.name} / state dict: run peer_terratorch.py and make_tokenizer_goldens.py fp32"
        )
    if kind == "recorded":
        torch.set_float32_matmul_precision("medium")  # what terratorch's import sets in the peer process
    io = torch.load(io_path, weights_only=False)
    ref = io["outputs"]
    tok = load_image_tokenizer(mod, sd_path)
    with torch.inference_mode():
        codes, ids = tok.encode_codes(io["inputs"]["x"])
        out = tok.decode(ref["tokens"].long(), steps=5, generator=torch.Generator().manual_seed(3000))
    print(f"{mod} {kind}: quant max abs diff {float((codes - ref['quant']).abs().max()):.2e}")
    differing = int((ids != ref["tokens"].long()).sum())
    err = rel_err(out, ref["decoded"])
    print(f"{mod} {kind}: ids differing {differing}/{ids.numel()}, decoded max rel err {err:.2e}")
    assert differing <= max(1, ids.numel() // 10_000) if kind == "fp32" else differing <= ids.numel() // 20
    # Not re-derived (no peer outputs on the machines this was revised on): the fp32 bound should become
    # assert_fp32_close's; 2e-2 is bf16 rounding (2^-8 = 3.9e-3) over the recorded run's matmul chain.
    assert err < (1e-4 if kind == "fp32" else 2e-2)


@pytest.mark.parity
def test_full_dem_50_steps(matmul_precision: None) -> None:
    sd_path, io_path = _peer("DEM", "_T50.fp32.io.pt")
    if not (sd_path.is_file() and io_path.is_file()):
        pytest.skip("missing the 50-step DEM peer run (peer_terratorch.py --timesteps 50 --tag ..._T50)")
    io = torch.load(io_path, weights_only=False)
    tok = load_image_tokenizer("DEM", sd_path)
    with torch.inference_mode():
        out = tok.decode(
            io["outputs"]["tokens"].long(), steps=50, generator=torch.Generator().manual_seed(3000)
        )
    assert rel_err(out, io["outputs"]["decoded"]) < 1e-4  # to be replaced by assert_fp32_close (see above)
