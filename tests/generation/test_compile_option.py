"""The compile option of a generation: when decoders run compiled, and that compiling changes little."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny import tiny_generator, tiny_tokenizer

from terramind.core.errors import InputError
from terramind.generation import options as options_module
from terramind.generation.generate import GenerationOptions

SIZE = 64  # 4 x 4 tokens


def s2(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 12, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 3000


def recording(gen: Any, name: str) -> list[bool]:
    """Replace a tokenizer's decode by one that records its ``compile`` argument (and decodes eager)."""
    seen: list[bool] = []
    tokenizer = gen.tokenizers[name]
    decode = tokenizer.decode

    def record(ids: torch.Tensor, **kw: Any) -> torch.Tensor:
        seen.append(kw.pop("compile"))
        return decode(ids, **kw)

    tokenizer.decode = record
    return seen


def test_defaults_are_auto() -> None:
    opts = GenerationOptions()
    assert (opts.precision, opts.compile) == ("auto", "auto")
    assert GenerationOptions.from_mapping({"compile": True, "precision": "fp32"}).compile is True


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_compile_accepts_only_true_false_or_auto(value: object) -> None:
    with pytest.raises(InputError, match="compile must be true, false or 'auto'"):
        GenerationOptions(compile=value)  # type: ignore[arg-type]


def test_auto_never_compiles_on_the_cpu_and_explicit_values_are_obeyed() -> None:
    gen = tiny_generator(["S2L2A"], ["S1RTC", "LULC"])
    seen = recording(gen, "S1RTC")
    for compile in ("auto", "auto", "auto", False):
        gen.generate({"S2L2A": s2()}, GenerationOptions(diffusion_steps=1, compile=compile), seed=0)
    assert seen == [False, False, False, False]


def test_auto_compiles_a_shape_once_it_has_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a GPU (AUTO_COMPILE_AFTER["cuda"] = 1): a shape's first call is eager, later ones compiled."""
    monkeypatch.setitem(options_module.AUTO_COMPILE_AFTER, "cpu", 1)
    gen = tiny_generator(["S2L2A"], ["S1RTC", "LULC"])
    diffusion, classes = recording(gen, "S1RTC"), recording(gen, "LULC")
    opts = GenerationOptions(diffusion_steps=1, precision="fp32")
    for batch in (1, 1, 2, 1):
        gen.generate({"S2L2A": s2(batch)}, opts, seed=0)
    gen.generate({"S2L2A": s2(1)}, opts.replace(precision="bf16"), seed=0)  # another dtype: its first run
    assert diffusion == [False, True, False, True, False]
    assert classes == [False] * 5  # a ViT class decoder has no compiled path


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_decode_matches_eager(precision: str) -> None:
    """Inductor reorders and fuses the fp32 arithmetic, so results differ by rounding only.

    Bound: a UNet step is a chain of ~30 dependent ops, three DDIM steps ~100; each fp32 rounding is 6e-8
    relative, GroupNorm's division by a standard deviation can amplify an error ~10x: 100 * 6e-8 * 10 = 6e-5,
    so 1e-4 of the output's range. In bf16 each rounding is 4e-3 relative and compiled kernels keep more in
    fp32 than eager autocast does: the bound is 0.05 (a few bf16 roundings through the same chain).
    """
    tok = tiny_tokenizer("S1RTC")
    ids = torch.randint(0, tok.codebook_size, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        eager = tok.decode(ids, steps=3, noise=noise)
        compiled = tok.decode(ids, steps=3, noise=noise, compile=True)
        again = tok.decode(ids, steps=3, noise=noise, compile=True)
    bound = 1e-4 if precision == "fp32" else 5e-2
    assert float((compiled - eager).abs().max()) <= bound * float(eager.abs().max())
    assert torch.equal(compiled, again)  # one compiled graph, deterministic
    assert not any(name.startswith("_compiled") for name in tok.state_dict())  # state dict unchanged
