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
    dem = Path(__file__).resolve().parents[2] / "examples" / "DEM" / "38D_378R_2_3.tif"
    assert main(["zeroshot", "water", "--input", f"DEM={dem}", "--output", str(tmp_path / "w.tif")]) == 2
    err = capsys.readouterr().err
    assert "S2L2A=PATH" in err and "--input DEM" in err and "S2L1C" in err and "S1GRD" in err


def test_bad_scene_fails_before_any_weights_load(tmp_path, capsys, monkeypatch):
    from terramind.cli import zeroshot

    def no_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(zeroshot, "create_generator", no_load)
    dem = Path(__file__).resolve().parents[2] / "examples" / "DEM" / "38D_378R_2_3.tif"
    assert main(["zeroshot", "water", "--input", f"S2L2A={dem}", "--output", str(tmp_path / "w.tif")]) == 2
    assert "has 1 band(s); expected 12" in capsys.readouterr().err
    assert not (tmp_path / "w.tif").exists()


class RuleGenerator(FakeGenerator):
    """Duck-typed generator whose LULC says water where ``rule(inputs)`` holds; records its inputs."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule
        self.seen: set[str] = set()

    def generate(self, inputs: Mapping[str, torch.Tensor], **options: Any) -> dict[str, torch.Tensor]:
        self.seen |= set(inputs)
        water = self.rule(inputs)
        logits = torch.zeros(water.shape[0], 10, *water.shape[-2:])
        logits[:, 1] = water.float() * 10
        logits[:, 2] = (~water).float() * 10
        return {"LULC": logits.argmax(1, keepdim=True), "LULC_logits": logits}


def _fake(monkeypatch: pytest.MonkeyPatch, rule: Any) -> tuple[list[dict[str, Any]], RuleGenerator]:
    calls: list[dict[str, Any]] = []
    generator = RuleGenerator(rule)

    def fake_create(name: str, **kwargs: Any) -> RuleGenerator:
        calls.append({"name": name, **kwargs})
        return generator

    monkeypatch.setattr(zeroshot, "create_generator", fake_create)
    return calls, generator


def _ndwi(x: torch.Tensor) -> torch.Tensor:  # B03 and B08 sit at 2 and 7 in both S2 products
    return (x[:, 2] - x[:, 7]) / (x[:, 2] + x[:, 7] + 1e-6) > 0  # tiles come in physical units (DN)


def test_zeroshot_water_on_s2l1c(
    tmp_path: Path, examples_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls, generator = _fake(monkeypatch, lambda inputs: _ndwi(inputs["S2L1C"]))
    chip = examples_dir / "S2L1C" / f"{TILE}.tif"
    out = tmp_path / "water.tif"
    args = ["zeroshot", "water", "--input", f"S2L1C={chip}", "--output", str(out), "--json"]
    assert main([*args, "--label", str(_water_label(tmp_path, examples_dir))]) == 0
    assert calls[0]["inputs"] == ["S2L1C"] and generator.seen == {"S2L1C"}
    with rasterio.open(chip) as src, rasterio.open(out) as mask:
        assert (mask.crs, mask.transform, mask.shape) == (src.crs, src.transform, src.shape)
        # one 224 px tile, no blending: the mask is the rule on the 13-band chip exactly
        x = torch.from_numpy(src.read().astype(np.float32))[None]
        np.testing.assert_array_equal(mask.read(1) == 1, _ndwi(x)[0].numpy())
    scores = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert scores["valid"] == 224 * 224
    assert scores["tp"] + scores["fn"] == int(np.sum(_lulc(examples_dir) == 1))


def test_zeroshot_water_on_s1grd_of_any_size(
    tmp_path: Path, tiny_geotiff: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a 120 px S1 GRD chip in dB: open water (-25 dB) on the left 50 columns, land (-8 dB) elsewhere
    db = np.full((2, 120, 120), -8.0, np.float32)
    db[:, :, :50] = -25.0
    calls, generator = _fake(monkeypatch, lambda inputs: inputs["S1GRD"][:, 0] < -16.5)  # physical dB
    chip = tiny_geotiff(db, name="s1.tif")
    label = tiny_geotiff((db[:1] < -16.5).astype(np.uint8), name="label.tif")
    out = tmp_path / "water.tif"
    args = ["zeroshot", "water", "--input", f"S1GRD={chip}", "--output", str(out), "--label", str(label)]
    assert main([*args, "--json"]) == 0
    assert calls[0]["inputs"] == ["S1GRD"] and generator.seen == {"S1GRD"}
    with rasterio.open(chip) as src, rasterio.open(out) as mask:
        assert (mask.crs, mask.transform, mask.shape) == (src.crs, src.transform, (120, 120))
    scores = json.loads(capsys.readouterr().out.splitlines()[-1])
    # the rule thresholds halfway between the two halves, one tile (padded), no blending: exact
    assert scores["valid"] == 120 * 120 and scores["iou"] == 1.0 and scores["tp"] == 120 * 50
