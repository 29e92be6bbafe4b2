"""Tiles of any size through ``embed``, ``tokenize`` and ``reconstruct``: pad to 16, crop back, keep the grid.

Tiny random models (tokenizers from ``tests/cli/test_tokenize.py``, ``terramind_v1_tiny`` backbone): what is
checked is sizes, georeference and the padding record, not values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terramind.cli.main import main
from terramind.data.padding import crop_to, pad_to_multiple, padding_to_multiple, reflect_pad
from terramind.evaluate.embeddings import read_embeddings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from test_tokenize import tiny_factory  # noqa: F401  (fixture)

SIZES = [(120, 120), (7, 300)]  # a BigEarthNet patch, a thin strip (height, width)


def _tile(tiny_geotiff, height: int, width: int, bands: int = 12, name: str = "tile.tif") -> Path:
    data = np.random.default_rng(height * width).uniform(500, 3000, (bands, height, width)).astype("int16")
    return tiny_geotiff(data, name=name)


def test_padding_helper_mirrors_and_crops_back() -> None:
    x = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    padded, (bottom, right) = pad_to_multiple(x)
    assert padded.shape == (2, 16, 16) and (bottom, right) == (9, 13)
    np.testing.assert_array_equal(crop_to(padded, 7, 3), x)
    np.testing.assert_array_equal(padded[:, 7, :3], x[:, 5])  # mirrored about the last row, not repeated
    assert padding_to_multiple(224, 224) == (0, 0) and reflect_pad(x, 0, 0) is x


@pytest.mark.usefixtures("tiny_factory")
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_tokenize_any_size_records_padding(height: int, width: int, tiny_geotiff, tmp_path: Path) -> None:
    src = _tile(tiny_geotiff, height, width)
    out = tmp_path / "tokens.npz"
    assert main(["tokenize", str(src), "-m", "S2L2A", "-o", str(out), "--weights", "random"]) == 0
    z = np.load(out)
    grid = (-(-height // 16), -(-width // 16))
    assert z["ids"].shape == grid
    assert (int(z["pad_bottom"]), int(z["pad_right"])) == (grid[0] * 16 - height, grid[1] * 16 - width)
    assert (int(z["height"]), int(z["width"])) == (height, width)
    with rasterio.open(src) as ds:
        assert tuple(z["transform"]) == tuple(ds.transform)[:6]


@pytest.mark.usefixtures("tiny_factory")
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_reconstruct_any_size_writes_the_input_grid(
    height: int, width: int, tiny_geotiff, tmp_path: Path
) -> None:
    src = _tile(tiny_geotiff, height, width, bands=1, name="dem.tif")
    out = tmp_path / "rec.tif"
    args = ["reconstruct", str(src), "-m", "DEM", "-o", str(out), "--weights", "random"]
    assert main([*args, "--diffusion-steps", "2"]) == 0
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (b.height, b.width) == (height, width)
        assert b.transform == a.transform and b.crs == a.crs
        assert np.isfinite(b.read()).all()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_embed_any_size(height: int, width: int, tiny_geotiff, tmp_path: Path) -> None:
    src = _tile(tiny_geotiff, height, width)
    out = tmp_path / "emb.npy"
    base = ["embed", "--input", f"S2L2A={src}", "-o", str(out), "--model", "terramind_v1_tiny"]
    assert main([*base, "--weights", "random", "--pooling", "tokens"]) == 0
    _, emb = read_embeddings(out)
    assert emb.shape == (1, -(-height // 16) * -(-width // 16), 192)  # the padded token grid


def test_embed_resize_224(tiny_geotiff, tmp_path: Path) -> None:
    src = _tile(tiny_geotiff, 120, 120)
    out = tmp_path / "emb.npy"
    base = ["embed", "--input", f"S2L2A={src}", "-o", str(out), "--model", "terramind_v1_tiny"]
    assert main([*base, "--weights", "random", "--pooling", "tokens", "--resize", "224"]) == 0
    assert read_embeddings(out)[1].shape == (1, 14 * 14, 192)  # 224 px = 14 x 14 tokens
