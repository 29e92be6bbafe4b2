"""The one weights specification: its accepted forms, its errors, and the seeds of random weights."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

from terramind.build import is_random, pick, resolve, seed_of, seeded, tokenizer_weights_for
from terramind.build import weights as build_weights
from terramind.checkpoints.io import HubFile
from terramind.core.errors import CheckpointError, ModalityError

HUB = HubFile("org/repo", "TerraMind_v1_tiny.pt")


@pytest.mark.parametrize("spec", [None, "random", "none", "RANDOM", "None"])
def test_random_spellings_mean_random_init(spec: str | None) -> None:
    assert is_random(spec)
    assert resolve(spec, HUB, what="tiny") is None


def test_hub_is_fetched_and_paths_pass_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fetched: list[HubFile] = []
    monkeypatch.setattr(build_weights, "fetch", lambda hub: fetched.append(hub) or tmp_path / hub.filename)
    assert resolve("hub", HUB, what="tiny") == tmp_path / "TerraMind_v1_tiny.pt"
    assert fetched == [HUB]
    assert resolve(tmp_path / "mine.pt", HUB, what="tiny") == tmp_path / "mine.pt"  # read (and checked) later
    assert resolve(str(tmp_path / "mine.pt"), HUB, what="tiny") == tmp_path / "mine.pt"
    assert not is_random("hub") and not is_random(tmp_path)


def test_a_folder_must_hold_the_release_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"has no TerraMind_v1_tiny\.pt for tiny"):
        resolve(tmp_path, HUB, what="tiny")
    (tmp_path / "TerraMind_v1_tiny.pt").write_bytes(b"")
    assert resolve(tmp_path, HUB, what="tiny") == tmp_path / "TerraMind_v1_tiny.pt"
    assert resolve(str(tmp_path), HUB, what="tiny") == tmp_path / "TerraMind_v1_tiny.pt"


def test_a_mapping_is_only_for_tokenizers() -> None:
    with pytest.raises(CheckpointError, match="only for tokenizer_weights"):
        resolve({"S2L2A": "hub"}, HUB, what="tiny")


def test_pick_takes_one_entry_by_any_alias() -> None:
    spec = {"s2l2a": "a.pt", "tok_dem@224": None, "LULC": "random"}
    assert pick(spec, "S2L2A") == "a.pt"
    assert pick(spec, "DEM") is None
    assert pick(spec, "LULC") == "random"
    assert pick("hub", "NDVI") == "hub" and pick(None, "NDVI") is None
    with pytest.raises(CheckpointError, match="tokenizer_weights has no entry for NDVI"):
        pick(spec, "NDVI")
    with pytest.raises(ModalityError):
        pick({"S2L3A": "hub"}, "S2L2A")


def test_the_coordinate_vocabulary_has_no_random_version() -> None:
    assert tokenizer_weights_for(None, "coords") == "hub"
    assert tokenizer_weights_for("random", "coords") == "hub"
    assert tokenizer_weights_for({"DEM": None}, "coords") == "hub"  # no entry: the hub's vocabulary
    assert tokenizer_weights_for({"coords": "v.json"}, "coords") == "v.json"
    assert tokenizer_weights_for("folder", "coords") == "folder"
    assert tokenizer_weights_for({"dem": "d.pt"}, "DEM") == "d.pt"
    with pytest.raises(CheckpointError, match="no entry for DEM"):
        tokenizer_weights_for({"coords": "hub"}, "DEM")


def test_seeded_is_reproducible_and_leaves_the_callers_stream_alone() -> None:
    assert seed_of("terramind_v1_tiny") == zlib.crc32(b"terramind_v1_tiny")
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    with seeded("tokenizer:S2L2A"):
        a = torch.rand(5)
    with seeded("tokenizer:S2L2A"):
        b = torch.rand(5)
    with seeded("tokenizer:S1GRD"):
        c = torch.rand(5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
