"""The time-series configs load into FinetuneConfig and build as ``terramind finetune`` does (tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from terramind.finetune.backbone import Backbone
from terramind.finetune.config import FinetuneConfig
from terramind.finetune.run import build
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import TemporalSegmentationTask
from terramind.train.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "temporal"
TINY = {
    "trainer": {"precision": "32-true", "accelerator": "cpu"},
    "backbone": {"name": "terramind_v1_tiny", "weights": None, "encoder_depth": 4},
    "task": {"layer_indices": [0, 1, 2, 3]},  # the configs' [2, 5, 8, 11] need 12 blocks
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_temporal_config_instantiates(path: Path, tmp_path: Path) -> None:
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump(TINY))
    config = load_yaml(FinetuneConfig, path, override, sets={"trainer": {"out_dir": str(tmp_path)}})
    task, datamodule = build(config)
    assert isinstance(task, TemporalSegmentationTask)
    backbone = task.model.backbone
    assert isinstance(backbone, TemporalBackbone) and isinstance(backbone.encoder, Backbone)
    assert isinstance(datamodule, TemporalDataModule)
    assert [m.name for m in datamodule.inputs] == backbone.encoder.modalities
    assert backbone.max_steps == datamodule.max_steps
    assert backbone.aggregator_name in {"pastis_like": "attention", "impactmesh_flood": "mean"}[path.stem]
