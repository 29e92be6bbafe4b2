import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from terramind.checkpoints.io import HubFile, compare, fetch, load_into, read_state_dict
from terramind.core import CheckpointError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_read_pt_and_safetensors_roundtrip(tmp_path):
    sd = _net().state_dict()
    torch.save(sd, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == sd.keys()
        assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_read_unwraps_lightning_checkpoint(tmp_path):
    sd = _net().state_dict()
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "l.ckpt")
    assert read_state_dict(tmp_path / "l.ckpt").keys() == sd.keys()


def test_read_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_state_dict(tmp_path / "bad.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_load_into_strict_and_report():
    src, dst = _net(), nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    report = load_into(dst, src.state_dict())
    assert report.clean
    assert torch.equal(dst[0].weight, src[0].weight)


def test_load_into_missing_unused_mismatched():
    sd = _net().state_dict()
    partial = {k: v for k, v in sd.items() if not k.startswith("2.")}
    partial["extra.weight"] = torch.zeros(1)
    dst = _net()
    with pytest.raises(CheckpointError, match=r"2 model keys are missing.*2\.weight") as err:
        load_into(dst, partial)
    assert "extra.weight" in str(err.value)
    report = load_into(dst, partial, allow_missing=True, allow_unused=True)
    assert report.missing == ("2.weight", "2.bias") and report.unused == ("extra.weight",)
    wrong = dict(sd)
    wrong["0.weight"] = torch.zeros(5, 3)
    assert compare(dst, wrong).mismatched == ("0.weight: checkpoint (5, 3) vs model (4, 3)",)
    with pytest.raises(CheckpointError, match="another model size"):
        load_into(dst, wrong, allow_missing=True, allow_unused=True)


def test_fetch_offline_names_file_and_weights_argument(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = HubFile("ibm-esa-geospatial/TerraMind-1.0-nonexistent", "TerraMind_v1_none.pt")
    with pytest.raises(CheckpointError) as err:
        fetch(hub)
    msg = str(err.value)
    assert hub.url in msg and "weights=" in msg and "TerraMind_v1_none.pt" in msg


def test_read_keeps_only_the_requested_keys(tmp_path):
    sd = _net().state_dict()
    torch.save(sd, tmp_path / "w.pt")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "legacy.pt", "w.safetensors"):
        got = read_state_dict(tmp_path / name, keep=lambda k: k.startswith("2."))
        assert sorted(got) == ["2.bias", "2.weight"], name
        assert torch.equal(got["2.weight"], sd["2.weight"])
