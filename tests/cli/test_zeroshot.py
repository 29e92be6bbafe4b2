from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

import terramind.cli.zeroshot as zeroshot
from terramind.cli.main import main

TILE = "282D_485L_3_3"


class FakeGenerator:
    """Duck-typed generator: LULC logits saying water where NDWI > 0."""

    def keep_loaded(self) -> FakeGenerator:
        return self

    def to(self, device: str) -> FakeGenerator:
        assert device in ("cpu", "cuda")  # --device auto
        return self

    def generate(self, inputs: Mapping[str, torch.Tensor], **options: Any) -> dict[str, torch.Tensor]:
        s2 = inputs["S2L2A"]
        water = (s2[:, 2] - s2[:, 7]) / (s2[:, 2] + s2[:, 7] + 1e-6) > 0
        logits = torch.zeros(s2.shape[0], 10, *s2.shape[-2:])
        logits[:, 1] = water.float() * 10
        logits[:, 2] = (~water).float() * 10
        return {"LULC": logits.argmax(1, keepdim=True), "LULC_logits": logits}


def test_zeroshot_water_reports_scores(
    tmp_path: Path, examples_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_create(name: str, **kwargs: Any) -> FakeGenerator:
        calls.append({"name": name, **kwargs})
        return FakeGenerator()

    monkeypatch.setattr(zeroshot, "create_generator", fake_create)
    out = tmp_path / "water.tif"
    args = ["zeroshot", "water", "--input", f"S2L2A={examples_dir / 'S2L2A' / f'{TILE}.tif'}"]
    args += ["--output", str(out), "--label", str(_water_label(tmp_path, examples_dir)), "--json"]
    assert main(args) == 0
    assert calls[0]["outputs"] == ["LULC"] and calls[0]["weights"] == "hub"
    scores = json.loads(capsys.readouterr().out.splitlines()[-1])
    # the LULC file made a label: 1 = water, other classes = not water; every pixel is labelled
    assert scores["valid"] == 224 * 224 and 0.3 < scores["iou"] <= 1
    assert scores["tp"] + scores["fn"] == int(np.sum(np.asarray(_lulc(examples_dir)) == 1))


def _water_label(tmp_path: Path, examples_dir: Path) -> Path:
    """The example LULC map as a 0/1 water label (class 1 water, every other class 0)."""
    with rasterio.open(examples_dir / "LULC" / f"{TILE}.tif") as f:
        profile, lulc = f.profile, f.read(1)
    path = tmp_path / "label" / "water_label.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write((lulc == 1).astype(profile["dtype"]), 1)
    return path


def _lulc(examples_dir: Path) -> np.ndarray:
    with rasterio.open(examples_dir / "LULC" / f"{TILE}.tif") as f:
        return f.read(1)


def test_zeroshot_rejects_other_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s1 = Path(__file__).resolve().parents[2] / "examples" / "S1RTC" / "38D_378R_2_3.tif"
    assert main(["zeroshot", "water", "--input", f"S1RTC={s1}", "--output", str(tmp_path / "w.tif")]) == 2
    assert "S2L2A=PATH" in capsys.readouterr().err


def test_bad_scene_fails_before_any_weights_load(tmp_path, capsys, monkeypatch):
    from terramind.cli import zeroshot

    def no_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(zeroshot, "create_generator", no_load)
    dem = Path(__file__).resolve().parents[2] / "examples" / "DEM" / "38D_378R_2_3.tif"
    assert main(["zeroshot", "water", "--input", f"S2L2A={dem}", "--output", str(tmp_path / "w.tif")]) == 2
    assert "has 1 band(s); expected 12" in capsys.readouterr().err
    assert not (tmp_path / "w.tif").exists()
