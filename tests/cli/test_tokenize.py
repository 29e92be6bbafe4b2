"""``terramind tokenize`` on example tiles with a tiny random tokenizer (the real one is 289M parameters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from terramind.api import tokenizers as api_tokenizers
from terramind.cli.main import main
from terramind.tokenizers import (
    LEVELS_4375,
    LEVELS_15360,
    ImageTokenizer,
    TokenizerConfig,
    UNetConfig,
    ViTConfig,
    build_tokenizer,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TILE = "38D_378R_2_3.tif"
TINY_VIT = ViTConfig(dim=32, depth=1, heads=2, grid=4)
TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_ds=(2,))
CHANNELS = {"S2L2A": 12, "S1RTC": 2, "S1GRD": 2, "DEM": 1, "NDVI": 1, "LULC": 10}


def tiny_tokenizer(modality: str) -> ImageTokenizer:
    """A tiny random tokenizer with the released kind (ViT decoder for LULC, diffusion otherwise)."""
    torch.manual_seed(0)
    if modality == "LULC":
        return build_tokenizer(TokenizerConfig("LULC", 10, LEVELS_4375, TINY_VIT, TINY_VIT, classes=10))
    return build_tokenizer(TokenizerConfig(modality, CHANNELS[modality], LEVELS_15360, TINY_VIT, TINY_UNET))


@pytest.fixture
def tiny_factory(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Replace create_tokenizer by the tiny one; records the calls."""
    calls: list[tuple[str, object]] = []

    def factory(modality: str, *, weights: object = None) -> ImageTokenizer:
        calls.append((modality, weights))
        return tiny_tokenizer(modality).eval()

    monkeypatch.setattr(api_tokenizers, "create_tokenizer", factory)
    return calls


@pytest.mark.parametrize("modality", ["S2L2A", "LULC"])
def test_tokenize_writes_ids_and_georef(
    modality: str, tiny_factory: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = EXAMPLES / modality / TILE
    out = tmp_path / "tokens.npz"
    assert main(["tokenize", str(src), "--modality", modality, "-o", str(out), "--weights", "random"]) == 0
    assert tiny_factory == [(modality, None)]
    assert "untrained" in capsys.readouterr().err
    with np.load(out) as npz, rasterio.open(src) as ds:
        assert npz["ids"].shape == (14, 14) and npz["ids"].dtype == np.uint16
        assert int(npz["ids"].max()) < int(npz["codebook_size"])
        assert str(npz["modality"]) == modality
        assert tuple(npz["transform"]) == tuple(ds.transform)[:6]
        assert str(npz["crs"]) == ds.crs.to_wkt()


def test_tokenize_matches_the_library(tiny_factory: list, tmp_path: Path) -> None:
    src = EXAMPLES / "DEM" / TILE
    out = tmp_path / "dem.npz"
    assert main(["tokenize", str(src), "-m", "dem", "-o", str(out), "--weights", "random"]) == 0
    with rasterio.open(src) as ds:
        x = (torch.from_numpy(ds.read().astype(np.float32))[None] - 670.665) / 951.272
    with torch.inference_mode():
        expected = tiny_tokenizer("DEM").eval().encode(x)[0].numpy()
    assert np.array_equal(np.load(out)["ids"], expected)


def test_wrong_band_count_is_a_one_line_error(
    tiny_factory: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tokenize", str(EXAMPLES / "DEM" / TILE), "-m", "S1RTC", "-o", str(tmp_path / "x.npz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_default_weights_go_to_the_hub_and_fail_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    code = main(["tokenize", str(EXAMPLES / "NDVI" / TILE), "-m", "NDVI", "-o", str(tmp_path / "x.npz")])
    assert code == 2
    err = capsys.readouterr().err
    assert "TerraMind_Tokenizer_NDVI.pt" in err and "--weights PATH" in err
    assert not (tmp_path / "x.npz").exists()
