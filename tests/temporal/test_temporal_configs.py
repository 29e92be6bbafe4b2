"""The time-series configs build through ``terramind finetune`` (LightningCLI) with a tiny encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from terramind.cli.finetune import cli
from terramind.finetune.backbone import Backbone
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import TemporalSegmentationTask

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune" / "temporal"
ENCODER = {"init_args": {"name": "terramind_v1_tiny", "weights": None, "encoder_depth": 4}}
TINY = {
    "trainer": {"precision": "32-true", "accelerator": "cpu"},
    "model": {"init_args": {"backbone": {"init_args": {"encoder": ENCODER}}}},
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_temporal_config_instantiates(path: Path, tmp_path: Path) -> None:
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump(TINY))
    run = cli(["-c", str(path), "-c", str(override), f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert isinstance(run.model, TemporalSegmentationTask)
    backbone = run.model.model.backbone
    assert isinstance(backbone, TemporalBackbone) and isinstance(backbone.encoder, Backbone)
    assert isinstance(run.datamodule, TemporalDataModule)
    assert [m.name for m in run.datamodule.inputs] == backbone.encoder.modalities
    assert backbone.max_steps == run.datamodule.max_steps
    assert backbone.aggregator_name in {"pastis_like": "attention", "impactmesh_flood": "mean"}[path.stem]
