"""The real-data proof: fine-tune a small TerraMind on four example tiles (LULC labels), predict the fifth."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import rasterio
import yaml

from terramind.cli.main import main

NAMES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]


def _config(tmp_path: Path, examples: Path, **task: Any) -> Path:
    (tmp_path / "train.txt").write_text("\n".join(NAMES[:4]))
    (tmp_path / "predict.txt").write_text(NAMES[4])
    config = {
        "seed": 0,
        "trainer": {
            "max_steps": 4,
            "accelerator": "cpu",
            "log_every": 1,
            "validate": False,
            "progress_bar": False,
            "out_dir": str(tmp_path / "run"),
        },
        "predict": {"output_dir": str(tmp_path / "pred")},
        "task": {
            "kind": "segmentation",
            "num_classes": 10,
            "layer_indices": [0],
            "decoder": "fcn",
            "decoder_kwargs": {"channels": 32},
            "lr": 1e-3,
            "scheduler": "none",
            "head_dropout": 0.0,
            **task,
        },
        "backbone": {"name": "terramind_v1_tiny", "modalities": ["S2L2A", "S1RTC"], "encoder_depth": 1},
        "data": {
            "kind": "geotiff",
            "data_root": str(examples),
            "num_classes": 10,
            "folders": {"label": "LULC"},
            "splits": {
                "train": str(tmp_path / "train.txt"),
                "val": str(tmp_path / "train.txt"),
                "predict": str(tmp_path / "predict.txt"),
            },
            "augment": False,
            "batch_size": 4,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _losses(tmp_path: Path) -> list[float]:
    (metrics,) = tmp_path.glob("run/logs/version_*/metrics.csv")
    with metrics.open() as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


def test_finetune_fit_then_predict_on_example_tiles(tmp_path: Path, examples_dir: Path) -> None:
    config = _config(tmp_path, examples_dir)
    assert main(["finetune", "fit", "-c", str(config)]) == 0
    losses = _losses(tmp_path)
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses  # the same four tiles every step: the loss must fall
    (ckpt,) = tmp_path.rglob("*.ckpt")
    assert ckpt.name == "last.ckpt"
    assert main(["finetune", "predict", "-c", str(config), "--ckpt_path", str(ckpt)]) == 0
    out = tmp_path / "pred" / f"{NAMES[4]}_pred.tif"
    with rasterio.open(out) as pred, rasterio.open(examples_dir / "S2L2A" / f"{NAMES[4]}.tif") as src:
        assert pred.crs == src.crs and pred.transform == src.transform
        assert (pred.width, pred.height, pred.count) == (224, 224, 1)
        values = pred.read(1)
    assert values.max() <= 9
    # the same checkpoint over a "scene" in overlapping 128 px tiles, blended
    scene_out = tmp_path / "scene.tif"
    s2, s1 = (examples_dir / m / f"{NAMES[4]}.tif" for m in ("S2L2A", "S1RTC"))
    args = ["finetune", "scene", "-c", str(config), "--ckpt_path", str(ckpt), "--input", f"S2L2A={s2}"]
    args += ["--input", f"S1RTC={s1}", "--output", str(scene_out), "--tile", "128", "--overlap", "32"]
    assert main(args) == 0
    with rasterio.open(scene_out) as scene:
        assert scene.transform == pred.transform and scene.crs == pred.crs
        blended = scene.read(1)
    assert blended.max() <= 9 and (blended == values).mean() > 0.5  # same model, different tile context


def test_config_errors_surface_before_training(
    tmp_path: Path, examples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, examples_dir, num_classes=5)
    text = config.read_text().replace("num_classes: 10\n  splits", "num_classes: 5\n  splits")
    config.write_text(text)
    assert main(["finetune", "fit", "-c", str(config)]) == 2
    assert "classes outside 0..4" in capsys.readouterr().err
    bad = config.read_text().replace("terramind_v1_tiny", "terramind_v1_huge")
    config.write_text(bad)
    assert main(["finetune", "fit", "-c", str(config)]) == 2
    assert "unknown model 'terramind_v1_huge'" in capsys.readouterr().err
