"""Image tokenizers on tiny configurations: shapes, decoding contracts, bad input."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from tiny_tokenizers import tiny_config

from terramind.core.errors import InputError, ShapeError
from terramind.tokenizers import DiVAETokenizer, ImageTokenizer, UNetConfig, VQVAETokenizer, build_tokenizer
from terramind.tokenizers.vit import sincos_table


@pytest.fixture(scope="module")
def s1() -> ImageTokenizer:
    torch.manual_seed(0)
    return build_tokenizer(tiny_config("S1RTC", 2)).eval()


@pytest.fixture(scope="module")
def lulc() -> ImageTokenizer:
    torch.manual_seed(0)
    return build_tokenizer(tiny_config("LULC", 10)).eval()


def test_kinds_and_properties(s1: ImageTokenizer, lulc: ImageTokenizer) -> None:
    assert isinstance(s1, DiVAETokenizer) and isinstance(lulc, VQVAETokenizer)
    assert (s1.modality, s1.codebook_size, s1.num_channels) == ("S1RTC", 15360, 2)
    assert (lulc.modality, lulc.codebook_size, lulc.num_channels) == ("LULC", 4375, 10)


def test_encode_gives_one_token_per_16px(s1: ImageTokenizer) -> None:
    ids = s1.encode(torch.randn(2, 2, 48, 32))
    assert ids.shape == (2, 3, 2) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < s1.codebook_size


def test_decode_is_reproducible_and_matches_explicit_noise(s1: ImageTokenizer) -> None:
    ids = torch.randint(0, s1.codebook_size, (1, 2, 2))
    a = s1.decode(ids, steps=2, generator=torch.Generator().manual_seed(5))
    b = s1.decode(ids, steps=2, noise=torch.randn((1, 2, 32, 32), generator=torch.Generator().manual_seed(5)))
    c = s1.decode(ids, steps=2, generator=torch.Generator().manual_seed(6))
    assert a.shape == (1, 2, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.abs().max()) <= 1.0  # x0 is clipped to [-1, 1] (thresholding)


def test_lulc_accepts_ids_and_one_hot_alike(lulc: ImageTokenizer) -> None:
    classes = torch.randint(0, 10, (1, 32, 32))
    one_hot = torch.nn.functional.one_hot(classes, 10).permute(0, 3, 1, 2).float()
    ids = lulc.encode(classes)
    assert torch.equal(ids, lulc.encode(classes[:, None]))
    assert torch.equal(ids, lulc.encode(one_hot))
    logits = lulc.decode(ids)
    assert logits.shape == (1, 10, 32, 32)


def test_wrong_channel_count(s1: ImageTokenizer) -> None:
    with pytest.raises(ShapeError, match=r"\(B, 2, H, W\)"):
        s1.encode(torch.randn(1, 3, 32, 32))


def test_size_not_multiple_of_16(s1: ImageTokenizer) -> None:
    with pytest.raises(ShapeError, match="multiples of 16"):
        s1.encode(torch.randn(1, 2, 40, 32))


def test_diffusion_decoding_needs_an_even_token_grid() -> None:
    """Four UNet levels (as released) x patch 4: sides must be multiples of 32 px, so 240 px fails."""
    cfg = replace(tiny_config("DEM", 1), decoder=UNetConfig(32, (1, 1, 1, 1), 1, (8,)))
    tok = build_tokenizer(cfg).eval()
    with pytest.raises(ShapeError, match="multiples of 32 px"):
        tok.decode(torch.ones(1, 15, 14, dtype=torch.long), steps=1)


def test_non_finite_input(s1: ImageTokenizer) -> None:
    x = torch.randn(1, 2, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        s1.encode(x)


def test_lulc_ids_outside_classes(lulc: ImageTokenizer) -> None:
    with pytest.raises(InputError, match="0-9"):
        lulc.encode(torch.full((1, 32, 32), 10))
    with pytest.raises(InputError, match="whole numbers"):
        lulc.encode(torch.full((1, 32, 32), 2.5))


def test_ids_outside_codebook(lulc: ImageTokenizer, s1: ImageTokenizer) -> None:
    with pytest.raises(InputError, match="4375"):
        lulc.decode(torch.full((1, 2, 2), 5000))
    with pytest.raises(InputError, match="integer"):
        s1.decode(torch.zeros(1, 2, 2), steps=1)


def test_bad_steps_and_noise_shape(s1: ImageTokenizer) -> None:
    ids = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(InputError, match="steps"):
        s1.decode(ids, steps=0)
    with pytest.raises(ShapeError, match="noise"):
        s1.decode(ids, steps=1, noise=torch.randn(1, 2, 16, 16))


def test_sincos_table_rows_then_columns() -> None:
    table = sincos_table(4, 8)
    assert table.shape == (1, 8, 4, 4)
    # first half depends on the row only, second half on the column only
    assert torch.equal(table[0, :4, 1, 0], table[0, :4, 1, 3])
    assert torch.equal(table[0, 4:, 0, 2], table[0, 4:, 3, 2])
    assert float(table[0, 0, 0, 0]) == 0.0 and float(table[0, 2, 0, 0]) == 1.0


def test_autocast_decode_casts_weights_once_and_matches_autocast_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from terramind.tokenizers import image
    from terramind.tokenizers.diffusion import ddim_sample

    casts: list[tuple[torch.dtype, bool]] = []
    cast_weights = image._cast_weights

    def counted(
        module: torch.nn.Module, dtype: torch.dtype, *, channels_last: bool, **options: Any
    ) -> dict[str, torch.Tensor]:
        casts.append((dtype, channels_last))
        return cast_weights(module, dtype, channels_last=channels_last, **options)

    monkeypatch.setattr(image, "_cast_weights", counted)

    torch.manual_seed(0)
    tok = build_tokenizer(tiny_config("S1RTC", 2)).eval()
    with torch.no_grad():  # the zero-initialised output conv would make every decode exactly 0
        for p in tok.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ids = torch.randint(0, tok.codebook_size, (1, 2, 2), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    codes = tok.quantize.ids_to_codes(ids)
    with torch.inference_mode():
        full = tok.decode(ids, steps=3, noise=noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = tok.decode(ids, steps=3, noise=noise)
            per_op = ddim_sample(lambda x, t: tok.decoder(x, t, codes), noise, 3)  # autocast casting per op
    # once for the 3-step autocast decode (channels-last, as the CPU's bf16 feature maps), never in fp32
    assert casts == [(torch.bfloat16, True)]
    assert torch.equal(fast, per_op)
    assert not torch.equal(fast, full)  # bf16 really ran
    assert all(p.dtype == torch.float32 for p in tok.parameters())  # the module itself is untouched
