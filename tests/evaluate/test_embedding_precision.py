"""The encoder precision of embeddings (``precision`` of embed_batches, cell_tile_fn and embed_scene).

fp32 is today's exact path (no autocast); bf16 autocasts the encoder's matmuls and differs from it only by
bf16 rounding. The bound: each of the ``4 L + 1`` matmul stages of an ``L``-block encoder (patch embedding;
qkv, projection, fc1, fc2 per block) rounds both operands to bf16 (unit roundoff 2**-9 each, so 2**-8 per
product); independent rounding errors add in quadrature, and the final LayerNorm keeps the scale, so the
relative (Frobenius) error of the output is below ``sqrt(4 L + 1) * 2**-8`` (12 blocks: 0.027; measured
0.004-0.005).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from terramind.build import precision
from terramind.data.tiles import GeoTiffDataset, modality_inputs
from terramind.evaluate.embeddings import embed_batches, embed_scene

NAMES = ["282D_485L_3_3", "38D_378R_2_3"]


def bf16_bound(blocks: int) -> float:
    """Relative error bound of bf16 autocast against fp32 for an encoder of ``blocks`` blocks (module doc)."""
    return math.sqrt(4 * blocks + 1) * 2**-8


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    from terramind.api.models import create_backbone

    torch.manual_seed(0)
    return create_backbone("terramind_v1_tiny", ["S2L2A"], weights=None).eval()


@pytest.fixture(scope="module")
def tiles(examples_dir: Path) -> torch.Tensor:
    specs = modality_inputs(["S2L2A"], {}, {}, {}, {})
    dataset = GeoTiffDataset([{"S2L2A": examples_dir / "S2L2A" / f"{n}.tif"} for n in NAMES], specs)
    return torch.stack([dataset[i]["inputs"]["S2L2A"] for i in range(len(NAMES))])  # (2, 12, 224, 224)


@pytest.mark.parametrize("pooling", ["mean", "tokens"])
def test_fp32_is_todays_path_and_bf16_is_within_the_rounding_bound(
    tiny: torch.nn.Module, tiles: torch.Tensor, pooling: Any
) -> None:
    with torch.no_grad():
        tokens = tiny({"S2L2A": tiles})[-1]  # (2, 196, 192): the encoder without autocast
    today = (tokens.mean(dim=1) if pooling == "mean" else tokens).numpy()
    fp32 = embed_batches(tiny, [{"S2L2A": tiles}], pooling=pooling, precision="fp32")
    np.testing.assert_array_equal(fp32, today)
    bf16 = embed_batches(tiny, [{"S2L2A": tiles}], pooling=pooling, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # the option reaches the encoder
    assert relative_error(bf16, fp32) < bf16_bound(len(tiny.encoder))


@pytest.mark.parametrize(("flags", "same_as"), [(set(), "fp32"), ({"avx512_bf16"}, "bf16")])
def test_auto_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch, tiny: torch.nn.Module, tiles: torch.Tensor, flags: set[str], same_as: str
) -> None:
    batch = [{"S2L2A": tiles[:1]}]
    expected = embed_batches(tiny, batch, precision=same_as)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    np.testing.assert_array_equal(embed_batches(tiny, batch, precision="auto"), expected)


def test_an_unknown_precision_is_refused(tiny: torch.nn.Module, tiles: torch.Tensor) -> None:
    from terramind.core.errors import InputError

    with pytest.raises(InputError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        embed_batches(tiny, [{"S2L2A": tiles[:1]}], precision="fp16")


def test_scene_products_run_in_the_precision_and_resume_only_in_it(
    monkeypatch: pytest.MonkeyPatch, examples_dir: Path, tmp_path: Path, tiny: torch.nn.Module
) -> None:
    import rasterio

    import terramind.scene

    scene = examples_dir / "S2L2A" / f"{NAMES[0]}.tif"
    products = {}
    for p in ("fp32", "bf16"):
        embed_scene(tiny, {"S2L2A": scene}, tmp_path / f"{p}.tif", tile=112, overlap=16, precision=p)
        with rasterio.open(tmp_path / f"{p}.tif") as src:
            products[p] = src.read()  # (192, 14, 14), rounded to float16 (2**-11 relative)
    assert not np.array_equal(products["bf16"], products["fp32"])
    assert relative_error(products["bf16"], products["fp32"]) < bf16_bound(len(tiny.encoder)) + 2**-10
    seen: list[dict[str, Any]] = []
    real = terramind.scene.run_scene

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs["settings"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(terramind.scene, "run_scene", spy)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    embed_scene(tiny, {"S2L2A": scene}, tmp_path / "auto.tif", tile=112, overlap=16)
    assert seen[-1]["precision"] == "bf16"  # the resume check holds the resolved precision, not "auto"
    with rasterio.open(tmp_path / "auto.tif") as src:
        np.testing.assert_array_equal(src.read(), products["bf16"])
