"""Model records and weight loading: official-layout files, backbone-only files, our own saves, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from terramind.api.models import create_backbone, create_model
from terramind.checkpoints.models import MODELS, model_record
from terramind.core.errors import CheckpointError, InputError, ModalityError, ShapeError

TINY = "terramind_v1_tiny"
S2 = "encoder_embeddings.untok_sen2l2a@224.proj.weight"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A full tiny checkpoint in the official layout (what TerraMind_v1_tiny.pt holds), random weights."""
    torch.manual_seed(0)
    sd = create_model(TINY).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "TerraMind_v1_tiny.pt"
    torch.save(sd, path)
    return path, sd


def test_records_are_consistent() -> None:
    assert list(MODELS) == [f"terramind_v1_{s}" for s in ("tiny", "small", "base", "large")]
    for name, rec in MODELS.items():
        size = name.rsplit("_", 1)[1]
        assert rec.config.name == name and rec.hub.filename == f"TerraMind_v1_{size}.pt"
        assert rec.hub.repo_id == f"ibm-esa-geospatial/TerraMind-1.0-{size}"
    assert model_record("base") is MODELS["terramind_v1_base"]
    with pytest.raises(InputError, match="terramind_v1_base"):
        model_record("terramind_v1_bsae")


def test_full_model_round_trip_pt_and_safetensors(official, tmp_path: Path) -> None:
    path, sd = official
    model = create_model(TINY, weights=path)
    assert torch.equal(model.state_dict()[S2], sd[S2])
    st = tmp_path / "tiny.safetensors"
    save_file({k: v.clone().contiguous() for k, v in sd.items()}, st)
    again = create_model(TINY, weights=st)
    assert torch.equal(again.state_dict()["decoder.0.mlp.fc1.weight"], sd["decoder.0.mlp.fc1.weight"])
    # safetensors' save_model stores tied tensors once: the other names are filled from that one
    logits = "decoder_embeddings.tok_lulc@224.to_logits.weight"
    shared = ("to_logits.weight", "mod_emb")
    once = {k: v.clone() for k, v in sd.items() if not (k.startswith("decoder_emb") and k.endswith(shared))}
    save_file(once, st)
    tied = create_model(TINY, weights=st).state_dict()
    assert torch.equal(tied[logits], sd[logits])


def test_backbone_takes_its_part_and_ignores_the_rest(official) -> None:
    path, sd = official
    bb = create_backbone(TINY, ["S2L2A", "LULC"], weights=path)
    assert torch.equal(bb.state_dict()[S2], sd[S2])
    lulc = "encoder_embeddings.tok_lulc@224.token_emb.weight"
    assert torch.equal(bb.state_dict()[lulc], sd[lulc])
    assert "decoder_norm.weight" not in bb.state_dict()


def test_backbone_only_file_and_reference_tokenizer_keys(official, tmp_path: Path) -> None:
    _, sd = official
    part = {
        k: v
        for k, v in sd.items()
        if k.startswith(("encoder.", "encoder_norm", "encoder_embeddings.untok_s"))
    }
    part["tokenizer.tok_lulc@224.encoder.weight"] = torch.zeros(3)  # what a reference backbone also saves
    path = tmp_path / "backbone.pt"
    torch.save(part, path)
    bb = create_backbone(TINY, ["S2L2A"], weights=path)
    assert torch.equal(bb.state_dict()["encoder.3.attn.qkv.weight"], sd["encoder.3.attn.qkv.weight"])
    with pytest.raises(CheckpointError, match="create_backbone"):  # a backbone file cannot fill the decoder
        create_model(TINY, weights=path)
    with pytest.raises(CheckpointError, match="untok_dem@224"):  # nor a modality it does not hold
        create_backbone(TINY, ["DEM"], weights=path)


def test_new_modality_and_concat_token_start_fresh(official) -> None:
    path, sd = official
    bb = create_backbone(TINY, ["S2L2A", {"MYSENSOR": 4}], weights=path, merge="concat")
    assert torch.equal(bb.state_dict()[S2], sd[S2])
    out = bb({"MYSENSOR": torch.randn(1, 4, 32, 32)})
    assert out[-1].shape == (1, 4, 384) and len(out) == 12


def test_bands_copy_pretrained_columns_and_reload(official, tmp_path: Path) -> None:
    path, sd = official
    rgb = ["RED", "GREEN", "BLUE"]
    bb = create_backbone(TINY, ["S2L2A"], weights=path, bands={"S2L2A": rgb})
    w = bb.state_dict()[S2].reshape(192, 256, 3)
    ref = sd[S2].reshape(192, 256, 12)
    assert torch.equal(w[..., 0], ref[..., 3]) and torch.equal(w[..., 2], ref[..., 1])
    saved = tmp_path / "rgb_backbone.pt"
    torch.save(bb.state_dict(), saved)
    again = create_backbone(TINY, ["S2L2A"], weights=saved, bands={"S2L2A": rgb})
    assert torch.equal(again.state_dict()[S2], bb.state_dict()[S2])
    with pytest.raises(ModalityError):
        create_backbone(TINY, ["LULC"], bands={"LULC": ["A"]})


def test_bad_checkpoints(official, tmp_path: Path) -> None:
    _, sd = official
    small_like = {
        "encoder_norm.weight": torch.ones(384),
        **{f"encoder.{i}.x": torch.zeros(1) for i in range(12)},
    }
    torch.save(small_like, tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="terramind_v1_small"):
        create_model(TINY, weights=tmp_path / "small.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        create_backbone(TINY, ["S2L2A"], weights=tmp_path / "corrupt.pt")
    torch.save({k: v for k, v in sd.items() if k != "encoder.5.mlp.fc2.bias"}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"encoder\.5\.mlp\.fc2\.bias"):
        create_backbone(TINY, ["S2L2A"], weights=tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model(TINY, weights=tmp_path / "nope.pt")


def test_hub_offline_names_file_and_weights_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-terramind-hf-home")
    with pytest.raises(CheckpointError, match=r"TerraMind_v1_small\.pt.*weights="):
        create_backbone("terramind_v1_small", ["S2L2A"], weights="hub")


def test_bad_names() -> None:
    with pytest.raises(InputError, match="unknown model"):
        create_backbone("terramind_v2_tiny", ["S2L2A"])
    with pytest.raises(ModalityError, match="S2L2A"):
        create_backbone(TINY, ["S2L3A"])


def test_readme_example_on_a_real_tile() -> None:
    """The README's backbone example: a real S2L2A tile plus LULC ids, random weights."""
    import rasterio

    from terramind.modalities import standardize

    examples = Path(__file__).resolve().parents[2] / "examples"
    with rasterio.open(examples / "S2L2A" / "38D_378R_2_3.tif") as src:
        s2 = standardize("S2L2A", torch.from_numpy(src.read().astype("float32"))[None])
    lulc_ids = torch.randint(0, 4375, (1, 14, 14))  # tokens from the LULC tokenizer in real use
    backbone = create_backbone(TINY, ["S2L2A", "LULC"], merge="mean")
    with torch.no_grad():
        features = backbone({"S2L2A": s2, "LULC": lulc_ids})
    assert len(features) == 12 and features[-1].shape == (1, 196, 192)
    assert torch.isfinite(features[-1]).all()
    with pytest.raises(ShapeError, match="multiples of 16"):
        backbone({"S2L2A": s2[..., :200, :200]})
