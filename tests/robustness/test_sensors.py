"""New sensors declared in configs: a wrong one is refused where the config is read, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

GOOD = {"name": "MYSENSOR", "bands": ["BLUE", "GREEN", "RED", "NIR"], "mean": [1.0] * 4, "std": [2.0] * 4}


def _pretrain_config(tmp_path: Path, sensor: dict) -> Path:
    config = {
        "modalities": [{"name": sensor["name"], "input": "pixel", "target": False}],
        "sensors": [sensor],
        "data": {"shards": str(tmp_path / "none" / "*.tar")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        ({"mean": [1.0, 2.0, 3.0]}, ("'MYSENSOR' has 4 band(s)", "3 mean", "one mean and one std per band")),
        ({"std": [1.0, -1.0, 1.0, 1.0]}, ("every std must be positive",)),
        ({"name": "S2"}, ("'S2' is taken by official modality 'S2L2A'",)),
        ({"aliases": ["sentinel-1"]}, ("'sentinel-1' is taken by official modality 'S1GRD'",)),
    ],
)
def test_pretrain_refuses_a_bad_sensor(
    run_cli, tmp_path: Path, change: dict, phrases: tuple[str, ...]
) -> None:
    path = _pretrain_config(tmp_path, {**GOOD, **change})
    run_cli(["pretrain", "-c", path]).expect_failure(*phrases)


def test_finetune_refuses_a_sensor_named_like_an_official_modality(run_cli, tmp_path: Path) -> None:
    sensor = {**GOOD, "name": "sen2l2a"}
    config = {
        "trainer": {"accelerator": "cpu", "max_steps": 1, "out_dir": str(tmp_path / "runs")},
        "sensors": [sensor],
        "task": {"kind": "segmentation", "num_classes": 2},
        "backbone": {"name": "terramind_v1_tiny", "modalities": ["sen2l2a"]},
        "data": {"kind": "geotiff", "data_root": str(tmp_path), "num_classes": 2},
    }
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli(["finetune", "fit", "-c", path]).expect_failure("'sen2l2a' is taken by official modality 'S2L2A'")
