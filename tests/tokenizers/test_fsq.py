"""FSQ: TerraMind's sigmoid variant, first dimension least significant."""

from __future__ import annotations

import pytest
import torch

from terramind.core.errors import InputError
from terramind.tokenizers import FSQ, LEVELS_4375, LEVELS_15360


@pytest.mark.parametrize(("levels", "size"), [(LEVELS_15360, 15360), (LEVELS_4375, 4375)])
def test_codebook_round_trip_is_identity(levels: tuple[int, ...], size: int) -> None:
    fsq = FSQ(levels)
    assert fsq.codebook_size == size
    ids = torch.arange(size).reshape(1, 1, size)
    codes = fsq.ids_to_codes(ids)
    assert codes.shape == (1, 5, 1, size)
    assert float(codes.min()) == 0.0 and float(codes.max()) == 1.0
    # a code is a fixed point: logit(code) quantises back to the same id
    z = torch.logit(codes.clamp(1e-4, 1 - 1e-4).double()).float()
    codes_back, ids_back = fsq.quantize(z)
    assert torch.equal(ids_back, ids)
    assert torch.allclose(codes_back, codes)


def test_first_dimension_is_least_significant() -> None:
    fsq = FSQ(LEVELS_15360)
    digits = torch.tensor([1, 0, 0, 0, 0]).float()
    z = torch.logit(digits / (torch.tensor(LEVELS_15360) - 1)).clamp(-20, 20).view(1, 5, 1, 1)
    assert int(fsq.quantize(z)[1]) == 1
    z[0, 0] = -20.0
    z[0, 1] = 20.0  # dimension 1 at its top level 7 -> 7 * 8
    assert int(fsq.quantize(z)[1]) == 56


def test_quantize_has_straight_through_gradient() -> None:
    fsq = FSQ(LEVELS_15360)
    z = torch.randn(2, 5, 3, 3, requires_grad=True)
    codes, _ = fsq.quantize(z)
    codes.sum().backward()
    assert z.grad is not None and bool((z.grad > 0).all())


def test_ids_outside_codebook_are_rejected() -> None:
    fsq = FSQ(LEVELS_4375)
    with pytest.raises(InputError, match=r"\[0, 4375\)"):
        fsq.ids_to_codes(torch.tensor([[[4375]]]))
    with pytest.raises(InputError, match="integer"):
        fsq.ids_to_codes(torch.zeros(1, 2, 2))
    with pytest.raises(InputError, match="shape"):
        fsq.ids_to_codes(torch.zeros(4, dtype=torch.long))
