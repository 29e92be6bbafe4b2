from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from terramind.core.errors import CheckpointError, ModalityError
from terramind.finetune.backbone import Backbone
from terramind.finetune.tasks import ClassificationTask, RegressionTask, SegmentationTask
from terramind.model import TINY, TerraMind


def _batches(label_fn: Any, n: int = 4, size: int = 32) -> DataLoader[dict[str, Any]]:
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n):
        x = torch.randn(12, size, size, generator=g)
        samples.append({"inputs": {"S2L2A": x}, "label": label_fn(x), "path": "x.tif"})
    return DataLoader(samples, batch_size=2)


def _fit(task: L.LightningModule, loader: DataLoader[dict[str, Any]], steps: int = 2) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, loader, loader)
    return trainer


def test_segmentation_task_logs_miou_and_per_class_iou(small_standin: torch.nn.Module) -> None:
    task = SegmentationTask(small_standin, 3, decoder="fcn", decoder_kwargs={"channels": 8}, loss="dice")
    trainer = _fit(task, _batches(lambda x: (x[0] > 0).long() + (x[1] > 1).long()))
    logged = trainer.callback_metrics
    assert {"val/mIoU", "val/IoU_0", "val/IoU_2", "val/F1", "val/accuracy", "train/loss_epoch"} <= set(logged)
    assert 0.0 <= float(logged["val/mIoU"]) <= 1.0
    pred = task.predict_step(next(iter(_batches(lambda x: x[0].long()))), 0)["prediction"]
    assert pred.shape == (2, 32, 32) and pred.dtype == torch.uint8


def test_regression_task_trains_on_valid_pixels(small_standin: torch.nn.Module) -> None:
    def label(x: torch.Tensor) -> torch.Tensor:
        y = x[:1].clone()
        y[:, :4] = float("nan")
        return y

    task = RegressionTask(small_standin, 1, decoder="fcn", decoder_kwargs={"channels": 8})
    trainer = _fit(task, _batches(label))
    assert torch.isfinite(trainer.callback_metrics["val/RMSE"])
    assert {"val/MAE", "val/R2", "train/R2"} <= set(trainer.callback_metrics)


@pytest.mark.parametrize("multilabel", [False, True])
def test_classification_tasks(small_standin: torch.nn.Module, multilabel: bool) -> None:
    def label(x: torch.Tensor) -> torch.Tensor:
        return (x[:3].mean((1, 2)) > 0).float() if multilabel else (x[0].mean() > 0).long()

    task = ClassificationTask(small_standin, 3, multilabel=multilabel, scheduler="cosine")
    trainer = _fit(task, _batches(label))
    assert 0.0 <= float(trainer.callback_metrics["val/accuracy"]) <= 1.0
    pred = task.predict_step(next(iter(_batches(label))), 0)["prediction"]
    assert pred.shape == ((2, 3) if multilabel else (2,))


def test_frozen_backbone_keeps_weights_decoder_trains(small_standin: torch.nn.Module) -> None:
    backbone = small_standin
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    task = SegmentationTask(backbone, 2, decoder="fcn", freeze_backbone=True, scheduler="none", lr=1e-2)
    head_before = task.model.head.proj.weight.clone()
    _fit(task, _batches(lambda x: (x[0] > 0).long()))
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert not torch.equal(head_before, task.model.head.proj.weight)


def test_tim_backbone_appends_one_token_grid_per_tim_modality() -> None:
    x = {"S2L2A": torch.randn(1, 12, 224, 224)}
    plain = Backbone("terramind_v1_tiny", ["S2L2A"], merge=None, encoder_depth=1)
    tim = Backbone("terramind_v1_tiny", ["S2L2A"], merge=None, encoder_depth=1, tim_modalities=["LULC"])
    assert plain(x)[-1].shape == (1, 196, 192)
    assert tim(x)[-1].shape == (1, 196 + 196, 192)


def test_tim_tokens_follow_the_global_seed_or_a_fixed_tim_seed() -> None:
    x = {"S2L2A": torch.randn(2, 12, 64, 64)}
    backbone = Backbone("terramind_v1_tiny", ["S2L2A"], merge=None, encoder_depth=1, tim_modalities=["LULC"])
    assert backbone.tim is not None
    runs = []
    for _ in range(2):  # as under Lightning's seed_everything: the same global seed, the same TiM tokens
        torch.manual_seed(7)
        runs.append(backbone(x)[-1])
    assert torch.equal(runs[0], runs[1])
    fresh = backbone(x)[-1]  # the next step draws another seed from the global stream
    assert not torch.equal(fresh, runs[0])
    backbone.tim_seed = 3  # a fixed seed: the same tokens at every forward, whatever the global stream
    fixed = [backbone(x)[-1] for _ in range(2)]
    assert torch.equal(fixed[0], fixed[1])


