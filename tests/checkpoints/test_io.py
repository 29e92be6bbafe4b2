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


def _no_unpickling_advice(err: pytest.ExceptionInfo[CheckpointError]) -> None:
    # torch's advice to unpickle an untrusted file (weights_only=False) is never quoted
    assert "weights_only" not in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path, value, suffix):
    sd = _net().state_dict()
    sd["2.weight"][0, :3] = value  # three bad values in one tensor
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match=r"tensor '2\.weight' holds 3 NaN/Inf values") as err:
        read_state_dict(path)
    assert str(path) in str(err.value)
    assert read_state_dict(path, keep=lambda k: k != "2.weight").keys() == {"0.weight", "0.bias", "2.bias"}


def test_integer_weights_for_float_parameters_are_refused(tmp_path):
    sd = _net().state_dict()
    sd["0.weight"] = torch.ones(4, 3, dtype=torch.int64)  # right shape, wrong kind: cast silently before
    path = tmp_path / "int.pt"
    torch.save(sd, path)
    what = f"weights file {str(path)!r}"
    for assign in (False, True):
        expected = r"tensor '0\.weight' has dtype int64, expected a floating"
        with pytest.raises(CheckpointError, match=expected) as e:
            load_into(_net(), read_state_dict(path), what=what, assign=assign)
        assert str(path) in str(e.value)


def test_integer_buffers_may_stay_integer():
    class Counted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    src = Counted()
    src.steps += 7
    dst = Counted()
    load_into(dst, src.state_dict())
    assert int(dst.steps) == 7 and dst.steps.dtype == torch.int64


def _truncated(path, data: bytes) -> None:
    path.write_bytes(data[: len(data) // 2])


def test_truncated_and_foreign_torch_files_are_one_error(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "w.pt")
    _truncated(tmp_path / "truncated.pt", (tmp_path / "w.pt").read_bytes())
    torch.save(_net().state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    _truncated(tmp_path / "legacy_truncated.pt", (tmp_path / "legacy.pt").read_bytes())
    (tmp_path / "junk.pt").write_bytes(b"junk" * 100)  # a KeyError inside torch's legacy reader
    for name in ("truncated.pt", "legacy_truncated.pt", "junk.pt"):
        with pytest.raises(CheckpointError, match="truncated, corrupt or not a PyTorch") as err:
            read_state_dict(tmp_path / name)
        assert name in str(err.value)
        _no_unpickling_advice(err)


class _Pickled:
    """A class torch.load(weights_only=True) refuses to rebuild."""


def test_files_with_pickled_objects_are_refused_for_safety(tmp_path):
    torch.save({"w": torch.zeros(2), "extra": _Pickled()}, tmp_path / "objects.pt")
    with pytest.raises(CheckpointError, match=r"not plain tensors .*_Pickled.* refused for safety") as err:
        read_state_dict(tmp_path / "objects.pt")
    assert "objects.pt" in str(err.value)
    _no_unpickling_advice(err)


def test_malformed_safetensors_are_one_error(tmp_path):
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(tmp_path / "w.safetensors"))
    _truncated(tmp_path / "truncated.safetensors", (tmp_path / "w.safetensors").read_bytes())
    (tmp_path / "text.safetensors").write_bytes(b"this is not a safetensors file")
    (tmp_path / "header.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")  # header too large
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name in ("truncated", "text", "header", "empty"):
        with pytest.raises(CheckpointError, match="truncated, corrupt or not a PyTorch/safetensors") as err:
            read_state_dict(tmp_path / f"{name}.safetensors")
        assert f"{name}.safetensors" in str(err.value)
        _no_unpickling_advice(err)
