"""Temporal segmentation and change detection: a 3-step fit, prediction written on the series' grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import rasterio
import torch

from terramind.core.errors import TerraMindError
from terramind.finetune.backbone import Backbone
from terramind.finetune.temporal import TemporalBackbone
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import ChangeDetectionTask, TemporalSegmentationTask
from terramind.finetune.writer import GeoTiffPredictionWriter

MakeSeries = Callable[..., Path]
NUM_CLASSES = 4


def _trainer(steps: int, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def test_three_step_fit_on_terramind_tiny_then_predict(make_series: MakeSeries, tmp_path: Path) -> None:
    root = make_series(steps=3, masked=1)
    dm = TemporalDataModule(str(root), ["S2L2A", "S1RTC", "DEM"], split_ratio=(0.67, 0.33, 0.0), batch_size=2)
    torch.manual_seed(0)
    encoder = Backbone("terramind_v1_tiny", ["S2L2A", "S1RTC", "DEM"], encoder_depth=2)
    backbone = TemporalBackbone(encoder, "attention", aggregator_options={"heads": 4})
    task = TemporalSegmentationTask(
        backbone, NUM_CLASSES, decoder="fcn", decoder_kwargs={"channels": 16}, layer_indices=[1], lr=1e-3,
        scheduler="none",
    )  # fmt: skip
    before = {k: v.clone() for k, v in task.state_dict().items()}
    trainer = _trainer(3)
    trainer.fit(task, dm)
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss_step"])
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    after = task.state_dict()
    for part in (
        "dense.head.proj.weight",
        "dense.backbone.aggregators.1.query",
        "dense.backbone.encoder.encoder",
    ):
        changed = [k for k in after if part in k and not torch.equal(before[k], after[k])]
        assert changed, f"no weight of {part} changed"
    out_dir = tmp_path / "pred"
    _trainer(1, callbacks=[GeoTiffPredictionWriter(str(out_dir))]).predict(task, dm, return_predictions=False)
    written = sorted(out_dir.glob("*_pred.tif"))
    assert len(written) == 3
    first_date = next((root / "S2L2A").glob("*/*.tif"))
    with rasterio.open(written[0]) as pred, rasterio.open(first_date) as src:
        assert (pred.width, pred.height, pred.crs, pred.transform) == (
            src.width,
            src.height,
            src.crs,
            src.transform,
        )
        assert int(pred.read().max()) < NUM_CLASSES


def test_frozen_temporal_encoder_keeps_its_weights(
    make_series: MakeSeries, make_encoder: Callable[..., Any]
) -> None:
    root = make_series(steps=3, masked=None)
    dm = TemporalDataModule(str(root), ["S2L2A"], split_ratio=(0.67, 0.33, 0.0), batch_size=2)
    torch.manual_seed(0)
    encoder = make_encoder({"S2L2A": 12})
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    backbone = TemporalBackbone(encoder, "mean", freeze_encoder=True)
    task = TemporalSegmentationTask(
        backbone, NUM_CLASSES, decoder="fcn", decoder_kwargs={"channels": 8}, layer_indices=[1]
    )
    _trainer(2).fit(task, dm)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_change_detection_on_two_dates(make_series: MakeSeries, make_encoder: Callable[..., Any]) -> None:
    root = make_series(steps=2, masked=None)
    dm = TemporalDataModule(str(root), ["S2L2A"], split_ratio=(0.67, 0.33, 0.0), batch_size=2)
    torch.manual_seed(0)
    backbone = TemporalBackbone(make_encoder({"S2L2A": 12}), "difference")
    task = ChangeDetectionTask(
        backbone, NUM_CLASSES, decoder="fcn", decoder_kwargs={"channels": 8}, layer_indices=[1]
    )
    trainer = _trainer(2)
    trainer.fit(task, dm)
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    with pytest.raises(TerraMindError, match="'difference' or 'concat'"):
        ChangeDetectionTask(TemporalBackbone(make_encoder({"S2L2A": 12}), "mean"))
    with pytest.raises(TerraMindError, match=r"needs a terramind\.finetune\.temporal\.TemporalBackbone"):
        TemporalSegmentationTask(make_encoder({"S2L2A": 12}), 2)