def test_tim_generator_unchanged_by_a_training_step() -> None:
    torch.manual_seed(0)
    backbone = Backbone("terramind_v1_tiny", ["S2L2A"], encoder_depth=1, tim_modalities=["LULC"])
    assert backbone.tim is not None
    generator_before = {k: v.clone() for k, v in backbone.tim.state_dict().items()}
    lulc_emb = backbone.encoder.encoder_embeddings["tok_lulc@224"].token_emb.weight
    emb_before = lulc_emb.clone()
    task = SegmentationTask(backbone, 2, layer_indices=[0], decoder="fcn", scheduler="none", lr=1e-2)
    optimizer = task.configure_optimizers()
    batch = next(iter(_batches(lambda x: (x[0] > 0).long(), n=2)))
    task.train()
    task.loss_fn(task(batch["inputs"]), batch["label"]).backward()
    optimizer.step()
    assert all(torch.equal(generator_before[k], v) for k, v in backbone.tim.state_dict().items())
    assert not torch.equal(emb_before, lulc_emb)  # the TiM token embedding is trained


def test_backbone_and_tim_generator_load_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    keys = ["untok_sen2l2a@224", "tok_lulc@224"]  # official files hold every encoder embedding
    source = TerraMind(TINY, encoder_keys=keys, decoder_keys=["tok_lulc@224"])
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    backbone = Backbone(
        "terramind_v1_tiny", ["S2L2A"], weights=str(path), encoder_depth=2, tim_modalities=["LULC"]
    )
    assert backbone.tim is not None
    mine, theirs = backbone.encoder.state_dict(), source.state_dict()
    assert torch.equal(mine["encoder.1.attn.qkv.weight"], theirs["encoder.1.attn.qkv.weight"])
    generator = backbone.tim.model.state_dict()
    assert torch.equal(generator["decoder.0.mlp.fc1.weight"], theirs["decoder.0.mlp.fc1.weight"])
    with pytest.raises(ModalityError, match="bands cannot be combined"):
        Backbone("terramind_v1_tiny", ["S2L2A"], bands={"S2L2A": ["RED"]}, tim_modalities=["LULC"])


