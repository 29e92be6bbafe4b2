"""Tokenizer release records and loading weights (files the tests write themselves)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from terramind.api.tokenizers import create_coords_tokenizer, create_tokenizer
from terramind.checkpoints.tokenizers import (
    TOKENIZERS,
    load_image_tokenizer,
    tokenizer_record,
)
from terramind.core.errors import CheckpointError, ModalityError
from terramind.modalities import get_modality
from terramind.tokenizers import build_tokenizer

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
from tiny_tokenizers import tiny_config

KEYS = Path(__file__).parent / "keys"  # state-dict listings of the reference tokenizer builds


@pytest.mark.parametrize("mod", [m for m in TOKENIZERS if m != "coords"])
def test_records_agree_with_the_catalog(mod: str) -> None:
    rec = TOKENIZERS[mod]
    spec = get_modality(mod)
    assert rec.config is not None
    assert rec.name == spec.tokenizer
    assert rec.config.levels == spec.fsq_levels
    assert rec.hub.repo_id == f"ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{mod}"
    assert rec.hub.filename == f"TerraMind_Tokenizer_{mod}.pt"
    channels = 10 if mod == "LULC" else spec.num_bands
    assert rec.config.channels == channels
    assert rec.config.is_diffusion == (mod != "LULC")


@pytest.mark.skipif(not KEYS.is_dir(), reason="tokenizer key listings (tests/checkpoints/keys) missing")
@pytest.mark.parametrize("mod", [m for m in TOKENIZERS if m != "coords"])
def test_full_size_keys_match_the_official_listing(mod: str) -> None:
    """Build on the meta device (no memory): every key and shape equals the reference's state dict."""
    rec = TOKENIZERS[mod]
    assert rec.config is not None
    with torch.device("meta"):
        tok = build_tokenizer(rec.config)
    ours = {k: tuple(v.shape) for k, v in tok.state_dict().items()}
    listing = (KEYS / f"terramind_v1_tokenizer_{mod.lower()}.txt").read_text().splitlines()
    official = {
        name: tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        for name, shape, _ in (line.split("\t") for line in listing if line and not line.startswith("#"))
    }
    assert ours == official
    assert sum(p.numel() for p in tok.parameters()) == rec.params


def test_aliases_and_modalities_without_tokenizer() -> None:
    assert tokenizer_record("tok_sen1rtc@224").modality == "S1RTC"
    with pytest.raises(ModalityError, match="no TerraMind v1 tokenizer"):
        tokenizer_record("S2L1C")


def test_weights_round_trip_through_a_file(tmp_path: Path) -> None:
    cfg = tiny_config("DEM", 1)
    src = build_tokenizer(cfg)
    path = tmp_path / "dem.pt"
    torch.save(src.state_dict(), path)
    loaded = load_image_tokenizer("DEM", path, config=cfg)
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded.encode(x), src.eval().encode(x))


def test_checkpoint_of_another_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "s2.pt"
    torch.save(build_tokenizer(tiny_config("S2L2A", 12)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not a DEM tokenizer checkpoint.*S2L2A"):
        load_image_tokenizer("DEM", path, config=tiny_config("DEM", 1))
    path_lulc = tmp_path / "lulc.pt"
    torch.save(build_tokenizer(tiny_config("LULC", 10)).state_dict(), path_lulc)
    with pytest.raises(CheckpointError, match="ViT decoder"):
        load_image_tokenizer("NDVI", path_lulc, config=tiny_config("NDVI", 1))


def test_missing_keys_are_reported(tmp_path: Path) -> None:
    cfg = tiny_config("NDVI", 1)
    sd = build_tokenizer(cfg).state_dict()
    del sd["quant_proj.bias"]
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"quant_proj\.bias"):
        load_image_tokenizer("NDVI", path, config=cfg)


def test_hub_offline_gives_actionable_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    # the hub library reads its environment at import: patch its constants too (else it tries the network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"TerraMind_Tokenizer_DEM\.pt.*weights="):
        create_tokenizer("DEM", weights="hub")


def test_coords_needs_a_vocabulary() -> None:
    with pytest.raises(CheckpointError, match="vocabulary"):
        create_coords_tokenizer(None)
    with pytest.raises(CheckpointError, match="vocabulary"):
        create_coords_tokenizer("random")
    with pytest.raises(ModalityError, match="create_coords_tokenizer"):  # one return type per verb
        create_tokenizer("coords")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_decode_only_tokenizer_reads_no_encoder(tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file

    cfg = tiny_config("DEM", 1)
    src = build_tokenizer(cfg).eval()
    path = tmp_path / f"dem{suffix}"
    if suffix == ".pt":
        torch.save(src.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dec = load_image_tokenizer("DEM", path, config=cfg, decode_only=True)
    assert dec.encoder is None
    assert not any(k.startswith("encoder.") for k in dec.state_dict())
    ids = torch.randint(0, dec.codebook_size, (1, 2, 2))
    noise = torch.randn(1, 1, 32, 32)
    assert torch.equal(dec.decode(ids, steps=2, noise=noise), src.decode(ids, steps=2, noise=noise))
    with pytest.raises(CheckpointError, match=r"not a S1RTC tokenizer checkpoint"):  # still recognised
        load_image_tokenizer("S1RTC", path, config=tiny_config("S1RTC", 2), decode_only=True)


def test_a_half_precision_file_loads_as_float32(tmp_path: Path) -> None:
    cfg = tiny_config("DEM", 1)
    src = build_tokenizer(cfg).eval()
    path = tmp_path / "dem_fp16.pt"
    torch.save({k: v.half() for k, v in src.state_dict().items()}, path)
    loaded = load_image_tokenizer("DEM", path, config=cfg)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    weight = loaded.state_dict()["quant_proj.weight"]
    assert torch.equal(weight, src.state_dict()["quant_proj.weight"].half().float())