class _LearningRates(L.Callback):
    """Record the learning rate each optimiser step runs with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("scheduler", ["cosine", "none", "plateau"])
def test_warmup_ramps_the_learning_rate_before_the_schedule(
    small_standin: torch.nn.Module, scheduler: str
) -> None:
    task = SegmentationTask(
        small_standin, 2, decoder="fcn", decoder_kwargs={"channels": 8}, scheduler=scheduler,  # type: ignore[arg-type]
        lr=1e-2, warmup_steps=3,
    )  # fmt: skip
    record = _LearningRates()
    trainer = L.Trainer(
        max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", callbacks=[record], limit_val_batches=1,
    )  # fmt: skip
    loader = _batches(lambda x: (x[0] > 0).long(), n=12)  # 6 steps: one epoch
    trainer.fit(task, loader, loader)
    assert record.lrs[:4] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2])
    if scheduler == "cosine":  # then down over the remaining 3 steps
        assert record.lrs[4] < record.lrs[3] and record.lrs[5] < record.lrs[4]
    else:
        assert record.lrs[4:] == pytest.approx([1e-2, 1e-2])


def test_negative_warmup_is_refused(small_standin: torch.nn.Module) -> None:
    from terramind.core.errors import TerraMindError

    with pytest.raises(TerraMindError, match="warmup_steps must be >= 0"):
        SegmentationTask(small_standin, 2, decoder="fcn", warmup_steps=-1)


def test_token_inputs_are_tokenized_by_frozen_tokenizers_outside_the_module_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from terramind.finetune import backbone as backbone_module
    from terramind.tokenizers import build_tokenizer

    sys.path.insert(0, str(Path(__file__).parents[1] / "tokenizers"))
    from tiny_tokenizers import tiny_config

    built: dict[str, torch.nn.Module] = {}

    def tiny(modality: str, weights: object = None) -> torch.nn.Module:
        built[modality] = build_tokenizer(tiny_config(modality, 10 if modality == "LULC" else 1)).eval()
        return built[modality]

    monkeypatch.setattr(backbone_module, "build_image_tokenizer", tiny)
    torch.manual_seed(0)
    backbone = Backbone("terramind_v1_tiny", ["S2L2A", "LULC", "NDVI"], merge=None, encoder_depth=1)
    assert set(backbone.tokenizers) == {"LULC", "NDVI"}
    own = {id(p) for p in backbone.parameters()}
    assert not any(id(p) in own for tok in built.values() for p in tok.parameters())  # not fine-tuned
    assert not any(k.startswith("tokenizers") for k in backbone.state_dict())  # not in checkpoints

    g = torch.Generator().manual_seed(0)
    x = {
        "S2L2A": torch.randn(2, 12, 64, 64, generator=g),
        "LULC": torch.randint(0, 10, (2, 1, 64, 64), generator=g).float(),  # as the datamodule reads it
        "NDVI": torch.randn(2, 1, 64, 64, generator=g),
    }
    ids = {name: built[name].encode(x[name]) for name in ("LULC", "NDVI")}
    out = backbone(x)[-1]
    assert out.shape == (2, 3 * 16, 192)  # three 4 x 4 token grids
    assert torch.equal(out, backbone({**x, **ids})[-1])  # the same as feeding the token ids


def test_a_tokenizer_weights_mapping_must_name_every_token_input() -> None:
    with pytest.raises(CheckpointError, match="tokenizer_weights has no entry for NDVI"):
        Backbone("terramind_v1_tiny", ["S2L2A", "NDVI"], encoder_depth=1, tokenizer_weights={"LULC": "hub"})


def test_regression_r2_is_one_for_the_targets_and_zero_for_their_mean(small_standin: torch.nn.Module) -> None:
    task = RegressionTask(small_standin, 1, decoder="fcn", decoder_kwargs={"channels": 8}, ignore_value=-9)
    target = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target[0, 0, :2] = -9  # ignored pixels: a prediction far off there must not count
    valid = target != -9

    def r2(pred: torch.Tensor) -> float:
        task.val_metrics.update(*task._metric_inputs(pred, target))
        value = float(task.val_metrics.compute()["val/R2"])
        task.val_metrics.reset()
        return value

    exact = torch.where(valid, target, torch.full_like(target, 100.0))
    mean = torch.where(valid, target[valid].mean(), torch.full_like(target, 100.0))
    # R2 = 1 - SS_res / SS_tot in float32 over 112 values: rounding of order 1e-6
    assert r2(exact) == pytest.approx(1.0, abs=1e-6)
    assert r2(mean) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("size", [120, 40])  # a BigEarthNet-sized tile; 40 px (pads 8 px of 40)
def test_predict_takes_tiles_of_any_size(small_standin: torch.nn.Module, size: int) -> None:
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    loader = _batches(lambda x: x[0].long(), size=size)
    segmentation = SegmentationTask(small_standin, 3, decoder="fcn", decoder_kwargs={"channels": 8})
    maps = trainer.predict(segmentation, loader)
    assert maps is not None and [m["prediction"].shape for m in maps] == [(2, size, size)] * 2
    regression = RegressionTask(small_standin, 2, decoder="fcn", decoder_kwargs={"channels": 8})
    values = trainer.predict(regression, loader)
    assert values is not None and [v["prediction"].shape for v in values] == [(2, 2, size, size)] * 2
    # the crop keeps the input's pixels: the top-left of a padded 128 px tile is the 120 px prediction
    regression.eval()
    x = next(iter(loader))
    padded = {"inputs": {"S2L2A": torch.nn.functional.pad(x["inputs"]["S2L2A"], (0, 8, 0, 8), "reflect")}}
    if size == 120:
        full = regression.predict_step(padded, 0)["prediction"]
        assert torch.equal(regression.predict_step(x, 0)["prediction"], full[..., :120, :120])


def test_classification_predicts_a_tile_of_any_size(small_standin: torch.nn.Module) -> None:
    task = ClassificationTask(small_standin, 3)
    pred = task.predict_step(next(iter(_batches(lambda x: x[0].mean().long(), size=120))), 0)["prediction"]
    assert pred.shape == (2,)
